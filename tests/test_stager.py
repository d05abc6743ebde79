"""The stager never breaks a motor limit, whatever the demand and the faults do."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config.schema import PumpConfig, StagingConfig
from controller.control.stager import Demand, Stager, StopAll


def pump(relay: str, **kw: object) -> PumpConfig:
    base: dict[str, object] = {
        "relay": relay, "rated_flow_m3h": 30, "rated_head_m": 35, "shutoff_head_m": 45,
        "rated_power_kw": 5.5, "max_starts_per_hour": 6, "min_run_s": 60, "min_off_s": 60,
        "feedback_timeout_s": 5,
    }  # fmt: skip
    base.update(kw)
    return PumpConfig.model_validate(base)


PUMPS = {"P1": pump("GPIO1"), "P2": pump("GPIO2"), "P3": pump("GPIO3")}
DRIVE = {"speed_point": "speed"}
WITH_DRIVE = {**PUMPS, "P1": pump("GPIO1", vfd=DRIVE)}
STAGING = StagingConfig(
    max_running=2,
    station_max_starts_per_hour=12,
    stage_up_delay_s=5,
    stage_down_delay_s=10,
    alternation_h=1,
    exercise_interval_h=0.5,
)

step = st.tuples(
    st.floats(0.1, 120.0),  # time to the next tick
    st.floats(-0.5, 3.5),  # demand
    st.sampled_from(["none", "none", "none", "fault", "nofeedback", "stop_all"]),
    st.sampled_from(["P1", "P2", "P3"]),
)


@pytest.mark.parametrize("pumps", [PUMPS, WITH_DRIVE], ids=["relays", "drive_leads"])
@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, min_size=30, max_size=400), drive_live=st.lists(st.booleans()))
def test_limits_hold_for_any_demand_and_fault_sequence(
    pumps: dict[str, PumpConfig],
    steps: list[tuple[float, float, str, str]],
    drive_live: list[bool],
) -> None:
    stager = Stager(pumps, STAGING, now=0.0)
    now = 0.0
    starts: dict[str, deque[float]] = {n: deque() for n in PUMPS}
    station: deque[float] = deque()
    on_since: dict[str, float] = {}
    off_since: dict[str, float] = dict.fromkeys(PUMPS, -1e9)
    state = dict.fromkeys(PUMPS, False)
    for k, (dt, demand, event, target) in enumerate(steps):
        now += dt
        # A drive that comes and goes (trips, loses its bus) changes the order, never a limit.
        stager.set_lead_vfd(
            pumps is WITH_DRIVE and bool(drive_live) and drive_live[k % len(drive_live)]
        )
        fault = {n: event == "fault" and n == target for n in PUMPS}
        feedback = {n: not (event == "nofeedback" and n == target) and state[n] for n in PUMPS}
        stop_all = event == "stop_all"
        exercising = {n for n, r in stager.pumps.items() if r.exercise_until is not None}
        directive = StopAll() if stop_all else Demand(demand)
        relays = stager.update(now, directive, feedback=feedback, fault=fault)
        locked = {n for n, r in stager.pumps.items() if r.locked}
        assert sum(relays.values()) <= 2  # max_running
        for n, on in relays.items():
            if n in locked:
                assert not on, f"{n} runs while locked out"
            if on and not state[n]:  # a start
                assert now - off_since[n] >= PUMPS[n].min_off_s - 1e-9, "min off time broken"
                starts[n].append(now)
                station.append(now)
                on_since[n] = now
            if not on and state[n]:  # a stop
                # Protections and lockouts stop at once; an exercise run is short by design;
                # a station power loss stopped every motor already; a start whose contactor
                # never pulled in never ran the motor, and its start is given back.
                rec = stager.pumps[n]
                refunded = now - on_since[n] < 3600 and on_since[n] not in rec.starts
                if refunded:
                    assert not rec.confirmed, "a start that ran was given back"
                    assert starts[n][-1] == on_since[n]
                    starts[n].pop()
                    station.remove(on_since[n])
                power_lost = stager.power_lost_since is not None
                forced = stop_all or n in locked or n in exercising or power_lost or refunded
                if not forced:
                    assert now - on_since[n] >= PUMPS[n].min_run_s - 1e-9, "min run time broken"
                off_since[n] = now
            while starts[n] and starts[n][0] <= now - 3600:
                starts[n].popleft()
            assert len(starts[n]) <= PUMPS[n].max_starts_per_hour
        while station and station[0] <= now - 3600:
            station.popleft()
        assert len(station) <= STAGING.station_max_starts_per_hour
        state = relays


def test_lowest_hours_start_first_and_highest_stop_first() -> None:
    stager = Stager(
        PUMPS, STAGING.model_copy(update={"alternation_h": 0, "exercise_interval_h": 0}), now=0.0
    )
    stager.pumps["P1"].run_s = 500.0
    stager.pumps["P2"].run_s = 100.0
    stager.pumps["P3"].run_s = 300.0
    t = 0.0
    while not any(stager.update(t, Demand(1.0)).values()):
        t += 1
    assert stager.update(t, Demand(1.0)) == {"P1": False, "P2": True, "P3": False}


def test_a_pump_without_run_feedback_is_locked_out_and_replaced() -> None:
    stager = Stager(
        PUMPS, STAGING.model_copy(update={"alternation_h": 0, "exercise_interval_h": 0}), now=0.0
    )
    t = 0.0
    relays = stager.update(t, Demand(1.0))
    while not any(relays.values()):
        t += 1
        relays = stager.update(t, Demand(1.0))
    first = next(n for n, on in relays.items() if on)
    for _ in range(10):
        t += 1
        # The first pump's contactor never closes; the next one's does: the station has
        # power, so the first pump's missing feedback was its own fault.
        feedback = {n: relays[n] and n != first for n in PUMPS}
        relays = stager.update(t, Demand(1.0), feedback=feedback)
    assert stager.pumps[first].locked is not None
    assert not relays[first]
    assert sum(relays.values()) == 1  # the next pump took over
    assert [lock.pump for lock in stager.take_lockouts()] == [first]


def test_two_silent_starts_in_a_row_are_the_supply_not_two_pump_faults() -> None:
    """Pumps without a feedback input may be the only ones running when the supply fails:
    the next start's missing feedback alone cannot tell a pump fault. A second pump
    silent too, with no contactor pulling in between, is a power loss: nothing locked."""
    stager = Stager(
        PUMPS, STAGING.model_copy(update={"alternation_h": 0, "exercise_interval_h": 0}), now=0.0
    )
    t, relays = 0.0, dict.fromkeys(PUMPS, False)
    dark = dict.fromkeys(PUMPS, False)
    tried: set[str] = set()
    while len(tried) < 2 and t < 300:
        t += 1
        relays = stager.update(t, Demand(1.0), feedback=dark)
        tried |= {n for n, on in relays.items() if on}
    assert len(tried) >= 2
    for _ in range(30):
        t += 1
        stager.update(t, Demand(1.0), feedback=dark)
    assert stager.power_lost_since is not None
    assert not [n for n, r in stager.pumps.items() if r.locked]
    assert not stager.take_lockouts()


def test_alternation_hands_over_after_the_timer() -> None:
    stager = Stager(
        PUMPS, STAGING.model_copy(update={"alternation_h": 1.0, "exercise_interval_h": 0}), now=0.0
    )
    t = 0.0
    seen: set[str] = set()
    while t < 4 * 3600:
        relays = stager.update(t, Demand(1.0))
        seen |= {n for n, on in relays.items() if on}
        assert sum(relays.values()) == (1 if t > 10 else sum(relays.values()))
        t += 30
    assert seen == {"P1", "P2", "P3"}


def test_an_idle_standby_pump_is_exercised_briefly_once_per_interval() -> None:
    staging = STAGING.model_copy(update={"alternation_h": 0, "exercise_interval_h": 24})
    stager = Stager(PUMPS, staging, now=0.0)
    runs: dict[str, list[float]] = {n: [] for n in PUMPS}
    t = 0.0
    previous = dict.fromkeys(PUMPS, False)
    while t < 50 * 3600:
        relays = stager.update(t, Demand(1.0))  # one pump's worth all the time
        for n, on in relays.items():
            if on and not previous[n]:
                runs[n].append(t)
        previous = relays
        t += 1.0
    duty = max(PUMPS, key=lambda n: stager.pumps[n].run_s)
    assert runs[duty] == [5.0]  # the duty pump was never interrupted
    idle = [n for n in PUMPS if n != duty]
    for n in idle:  # started once a day, one after the other, never for long
        assert len(runs[n]) == 2, runs
        assert 24 * 3600 <= runs[n][0] <= 24 * 3600 + 30
        assert stager.pumps[n].run_s == pytest.approx(2 * staging.exercise_s, abs=2)


@pytest.mark.parametrize("no_lift", [False, True])
def test_a_silent_pump_beside_pumps_without_feedback_is_a_fault_unless_nothing_lifts(
    no_lift: bool,
) -> None:
    """P1 has no feedback contact and runs; P2's contactor never pulls in, twice. With the
    pressures showing P1 lifting, P2 is faulty: locked out. With nothing lifting, the
    supply failed: a power loss, P2 not locked out (seed 100362)."""
    pumps = {"P1": pump("GPIO1", min_off_s=10), "P2": pump("GPIO2", min_off_s=10),
             "P3": pump("GPIO3", min_off_s=10)}  # fmt: skip
    staging = StagingConfig(max_running=3, station_max_starts_per_hour=60, stage_up_delay_s=1)
    stager = Stager(pumps, staging, now=0.0)
    feedback: dict[str, bool | None] = {"P1": None, "P2": False, "P3": None}
    now = 0.0
    while now < 400 and not stager.pumps["P2"].locked and stager.power_lost_since is None:
        now += 1.0
        stager.update(now, Demand(3.0), feedback=feedback, no_lift=no_lift)
    assert (stager.pumps["P2"].locked is not None) is not no_lift
    assert (stager.power_lost_since is not None) is no_lift

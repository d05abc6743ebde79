"""The whole control core, drives and hand-overs included, never breaks a motor limit
at the relays, whatever the readings, faults and operator commands do."""

from __future__ import annotations

import contextlib
from collections import deque
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import load_config, parse_config
from controller.config.schema import StationConfig
from controller.control.core import CommandRejected, ControlCore, PumpInputs
from controller.values import BadReason, Reading
from tests.conftest import EXAMPLE_CONFIG, VFD_CONFIG


def _variant(path: Path, **staging: float) -> StationConfig:
    data = yaml.safe_load(path.read_text())
    data["control"]["staging"].update(staging)
    return parse_config(yaml.safe_dump(data))


CONFIGS = {
    "relays": load_config(EXAMPLE_CONFIG),
    "drive_leads": load_config(VFD_CONFIG),
    # Alternation every 3 minutes and exercise every 6: swaps and exercise runs meet
    # stage changes and hand-overs within one example.
    "drive_alternating": _variant(VFD_CONFIG, alternation_h=0.05, exercise_interval_h=0.1),
}

#: A segment of operation: for ``duration`` seconds, ticks every ``dt`` seconds while the
#: pressure moves toward ``level`` (so that stages rise and fall as in a real day, and
#: the cascade goes through its stage changes), with one event and one command.
segment = st.tuples(
    st.floats(5.0, 600.0),  # duration, s
    st.floats(0.5, 5.0),  # tick period in the segment, s
    st.floats(0.0, 5.5),  # pressure level, bar (setpoint 3.0, cutout 4.5)
    st.floats(0.0, 90.0),  # flow, m3/h
    st.sampled_from(["ok"] * 8 + ["dry", "fault", "nofeedback", "drive_trip", "bad_pv"]),
    st.sampled_from(["P1", "P2", "P3"]),
    st.sampled_from([None] * 12 + ["off", "auto", "manual_on", "manual_off"]),
)


def _readings(cfg_name: str, pv: float, flow: float, event: str) -> dict[str, Reading]:
    r = {
        "discharge_pressure": Reading.ok("discharge_pressure", pv, "bar"),
        "suction_pressure": Reading.ok("suction_pressure", 0.05 if event == "dry" else 1.0, "bar"),
        "flow": Reading.ok("flow", flow, "m3/h"),
    }
    if event == "bad_pv":
        r["discharge_pressure"] = Reading.bad("discharge_pressure", "bar", BadReason.TIMEOUT)
    if cfg_name != "relays":
        r["p1_speed_ref"] = Reading.ok("p1_speed_ref", 50.0, "%")
        r["p1_output_hz"] = Reading.ok("p1_output_hz", 25.0, "Hz")
        r["p1_drive_fault"] = Reading.ok("p1_drive_fault", float(event == "drive_trip"), "")
    return r


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
@settings(max_examples=60, deadline=None)
@given(segments=st.lists(segment, min_size=3, max_size=30))
def test_relays_never_break_a_limit(
    cfg_name: str, segments: list[tuple[float, float, float, float, str, str, str | None]]
) -> None:
    cfg = CONFIGS[cfg_name]
    core = ControlCore(cfg, now=0.0)
    cap = cfg.control.staging.max_running or len(cfg.pumps)
    now = 0.0
    pv = 1.0
    state = dict.fromkeys(cfg.pumps, False)
    off_since = dict.fromkeys(cfg.pumps, -1e9)
    starts: dict[str, deque[float]] = {n: deque() for n in cfg.pumps}
    for duration, dt, level, flow, event, target, command in segments:
        if command in ("off", "auto"):
            core.set_mode(command)
        elif command is not None:
            core.set_mode("manual")
            with contextlib.suppress(CommandRejected):  # a locked-out pump: refused
                core.pump(target, command == "manual_on")
        for k in range(max(1, int(duration / dt))):
            now += dt
            pv += (level - pv) * min(1.0, dt / 30.0)
            pumps = {
                n: PumpInputs(
                    feedback=state[n] and not (event == "nofeedback" and n == target),
                    fault=event == "fault" and n == target and k == 0,
                )
                for n in cfg.pumps
            }
            out = core.step(now, _readings(cfg_name, pv, flow, event), pumps)
            relays = out.relays
            assert sum(relays.values()) <= cap, f"more than {cap} pumps at once: {relays}"
            for n, on in relays.items():
                limits = cfg.pumps[n]
                if core.stager.pumps[n].locked:
                    assert not on, f"{n} runs while locked out"
                if on and not state[n]:
                    assert now - off_since[n] >= limits.min_off_s - 1e-9, f"{n}: min off time"
                    starts[n].append(now)
                if not on and state[n]:
                    off_since[n] = now
                    rec = core.stager.pumps[n]
                    if (
                        starts[n]
                        and starts[n][-1] == rec.started_at
                        and now - rec.started_at < 3600
                        and rec.started_at not in rec.starts
                    ):
                        # A start whose contactor never pulled in never ran the motor:
                        # the stager gave it back.
                        assert not rec.confirmed
                        starts[n].pop()
                while starts[n] and starts[n][0] <= now - 3600:
                    starts[n].popleft()
                assert len(starts[n]) <= limits.max_starts_per_hour, f"{n}: starts per hour"
            if out.state in ("dry_run", "off"):
                assert not any(relays.values()), f"pumps on in state {out.state}"
            state = dict(relays)


def test_status_shows_the_pid_terms_for_tuning() -> None:
    """``status.pid`` gives the P, I and D parts of the demand: below the setpoint the
    proportional part pushes up, and the three add up to the demand shown."""
    cfg = CONFIGS["relays"]
    core = ControlCore(cfg, now=0.0)
    before = core.status()["pid"]
    assert before == {"p": 0.0, "i": 0.0, "d": 0.0}
    none = {n: PumpInputs(feedback=None, fault=False) for n in cfg.pumps}
    now = 0.0
    while now < cfg.protections.power_on_delay_s + 30:
        now += 1.0
        core.step(now, _readings("relays", 1.5, 20.0, "ok"), none)
    status = core.status()
    terms = status["pid"]
    assert set(terms) == {"p", "i", "d"}
    assert terms["p"] > 0  # 1.5 bar against a 3.0 bar setpoint
    assert terms["p"] + terms["i"] + terms["d"] == pytest.approx(status["demand"], abs=2e-3)

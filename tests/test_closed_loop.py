"""The whole control stack against the simulated station, in accelerated time: each
protection trips and recovers as specified."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.config import load_config
from controller.config.schema import StationConfig
from harness.closed_loop import ClosedLoop
from harness.metrics import max_starts_in_any_hour
from simulator.faults import parse_fault
from tests.conftest import EXAMPLE_CONFIG


@pytest.fixture(scope="module")
def cfg() -> StationConfig:
    return load_config(EXAMPLE_CONFIG)


def running(loop: ClosedLoop) -> int:
    return sum(loop.pump_io.states().values())


def states(loop: ClosedLoop) -> Iterator[tuple[float, str, int]]:
    return zip(loop.trace.t, loop.trace.state, loop.trace.running, strict=True)


def test_power_on_delay_then_pressure_is_built(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=7.0)
    loop.run(cfg.protections.power_on_delay_s - 1)
    assert running(loop) == 0
    assert set(loop.trace.state) == {"power_on_delay"}
    loop.run(120)
    assert running(loop) >= 1
    assert loop.station.state.discharge_bar > cfg.simulation.suction_bar + 1.0


def test_dry_run_stops_all_pumps_and_restarts_after_recovery(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=7.0, faults=["suction_loss@300+120"])
    loop.run(300)
    assert running(loop) >= 1
    assert loop.run_until(lambda c: c.core is not None and c.core.state == "dry_run", limit_s=60)
    t_trip = loop.t
    # Suction falls with a 5 s lag below 0.2 bar, then the 5 s delay: well inside 30 s.
    assert t_trip - 300 < 30
    assert running(loop) == 0
    assert loop.core is not None
    assert loop.core.alarms.is_active("dry_run")
    loop.run(100)  # supply still lost until t=420
    assert running(loop) == 0
    assert loop.run_until(lambda c: running(c) >= 1, limit_s=200)
    # Recovery at 420 s plus the 30 s restart delay (and the suction's own lag).
    assert loop.t >= 420 + cfg.protections.dry_run.restart_delay_s
    assert not loop.core.alarms.is_active("dry_run")


def test_high_pressure_cutout_latches_its_alarm(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=2.0)  # night: little demand
    assert loop.core is not None
    loop.run(20)
    loop.core.set_setpoint(cfg.control.setpoint_min_bar)  # limit: 1.5 + 1.5 = 3.0 bar
    loop.core.set_mode("manual")
    loop.core.pump("P1", True)
    loop.core.pump("P2", True)  # two pumps at night push past it
    limit = cfg.control.setpoint_min_bar + cfg.protections.high_pressure.margin_bar
    assert loop.run_until(lambda c: c.core is not None and c.core.state == "high_pressure",
                          limit_s=120)  # fmt: skip
    assert max(loop.trace.pressure_bar) > limit
    assert running(loop) == 0
    loop.run(60)
    alarm = next(a for a in loop.core.alarms.active() if a.id == "high_pressure")
    assert alarm.latched
    assert loop.core.ack("high_pressure") == ["high_pressure"]


def test_control_sensor_failure_runs_the_emergency_pumps_and_recovers(
    cfg: StationConfig,
) -> None:
    loop = ClosedLoop(cfg, start_hour=9.0, faults=["wire_break:discharge_pressure@300+300"])
    assert loop.core is not None
    loop.run(320)
    assert loop.core.state == "sensor_failure"
    assert loop.core.alarms.is_active("pressure_sensor_failure")
    loop.run(100)
    assert running(loop) == cfg.protections.sensor_failure.pumps
    loop.run(200)
    assert loop.core.state == "auto"
    assert not loop.core.alarms.is_active("pressure_sensor_failure")


def test_sensor_failure_mode_stop(cfg: StationConfig) -> None:
    prot = cfg.protections.model_copy(
        update={
            "sensor_failure": cfg.protections.sensor_failure.model_copy(update={"mode": "stop"})
        }
    )
    stop_cfg = cfg.model_copy(update={"protections": prot})
    loop = ClosedLoop(stop_cfg, start_hour=9.0, faults=["slave_silent:ai_module@200+200"])
    loop.run(230)
    assert running(loop) == 0


def test_pump_trip_locks_the_pump_out_and_the_next_one_takes_over(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=7.5)
    assert loop.core is not None
    loop.run(200)
    first = next(n for n, on in loop.pump_io.states().items() if on)
    loop.station.faults.add(parse_fault(f"pump_trip:{first}@{loop.t + 1:.0f}"))
    loop.run(60)
    assert loop.core.stager.pumps[first].locked
    assert not loop.pump_io.states()[first]
    assert running(loop) >= 1
    assert loop.core.alarms.unacknowledged(f"pump_lockout_{first}")


def test_low_flow_stops_the_last_pump_and_restarts_on_the_band(cfg: StationConfig) -> None:
    prot = cfg.protections.model_copy(
        update={"low_flow": cfg.protections.low_flow.model_copy(update={"flow_min_m3h": 60.0})}
    )
    lf_cfg = cfg.model_copy(update={"protections": prot})
    loop = ClosedLoop(lf_cfg, start_hour=2.5)
    assert loop.run_until(lambda c: c.core is not None and c.core.state == "low_flow",
                          limit_s=900)  # fmt: skip
    assert loop.run_until(lambda c: running(c) == 0, limit_s=120)
    band_low = cfg.control.setpoint_bar - prot.low_flow.band_bar / 2
    assert loop.run_until(lambda c: c.core is not None and c.core.state == "auto",
                          limit_s=900)  # fmt: skip
    assert loop.station.state.discharge_bar < band_low + 0.05
    # The band is the decision to restart: the pump starts at once, not after the
    # stage-up delay on top (seen from outside: 15 s later, a bar below the setpoint).
    restarted_at = loop.station.t
    lowest = loop.station.state.discharge_bar
    while running(loop) == 0 and loop.station.t < restarted_at + 60:
        loop.run(cfg.control.tick_s)
        lowest = min(lowest, loop.station.state.discharge_bar)
    assert loop.station.t - restarted_at <= 2 * cfg.control.tick_s
    assert lowest > band_low - 0.1


def test_manual_mode_cannot_defeat_dry_run(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=7.0, faults=["suction_loss@100+600"])
    assert loop.core is not None
    loop.run(20)
    loop.core.set_mode("manual")
    loop.core.pump("P1", True)
    loop.run(200)
    assert loop.core.state == "dry_run"
    assert running(loop) == 0


@pytest.mark.slow
def test_starts_stay_within_limits_over_a_day_and_idle_pumps_are_exercised(
    cfg: StationConfig,
) -> None:
    loop = ClosedLoop(cfg, start_hour=0.0)
    loop.run(24 * 3600 + 120)
    # Every pump ran at least once: the ones the day did not need, for an exercise run.
    for name, pump in loop.station.state.pumps.items():
        assert pump.run_s > 0, name
    limit = cfg.control.setpoint_bar + cfg.protections.high_pressure.margin_bar
    assert max(loop.trace.pressure_bar) < limit
    starts = loop.station.start_times()
    for name, times in starts.items():
        assert max_starts_in_any_hour(times) <= cfg.pumps[name].max_starts_per_hour
    station = sorted(t for ts in starts.values() for t in ts)
    assert max_starts_in_any_hour(station) <= cfg.control.staging.station_max_starts_per_hour

"""A variable-speed lead pump in closed loop: steady pressure, cascade, and fallbacks."""

from __future__ import annotations

import pytest

from controller.config import load_config
from controller.config.schema import StationConfig
from harness.closed_loop import ClosedLoop
from harness.metrics import max_starts_in_any_hour, summarise
from tests.conftest import VFD_CONFIG


@pytest.fixture(scope="module")
def cfg() -> StationConfig:
    return load_config(VFD_CONFIG)


def test_the_drive_holds_the_setpoint_through_the_morning_peak(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=4.0, seed=3)
    loop.run(5 * 3600)  # 04:00 to 09:00: night flow, the morning rise, the peak
    figures = summarise(loop)
    assert figures["within_0_2_bar_pct"] >= 99.0
    assert loop.core is not None
    assert loop.core.stager.lead_vfd
    # The cascade brought a fixed pump in for the peak, and the drive kept leading.
    assert loop.pump_io.states()["P1"]
    assert max(loop.trace.running) == 2
    for times in loop.station.start_times().values():
        assert max_starts_in_any_hour(times) <= 6


def test_the_drive_runs_slow_at_night(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=1.0, seed=3)
    loop.run(1800)
    p1 = loop.station.state.pumps["P1"]
    assert p1.running
    assert 0.3 <= p1.speed < 0.95
    assert sum(loop.pump_io.states().values()) == 1
    assert abs(loop.station.state.discharge_bar - cfg.control.setpoint_bar) < 0.2


def test_a_reload_keeps_the_drive_free_of_the_fixed_speed_deadband(cfg: StationConfig) -> None:
    """The file's deadband is for fixed-speed steps only: a reload while the drive leads
    must not hand it to the PID (it held only +-0.4 bar until the drive state changed)."""
    loop = ClosedLoop(cfg, start_hour=1.0, seed=3)
    loop.run(900)
    assert loop.core is not None
    assert loop.core.stager.lead_vfd
    assert loop.core.pid.deadband == 0.0
    loop.core.reconfigure(cfg, now=loop.t)
    assert loop.core.pid.deadband == 0.0
    loop.run(900)
    assert abs(loop.station.state.discharge_bar - cfg.control.setpoint_bar) < 0.2


def test_a_drive_trip_locks_the_pump_out_and_relays_take_over(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=9.0, seed=3, faults=["drive_fault:P1@1200"])
    loop.run(1800)
    assert loop.core is not None
    assert loop.core.stager.pumps["P1"].locked == "drive tripped"
    assert not loop.core.stager.lead_vfd
    assert loop.core.pid.deadband == cfg.control.pid.deadband_bar  # fixed-speed staging
    assert sum(loop.pump_io.states().values()) >= 1
    assert loop.station.state.discharge_bar > 2.3


def test_a_silent_drive_falls_back_to_fixed_speed_staging(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=9.0, seed=3, faults=["slave_silent:drive_p1@1200+600"])
    assert loop.core is not None
    loop.run(1300)
    assert loop.core.alarms.is_active("drive_comms_P1")
    assert not loop.core.stager.lead_vfd
    assert loop.loop.outputs is not None
    assert loop.loop.outputs.speeds["P1"] in (0.0, 1.0)  # flat out while it runs
    loop.run(900)
    assert not loop.core.alarms.is_active("drive_comms_P1")
    assert loop.core.stager.lead_vfd


def _two_drives(cfg: StationConfig) -> StationConfig:
    """P2 gets a drive of its own (slave 4), and the lead role rotates every half hour."""
    import yaml

    from controller.config import parse_config

    data = yaml.safe_load(VFD_CONFIG.read_text())
    points = {
        f"p2_{k}": v for k, v in
        {"speed_ref": {"kind": "holding", "address": 8192, "type": "uint16", "scale": 0.01},
         "output_hz": {"kind": "holding", "address": 8195, "type": "uint16", "scale": 0.1},
         "drive_fault": {"kind": "holding", "address": 8197, "type": "uint16"}}.items()
    }  # fmt: skip
    data["devices"]["drive_p2"] = {"bus": "rs485", "slave_id": 4, "points": points}
    data["pumps"]["P2"]["vfd"] = {"speed_point": "p2_speed_ref", "frequency_point": "p2_output_hz",
                                  "fault_point": "p2_drive_fault"}  # fmt: skip
    data["control"]["staging"]["alternation_h"] = 0.5
    return parse_config(yaml.safe_dump(data), "two-drives.yaml")


def test_with_two_drives_the_lead_role_alternates(cfg: StationConfig) -> None:
    loop = ClosedLoop(_two_drives(cfg), start_hour=1.0, seed=3)  # night: one pump at a time
    leads: list[str] = []
    for _ in range(8):
        loop.run(900)
        on = [n for n, v in loop.pump_io.states().items() if v]
        assert len(on) == 1
        if not leads or leads[-1] != on[0]:
            leads.append(on[0])
    assert set(leads) == {"P1", "P2"}  # only drives lead; P3 (fixed) never did
    assert abs(loop.station.state.discharge_bar - cfg.control.setpoint_bar) < 0.2


def test_a_drive_without_a_run_contact_is_started_and_stopped_over_modbus(
    cfg: StationConfig,
) -> None:
    import yaml

    from controller.config import parse_config

    data = yaml.safe_load(VFD_CONFIG.read_text())
    data["devices"]["drive_p1"]["points"]["p1_run"] = {"kind": "coil", "address": 0,
                                                       "type": "bool"}  # fmt: skip
    data["pumps"]["P1"]["vfd"]["run_point"] = "p1_run"
    loop = ClosedLoop(parse_config(yaml.safe_dump(data), "run-point.yaml"), start_hour=2.0)
    loop.run(300)
    assert loop.source.image.value_of("p1_run") == 1.0  # written by the controller
    assert loop.station.state.pumps["P1"].speed > 0.3
    assert loop.core is not None
    loop.core.set_mode("off")
    loop.run(30)
    assert loop.source.image.value_of("p1_run") == 0.0
    assert loop.station.state.pumps["P1"].speed == 0.0


def test_the_far_end_logger_is_served_like_any_other_point(cfg: StationConfig) -> None:
    import yaml

    from controller.config import parse_config

    data = yaml.safe_load(VFD_CONFIG.read_text())
    data["devices"]["logger"] = {"bus": "rs485", "slave_id": 9, "points": {
        "far_end_pressure": {"kind": "input", "address": 0, "type": "uint16", "scale": 0.001,
                             "unit": "bar"}}}  # fmt: skip
    data.setdefault("simulation", {})["signals"] = {"far_end_pressure": "far_end_bar"}
    loop = ClosedLoop(parse_config(yaml.safe_dump(data), "logger.yaml"), start_hour=8.0)
    loop.run(1200)
    reading = loop.loop.readings["far_end_pressure"]
    assert reading.value is not None
    assert reading.value == pytest.approx(loop.station.far_end_bar(), abs=0.01)
    assert reading.value < loop.station.state.discharge_bar - 0.3  # friction at the peak


def _until_a_destage(cfg: StationConfig) -> ClosedLoop:
    """The evening fall in demand, up to the tick the stager destages the fixed pump."""
    loop = ClosedLoop(cfg, start_hour=21.5, seed=7)
    assert loop.core is not None
    assert loop.run_until(lambda lp: bool(lp.core and lp.core.drives.handover), limit_s=3 * 3600)
    return loop


def test_a_fixed_pump_destages_behind_the_drive_without_a_pressure_dip(
    cfg: StationConfig,
) -> None:
    loop = _until_a_destage(cfg)
    assert loop.core is not None
    setpoint = cfg.control.setpoint_bar
    first = len(loop.trace.t) - 1
    began = loop.t
    (pump,) = loop.core.drives.handover
    assert not loop.core.stager.pumps[pump].on  # the stager has decided...
    assert loop.station.state.pumps[pump].running  # ...but the pump runs on
    assert loop.run_until(lambda lp: not (lp.core and lp.core.drives.handover), limit_s=30)
    ramp_s = cfg.pumps["P1"].vfd.ramp_s  # type: ignore[union-attr]
    assert 0 < loop.t - began <= ramp_s + cfg.control.tick_s
    loop.run(cfg.control.tick_s)  # the station sees the relay open on its next step
    assert not loop.station.state.pumps[pump].running
    assert loop.station.state.pumps["P1"].speed > 0.8  # the drive carries its flow
    loop.run(120)
    around = loop.trace.pressure_bar[first:]
    # Stopping the pump with the drive at minimum speed dipped to 2.1 bar here.
    assert min(around) >= setpoint - 0.2
    assert max(around) <= setpoint + 0.6  # far below the high-pressure cutout (+1.5)
    assert abs(around[-1] - setpoint) < 0.1


def test_switching_off_during_a_hand_over_opens_every_relay_at_once(
    cfg: StationConfig,
) -> None:
    loop = _until_a_destage(cfg)
    assert loop.core is not None
    loop.core.set_mode("off")
    loop.run(cfg.control.tick_s)
    assert not loop.core.drives.handover
    assert not any(loop.pump_io.states().values())


def test_a_reload_during_a_hand_over_that_removes_its_pump_is_safe(cfg: StationConfig) -> None:
    loop = _until_a_destage(cfg)
    assert loop.core is not None
    (pump,) = loop.core.drives.handover
    pumps = {n: p for n, p in cfg.pumps.items() if n != pump}
    staging = cfg.control.staging.model_copy(update={"max_running": 2})
    control = cfg.control.model_copy(update={"staging": staging})
    smaller = cfg.model_copy(update={"pumps": pumps, "control": control})
    loop.core.reconfigure(smaller, now=loop.t)
    assert not loop.core.drives.handover
    out = loop.core.step(loop.t + 0.5, loop.source.read_all(), {})
    assert pump not in out.relays


def test_the_hand_over_waits_for_a_drive_slower_than_its_configured_ramp(
    cfg: StationConfig,
) -> None:
    """The drive really takes 15 s to full speed; the station file says 5 s. The
    read-back output frequency, not the configured ramp, ends the hand-over."""
    p1 = cfg.pumps["P1"]
    assert p1.vfd is not None
    slow_p1 = p1.model_copy(update={"vfd": p1.vfd.model_copy(update={"ramp_s": 15.0})})
    real = cfg.model_copy(update={"pumps": {**cfg.pumps, "P1": slow_p1}})
    loop = ClosedLoop(real, start_hour=21.5, seed=7)  # the simulated drive ramps in 15 s
    assert loop.core is not None
    loop.core.reconfigure(cfg, now=loop.t)  # the controller believes the 5 s of the file
    assert loop.run_until(lambda lp: bool(lp.core and lp.core.drives.handover), limit_s=3 * 3600)
    first = len(loop.trace.t) - 1
    began = loop.t
    assert loop.run_until(lambda lp: not (lp.core and lp.core.drives.handover), limit_s=30)
    assert loop.t - began > 5.0 + cfg.control.tick_s  # longer than the file's ramp
    assert loop.station.state.pumps["P1"].speed >= 0.95
    loop.run(120)
    # Ending after the file's 5 s left the drive at 63 % and dipped to 2.72 bar.
    assert min(loop.trace.pressure_bar[first:]) >= cfg.control.setpoint_bar - 0.2


def test_a_drive_trip_on_a_station_without_a_deadband_does_not_cycle_the_fixed_pumps(
    cfg: StationConfig,
) -> None:
    # Seen from outside: a VFD station left at the default deadband 0 staged its fixed
    # pumps on and off every ~90 s once the drive tripped, until they were out of starts.
    pid = cfg.control.pid.model_copy(update={"deadband_bar": 0.0})
    bare = cfg.model_copy(update={"control": cfg.control.model_copy(update={"pid": pid})})
    loop = ClosedLoop(bare, start_hour=5.0, seed=3, faults=["drive_fault:P1@1800"])
    loop.run(1800 + 3600)
    after = {
        name: [t for t in times if t > 1800 + 300]
        for name, times in loop.station.start_times().items()
    }
    assert loop.core is not None
    assert loop.core.stager.pumps["P1"].locked == "drive tripped"
    assert max(max_starts_in_any_hour(ts) for ts in after.values()) <= 2, after

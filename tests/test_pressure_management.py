"""Pressure management: schedule tables, flow compensation, ramps, and the closed loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import load_config
from controller.config.schema import (
    ControlConfig,
    FlowCompensationConfig,
    PressureManagementConfig,
    ScheduleEntry,
)
from controller.control.setpoint import SetpointManager
from harness.closed_loop import ClosedLoop
from tests.conftest import VFD_CONFIG

CFG = load_config(VFD_CONFIG)


def control(pm: PressureManagementConfig) -> ControlConfig:
    return CFG.control.model_copy(update={"pressure_management": pm})


TABLE = PressureManagementConfig(
    schedule=[
        ScheduleEntry(at="05:00", setpoint_bar=3.0),
        ScheduleEntry(at="22:00", setpoint_bar=2.4),
        ScheduleEntry(at="07:00", setpoint_bar=3.2, days=["sat", "sun"]),
    ],
    ramp_bar_per_min=0.1,
)


@pytest.mark.parametrize(
    ("weekday", "hour", "expected"),
    [(0, 4.0, 2.4), (0, 5.0, 3.0), (0, 21.99, 3.0), (0, 23.5, 2.4), (1, 2.0, 2.4),
     (5, 6.0, 3.0), (5, 8.0, 3.2), (6, 12.0, 3.2), (6, 22.5, 2.4), (0, 1.0, 2.4)],
)  # fmt: skip
def test_the_table_applies_by_time_and_weekday_and_wraps(
    weekday: int, hour: float, expected: float
) -> None:
    assert SetpointManager(control(TABLE)).scheduled(weekday, hour) == expected


def test_flow_compensation_adds_k_times_the_flow_ratio_to_the_power_n() -> None:
    fc = FlowCompensationConfig(flow_design_m3h=60, k_bar=0.8, exponent=2.0)
    mgr = SetpointManager(control(PressureManagementConfig(flow_compensation=fc)))
    assert mgr.target(2.0, weekday=0, hour=12, flow_m3h=0.0) == 2.0
    assert mgr.target(2.0, weekday=0, hour=12, flow_m3h=30.0) == pytest.approx(2.2)
    assert mgr.target(2.0, weekday=0, hour=12, flow_m3h=60.0) == pytest.approx(2.8)
    assert mgr.target(2.0, weekday=0, hour=12, flow_m3h=None) == 2.0  # bad flow: no bonus
    # Limited to the allowed range, whatever the flow.
    assert mgr.target(2.0, weekday=0, hour=12, flow_m3h=1e6) == CFG.control.setpoint_max_bar


def test_the_managed_setpoint_ramps() -> None:
    mgr = SetpointManager(control(TABLE))
    assert mgr.update(0.0, 3.0, weekday=0, hour=21.9, flow_m3h=None) == 3.0
    assert mgr.update(60.0, 3.0, weekday=0, hour=22.1, flow_m3h=None) == pytest.approx(2.9)
    assert mgr.update(600.0, 3.0, weekday=0, hour=22.3, flow_m3h=None) == pytest.approx(2.4)


@given(
    flow=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    hour=st.floats(0, 23.999),
    weekday=st.integers(0, 6),
    base=st.floats(1.5, 4.5),
    k=st.floats(0, 5),
    n=st.floats(1, 2),
)
def test_the_managed_setpoint_never_leaves_the_allowed_range(  # noqa: PLR0917 (hypothesis)
    flow: float | None, hour: float, weekday: int, base: float, k: float, n: float
) -> None:
    fc = FlowCompensationConfig(flow_design_m3h=60, k_bar=k, exponent=n)
    mgr = SetpointManager(control(TABLE.model_copy(update={"flow_compensation": fc})))
    sp = mgr.target(base, weekday=weekday, hour=hour, flow_m3h=flow)
    # So the high-pressure cutout (setpoint + margin) never rises above max + margin either.
    assert CFG.control.setpoint_min_bar <= sp <= CFG.control.setpoint_max_bar


def test_night_table_lowers_the_station_pressure_in_closed_loop() -> None:
    pm = PressureManagementConfig(
        schedule=[ScheduleEntry(at="05:00", setpoint_bar=3.0),
                  ScheduleEntry(at="23:00", setpoint_bar=2.4)],
        ramp_bar_per_min=0.2,
    )  # fmt: skip
    cfg = CFG.model_copy(update={"control": control(pm)})
    loop = ClosedLoop(cfg, start_hour=22.5, seed=3)
    loop.run(1500)  # to 22:55
    assert abs(loop.station.state.discharge_bar - 3.0) < 0.2
    loop.run(1200)  # to 23:15: the table stepped, the ramp took 3 minutes
    assert loop.loop.outputs is not None
    assert loop.loop.outputs.setpoint_bar == pytest.approx(2.4)
    assert abs(loop.station.state.discharge_bar - 2.4) < 0.2


def test_an_absurd_flow_reading_cannot_overflow_the_compensation() -> None:
    fc = FlowCompensationConfig(flow_design_m3h=60, k_bar=0.8, exponent=2.0)
    mgr = SetpointManager(control(PressureManagementConfig(flow_compensation=fc)))
    assert mgr.target(2.0, weekday=0, hour=3, flow_m3h=1e300) == CFG.control.setpoint_max_bar

"""The simulator's source judges values like acquisition: a short slave fault is held,
a long one turns the values bad with the slave's reason (closed loop, simulated time)."""

from __future__ import annotations

import pytest

from controller.config import load_config
from controller.config.schema import StationConfig
from controller.values import BadReason
from harness.closed_loop import ClosedLoop
from tests.conftest import EXAMPLE_CONFIG

STOP_STATES = {"suction_sensor_failure", "sensor_failure", "dry_run"}


@pytest.fixture(scope="module")
def cfg() -> StationConfig:
    return load_config(EXAMPLE_CONFIG)


def test_a_one_second_garbled_suction_slave_is_held_and_stops_nothing(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=7.5, faults=["slave_garbage:ai_module@200+1"])
    loop.run(199)
    starts = sum(len(t) for t in loop.station.start_times().values())
    loop.run(1.5)
    suction = loop.loop.readings["suction_pressure"]
    assert suction.held
    assert suction.reason is BadReason.FRAMING
    loop.run(60)
    assert not {s for t, s in zip(loop.trace.t, loop.trace.state, strict=True) if t >= 199} & (
        STOP_STATES
    )
    assert sum(len(t) for t in loop.station.start_times().values()) == starts


def test_a_long_fault_turns_bad_after_the_hold_and_stops_the_pumps(cfg: StationConfig) -> None:
    loop = ClosedLoop(cfg, start_hour=7.5, faults=["slave_garbage:ai_module@200+30"])
    loop.run(205)
    suction = loop.loop.readings["suction_pressure"]
    assert not suction.good
    assert suction.reason is BadReason.FRAMING
    assert loop.trace.state[-1] == "suction_sensor_failure"

"""An unreadable suction transmitter stops every pump (dry running cannot be ruled out)
and the station restarts by itself once the value is good again: in closed loop."""

from __future__ import annotations

from controller.config import load_config
from harness.closed_loop import ClosedLoop
from tests.conftest import EXAMPLE_CONFIG


def test_a_suction_wire_break_stops_the_pumps_until_the_value_returns() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    loop = ClosedLoop(cfg, start_hour=9.0, faults=["wire_break:suction_pressure@300+300"])
    assert loop.core is not None
    loop.run(299)
    assert sum(loop.pump_io.states().values()) >= 1
    assert loop.run_until(
        lambda c: c.core is not None and c.core.state == "suction_sensor_failure", limit_s=30
    )
    assert not any(loop.pump_io.states().values())
    assert loop.core.alarms.is_active("suction_sensor_failure")
    loop.run(200)  # still broken until t=600: nothing restarts meanwhile
    assert set(loop.trace.running[-150:]) == {0}
    assert loop.run_until(lambda c: sum(c.pump_io.states().values()) >= 1, limit_s=120)
    assert loop.t >= 600
    assert not loop.core.alarms.is_active("suction_sensor_failure")
    assert loop.core.state in ("auto", "filling")

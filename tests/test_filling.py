"""Pipe filling after an outage: one pump, a pressure ramp, and an alarm for a main
that never fills."""

from __future__ import annotations

import pytest

from controller.config import load_config
from controller.config.schema import FillingConfig, StationConfig
from controller.control.filling import FillOutcome, FillStep, PipeFilling
from harness.closed_loop import ClosedLoop
from tests.conftest import VFD_CONFIG

BASE = load_config(VFD_CONFIG)


def weak_supply(cfg: StationConfig) -> StationConfig:
    """A zone fed at 0.3 bar: after power-on the network stands nearly empty."""
    sim = cfg.simulation.model_copy(update={"suction_bar": 0.3, "suction_variation_bar": 0.0})
    return cfg.model_copy(update={"simulation": sim})


def test_an_empty_network_is_filled_with_one_pump_on_a_ramp() -> None:
    cfg = weak_supply(BASE)
    loop = ClosedLoop(cfg, start_hour=8.0, seed=1)  # morning peak: two pumps would start
    assert loop.core is not None
    loop.run(cfg.protections.power_on_delay_s + 5)
    assert loop.core.state == "filling"
    fill = cfg.control.filling
    assert fill is not None
    ramp_s = (cfg.control.setpoint_bar - 0.3) / fill.ramp_bar_per_min * 60
    loop.run(ramp_s * 0.8)
    assert max(loop.trace.running) == 1
    # The setpoint followed the ramp, not a step to 3 bar.
    assert loop.loop.outputs is not None
    assert loop.loop.outputs.setpoint_bar < cfg.control.setpoint_bar - 0.2
    assert loop.run_until(lambda c: c.core is not None and c.core.state == "auto", limit_s=600)
    plateau = loop.station.state.discharge_bar  # what one pump holds at the peak
    loop.run(600)
    # Normal control took over and brought the second pump for the peak (from a
    # 0.3 bar supply the two pumps allowed cannot quite reach 3 bar).
    assert max(loop.trace.running[-600:]) == 2
    assert loop.station.state.discharge_bar > plateau + 0.3


def test_a_main_that_never_fills_raises_an_alarm_and_stops_until_acknowledged() -> None:
    cfg = weak_supply(BASE)
    loop = ClosedLoop(cfg, start_hour=8.0, seed=1, faults=["burst@0,flow_m3h=400"])
    assert loop.core is not None
    fill = cfg.control.filling
    assert fill is not None
    assert loop.run_until(
        lambda c: c.core is not None and c.core.alarms.is_active("filling_failed"),
        limit_s=fill.max_s + 120,
    )
    loop.run(120)
    assert loop.core.state == "filling_failed"
    assert sum(loop.pump_io.states().values()) == 0
    assert loop.core.ack("filling_failed") == ["filling_failed"]
    loop.run(60)
    assert loop.core.state == "filling"  # tries again, gently, after a technician looked


FILL = FillingConfig(empty_below_bar=0.5, ramp_bar_per_min=0.6, max_s=900, filled_below_bar=0.3)


def test_filling_starts_only_on_an_empty_network_and_ramps_from_where_it_stood() -> None:
    filling = PipeFilling()
    assert not filling.start(0.0, 0.6, FILL)  # holds pressure: nothing to fill
    assert not filling.start(0.0, 0.1, None)  # filling not configured
    assert filling.start(0.0, 0.2, FILL)
    # 0.6 bar/min from 0.2 bar, but never below the lowest setpoint allowed.
    step = filling.update(10.0, 0.2, setpoint=3.0, floor_bar=1.0, capped=False, cfg=FILL)
    assert step == FillStep(1.0, FillOutcome.FILLING)
    step = filling.update(200.0, 1.5, setpoint=3.0, floor_bar=1.0, capped=False, cfg=FILL)
    assert step == FillStep(pytest.approx(0.2 + 0.01 * 200.0), FillOutcome.FILLING)
    assert filling.active


@pytest.mark.parametrize(
    ("pv", "capped_for_s", "outcome"),
    [
        (2.8, 0.0, FillOutcome.FILLED),  # the ramp is done and the pressure near it
        (2.0, 0.0, FillOutcome.FILLING),  # the ramp is done, the pressure not there yet
        (2.0, 30.0, FillOutcome.FILLED),  # the filling pumps flat out 30 s: it is full
        (0.3, 0.0, FillOutcome.FAILED),  # still empty after max_s: a burst main
    ],
)
def test_filling_ends_filled_or_failed(
    pv: float, capped_for_s: float, outcome: FillOutcome
) -> None:
    filling = PipeFilling()
    assert filling.start(0.0, 0.2, FILL)
    t = 1000.0  # past the ramp (3.0 bar at 0.6 bar/min from 0.2: 280 s) and past max_s
    if capped_for_s:
        filling.update(t - capped_for_s, pv, setpoint=3.0, floor_bar=1.0, capped=True, cfg=FILL)
    step = filling.update(t, pv, setpoint=3.0, floor_bar=1.0, capped=True, cfg=FILL)
    assert step == FillStep(3.0, outcome)
    assert filling.active is (outcome is FillOutcome.FILLING)

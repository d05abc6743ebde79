"""The simulated station: plausible physics, scripted faults, relays and inputs."""

from __future__ import annotations

import itertools

import pytest

from controller.config import load_config
from drivers.gpio.sim import SimGpio
from simulator.faults import FaultSpecError, parse_fault
from simulator.hydraulics import Network, PumpCurve, diurnal_factor, step_pressure
from simulator.station import SimStation
from tests.conftest import EXAMPLE_CONFIG

CFG = load_config(EXAMPLE_CONFIG)
CURVE = PumpCurve(30.0, 22.0, 28.0, 3.0)
NET = Network(0.05, 6.0, 1.15, 3.0)


def settle(n_pumps: int, demand: float, dt: float = 0.5, seconds: float = 600) -> float:
    p = 1.0
    for _ in range(int(seconds / dt)):
        p = step_pressure(p, dt, suction=1.0, curves=[CURVE] * 3,
                          speeds=[1.0] * n_pumps + [0.0] * (3 - n_pumps), net=NET,
                          base_demand_m3h=demand)  # fmt: skip
    return p


def test_more_pumps_more_pressure_and_never_above_shut_off() -> None:
    pressures = [settle(n, 40.0) for n in range(4)]
    assert pressures == sorted(pressures)
    assert pressures[0] <= 1.0  # pumps off: fed through the bypass from suction
    assert pressures[3] <= 1.0 + CURVE.shutoff_head_m / 10.2


@pytest.mark.parametrize("dt", [0.05, 0.5, 2.0, 10.0])
def test_integration_is_stable_for_any_step(dt: float) -> None:
    assert settle(1, 20.0, dt=dt) == pytest.approx(settle(1, 20.0, dt=0.05), abs=0.01)


def test_leakage_follows_its_exponent() -> None:
    assert NET.leakage_m3h(3.0) == pytest.approx(6.0)
    assert NET.leakage_m3h(6.0) == pytest.approx(6.0 * 2**1.15)


def test_rated_power_at_the_rated_point() -> None:
    assert CURVE.power_kw(30.0, 22.0) == pytest.approx(3.0, rel=0.01)
    assert CURVE.power_kw(0.0, 28.0) == pytest.approx(1.0)  # dead-headed: a third


def test_diurnal_demand_has_a_night_minimum_and_morning_peak() -> None:
    night = min(diurnal_factor(h / 4, 0.25) for h in range(96))
    assert night == pytest.approx(0.25)
    assert diurnal_factor(7.0, 0.25) == pytest.approx(1.0)


def test_relays_start_pumps_and_feedback_comes_back() -> None:
    gpio = SimGpio()
    station = SimStation(CFG, gpio=gpio, seed=1, start_hour=8.0)
    relay = gpio.output("GPIO17", active_low=True)
    pump = station.state.pumps["P1"]
    station.step(1.0)
    before = (pump.running, gpio.level("GPIO22"))
    relay.set(True)
    for _ in range(240):
        station.step(0.5)
    after = (pump.running, gpio.level("GPIO22"))  # run feedback: inputs active high here
    assert before == (False, False)
    assert after == (True, True)
    assert station.state.discharge_bar > 2.0
    assert station.state.pumps["P1"].energy_kwh > 0


@pytest.mark.parametrize("combo", list(itertools.product([False, True], repeat=3)))
def test_every_pump_combination_gives_plausible_values(combo: tuple[bool, ...]) -> None:
    gpio = SimGpio()
    station = SimStation(CFG, gpio=gpio, seed=2, start_hour=12.0)
    for (name, pump), on in zip(CFG.pumps.items(), combo, strict=True):
        gpio.output(pump.relay, active_low=pump.relay_active_low).set(on)
        del name
    for _ in range(600):
        station.step(0.5)
    values = station.point_values()
    running = sum(combo)
    assert 0.0 < values["discharge_pressure"] < 1.0 + 28.0 / 10.2 + 0.01
    assert values["flow"] >= 0.0
    assert (values["discharge_pressure"] > 1.5) == (running > 0)
    assert 20.0 < values["panel_temperature"] < 40.0


def test_pump_trip_and_suction_loss_faults() -> None:
    gpio = SimGpio()
    faults = [parse_fault("pump_trip:P1@10"), parse_fault("suction_loss@20+60")]
    from simulator.faults import FaultSchedule

    station = SimStation(CFG, gpio=gpio, seed=3, faults=FaultSchedule(faults))
    gpio.output("GPIO17", active_low=True).set(True)
    for _ in range(30):
        station.step(0.5)
    assert not station.state.pumps["P1"].running
    assert gpio.level("GPIO23") is True  # motor protection input closed
    for _ in range(40):
        station.step(0.5)
    assert station.state.suction_bar < 0.2


def test_slave_faults_and_wire_break_are_reported_for_their_targets() -> None:
    gpio = SimGpio()
    from simulator.faults import FaultSchedule

    sched = FaultSchedule([parse_fault("slave_exception:flow_meter@0+10,code=6"),
                           parse_fault("wire_break:discharge_pressure@0")])  # fmt: skip
    station = SimStation(CFG, gpio=gpio, faults=sched)
    station.step(0.5)
    assert station.slave_fault("rs485", 2) == "exception"
    assert station.slave_exception_code("rs485", 2) == 6
    assert station.slave_fault("rs485", 1) is None
    assert station.wire_broken() == {"discharge_pressure"}


@pytest.mark.parametrize(
    ("spec", "error"),
    [("slave_silent@60", "needs a device"), ("explode@1", "unknown kind"),
     ("noise:flow@0,volume=2", "no parameter 'volume'"), ("pump_trip:P1", "expected KIND"),
     ("suction_loss:P1@3", "takes no target")],
)  # fmt: skip
def test_bad_fault_specs_say_what_is_wrong(spec: str, error: str) -> None:
    with pytest.raises(FaultSpecError, match=error):
        parse_fault(spec)


def test_fault_spec_parses_times_and_parameters() -> None:
    f = parse_fault("burst@1200+600,flow_m3h=40")
    assert (f.kind, f.at_s, f.duration_s, f.param("flow_m3h")) == ("burst", 1200, 600, 40)
    assert f.active(1500)
    assert not f.active(1800)


@pytest.mark.parametrize("dt", [0.05, 0.5, 1.0, 5.0])
@pytest.mark.parametrize("compliance", [0.08, 5.0])
def test_a_vessel_drains_through_the_network_at_the_analytic_rate(
    dt: float, compliance: float
) -> None:
    """No pump running: dp/dt = -D*sqrt(p/p_ref) / (3600*C), so sqrt(p) falls linearly.

    An earlier main clamped the pressure to suction + 1 bar in one step whenever no pump
    ran (3.30 -> 1.88 bar in one 1 s tick where the physics allows ~0.03 bar/s)."""
    net = Network(
        compliance_m3_per_bar=compliance,
        leakage_m3h_at_3bar=0.0,
        leakage_exponent=1.15,
        reference_pressure_bar=3.0,
    )
    demand, p0, suction = 7.8, 3.3, 0.88
    p, t = p0, 0.0
    horizon = min(60.0, 0.5 * compliance * 3600 * (p0 - 2.0) / demand)  # stays above 2 bar
    while t < horizon - 1e-9:
        p = step_pressure(
            p, dt, suction=suction, curves=[CURVE], speeds=[0.0], net=net, base_demand_m3h=demand
        )
        t += dt
    rate = demand / (2 * 3600 * compliance * 3.0**0.5)  # d sqrt(p) / dt
    exact = (p0**0.5 - rate * t) ** 2
    # Implicit Euler lags the exact decay by O(dt); never more than a few percent here.
    assert exact <= p <= exact + 0.05 * (p0 - exact) + 1e-6

"""The PID: direction, anti-windup, bumpless transfer, no derivative kick, dt independence."""

from __future__ import annotations

import pytest

from controller.config.schema import PidConfig
from controller.control.pid import Pid


def make(**kw: float) -> Pid:
    args = {"kp": 0.6, "ki": 0.15, "kd": 0.0, "derivative_filter_s": 1.0,
            "out_min": 0.0, "out_max": 3.0}  # fmt: skip
    args.update(kw)
    return Pid(**args)


def test_low_pressure_raises_demand_high_pressure_lowers_it() -> None:
    pid = make()
    pid.hold(1.0, 3.0, 3.0)
    assert pid.update(2.5, 3.0, 0.5) > 1.0
    pid.hold(1.0, 3.0, 3.0)
    assert pid.update(3.5, 3.0, 0.5) < 1.0


def test_anti_windup_recovers_at_once_when_the_error_reverses() -> None:
    pid = make()
    for _ in range(2000):  # pressure far below setpoint for a long time
        pid.update(0.5, 3.0, 0.5)
    assert pid.output == 3.0
    assert pid.integral <= 3.0
    out = pid.update(3.6, 3.0, 0.5)  # overshoot: the output must drop immediately
    assert out < 3.0


def test_bumpless_hold_continues_from_the_given_output() -> None:
    pid = make()
    pid.hold(2.0, 2.9, 3.0)
    assert pid.update(2.9, 3.0, 0.001) == pytest.approx(2.0, abs=0.01)


def test_no_derivative_kick_on_a_setpoint_step() -> None:
    pid = make(kp=0.0, ki=0.0, kd=5.0, derivative_filter_s=0.0)
    pid.hold(1.0, 3.0, 3.0)
    pid.update(3.0, 3.0, 0.5)
    assert pid.update(3.0, 4.0, 0.5) == pytest.approx(pid.integral)  # only the held integral


def test_gain_change_is_bumpless() -> None:
    pid = make()
    pid.hold(1.5, 2.8, 3.0)
    before = pid.update(2.8, 3.0, 0.5)
    pid.set_gains(2.0, 0.5, 0.0, 2.8)
    assert pid.output == pytest.approx(before)


def test_setpoint_ramp_limits_the_rate() -> None:
    pid = make(ramp_bar_per_s=0.1)
    pid.hold(1.0, 3.0, 3.0)
    pid.update(3.0, 3.0, 1.0)
    assert pid.setpoint_in_force(4.0, 1.0) == pytest.approx(3.1)


def test_same_trajectory_for_regular_and_jittery_ticks() -> None:
    """Integral action depends on elapsed time, not on the number of ticks."""
    a, b = make(), make()
    a.hold(1.0, 2.5, 3.0)
    b.hold(1.0, 2.5, 3.0)
    for _ in range(20):
        a.update(2.5, 3.0, 0.5)
    for dt in [0.3, 0.7] * 10:
        b.update(2.5, 3.0, dt)
    assert a.output == pytest.approx(b.output, rel=1e-9)


def test_bad_dt_is_ignored() -> None:
    pid = make()
    pid.hold(1.0, 3.0, 3.0)
    assert pid.update(2.0, 3.0, 0.0) == 1.0
    assert pid.update(2.0, 3.0, -1.0) == 1.0


def test_the_terms_shown_for_tuning_add_up_to_the_output() -> None:
    pid = make(kd=0.5)
    pid.hold(1.0, 3.0, 3.0)
    for pv in (2.9, 2.7, 2.6, 2.65, 2.8):
        out = pid.update(pv, 3.0, 0.5)
        terms = pid.terms
        assert terms.p == pytest.approx(0.6 * (3.0 - pv))
        assert terms.i == pid.integral
        assert terms.p + terms.i + terms.d == pytest.approx(out)  # inside the limits
    assert pid.terms.d != 0.0  # the pressure moved: the derivative acts


def test_retune_takes_the_new_gains_without_a_jump() -> None:
    pid = make()
    pid.hold(1.2, 2.8, 3.0)
    before = pid.update(2.8, 3.0, 0.5)
    pid.retune(PidConfig(kp=1.2, ki=0.3, kd=0.0, deadband_bar=0.1, setpoint_ramp_bar_per_s=0.05))
    assert (pid.kp, pid.ki, pid.deadband, pid.ramp_bar_per_s) == (1.2, 0.3, 0.1, 0.05)
    assert pid.output == pytest.approx(before)
    # The next tick at the same pressure moves by the new integral's step only.
    assert pid.update(2.8, 3.0, 0.5) == pytest.approx(before + 0.3 * (0.2 - 0.1) * 0.5)

"""PID on discharge pressure, producing a capacity demand in pumps.

Derivative on measurement (no kick on setpoint changes) through a first-order filter;
output limits with conditional integration (anti-windup); bumpless transfer by
back-calculating the integral from the output to hold; optional setpoint ramp; every
update uses the measured ``dt``, so tick jitter changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.config.schema import PidConfig


@dataclass(frozen=True, slots=True)
class PidTerms:
    """The proportional, integral and derivative parts of the last output (in pumps), for
    tuning: their sum is the output before it is limited."""

    p: float
    i: float
    d: float


@dataclass
class Pid:
    kp: float
    ki: float
    kd: float
    derivative_filter_s: float
    out_min: float
    out_max: float
    ramp_bar_per_s: float = 0.0
    deadband: float = 0.0
    integral: float = 0.0
    output: float = 0.0
    _last_pv: float | None = None
    _d: float = 0.0
    _sp: float | None = None  # the ramped setpoint in force
    _p: float = 0.0  # the last proportional term
    _d_term: float = 0.0  # the last derivative term

    #: A gap longer than this (a stalled process, a suspended VM) restarts the terms.
    MAX_DT_S = 10.0

    def setpoint_in_force(self, target: float, dt: float) -> float:
        if self._sp is None or self.ramp_bar_per_s <= 0:
            self._sp = target
        else:
            step = self.ramp_bar_per_s * dt
            self._sp += max(-step, min(step, target - self._sp))
        return self._sp

    def _error(self, sp: float, pv: float) -> float:
        error = sp - pv
        if self.deadband > 0:
            # Errors inside the band are no error; outside it, only the excess counts.
            error = math.copysign(max(abs(error) - self.deadband, 0.0), error)
        return error

    def update(self, pv: float, target_sp: float, dt: float) -> float:
        if not (math.isfinite(pv) and math.isfinite(dt)) or dt <= 0:
            return self.output
        dt = min(dt, self.MAX_DT_S)
        sp = self.setpoint_in_force(target_sp, dt)
        error = self._error(sp, pv)
        if self._last_pv is None:
            self._last_pv = pv
        raw_d = -(pv - self._last_pv) / dt
        alpha = dt / (self.derivative_filter_s + dt) if self.derivative_filter_s > 0 else 1.0
        self._d += alpha * (raw_d - self._d)
        self._last_pv = pv
        p_term = self.kp * error
        d_term = self.kd * self._d
        candidate = self.integral + self.ki * error * dt
        unclamped = p_term + candidate + d_term
        # Conditional integration: never integrate further into a saturated output.
        saturated_high = unclamped > self.out_max and error > 0
        saturated_low = unclamped < self.out_min and error < 0
        if not (saturated_high or saturated_low):
            self.integral = candidate
        self.integral = max(self.out_min, min(self.out_max, self.integral))
        self.output = max(self.out_min, min(self.out_max, p_term + self.integral + d_term))
        self._p, self._d_term = p_term, d_term
        return self.output

    @property
    def terms(self) -> PidTerms:
        return PidTerms(p=self._p, i=self.integral, d=self._d_term)

    def hold(self, output: float, pv: float | None, target_sp: float) -> None:
        """Bumpless transfer: the next update continues from ``output``."""
        output = max(self.out_min, min(self.out_max, output))
        self._sp = target_sp if self._sp is None or self.ramp_bar_per_s <= 0 else self._sp
        error = self._error(self._sp, pv) if pv is not None else 0.0
        self.integral = output - self.kp * error
        self.output = output
        self._last_pv = pv
        self._d = 0.0
        self._p, self._d_term = self.kp * error, 0.0

    def set_gains(self, kp: float, ki: float, kd: float, pv: float | None) -> None:
        """New gains without a jump in the output."""
        self.kp, self.ki, self.kd = kp, ki, kd
        if self._sp is not None:
            self.hold(self.output, pv, self._sp)

    def set_deadband(self, bar: float) -> None:
        """Errors within ``bar`` of the setpoint count as none (fixed-speed steps); 0 for
        continuous control (a drive leads)."""
        self.deadband = bar

    def retune(self, cfg: PidConfig, *, deadband: float | None = None) -> None:
        """The station file's new tuning (a reload), without a jump in the output; the
        limits are the caller's (``set_limits``), and so is the deadband when given (a
        drive leading needs none, whatever the file says for fixed-speed steps)."""
        self.ramp_bar_per_s = cfg.setpoint_ramp_bar_per_s
        self.derivative_filter_s = cfg.derivative_filter_s
        self.deadband = cfg.deadband_bar if deadband is None else deadband
        self.set_gains(cfg.kp, cfg.ki, cfg.kd, self._last_pv)

    @classmethod
    def from_config(cls, cfg: PidConfig, *, out_max: float) -> Pid:
        """A PID tuned by the station file, its output from 0 to ``out_max`` pumps."""
        return cls(
            kp=cfg.kp,
            ki=cfg.ki,
            kd=cfg.kd,
            derivative_filter_s=cfg.derivative_filter_s,
            out_min=0.0,
            out_max=out_max,
            ramp_bar_per_s=cfg.setpoint_ramp_bar_per_s,
            deadband=cfg.deadband_bar,
        )

    def set_limits(self, out_min: float, out_max: float) -> None:
        self.out_min, self.out_max = out_min, out_max
        self.integral = max(out_min, min(out_max, self.integral))
        self.output = max(out_min, min(out_max, self.output))

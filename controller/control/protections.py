"""Protections: what stops or overrides the pumps regardless of the PID.

Each is a small state machine on ``now``:

* power-on delay: no pump starts until ``power_on_delay_s`` after start-up;
* dry run: suction below ``suction_min_bar`` for ``delay_s`` stops every pump; they
  restart by themselves once suction has been back above the limit for
  ``restart_delay_s``. A suction transmitter that cannot be read also stops the pumps
  (as a failed level sensor does on commercial sets): the pumps cannot be shown safe;
* high pressure: above setpoint + ``margin_bar`` for ``delay_s`` stops every pump until
  the pressure is back below the setpoint (the alarm stays latched for a technician);
* low flow: flow under ``flow_min_m3h`` with one pump running for ``delay_s`` stops it;
  it restarts when pressure falls below setpoint - band/2 (on/off on the last pump);
* control-pressure sensor failure: the configured emergency mode (a fixed number of
  pumps, or stop) replaces the PID until the value is good again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from controller.config.schema import StationConfig
from controller.control.alarms import Alarms
from controller.values import Reading

DRY_RUN_HYSTERESIS_BAR = 0.1


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the protections allow this tick."""

    stop_all: bool = False
    fixed: int | None = None  # emergency: run exactly this many pumps
    hold_off: bool = False  # low-flow: keep the last pump stopped (soft: min run respected)
    state: str = "auto"


class _Timer:
    """True once a condition has held continuously for a delay."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def held(self, condition: bool, now: float, delay: float) -> bool:
        if not condition:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= delay


class Protections:
    def __init__(self, cfg: StationConfig, *, now: float) -> None:
        self.cfg = cfg
        self.started = now
        self.dry = False
        self.high = False
        self.low_flow_stop = False
        self._dry_on = _Timer()
        self._dry_off = _Timer()
        self._high_on = _Timer()
        self._low_on = _Timer()

    def update(
        self,
        now: float,
        readings: Mapping[str, Reading],
        *,
        setpoint: float,
        running: int,
        alarms: Alarms,
    ) -> Verdict:
        prot = self.cfg.protections
        ctl = self.cfg.control
        # Before the first values arrive nothing runs anyway: no sensor alarms for that.
        starting = now - self.started < prot.power_on_delay_s
        p = readings.get(ctl.pressure_point)
        pressure = p.value if p is not None and p.good else None

        # Dry run (and an unreadable suction transmitter).
        suction_bad = False
        if ctl.suction_point:
            s = readings.get(ctl.suction_point)
            suction = s.value if s is not None and s.good else None
            suction_bad = suction is None
            low = suction is not None and suction < prot.dry_run.suction_min_bar
            if self._dry_on.held(low, now, prot.dry_run.delay_s):
                self.dry = True
            recovered = (
                suction is not None
                and suction >= prot.dry_run.suction_min_bar + DRY_RUN_HYSTERESIS_BAR
            )
            if self.dry and self._dry_off.held(recovered, now, prot.dry_run.restart_delay_s):
                self.dry = False
            alarms.set(
                "suction_sensor_failure",
                suction_bad and not starting,
                now,
                severity="critical",
                message=f"suction pressure {ctl.suction_point} unreadable: pumps stopped",
            )
        alarms.set(
            "dry_run",
            self.dry,
            now,
            severity="critical",
            message=f"suction below {prot.dry_run.suction_min_bar} bar: pumps stopped",
        )

        # High pressure. The limit is anchored to the configured range: a managed setpoint
        # (schedule, flow compensation, a SCADA command) can lower it, never raise it
        # above setpoint_max_bar + margin, and a non-finite one cannot blind it.
        anchor = setpoint if math.isfinite(setpoint) else ctl.setpoint_max_bar
        anchor = min(max(anchor, ctl.setpoint_min_bar), ctl.setpoint_max_bar)
        limit = anchor + prot.high_pressure.margin_bar
        over = pressure is not None and pressure > limit
        if self._high_on.held(over, now, prot.high_pressure.delay_s):
            self.high = True
        if self.high and pressure is not None and pressure < anchor:
            self.high = False
        alarms.set(
            "high_pressure",
            self.high,
            now,
            severity="critical",
            message=f"discharge above {limit:.2f} bar: pumps stopped",
            latched=True,
        )

        # Low flow: on/off control of the last pump.
        flow_min = prot.low_flow.flow_min_m3h
        if flow_min > 0 and ctl.flow_point:
            f = readings.get(ctl.flow_point)
            flow = f.value if f is not None and f.good else None
            low_flow = flow is not None and flow < flow_min and running == 1
            if self._low_on.held(low_flow, now, prot.low_flow.delay_s):
                self.low_flow_stop = True
            if self.low_flow_stop and (
                pressure is None or pressure < setpoint - prot.low_flow.band_bar / 2
            ):
                self.low_flow_stop = False
        else:
            self.low_flow_stop = False

        # Control sensor.
        sensor_failed = pressure is None
        alarms.set(
            "pressure_sensor_failure",
            sensor_failed and not starting,
            now,
            severity="major",
            message=f"{ctl.pressure_point} unreadable: emergency mode {prot.sensor_failure.mode}",
        )

        if starting:
            return Verdict(stop_all=True, state="power_on_delay")
        if self.dry or suction_bad:
            return Verdict(stop_all=True, state="dry_run" if self.dry else "suction_sensor_failure")
        if self.high:
            return Verdict(stop_all=True, state="high_pressure")
        if sensor_failed:
            if prot.sensor_failure.mode == "stop":
                return Verdict(stop_all=True, state="sensor_failure")
            return Verdict(fixed=prot.sensor_failure.pumps, state="sensor_failure")
        if self.low_flow_stop:
            return Verdict(hold_off=True, state="low_flow")
        return Verdict()

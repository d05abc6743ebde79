"""Protections: what stops or overrides the pumps regardless of the PID.

Each is a small state machine on ``now``:

* power-on delay: no pump starts until ``power_on_delay_s`` after start-up;
* dry run: suction below ``suction_min_bar`` for ``delay_s`` stops every pump; they
  restart by themselves once suction has been back above the limit for
  ``restart_delay_s``. A suction transmitter that cannot be read also stops the pumps
  (as a failed level sensor does on commercial sets): the pumps cannot be shown safe;
* high pressure: above setpoint + ``margin_bar`` for ``delay_s`` stops every pump until
  the pressure is back below the setpoint (the alarm stays latched for a technician);
  the third trip within an hour raises ``high_pressure_repeated`` (latched, critical):
  the control then keeps every pump off until a technician acknowledges, rather than
  burning the start budget on restarts that trip again;
* low flow: flow under ``flow_min_m3h`` with one pump running for ``delay_s`` stops it;
  it restarts when pressure falls below setpoint - band/2 (on/off on the last pump),
  unless the station or that pump is down to its last starts of the hour: then the
  pump is held running rather than left unable to restart;
* control-pressure sensor failure: the configured emergency mode (a fixed number of
  pumps, or stop) replaces the PID until the value is good again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from controller.config.schema import StationConfig
from controller.control.alarms import Alarms
from controller.values import Reading

DRY_RUN_HYSTERESIS_BAR = 0.1
#: Starts kept in reserve: below this many left, the low-flow stop holds the last pump.
LOW_FLOW_RESERVE_STARTS = 2
#: After an off-cycle of the low-flow stop that drained to the restart point sooner than
#: the pumps' minimum off time (a small vessel), the stop rests this long: the pump could
#: not restart in time, and the zone sagged below the band until it could.
LOW_FLOW_REST_S = 3600.0
#: High-pressure trips within an hour that mean restarting is no use.
REPEATED_TRIPS = 3
HOUR_S = 3600.0


def cutout_bar(cfg: StationConfig, setpoint: float) -> float:
    """The high-pressure cutout for this setpoint: anchored to the configured range, so a
    managed setpoint (schedule, compensation, a command) can lower it, never raise it
    above ``setpoint_max_bar + margin_bar``, and a non-finite one cannot blind it."""
    ctl = cfg.control
    anchor = setpoint if math.isfinite(setpoint) else ctl.setpoint_max_bar
    anchor = min(max(anchor, ctl.setpoint_min_bar), ctl.setpoint_max_bar)
    return anchor + cfg.protections.high_pressure.margin_bar


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the protections allow this tick."""

    stop_all: bool = False
    fixed: int | None = None  # emergency: run exactly this many pumps
    hold_off: bool = False  # low-flow: keep the last pump stopped (soft: min run respected)
    state: str = "auto"


class Timer:
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
        self._dry_on = Timer()
        self._dry_off = Timer()
        self._high_on = Timer()
        self._low_on = Timer()
        self._low_stopped_at: float | None = None
        self._low_rest_until = -math.inf
        self._trips: deque[float] = deque()

    def reconfigure(self, cfg: StationConfig) -> None:
        """A reloaded station file: new limits, the same state (a trip stays a trip)."""
        self.cfg = cfg

    def update(
        self,
        now: float,
        readings: Mapping[str, Reading],
        *,
        setpoint: float,
        running: int,
        alarms: Alarms,
        starts_left: int = 1_000_000,
    ) -> Verdict:
        prot = self.cfg.protections
        ctl = self.cfg.control
        # Before the first values arrive nothing runs anyway: no sensor alarms for that.
        starting = now - self.started < prot.power_on_delay_s
        p = readings.get(ctl.pressure_point)
        pressure = p.value if p is not None and p.good else None
        suction_bad = self._dry_run(now, readings, alarms, starting=starting)
        self._high_pressure(now, pressure, setpoint, alarms)
        self._low_flow(
            now, readings, pressure, setpoint=setpoint, running=running, starts_left=starts_left
        )

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

    def _dry_run(
        self, now: float, readings: Mapping[str, Reading], alarms: Alarms, *, starting: bool
    ) -> bool:
        """Dry run, and an unreadable suction transmitter (returned: True if unreadable)."""
        prot = self.cfg.protections
        ctl = self.cfg.control
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
        return suction_bad

    def _high_pressure(
        self, now: float, pressure: float | None, setpoint: float, alarms: Alarms
    ) -> None:
        prot = self.cfg.protections
        limit = cutout_bar(self.cfg, setpoint)
        anchor = limit - prot.high_pressure.margin_bar
        over = pressure is not None and pressure > limit
        if self._high_on.held(over, now, prot.high_pressure.delay_s) and not self.high:
            self.high = True
            self._trips.append(now)
        while self._trips and self._trips[0] <= now - HOUR_S:
            self._trips.popleft()
        repeated = len(self._trips) >= REPEATED_TRIPS
        if repeated:
            self._trips.clear()  # counted from here again once acknowledged
        alarms.set(
            "high_pressure_repeated",
            # Its cause lasts as long as the pumps are held off: until acknowledged.
            repeated or alarms.unacknowledged("high_pressure_repeated"),
            now,
            severity="critical",
            message=f"{REPEATED_TRIPS} high-pressure trips within an hour: pumps held off "
            "until acknowledged (check valves, setpoints and the pump curves)",
            latched=True,
        )
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

    def _low_flow(
        self,
        now: float,
        readings: Mapping[str, Reading],
        pressure: float | None,
        *,
        setpoint: float,
        running: int,
        starts_left: int,
    ) -> None:
        """On/off control of the last pump."""
        prot = self.cfg.protections
        ctl = self.cfg.control
        flow_min = prot.low_flow.flow_min_m3h
        if flow_min > 0 and ctl.flow_point:
            f = readings.get(ctl.flow_point)
            flow = f.value if f is not None and f.good else None
            # The on/off cycling of the last pump costs a start per cycle: with the start
            # budget nearly spent the pump is held running instead, so the zone is never
            # left without a pump for want of starts (it restarts at setpoint - band/2).
            # The same when the last off-cycle drained faster than a pump may stay off.
            low_flow = (
                flow is not None
                and flow < flow_min
                and running == 1
                and starts_left > LOW_FLOW_RESERVE_STARTS
                and now >= self._low_rest_until
            )
            if self._low_on.held(low_flow, now, prot.low_flow.delay_s):
                if not self.low_flow_stop:
                    self._low_stopped_at = now
                self.low_flow_stop = True
            if self.low_flow_stop and (
                pressure is None or pressure < setpoint - prot.low_flow.band_bar / 2
            ):
                self.low_flow_stop = False
                min_off = max((p.min_off_s for p in self.cfg.pumps.values()), default=0.0)
                if self._low_stopped_at is not None and now - self._low_stopped_at < min_off:
                    self._low_rest_until = now + LOW_FLOW_REST_S
        else:
            self.low_flow_stop = False

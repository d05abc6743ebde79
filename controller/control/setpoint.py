"""Pressure management: the setpoint the PID is given, from a schedule and the flow.

* A time-of-day table (optionally per weekday) in the station's time zone gives the
  base setpoint: lower at night, when little water is drawn and leaks run at full
  pressure. Without a table the base is the operator's setpoint.
* Flow compensation (proportional pressure) adds ``k * (Q / Qdesign) ^ n``: the pipe
  friction to the far end of the zone grows with the flow, so the station raises its
  pressure only when the flow needs it and the far end stays steady.
* The result is limited to ``setpoint_min_bar``..``setpoint_max_bar`` and may move only
  at ``ramp_bar_per_min``, so a schedule step never jolts the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.config.schema import ControlConfig, PressureManagementConfig

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_FLOW_RATIO = 100.0

#: (weekday 0=Monday, hour of day) in the station's time zone: what a schedule follows.
LocalTime = Callable[[], tuple[int, float]]


def wall_clock(timezone: str) -> LocalTime:
    """Weekday and hour of day now in the station's time zone, from the wall clock: the
    one clock the control reads (the simulator passes its own)."""
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = UTC

    def local() -> tuple[int, float]:
        t = datetime.now(zone)
        return t.weekday(), t.hour + t.minute / 60 + t.second / 3600

    return local


def _minutes(at: str) -> int:
    hours, minutes = at.split(":")
    return int(hours) * 60 + int(minutes)


class SetpointManager:
    def __init__(self, control: ControlConfig) -> None:
        self.control = control
        self.pm: PressureManagementConfig | None = control.pressure_management
        self._current: float | None = None
        self._last: float | None = None

    def scheduled(self, weekday: int, hour: float) -> float | None:
        """The table's setpoint at this time: the latest entry at or before now that
        applies today, else the latest one of an earlier day (the table wraps)."""
        if self.pm is None or not self.pm.schedule:
            return None
        now_min = weekday * 1440 + hour * 60.0
        best: tuple[float, float] | None = None
        for entry in self.pm.schedule:
            days = [DAYS.index(d) for d in entry.days] if entry.days else range(7)
            for day in days:
                start = day * 1440 + _minutes(entry.at)
                age = (now_min - start) % (7 * 1440)
                if best is None or age < best[0]:
                    best = (age, entry.setpoint_bar)
        return best[1] if best else None

    def target(self, base: float, *, weekday: int, hour: float, flow_m3h: float | None) -> float:
        """Where the setpoint should be now (before the ramp)."""
        scheduled = self.scheduled(weekday, hour)
        sp = scheduled if scheduled is not None else base
        fc = self.pm.flow_compensation if self.pm else None
        if fc is not None and flow_m3h is not None and math.isfinite(flow_m3h):
            # Capped: a garbage flow reading must not overflow (the result is limited anyway).
            ratio = min(max(flow_m3h, 0.0) / fc.flow_design_m3h, MAX_FLOW_RATIO)
            sp += fc.k_bar * ratio**fc.exponent
        if not math.isfinite(sp):  # cannot happen with a validated config; never pass it on
            sp = base
        return min(max(sp, self.control.setpoint_min_bar), self.control.setpoint_max_bar)

    def update(
        self, now: float, base: float, *, weekday: int, hour: float, flow_m3h: float | None
    ) -> float:
        """The managed setpoint at ``now``, rate-limited."""
        if self.pm is None:
            return base
        goal = self.target(base, weekday=weekday, hour=hour, flow_m3h=flow_m3h)
        if self._current is None or self._last is None or not math.isfinite(self._current):
            self._current = goal
        else:
            step = self.pm.ramp_bar_per_min / 60.0 * max(now - self._last, 0.0)
            self._current += max(-step, min(step, goal - self._current))
        # The ramp never carries the setpoint out of its range.
        lo, hi = self.control.setpoint_min_bar, self.control.setpoint_max_bar
        self._current = min(max(self._current, lo), hi)
        self._last = now
        return self._current

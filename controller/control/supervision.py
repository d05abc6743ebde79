"""Watches on the outcome of a tick: exercise runs, loss of service, station power.

Each runs after the stager has decided and says what it saw (an alarm, pumps to stop,
a change of power); the control core acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.schema import LowPressureConfig, StationConfig
from controller.control.alarms import Alarms
from controller.control.protections import Timer, cutout_bar
from controller.control.stager import Stager, StartCheck


def guard_exercise(
    now: float, pv: float | None, *, cfg: StationConfig, setpoint: float, stager: Stager
) -> list[str]:
    """An exercise run ends at once when the pressure climbs half-way from the setpoint
    to the cutout (or cannot be read): exercising is never worth a trip. Returns the
    pumps stopped."""
    if not any(rec.exercise_until is not None for rec in stager.pumps.values()):
        return []
    limit = cutout_bar(cfg, setpoint)
    if pv is None or pv >= (setpoint + limit) / 2:
        return stager.end_exercise(now)
    return []


class ServiceWatch:
    """No silent loss of service: the pressure stands ``low_pressure.margin_bar`` below
    the setpoint for ``delay_s`` in automatic, and no pump can start (start budget,
    minimum off time, lockouts, the running cap, the curves): say why."""

    def __init__(self) -> None:
        self._low = Timer()

    def update(
        self,
        now: float,
        pv: float | None,
        *,
        automatic: bool,
        setpoint: float,
        cfg: LowPressureConfig,
        stager: Stager,
        start_ok: StartCheck | None,
        alarms: Alarms,
    ) -> None:
        low = automatic and pv is not None and pv < setpoint - cfg.margin_bar
        # The delay counts from when the pressure fell low, not from when starting became
        # impossible: a start that was only pending (a stage-up delay) must not restart it.
        why = stager.cannot_start(now, start_ok) if low else None
        held = self._low.held(low, now, cfg.delay_s) and why is not None
        alarms.set(
            "no_pump_available",
            held,
            now,
            severity="critical",
            message=f"pressure {pv:.2f} bar, below the setpoint, and no pump can start: {why}"
            if held and pv is not None
            else "",
        )


@dataclass(frozen=True, slots=True)
class PowerChange:
    """The station's power went (``restored`` False) or came back."""

    restored: bool
    #: the lowest pressure seen without power (None: not read), to judge a refill by
    dark_pv: float | None


class PowerWatch:
    """A station power loss (every running pump's feedback gone at once) is an alarm, not
    a pump fault; ``update`` reports its start and its end."""

    def __init__(self) -> None:
        self.lost = False
        self._dark_pv: float | None = None  # lowest pressure while the power is lost

    def update(
        self, now: float, pv: float | None, *, lost: bool, alarms: Alarms
    ) -> PowerChange | None:
        if lost and pv is not None:
            self._dark_pv = pv if self._dark_pv is None else min(self._dark_pv, pv)
        alarms.set(
            "power_lost",
            lost,
            now,
            severity="major",
            message="run feedback lost on every running pump at once: grid or contactor "
            "supply failed; pumps restart by themselves when it returns",
        )
        if lost == self.lost:
            return None
        self.lost = lost
        change = PowerChange(restored=not lost, dark_pv=self._dark_pv)
        self._dark_pv = None
        return change

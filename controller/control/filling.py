"""Pipe filling: a drained network is refilled gently before normal control.

When automatic control starts with the discharge below ``filling.empty_below_bar``, the
setpoint ramps up from the pressure found at ``filling.ramp_bar_per_min`` and at most
``filling.max_pumps`` pumps run (the control core limits the PID), so the air is pushed
out slowly and no water hammer hits the mains. ``PipeFilling`` owns the episode: when it
began, where from, since when the filling pumps are flat out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from controller.config.schema import FillingConfig

#: The filling pumps flat out this long on a network that holds pressure: it is full.
FULL_AFTER_CAPPED_S = 30.0


class FillOutcome(Enum):
    FILLING = "filling"
    FILLED = "filled"
    #: still empty after ``max_s``: a burst main is likely
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FillStep:
    """One tick of filling: the setpoint to control to, and how the episode stands."""

    setpoint: float
    outcome: FillOutcome


class PipeFilling:
    def __init__(self) -> None:
        self._since: float | None = None
        self._from = 0.0
        self._capped_since: float | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def start(self, now: float, pv: float, cfg: FillingConfig | None) -> bool:
        """Begin an episode if the network stands empty (and filling is configured)."""
        if cfg is None or pv >= cfg.empty_below_bar:
            return False
        self._since = now
        self._from = pv
        self._capped_since = None
        return True

    def stop(self) -> None:
        self._since = None

    def update(
        self,
        now: float,
        pv: float,
        *,
        setpoint: float,
        floor_bar: float,
        capped: bool,
        cfg: FillingConfig,
    ) -> FillStep:
        """Ramp the setpoint up from where the network stood.

        ``setpoint`` is the one normal control would hold (in range), ``floor_bar`` the
        lowest allowed, ``capped`` whether the filling pumps are flat out. Filling ends
        when the ramp has reached the setpoint and either the pressure is near it or the
        pumps allowed for filling are flat out (the network is full; the demand needs
        more pumps, which normal control adds). It fails when, after ``max_s``, the
        network still stands empty: a burst main never fills.
        """
        assert self._since is not None
        elapsed = now - self._since
        ramp = self._from + cfg.ramp_bar_per_min / 60.0 * elapsed
        ramping = ramp < setpoint
        if ramping:
            # From the lowest setpoint allowed, never below: the filling ramp is a stage
            # of the setpoint like any other, and the controlled setpoint always lies
            # in the configured range (below ``setpoint``, so below the highest).
            setpoint = max(ramp, floor_bar)
        self._capped_since = (
            (self._capped_since if self._capped_since is not None else now)
            if capped and not ramping
            else None
        )
        near = pv >= setpoint - cfg.filled_below_bar
        full = (
            pv >= cfg.empty_below_bar  # it holds pressure: not a burst main
            and self._capped_since is not None
            and now - self._capped_since >= FULL_AFTER_CAPPED_S
        )
        if not ramping and (near or full):
            self.stop()
            return FillStep(setpoint, FillOutcome.FILLED)
        if elapsed <= cfg.max_s or pv >= cfg.empty_below_bar:
            return FillStep(setpoint, FillOutcome.FILLING)
        self.stop()
        return FillStep(setpoint, FillOutcome.FAILED)

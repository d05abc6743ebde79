"""What the hydraulics allow this tick: which starts are safe, and what a set of pumps carries.

Two questions the stager asks through the control core, answered from the curves
(``capacity``) and this tick's readings. Pure functions: readings and pump records in,
a ``StartCheck`` or a ``Sizing`` out (None when the readings cannot answer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from controller.config.schema import StationConfig
from controller.control.capacity import BAR_TO_M, max_pressure_bar, set_flow_m3h
from controller.control.protections import cutout_bar
from controller.control.stager import PumpRecord, Sizing, StartCheck
from controller.values import Reading

#: A start is refused when the curves put the new set's pressure within this of the
#: high-pressure cutout (the bound is already an upper one: see ``capacity``).
START_HEADROOM_BAR = 0.2
#: A set of pumps must carry this much more than the flow the zone needs to count as enough.
SIZING_MARGIN = 1.05
#: A fixed-speed pump switched on this long lifts the discharge at least ``NO_LIFT_BAR``
#: above the suction, at any point of its curve the station runs it at, when it turns.
NO_LIFT_AFTER_S = 10.0
NO_LIFT_BAR = 0.2


def good(readings: Mapping[str, Reading], point: str | None) -> float | None:
    """The value of a configured point when it is good; None otherwise."""
    r = readings.get(point) if point else None
    return r.value if r is not None and r.good else None


def no_lift(
    cfg: StationConfig,
    readings: Mapping[str, Reading],
    *,
    pv: float | None,
    pumps: Sequence[PumpRecord],
    now: float,
) -> bool:
    """The pressures say the pumps switched on do not turn: a fixed-speed pump has been
    on ``NO_LIFT_AFTER_S`` and the discharge stands less than ``NO_LIFT_BAR`` above the
    suction. On a station whose running pumps have no feedback contact, that is how a
    grid failure shows (the contactors drop, the relays stay on). False whenever a
    reading cannot tell (no suction point, a bad reading, no such pump on)."""
    suction = good(readings, cfg.control.suction_point)
    if pv is None or suction is None:
        return False
    settled = any(
        r.on and r.cfg.vfd is None and now - r.started_at >= NO_LIFT_AFTER_S for r in pumps
    )
    return settled and pv - suction < NO_LIFT_BAR


def start_check(
    cfg: StationConfig,
    readings: Mapping[str, Reading],
    *,
    setpoint: float,
    pumps: Sequence[PumpRecord],
    lead: Sequence[str],
) -> StartCheck | None:
    """Refuse a start (for the demand, an exercise or an alternation) that the curves
    say would carry the pressure within ``START_HEADROOM_BAR`` of the cutout at the
    present flow: e.g. a fixed pump at night behind a drive holding a low setpoint.
    ``lead`` is the lead drive (empty when none leads): it backs off to its minimum for
    a pump that starts. Without a readable suction pressure there is nothing to predict
    from (the protections stop the pumps then anyway)."""
    ctl = cfg.control
    s_bar = good(readings, ctl.suction_point)
    if s_bar is None:
        return None
    measured = good(readings, ctl.flow_point)
    # Without a flow reading, no flow: the shut-off head, the safest bound. That bound
    # only decides an exercise: refusing the demand a pump on it could leave a zone
    # without water all day for a trip that may never come (the cutout still guards).
    flow = measured or 0.0
    pv = good(readings, ctl.pressure_point)
    limit = cutout_bar(cfg, setpoint) - START_HEADROOM_BAR
    running = [(rec.cfg, _speed_after_a_start(rec, lead)) for rec in pumps if rec.on]

    def ok(rec: PumpRecord, exercise: bool) -> bool:
        if measured is None and not exercise:
            return True
        vfd = rec.cfg.vfd
        # A drive starts (and is exercised) at its minimum speed and ramps from there.
        speed = vfd.min_speed_pct / 100.0 if vfd is not None else 1.0
        new_set = [*running, (rec.cfg, speed)]
        bound = max_pressure_bar(new_set, suction_bar=s_bar, flow_m3h=flow, measured_at_bar=pv)
        return bound < limit

    return ok


def _speed_after_a_start(rec: PumpRecord, lead: Sequence[str]) -> float:
    vfd = rec.cfg.vfd
    if vfd is None:
        return 1.0
    # The lead drive backs off to its minimum for a pump that starts; others run on.
    return (vfd.min_speed_pct if rec.name in lead else vfd.max_speed_pct) / 100.0


def sizing(
    cfg: StationConfig, readings: Mapping[str, Reading], *, pv: float | None, setpoint: float
) -> Sizing | None:
    """Pumps as capacity, not as counts: what a set carries at the setpoint's head
    (drives at full speed) against what the zone needs there. The need is today's
    flow moved to the setpoint by the pressure-dependent demand law (flow ~ p^0.5),
    plus 5 %. Without flow, suction or discharge readings, pumps count as equal."""
    ctl = cfg.control
    s = good(readings, ctl.suction_point)
    q = good(readings, ctl.flow_point)
    if s is None or q is None or pv is None or pv <= 0:
        return None
    head_m = (setpoint - s) * BAR_TO_M
    needed = max(q, 0.0) * math.sqrt(setpoint / pv) * SIZING_MARGIN

    def capacity(pumps: Sequence[PumpRecord]) -> float:
        return set_flow_m3h(
            ((r.cfg, r.cfg.vfd.max_speed_pct / 100.0 if r.cfg.vfd else 1.0) for r in pumps),
            head_m,
        )

    return Sizing(capacity=capacity, needed=needed)

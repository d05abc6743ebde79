"""What a set of pumps can do at a given head, from the curves in the station file.

Each pump's curve is the parabola through its shut-off head and its rated point,
``H = H0 * n^2 - a * Q^2`` with the affinity laws for a drive's speed ratio ``n``: the
same two numbers a technician copies from the data sheet. Pure functions, no state.

The control uses them for two questions the PID cannot answer before it is too late:

* *How high can the pressure go if this pump starts now?* Outflow rises with pressure,
  so the new operating point lies below the pressure at which the new set delivers
  today's flow: an upper bound that needs no model of the network, only the flow meter
  (without one, the flow is taken as zero: the shut-off head, the safest bound).
* *Can this set carry today's flow at the setpoint?* Its flow at the setpoint's head.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from controller.config.schema import PumpConfig

BAR_TO_M = 10.2  # metres of water head per bar


def _a(p: PumpConfig) -> float:
    return (p.shutoff_head_m - p.rated_head_m) / p.rated_flow_m3h**2


def pump_flow_m3h(p: PumpConfig, head_m: float, speed: float = 1.0) -> float:
    """Flow of one pump at ``head_m``; 0 when it cannot open its check valve."""
    rise = p.shutoff_head_m * speed * speed - head_m
    return math.sqrt(rise / _a(p)) if rise > 0 else 0.0


def set_flow_m3h(pumps: Iterable[tuple[PumpConfig, float]], head_m: float) -> float:
    """Flow of pumps in parallel (each with its speed ratio) at one head."""
    return sum(pump_flow_m3h(p, head_m, n) for p, n in pumps)


def max_pressure_bar(
    pumps: Iterable[tuple[PumpConfig, float]],
    *,
    suction_bar: float,
    flow_m3h: float,
    measured_at_bar: float | None = None,
) -> float:
    """An upper bound of the discharge pressure this set settles at while the zone draws
    at least ``flow_m3h``: the pressure where the set delivers exactly that flow.

    With ``measured_at_bar`` (the discharge pressure the flow was measured at), the
    zone's flow is taken to grow at least as ``sqrt(p / measured_at_bar)`` above it: the
    pressure-dependent demand law, the slowest growth of any part of the outflow (leaks
    grow faster), so the bound stays an upper one and is far tighter when the zone
    stands well below its setpoint (a drained zone draws much more once pressurised)."""
    pumps = list(pumps)
    top = max((p.shutoff_head_m * n * n for p, n in pumps), default=0.0)
    if top <= 0:
        return suction_bar
    base = max(flow_m3h, 0.0)
    at = measured_at_bar if measured_at_bar is not None and measured_at_bar > 0.05 else None

    def need(head_m: float) -> float:
        p = suction_bar + head_m / BAR_TO_M
        return base * math.sqrt(p / at) if at is not None and p > at else base

    lo, hi = 0.0, top
    if set_flow_m3h(pumps, 0.0) <= need(0.0):
        return suction_bar  # not even at zero head: the set adds no pressure
    for _ in range(50):  # the set's flow falls with head and the need rises: bisect
        mid = (lo + hi) / 2
        if set_flow_m3h(pumps, mid) > need(mid):
            lo = mid
        else:
            hi = mid
    return suction_bar + hi / BAR_TO_M

"""Station hydraulics: pumps in parallel against a pressure-dependent network.

Pure functions and a small state; no I/O, no clock. The model (see
``../shared/domain.md``):

* pump curve ``H = H0*n^2 - a*Q^2`` through the rated point and the shut-off head,
  with the affinity laws for a speed ratio ``n`` (a VFD); a check valve per pump, so a
  pump whose head cannot reach the discharge pressure delivers nothing;
* parallel pumps share one head (discharge minus suction pressure); flows add;
* a bypass with a check valve around the pumps: with no pump running the network is
  fed straight from the supply main, so discharge never sits below suction pressure;
* outflow = consumer demand ``D(t) * sqrt(p / p_ref)`` (pressure-dependent demand)
  + leakage ``L3 * (p / 3 bar)^N``;
* compliance ``C`` (pressure tank and pipe elasticity): ``dp/dt = (Q_in - Q_out) / C``,
  integrated with implicit Euler so it is stable for any step (the pump curve is
  very stiff near shut-off);
* electrical power from a parabolic efficiency curve whose best point is the rated
  point (so the rated power is drawn at the rated flow and head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BAR_TO_M = 10.2  # metres of water head per bar
RHO_G_KPA_PER_M = 9.81  # kPa per metre of head
MOTOR_EFFICIENCY = 0.9
BYPASS_M3H_PER_SQRT_BAR = 150.0
#: Below this suction pressure a pump starves: it cavitates and delivers less.
STARVE_BAR = 0.15


@dataclass(frozen=True, slots=True)
class PumpCurve:
    rated_flow_m3h: float
    rated_head_m: float
    shutoff_head_m: float
    rated_power_kw: float

    @property
    def a(self) -> float:
        return (self.shutoff_head_m - self.rated_head_m) / self.rated_flow_m3h**2

    @property
    def best_efficiency(self) -> float:
        hyd_kw = RHO_G_KPA_PER_M * self.rated_flow_m3h / 3600 * self.rated_head_m
        return min(0.9, hyd_kw / (self.rated_power_kw * MOTOR_EFFICIENCY))

    def flow_m3h(self, head_m: float, speed: float = 1.0) -> float:
        """Flow at a given head; 0 when the pump cannot open its check valve."""
        rise = self.shutoff_head_m * speed * speed - head_m
        return math.sqrt(rise / self.a) if rise > 0 else 0.0

    def dflow_dhead(self, head_m: float, speed: float = 1.0) -> float:
        rise = self.shutoff_head_m * speed * speed - head_m
        if rise <= 0:
            return 0.0
        return -0.5 / math.sqrt(rise * self.a)

    def power_kw(self, flow_m3h: float, head_m: float, speed: float = 1.0) -> float:
        """Electrical power drawn; a running pump draws at least a third of its rating."""
        q_bep = self.rated_flow_m3h * speed
        eta = self.best_efficiency * (1 - ((flow_m3h - q_bep) / q_bep) ** 2)
        floor = self.rated_power_kw * speed**3 / 3
        if eta <= 0.05:
            return floor
        hyd = RHO_G_KPA_PER_M * flow_m3h / 3600 * max(head_m, 0.0)
        return max(hyd / (eta * MOTOR_EFFICIENCY), floor)


@dataclass(frozen=True, slots=True)
class Network:
    compliance_m3_per_bar: float
    leakage_m3h_at_3bar: float
    leakage_exponent: float
    reference_pressure_bar: float

    def leakage_m3h(self, p: float) -> float:
        return self.leakage_m3h_at_3bar * (p / 3.0) ** self.leakage_exponent if p > 0 else 0.0

    def demand_m3h(self, base_m3h: float, p: float) -> float:
        return base_m3h * math.sqrt(p / self.reference_pressure_bar) if p > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Flows:
    pumps_m3h: tuple[float, ...]
    bypass_m3h: float
    demand_m3h: float
    leakage_m3h: float


def _inflow(
    p: float, suction: float, curves: list[PumpCurve], speeds: list[float]
) -> tuple[float, float]:
    """Total inflow at discharge pressure p, and its derivative d/dp."""
    head = (p - suction) * BAR_TO_M
    starve = min(max(suction / STARVE_BAR, 0.0), 1.0)
    q = dq = 0.0
    for curve, n in zip(curves, speeds, strict=True):
        if n > 0 and starve > 0:
            q += starve * curve.flow_m3h(head, n)
            dq += starve * curve.dflow_dhead(head, n) * BAR_TO_M
    if suction > p:
        root = math.sqrt(suction - p)
        q += BYPASS_M3H_PER_SQRT_BAR * root
        dq -= BYPASS_M3H_PER_SQRT_BAR * 0.5 / max(root, 1e-3)
    return q, dq


def _outflow(p: float, net: Network, base_demand: float) -> tuple[float, float]:
    if p <= 0:
        return 0.0, 0.0
    d = net.demand_m3h(base_demand, p)
    leak = net.leakage_m3h(p)
    dd = 0.5 * d / p
    dl = net.leakage_exponent * leak / p
    return d + leak, dd + dl


def step_pressure(
    p: float,
    dt: float,
    *,
    suction: float,
    curves: list[PumpCurve],
    speeds: list[float],
    net: Network,
    base_demand_m3h: float,
) -> float:
    """Discharge pressure after ``dt`` seconds (implicit Euler, safeguarded Newton).

    Solves ``g(x) = x - p - dt/C * (Q_in(x) - Q_out(x)) / 3600 = 0``; ``g`` is strictly
    increasing, so the root is unique and bracketed.
    """
    k = dt / (net.compliance_m3_per_bar * 3600.0)
    top = max(c.shutoff_head_m * max(speeds, default=0.0) ** 2 for c in curves) / BAR_TO_M
    # Above both the present pressure and what the pumps can reach, nothing flows in and
    # the outflow is positive, so g > 0 there: the root lies below. (Bounding by the
    # pumps' reach alone clamped a vessel standing above it, with every pump stopped, to
    # suction + 1 bar in one step, whatever the outflow and the compliance.)
    lo, hi = 0.0, max(p, max(suction, 0.0) + top) + 1.0
    x = min(max(p, lo), hi)

    def g(x: float) -> tuple[float, float]:
        qi, dqi = _inflow(x, suction, curves, speeds)
        qo, dqo = _outflow(x, net, base_demand_m3h)
        return x - p - k * (qi - qo), 1.0 - k * (dqi - dqo)

    if g(lo)[0] >= 0:
        return lo
    for _ in range(60):
        gx, dg = g(x)
        if abs(gx) < 1e-7:
            break
        if gx > 0:
            hi = x
        else:
            lo = x
        nxt = x - gx / dg if dg > 0 else (lo + hi) / 2
        x = nxt if lo < nxt < hi else (lo + hi) / 2
    return x


def flows_at(
    p: float,
    *,
    suction: float,
    curves: list[PumpCurve],
    speeds: list[float],
    net: Network,
    base_demand_m3h: float,
) -> Flows:
    head = (p - suction) * BAR_TO_M
    starve = min(max(suction / STARVE_BAR, 0.0), 1.0)
    pumps = tuple(
        starve * c.flow_m3h(head, n) if n > 0 else 0.0 for c, n in zip(curves, speeds, strict=True)
    )
    bypass = BYPASS_M3H_PER_SQRT_BAR * math.sqrt(suction - p) if suction > p else 0.0
    return Flows(
        pumps_m3h=pumps,
        bypass_m3h=bypass,
        demand_m3h=net.demand_m3h(base_demand_m3h, p),
        leakage_m3h=net.leakage_m3h(p),
    )


#: Hourly demand multipliers of a residential zone (night minimum, morning and evening
#: peaks), rescaled so the minimum is the configured night fraction.
_PATTERN = (
    0.30, 0.26, 0.25, 0.25, 0.32, 0.55, 0.90, 1.00, 0.92, 0.78, 0.70, 0.70,
    0.72, 0.66, 0.60, 0.62, 0.70, 0.85, 0.96, 0.92, 0.78, 0.62, 0.46, 0.36,
)  # fmt: skip


def diurnal_factor(hour: float, night_fraction: float) -> float:
    """Demand as a fraction of the peak at a time of day (linear between hours)."""
    h = hour % 24.0
    i = int(h)
    frac = h - i
    raw = _PATTERN[i] * (1 - frac) + _PATTERN[(i + 1) % 24] * frac
    lo, hi = min(_PATTERN), max(_PATTERN)
    return night_fraction + (1 - night_fraction) * (raw - lo) / (hi - lo)

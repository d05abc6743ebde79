"""Figures of merit for a closed-loop run: what the control benchmark reports."""

from __future__ import annotations

from collections import deque
from typing import Any

from harness.closed_loop import ClosedLoop

#: Ticks this long after a change in the number of running pumps count as a stage change.
STAGE_SETTLE_S = 60.0
BAND_BAR = 0.2
#: The first minutes (power-on delay, filling) are start-up, not control: not scored.
WARM_UP_S = 120.0


def max_starts_in_any_hour(starts: list[float]) -> int:
    """The most starts inside any rolling 3600 s window."""
    window: deque[float] = deque()
    best = 0
    for t in sorted(starts):
        window.append(t)
        while window[0] <= t - 3600.0:
            window.popleft()
        best = max(best, len(window))
    return best


def summarise(run: ClosedLoop) -> dict[str, Any]:
    """Pressure stability, starts, energy and leakage of a finished run."""
    tr = run.trace
    tick = run.cfg.control.tick_s
    n = len(tr.t)
    if n == 0:
        raise ValueError("the run has no ticks")
    within = within_outside = outside_total = 0
    iae = 0.0
    last_change = -1e9
    previous = tr.running[0]
    first = next((i for i, t in enumerate(tr.t) if t >= WARM_UP_S), n)
    if first >= n:
        raise ValueError("the run is shorter than the warm-up")
    for i in range(first, n):
        err = abs(tr.pressure_bar[i] - tr.setpoint_bar[i])
        iae += err * tick
        ok = err <= BAND_BAR
        within += ok
        if tr.running[i] != previous:
            last_change = tr.t[i]
            previous = tr.running[i]
        if tr.t[i] - last_change >= STAGE_SETTLE_S:
            outside_total += 1
            within_outside += ok
    st = run.station.state
    starts = run.station.start_times()
    energy = sum(p.energy_kwh for p in st.pumps.values())
    supplied = st.supplied_m3
    return {
        "within_0_2_bar_pct": round(100.0 * within_outside / max(outside_total, 1), 3),
        "within_0_2_bar_pct_all_ticks": round(100.0 * within / (n - first), 3),
        "iae_bar_s": round(iae, 1),
        "min_pressure_bar": round(min(tr.pressure_bar[first:]), 3),
        "max_pressure_bar": round(max(tr.pressure_bar[first:]), 3),
        "max_starts_per_pump_per_hour": max(
            (max_starts_in_any_hour(ts) for ts in starts.values()), default=0
        ),
        "starts_total": sum(len(ts) for ts in starts.values()),
        "energy_kwh": round(energy, 2),
        "supplied_m3": round(supplied, 1),
        "energy_kwh_per_m3": round(energy / supplied, 4) if supplied > 0 else None,
        # Useful hydraulic work per electrical energy: compares stations that hold
        # different pressures, which kWh/m3 alone does not.
        "wire_to_water_pct": round(100 * st.hydraulic_kwh / energy, 1) if energy > 0 else None,
        "mean_pressure_bar": round(sum(tr.pressure_bar[first:]) / (n - first), 3),
        "leakage_m3": round(st.leakage_total_m3, 1),
        "far_end_min_bar": round(min(tr.far_end_bar[first:]), 3),
        "sim_s": round(n * tick, 1),
        "wall_s": round(run.wall_s, 2),
    }

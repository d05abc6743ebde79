"""Control benchmark: our controller against a pressure-switch panel on the simulator.

    .venv/bin/python -m bench.control_scenarios [--only NAME] [--plot bench/diurnal.png]
                                                [--check] [--save]

Runs every scenario for each controller with the full control stack (register map,
codec, ControlCore, ControlLoop, PumpIO on the simulated GPIO) and, for ours, the
daemon's telemetry sink (``bench/sink.py``: each tick's sample made, encoded and queued
in a real SQLite buffer, committed by the flusher once per ``buffer.commit_interval_s``
of its clock, the event loop's real one, as when the stack simulates a day). Figures per
run (see ``harness.metrics.summarise``) with the CPU time beside the wall time.

The VFD station's diurnal day runs twice more: with a commit per simulated second, as a
station running in real time commits (``realtime_day_cpu_s``: what one real
station-day costs the daemon; the sink's per-commit figures come from this run, with
the daemon's real commit sizes), and without the sink: the CPU the sink adds is the
difference, and the control figures must be identical (the sink feeds nothing back).
Targets (issue 4, on the diurnal day): >= 99 % of the time within +-0.2 bar outside
stage changes with the VFD lead pump (with relays only the pressure is wherever a whole
pump's curve puts it: reported, not a target); no pump of ours above the station file's
``max_starts_per_hour`` in any scenario; the 24 h day of the full stack in under 60 s,
counted in CPU time (the wall time beside it depends on who else uses the machine).
Energy per m3 against the panel is reported here; the target is met with pressure
management and checked in ``bench.pressure_management``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Target, add_arguments, finish
from bench.sink import CommitClock, TelemetrySink, scratch_dir
from controller.config import load_config
from harness.closed_loop import ClosedLoop, Controller
from harness.metrics import summarise

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "station.example.yaml"


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    start_hour: float
    faults: list[str] = field(default_factory=list)


SCENARIOS = [
    Scenario("diurnal_24h", 24 * 3600, 0.0),
    Scenario("demand_step", 3600, 10.0, ["demand_step@1200,factor=1.8"]),
    Scenario("suction_loss", 3600, 8.0, ["suction_loss@1200+600"]),
    Scenario("pump_trip", 3600, 7.0, ["pump_trip:P1@1200"]),
    Scenario("sensor_failure", 3600, 9.0, ["wire_break:discharge_pressure@1200+600"]),
    Scenario("pipe_burst", 3600, 11.0, ["burst@1200,flow_m3h=40"]),
    # Only the VFD station has a drive to trip; for the others P1 carries on.
    Scenario("drive_trip", 3600, 9.0, ["drive_fault:P1@1200"]),
]
VFD_CONFIG = REPO / "config" / "station.vfd-example.yaml"
#: label -> (controller, station file): ours on the relay-only example and on the same
#: station with a drive on P1, and the pressure-switch panel on the relay-only example.
CONTROLLERS: dict[str, tuple[Controller, Path]] = {
    "boosterd": ("boosterd", CONFIG),
    "boosterd_vfd": ("boosterd", VFD_CONFIG),
    "pressure_switch": ("pressure_switch", CONFIG),
}


def run_scenario(
    scenario: Scenario, label: str, *, sink: CommitClock | None = "wall"
) -> tuple[ClosedLoop, dict[str, Any]]:
    """One run; ours with the telemetry sink committing on ``sink``'s clock, or without
    it (None). The figures add ``cpu_s`` (this process, the buffer's thread included)
    and the sink's own costs, and ``wall_s`` covers the whole run, commits included."""
    controller, config = CONTROLLERS[label]
    cfg = load_config(config)
    loop = ClosedLoop(
        cfg,
        controller=controller,
        faults=scenario.faults,
        seed=7,
        start_hour=scenario.start_hour,
    )
    telemetry = None
    directory = scratch_dir()
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if sink is not None and controller == "boosterd":
            telemetry = TelemetrySink(cfg, loop, directory, commit_clock=sink)
            telemetry.run(scenario.duration_s)
        else:
            loop.run(scenario.duration_s)
        wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        figures = summarise(loop)
        figures["wall_s"] = round(wall_s, 2)
        figures["cpu_s"] = round(cpu_s, 2)
        if telemetry is not None:
            figures["sink"] = telemetry.figures()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return loop, figures


#: Figures that measure the machine, not the control, and the labels of a run (left out
#: when runs are compared).
TIMINGS = ("wall_s", "cpu_s", "sink", "scenario", "controller")


def control_figures(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k not in TIMINGS}


def plot(runs: dict[str, ClosedLoop], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    for name, run in runs.items():
        hours = [t / 3600 for t in run.trace.t]
        axes[0].plot(hours, run.trace.pressure_bar, lw=0.6, label=name)
        axes[1].plot(hours, run.trace.flow_m3h, lw=0.6, label=name)
        axes[2].step(hours, run.trace.running, lw=0.8, label=name, where="post")
    axes[0].plot(hours, run.trace.setpoint_bar, "k--", lw=0.8, label="setpoint")
    axes[0].set_ylabel("discharge pressure (bar)")
    axes[1].set_ylabel("station flow (m3/h)")
    axes[2].set_ylabel("pumps running")
    axes[2].set_xlabel("hour of day")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("24 h diurnal day: boosterd (relays / VFD lead) vs a pressure-switch panel")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", help="run one scenario")
    parser.add_argument("--plot", type=Path, help="write the diurnal-day plot (PNG) here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    diurnal: dict[str, ClosedLoop] = {}
    reference = [reference_cpu_s()]
    for scenario in SCENARIOS:
        if args.only and scenario.name != args.only:
            continue
        for label in CONTROLLERS:
            loop, figures = run_scenario(scenario, label)
            runs.append({"scenario": scenario.name, "controller": label, **figures})
            if scenario.name == "diurnal_24h":
                diurnal[label] = loop
            print(f"{scenario.name} {label}: {figures}", file=sys.stderr)
    if args.plot and diurnal:
        plot(diurnal, args.plot)
    bare = realtime = None
    if diurnal:
        # The VFD station's day again: as a real-time station commits (a commit per
        # simulated second), and without the sink (its cost, and no effect).
        realtime = run_scenario(SCENARIOS[0], "boosterd_vfd", sink="simulated")[1]
        print(f"diurnal_24h boosterd_vfd, real-time commits: {realtime}", file=sys.stderr)
        bare = run_scenario(SCENARIOS[0], "boosterd_vfd", sink=None)[1]
        print(f"diurnal_24h boosterd_vfd without the sink: {bare}", file=sys.stderr)
    reference.append(reference_cpu_s())
    figures, targets = summary(runs, bare=bare, realtime=realtime)
    figures |= machine_speed(reference, figures)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m bench.control_scenarios " + " ".join(given)
    finish("control", figures, targets, args, command=command.strip(), tables={"runs": runs})
    return 0


def reference_cpu_s() -> float:
    """CPU seconds of a fixed pure-Python workload (the best of five): how fast this
    machine runs Python now. A VM's CPU seconds are not a fixed amount of work: the same
    24 h day measured 52 to 82 CPU s on this 2-core VM within one evening, and the panel's
    own day 18 to 47, as the host's load came and went."""
    best = math.inf
    for _ in range(5):
        started = time.process_time()
        acc = 0.0
        for i in range(1, 400_000):
            acc += (i % 7) * 0.5 / i
        best = min(best, time.process_time() - started)
    return round(best, 4)


def machine_speed(reference: list[float], figures: dict[str, Any]) -> dict[str, Any]:
    """The reference before and after the runs, and the 24 h day in units of it (a figure
    that does not move with the machine's speed; no target: the target is in CPU s)."""
    out: dict[str, Any] = {
        "reference_cpu_s_before": reference[0],
        "reference_cpu_s_after": reference[-1],
    }
    mean = sum(reference) / len(reference)
    if "diurnal_vfd_cpu_s" in figures and mean > 0:
        out["diurnal_vfd_cpu_in_references"] = round(figures["diurnal_vfd_cpu_s"] / mean)
    return out


def max_starts_limit() -> int:
    """The lowest ``max_starts_per_hour`` of any pump in either of our station files."""
    return min(
        pump.max_starts_per_hour
        for label, (controller, path) in CONTROLLERS.items()
        if controller == "boosterd"
        for pump in load_config(path).pumps.values()
    )


def summary(
    runs: list[dict[str, Any]],
    *,
    bare: dict[str, Any] | None,
    realtime: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[Target]]:
    """The headline figures and the targets on them."""
    ours = [r for r in runs if CONTROLLERS[r["controller"]][0] == "boosterd"]
    by = {(r["scenario"], r["controller"]): r for r in runs}
    limit = max_starts_limit()
    figures: dict[str, Any] = {
        "max_starts_per_pump_per_hour": max(r["max_starts_per_pump_per_hour"] for r in ours),
        "max_starts_limit": limit,
    }
    targets = [
        Target("max_starts_per_pump_per_hour", "<=", limit,
               "issue 4: no pump above its max_starts_per_hour (station files), any scenario"),
    ]  # fmt: skip
    vfd = by.get(("diurnal_24h", "boosterd_vfd"))
    relays = by.get(("diurnal_24h", "boosterd"))
    panel = by.get(("diurnal_24h", "pressure_switch"))
    if vfd is not None and relays is not None and panel is not None:
        tick = load_config(CONTROLLERS["boosterd_vfd"][1]).control.tick_s
        figures |= {
            "diurnal_vfd_within_0_2_bar_pct": vfd["within_0_2_bar_pct"],
            "diurnal_relays_within_0_2_bar_pct": relays["within_0_2_bar_pct"],
            "diurnal_panel_within_0_2_bar_pct": panel["within_0_2_bar_pct"],
            "diurnal_panel_max_starts_per_pump_per_hour": panel["max_starts_per_pump_per_hour"],
            "diurnal_vfd_kwh_per_m3_vs_panel": round(
                vfd["energy_kwh_per_m3"] / panel["energy_kwh_per_m3"], 3),
            "diurnal_relays_cpu_s": relays["cpu_s"],
            "diurnal_relays_wall_s": relays["wall_s"],
            "diurnal_vfd_cpu_s": vfd["cpu_s"],
            "diurnal_vfd_wall_s": vfd["wall_s"],
            "diurnal_vfd_cpu_us_per_tick": round(1e6 * vfd["cpu_s"] / (vfd["sim_s"] / tick)),
            "diurnal_vfd_commits": vfd["sink"]["commits"],
        }  # fmt: skip
        targets += [
            Target("diurnal_vfd_within_0_2_bar_pct", ">=", 99.0,
                   "issue 4: >= 99 % within +-0.2 bar outside stage changes (VFD lead)"),
            Target("diurnal_vfd_cpu_s", "<=", 60.0,
                   "issue 4: the 24 h day of the full stack under 60 s (CPU time)"),
            Target("diurnal_relays_cpu_s", "<=", 60.0,
                   "issue 4: the 24 h day of the full stack under 60 s (CPU time)"),
        ]  # fmt: skip
        if realtime is not None:
            sink = realtime["sink"]
            figures |= {
                "realtime_day_cpu_s": realtime["cpu_s"],
                "realtime_day_cpu_us_per_tick": round(
                    1e6 * realtime["cpu_s"] / (realtime["sim_s"] / tick)
                ),
                "realtime_day_commits": sink["commits"],
                "sink_append_cpu_us_per_sample": sink["append_cpu_us_per_sample"],
                "sink_commit_cpu_ms_p50": sink["commit_cpu_ms_p50"],
                "sink_commit_cpu_ms_p99": sink["commit_cpu_ms_p99"],
                "sink_bytes_on_disk_per_sample": sink["bytes_on_disk_per_sample"],
            }
        if bare is not None:
            same = control_figures(bare) == control_figures(vfd) and (
                realtime is None or control_figures(realtime) == control_figures(vfd)
            )
            figures |= {
                "diurnal_vfd_cpu_s_without_sink": bare["cpu_s"],
                "sink_added_cpu_s": round(vfd["cpu_s"] - bare["cpu_s"], 2),
                "sink_added_cpu_pct": round(100 * (vfd["cpu_s"] / bare["cpu_s"] - 1), 1),
                "sink_changes_control_figures": 0 if same else 1,
            }
            if realtime is not None:
                figures["realtime_sink_added_cpu_s"] = round(realtime["cpu_s"] - bare["cpu_s"], 2)
            targets.append(
                Target("sink_changes_control_figures", "<=", 0,
                       "the sink feeds nothing back: same control figures without it")
            )  # fmt: skip
    return figures, targets


if __name__ == "__main__":
    sys.exit(main())

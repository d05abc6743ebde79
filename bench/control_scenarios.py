"""Control benchmark: our controller against a pressure-switch panel on the simulator.

    .venv/bin/python -m bench.control_scenarios [--only NAME] [--plot bench/diurnal.png]

Runs every scenario for each controller with the full control stack (register map,
codec, ControlCore, ControlLoop, PumpIO on the simulated GPIO) and prints one JSON
object: scenario -> controller -> figures (see ``harness.metrics.summarise``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def run_scenario(scenario: Scenario, label: str) -> tuple[ClosedLoop, dict[str, Any]]:
    controller, config = CONTROLLERS[label]
    cfg = load_config(config)
    loop = ClosedLoop(
        cfg,
        controller=controller,
        faults=scenario.faults,
        seed=7,
        start_hour=scenario.start_hour,
    )
    loop.run(scenario.duration_s)
    return loop, summarise(loop)


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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="run one scenario")
    parser.add_argument("--plot", type=Path, help="write the diurnal-day plot (PNG) here")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    diurnal: dict[str, ClosedLoop] = {}
    for scenario in SCENARIOS:
        if args.only and scenario.name != args.only:
            continue
        results[scenario.name] = {}
        for label in CONTROLLERS:
            loop, figures = run_scenario(scenario, label)
            results[scenario.name][label] = figures
            if scenario.name == "diurnal_24h":
                diurnal[label] = loop
            print(f"{scenario.name} {label}: {figures}", file=sys.stderr)
    if args.plot and diurnal:
        plot(diurnal, args.plot)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

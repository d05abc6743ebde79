"""A noisy RS-485 line soak: the example station read through the fault relay.

    .venv/bin/python -m bench.noisy_line [--hours 1] [--rate 0.01] [--check] [--save]

The simulated station (morning demand) is read by the real acquisition over ptys
through tests/support/serial_relay.py, flipping one bit in ``rate`` of the requests
and of the replies, and run by the real control core in simulated time. Three runs of
the same length: a clean line, the noisy line with the station file's defaults, and
the noisy line with ``retries: 0`` and ``hold_s: 0`` (what main did before issue 12).
For each: pump starts, stop/fallback episodes after start-up, the lowest discharge
pressure after start-up, frames corrupted, failed requests and failed polls, and the
wall and CPU time (this process: the station, the relay and the acquisition) of each.

Targets (issue 12), for the noisy line with the defaults: the station never stops
(no stop or fallback episode after start-up), its lowest pressure no more than 0.1 bar
below the clean line's, and no more starts than the clean line plus one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Clock, Target, add_arguments, finish
from controller.logs import configure_logging
from tests.support.noisy_station import Run, modbus_thread, run_station
from tests.support.serial_relay import LineFaults


def summary(name: str, run: Run, clock: Clock) -> dict[str, Any]:
    stats = run.acq_stats.values()
    rs = run.relay.stats
    return {
        "line": name,
        "starts": run.starts,
        "stop_episodes": run.stop_episodes(),
        "min_discharge_bar": round(min(p for _, p, _ in run.settled()), 3),
        "frames_corrupted": rs.requests_flipped + rs.replies_flipped,
        "transactions": rs.requests,
        "failed_requests": sum(sum(s["line_errors"].values()) for s in stats),
        "failed_polls": sum(sum(s["errors"].values()) for s in stats),
        "wall_s": round(clock.wall_s(), 1),
        "cpu_s": round(clock.cpu_s(), 1),
    }


def main(hours: float, rate: float) -> list[dict[str, Any]]:
    run_s = hours * 3600
    noisy = LineFaults(reply_flip_rate=rate, request_flip_rate=rate)
    cases: list[tuple[str, LineFaults, dict[str, Any]]] = [
        ("clean", LineFaults(), {}),
        (f"noisy {rate:g}, defaults", noisy, {}),
        (f"noisy {rate:g}, retries 0 hold 0", noisy, {"retries": 0, "hold_s": 0.0}),
    ]
    out = []
    with modbus_thread() as loop:
        for name, faults, bus in cases:
            clock = Clock()
            run = run_station(
                Path(tempfile.mkdtemp(prefix="bench-noisy-")), loop, faults, seed=7,
                run_s=run_s, **bus,
            )  # fmt: skip
            out.append(summary(name, run, clock))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours per run")
    ap.add_argument("--rate", type=float, default=0.01, help="frames corrupted each way")
    add_arguments(ap)
    args = ap.parse_args()
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    lines = main(args.hours, args.rate)
    clean, noisy, old = lines
    figures = {
        "rate": args.rate,
        "hours": args.hours,
        "noisy_stop_episodes": noisy["stop_episodes"],
        "noisy_min_vs_clean_bar": round(noisy["min_discharge_bar"] - clean["min_discharge_bar"], 3),
        "noisy_extra_starts": noisy["starts"] - clean["starts"],
        "old_stop_episodes": old["stop_episodes"],
        "old_min_discharge_bar": old["min_discharge_bar"],
        "wall_s": round(sum(r["wall_s"] for r in lines), 1),
        "cpu_s": round(sum(r["cpu_s"] for r in lines), 1),
    }
    targets = [
        Target(
            "noisy_stop_episodes", "<=", 0, "issue 12: a corrupted reply never stops the station"
        ),
        Target("noisy_min_vs_clean_bar", ">=", -0.1, "issue 12: pressure held as on a clean line"),
        Target("noisy_extra_starts", "<=", 1, "issue 12: no extra starts from line noise"),
    ]
    command = "python -m bench.noisy_line " + " ".join(sys.argv[1:])
    finish("noisy_line", figures, targets, args, command=command.strip(), tables={"lines": lines})

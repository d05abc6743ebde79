"""A noisy RS-485 line soak: the example station read through the fault relay.

    .venv/bin/python -m bench.noisy_line [--hours 1] [--rate 0.01]

The simulated station (morning demand) is read by the real acquisition over ptys
through tests/support/serial_relay.py, flipping one bit in ``rate`` of the requests
and of the replies, and run by the real control core in simulated time. Three runs of
the same length: a clean line, the noisy line with the station file's defaults, and
the noisy line with ``retries: 0`` and ``hold_s: 0`` (what main did before issue 12).
For each: pump starts, stop/fallback episodes after start-up, the lowest discharge
pressure after start-up, frames corrupted, failed requests and failed polls. JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.logs import configure_logging
from tests.support.noisy_station import Run, modbus_thread, run_station
from tests.support.serial_relay import LineFaults


def summary(name: str, run: Run, wall_s: float) -> dict[str, Any]:
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
        "wall_s": round(wall_s, 1),
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
            started = time.perf_counter()
            run = run_station(
                Path(tempfile.mkdtemp(prefix="bench-noisy-")), loop, faults, seed=7,
                run_s=run_s, **bus,
            )  # fmt: skip
            out.append(summary(name, run, time.perf_counter() - started))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours per run")
    ap.add_argument("--rate", type=float, default=0.01, help="frames corrupted each way")
    args = ap.parse_args()
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    print(json.dumps(main(args.hours, args.rate), indent=2))

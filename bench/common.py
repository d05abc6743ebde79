"""What every benchmark shares: targets with pass/fail, CPU beside wall time, and the
record of where a figure was measured (date, commit, machine) in its JSON.

A benchmark builds ``figures`` (a flat dict), states ``Target``s on some of them, and
calls ``finish``: it prints one JSON document with the figures, each target's verdict
and the run's metadata, saves it under bench/results/ with ``--save``, and exits 1 on
a missed target with ``--check``. bench/report.py renders RESULTS.md from those files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Target:
    """``figure`` must be ``op`` (<= or >=) ``limit``; ``why`` says where it comes from."""

    figure: str
    op: str
    limit: float
    why: str = ""

    def verdict(self, figures: dict[str, Any]) -> dict[str, Any]:
        value = figures.get(self.figure)
        ok = isinstance(value, int | float) and (
            value <= self.limit if self.op == "<=" else value >= self.limit
        )
        return {"figure": self.figure, "op": self.op, "limit": self.limit, "value": value,
                "pass": bool(ok), "why": self.why}  # fmt: skip


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--save", action="store_true", help="write bench/results/<name>.json")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The 1-minute load average when the run ended: wall times and jitter depend on it.
    return {"host": platform.node(), "cpu": model or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip


def commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    # What runs write or render (results, plots, RESULTS.md and its renderer) does not
    # make the measured code dirty.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results",
                  ":!bench/*.png", ":!bench/RESULTS.md", ":!bench/report.py")  # fmt: skip
    return head + ("-dirty" if changed else "")


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) another process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_rss_mb(pid: int) -> float:
    """Another process's resident memory (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


#: The code a run measures is the code it imported: its commit is taken when the run
#: starts, so editing files while a long benchmark runs does not relabel its result.
STARTED_AT_COMMIT = commit()


class Clock:
    """Wall and CPU time (this process, all threads) of a measured stretch."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def wall_s(self) -> float:
        return time.perf_counter() - self.wall0

    def cpu_s(self) -> float:
        return time.process_time() - self.cpu0


def finish(
    name: str,
    figures: dict[str, Any],
    targets: list[Target],
    args: argparse.Namespace,
    *,
    command: str,
    tables: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    """Print (and with --save store) the result; with --check exit 1 on a miss."""
    verdicts = [t.verdict(figures) for t in targets]
    doc = {
        "bench": name,
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": STARTED_AT_COMMIT,
        "machine": machine(),
        "figures": figures,
        "tables": tables or {},
        "targets": verdicts,
        "pass": all(v["pass"] for v in verdicts),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    for v in verdicts:
        mark = "PASS" if v["pass"] else "MISS"
        print(f"{mark} {v['figure']} = {v['value']} (target {v['op']} {v['limit']})",
              file=sys.stderr)  # fmt: skip
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(text + "\n")
    if args.check and not doc["pass"]:
        sys.exit(1)


def start_sim(tmp: Path, *, repo: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``boosterd sim`` on the example station in ``tmp``, and the station file it
    writes for the controller (read once complete: the simulator may still be writing)."""
    import yaml

    sim = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "sim", str(repo / "config/station.example.yaml"),
         "--pty-dir", str(tmp / "pty"), "--gpio-dir", str(tmp / "gpio")],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    derived = tmp / "pty" / "station.yaml"
    deadline = time.monotonic() + 20
    data: Any = None
    while not isinstance(data, dict):
        if time.monotonic() > deadline:
            sim.kill()
            raise RuntimeError("boosterd sim did not start")
        time.sleep(0.05)
        data = yaml.safe_load(derived.read_text()) if derived.exists() else None
    return sim, data

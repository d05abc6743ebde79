"""Scenario generator benchmark: many random station-days, invariants on every tick.

    .venv/bin/python -m bench.scenarios --days 1000 --seed 1 [--jobs 2] [--hours 24]
    .venv/bin/python -m bench.scenarios --replay SEED [--hours 24] [--out DIR]
    .venv/bin/python -m bench.scenarios --script DIR

The first runs ``--days`` station-days (case seeds ``seed * 100000 + i``) across
``--jobs`` processes and prints one JSON object: station-days run, failures by
invariant kind, the seeds of failing cases per kind, simulated hours and wall time.
``--shrink N`` shrinks and prints the reproducers of the first N failing seeds per
kind (on stderr). ``--replay`` runs one seed verbosely, shrinks each kind it breaks
and prints the reproducer (``--out`` also writes station.yaml and events.txt);
``--script`` runs such a directory again.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Target, add_arguments, finish
from controller.config import load_config
from simulator.scenarios import Case, GeneratedStation, parse_events, reproducer, run_day, shrink
from simulator.scenarios.invariants import Summary
from simulator.scenarios.runner import write_reproducer

SEED_STRIDE = 100_000


def _one(args: tuple[int, float]) -> dict[str, Any]:
    seed, hours = args
    try:
        case = Case.generate(seed, hours=hours)
    except Exception as exc:  # a finding of the generator's, not a reason to stop the run
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        first = {"invalid_station": [0, detail]}
        return {"seed": seed, "pumps": 0, "ticks": 0, "wall_s": 0.0,
                "first": first, "counts": {"invalid_station": 1}}  # fmt: skip
    res = run_day(case.station, case.day)
    summary = Summary.of(res.violations)
    return {
        "seed": seed,
        "pumps": len(case.station.cfg.pumps),
        "ticks": res.ticks,
        "wall_s": round(res.wall_s, 2),
        "first": {k: [round(v.t), v.detail] for k, v in summary.first.items()},
        "counts": summary.counts,
    }


def _read_log(log: Path | None, hours: float) -> list[dict[str, Any]]:
    """The days an earlier run of the same budget already recorded in ``log``."""
    if log is None or not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("hours") == hours]


def run_budget(
    days: int,
    seed: int,
    jobs: int,
    hours: float,
    time_limit_s: float,
    *,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run ``days`` station-days; with ``log``, append each finished day to it as a JSON
    line (with the commit it ran on) and skip the seeds it already holds, so a budget
    larger than one sitting accumulates across runs."""
    started = time.perf_counter()
    rows = _read_log(log, hours)
    done = {r["seed"] for r in rows}
    seeds = [(s, hours) for i in range(days) if (s := seed * SEED_STRIDE + i) not in done]
    commit = _commit()
    with multiprocessing.Pool(jobs) as pool:
        for row in pool.imap_unordered(_one, seeds):
            rows.append(row)
            if log is not None:
                with log.open("a") as f:
                    f.write(json.dumps({**row, "hours": hours, "commit": commit}) + "\n")
            if row["counts"]:
                print(f"seed {row['seed']}: {row['first']}", file=sys.stderr, flush=True)
            if time.perf_counter() - started > time_limit_s:
                pool.terminate()
                break
    failed = [r for r in rows if r["counts"]]
    by_kind: dict[str, list[int]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        for kind in r["counts"]:
            by_kind.setdefault(kind, []).append(r["seed"])
    return {
        "station_days": len(rows),
        "hours_per_day": hours,
        "failed_days": len(failed),
        "failures_by_kind": {k: len(v) for k, v in sorted(by_kind.items())},
        "failing_seeds_by_kind": dict(sorted(by_kind.items())),
        "ticks": sum(r["ticks"] for r in rows),
        "day_cpu_s": round(sum(r["wall_s"] for r in rows), 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "jobs": jobs,
        "seed": seed,
        "commits": sorted({r.get("commit", commit) for r in rows}),
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def replay(
    seed: int, hours: float, out: Path | None, budget_s: float, only: str | None = None
) -> int:
    case = Case.generate(seed, hours=hours)
    res = run_day(case.station, case.day)
    print(f"seed {seed}: {res.ticks} ticks, {res.reboots} reboots, {res.wall_s:.1f} s wall, "
          f"{res.rejected_commands} commands refused", file=sys.stderr)  # fmt: skip
    for v in res.violations:
        print(f"  t={v.t:8.0f} {v.kind}: {v.detail}", file=sys.stderr)
    summary = Summary.of(res.violations)
    for kind in summary.first:
        if only is not None and kind != only:
            continue
        day, found = shrink(case.station, case.day, kind, budget_s=budget_s)
        print(reproducer(seed, case.station, day, found, hours=hours))
        if out is not None:
            write_reproducer(out / f"{seed}-{kind}", case.station, day)
    if not summary.first:
        print(reproducer(seed, case.station, case.day, None, hours=hours))
    return 1 if summary.first else 0


def script(directory: Path) -> int:
    cfg = load_config(directory / "station.yaml")
    station = GeneratedStation((directory / "station.yaml").read_text(), cfg)
    day = parse_events((directory / "events.txt").read_text())
    res = run_day(station, day)
    for v in res.violations:
        print(f"t={v.t:8.0f} {v.kind}: {v.detail}")
    return 1 if res.violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours per day")
    parser.add_argument(
        "--time-limit", type=float, default=1e9, help="stop after this many wall seconds"
    )
    parser.add_argument("--shrink", type=int, default=0, help="reproducers for N seeds per kind")
    parser.add_argument("--shrink-budget", type=float, default=120.0, help="wall s per shrink")
    parser.add_argument("--replay", type=int, help="run one case seed verbosely and shrink it")
    parser.add_argument("--out", type=Path, help="with --replay: write reproducers here")
    parser.add_argument("--kind", help="with --replay: shrink only this invariant's failure")
    parser.add_argument("--script", type=Path, help="run station.yaml + events.txt in DIR")
    parser.add_argument(
        "--log", type=Path, help="append each day here as JSON and skip days it already has"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.script is not None:
        return script(args.script)
    if args.replay is not None:
        return replay(args.replay, args.hours, args.out, args.shrink_budget, args.kind)
    result = run_budget(args.days, args.seed, args.jobs, args.hours, args.time_limit, log=args.log)
    seeds_by_kind: dict[str, list[int]] = result.pop("failing_seeds_by_kind")
    result.pop("failures_by_kind")
    result["commits"] = " ".join(result["commits"])
    for kind, seeds in seeds_by_kind.items():
        for seed in seeds[: args.shrink]:
            case = Case.generate(seed, hours=args.hours)
            day, found = shrink(case.station, case.day, kind, budget_s=args.shrink_budget)
            print(reproducer(seed, case.station, day, found, hours=args.hours), file=sys.stderr)
    table = [
        {"invariant": kind, "failed_days": len(seeds), "first_seeds": " ".join(map(str, seeds[:5]))}
        for kind, seeds in seeds_by_kind.items()
    ]
    targets = [Target("failed_days", "<=", 0, "issue 13: no invariant broken on main")]
    command = "python -m bench.scenarios " + " ".join(sys.argv[1:] if argv is None else argv)
    finish("scenarios", result, targets, args, command=command, tables={"failures": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Station-file benchmark: hostile files against real processes, and a long fuzz.

For every hostile file of tests/support/hostile.py: wall time, peak RSS and exit code of
``boosterd check`` and of ``boosterd outputs-off`` (falling back to a good copy on
simulated relays). Then ``--fuzz N`` mutations of the example station (fixed seed)
through ``parse_config``: how many loaded, how many were refused with located issues,
how many ended any other way (must be 0), and the slowest.

Run: .venv/bin/python -m bench.station_files [--fuzz 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from controller.config import ConfigError, parse_config
from tests.support.hostile import EXAMPLE_TEXT, HOSTILE
from tests.test_station_fuzz import TOKENS, mutate

REPO = Path(__file__).resolve().parent.parent


def run_measured(args: list[str]) -> dict[str, Any]:
    """Run ``boosterd ARGS``; wall seconds, peak RSS (MB) and exit code.

    Through /usr/bin/time: a child forked straight from this process would inherit its
    peak RSS as a floor. As root, without the capabilities that read any file.
    """
    prefix = ["/usr/bin/time", "-f", "%M"]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        prefix += ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    started = time.monotonic()
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "controller.cli", *args],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    return {
        "s": round(time.monotonic() - started, 3),
        "rss_mb": round(peak_kb / 1024, 1),
        "exit": proc.returncode,
    }


def hostile_table() -> list[dict[str, Any]]:
    rows = []
    for case in HOSTILE:
        with tempfile.TemporaryDirectory(prefix="bench-station-") as tmp:
            path = Path(tmp, "station.yaml")
            case.make(path)
            good = Path(tmp, "good.yaml")
            data = yaml.safe_load(EXAMPLE_TEXT)
            data["gpio"] = {"backend": "sim", "sim_dir": str(Path(tmp, "gpio"))}
            good.write_text(yaml.safe_dump(data))
            rows.append(
                {
                    "file": case.name,
                    "check": run_measured(["check", str(path)]),
                    "outputs_off": run_measured(
                        ["outputs-off", "--config", str(path), "--last-good", str(good)]
                    ),
                }
            )
            if path.is_file():
                path.chmod(0o600)
    return rows


def fuzz(n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    loaded = refused = other = 0
    slowest = 0.0
    failures: list[str] = []
    for _ in range(n):
        mutations = [
            (
                rng.choice(["insert", "replace", "delete", "duplicate"]),
                rng.randrange(len(EXAMPLE_TEXT) + 1),
                rng.randrange(41),
                rng.choice(TOKENS) if rng.random() < 0.7 else _junk(rng),
            )
            for _ in range(rng.randint(1, 6))
        ]
        text = mutate(EXAMPLE_TEXT, mutations)
        started = time.monotonic()
        try:
            parse_config(text, "station.yaml")
            loaded += 1
        except ConfigError as exc:
            if all(i.line is not None or i.message.startswith("... and ") for i in exc.issues):
                refused += 1
            else:
                other += 1
                failures.append(f"unlocated: {exc.issues[0]}")
        except Exception as exc:  # what the property forbids
            other += 1
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        slowest = max(slowest, time.monotonic() - started)
    return {
        "mutations": n,
        "seed": seed,
        "loaded": loaded,
        "refused_located": refused,
        "other": other,
        "slowest_s": round(slowest, 4),
        "failures": failures[:10],
    }


def _junk(rng: random.Random) -> str:
    return "".join(chr(rng.randrange(1, 0x300)) for _ in range(rng.randint(0, 8)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fuzz", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps({"hostile": hostile_table(), "fuzz": fuzz(args.fuzz, args.seed)}, indent=2))


if __name__ == "__main__":
    main()

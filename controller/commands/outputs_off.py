"""``boosterd outputs-off --config PATH``: every pump relay off, now, without the daemon.

The unit runs it as ``ExecStopPost=``, after *every* stop of the daemon: a crash, a
watchdog kill or SIGKILL included. On a stock Raspberry Pi OS kernel a released GPIO
output keeps driving its last level (docs/gpio.md), so without this a killed daemon
would leave its pumps running until the restart claims the lines again. A technician
can run it by hand too, once the daemon is stopped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from controller.commands._station import EXIT_CONFIG
from controller.config import DEFAULT_LIMITS, ConfigError, StationConfig, load_config
from controller.errors import BoosterError

EXIT_NOT_SAFE = 1


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "outputs-off",
        help="switch every pump relay off (systemd's ExecStopPost; daemon must be stopped)",
    )
    p.add_argument("--config", required=True, help="station YAML file")
    p.add_argument(
        "--last-good",
        metavar="FILE",
        help="station file to use when --config is broken (default: the copy the daemon "
        "keeps, $STATE_DIRECTORY/station.last-good.yaml)",
    )
    p.set_defaults(handler=run)


#: Time for reading each station file (the current one, then the last good copy): with
#: the interpreter's start and the GPIO work, well inside the unit's 10 s stop timeout.
LOAD_BUDGET_S = 2.5
LIMITS = replace(DEFAULT_LIMITS, time_budget_s=LOAD_BUDGET_S)


def run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        # A broken file must not leave the pumps running: the daemon's last good copy
        # names the same relays (a relay rewired since is in neither file anyway).
        from controller.runtime.last_good import default_path

        fallback = args.last_good or default_path()
        if fallback is None or not Path(fallback).exists():
            print("boosterd outputs-off: relays NOT switched off: no valid station file",
                  file=sys.stderr)  # fmt: skip
            return EXIT_CONFIG
        cfg = _load(str(fallback))
        if cfg is None:
            return EXIT_CONFIG
        print(f"boosterd outputs-off: {args.config} is invalid; using {fallback}, "
              "the last file the daemon ran with", file=sys.stderr)  # fmt: skip
    from drivers.gpio.safety import outputs_off

    try:
        relays = outputs_off(cfg)
    except (BoosterError, OSError) as exc:
        # Busy lines mean the daemon (or another program) still holds them.
        print(f"boosterd outputs-off: relays NOT switched off: {exc}", file=sys.stderr)
        return EXIT_NOT_SAFE
    print(f"boosterd outputs-off: {len(relays)} relays off ({', '.join(relays)})")
    return 0


def _load(path: str) -> StationConfig | None:
    """The station, or None after saying why. Whatever goes wrong (a bug in the parser
    included: MemoryError, RecursionError...), the caller still gets to the fallback."""
    try:
        return load_config(path, limits=LIMITS)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
    except Exception as exc:  # the pumps matter more than the cause
        why = f"{type(exc).__name__}: {exc}"[:300]
        print(f"boosterd outputs-off: {path} cannot be read: {why}", file=sys.stderr)
    return None

"""``boosterd run --config PATH``: the daemon systemd starts."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from controller.commands._station import EXIT_CONFIG, load_or_report
from controller.errors import BoosterError
from controller.logs import configure_logging, get_logger

EXIT_STARTUP = 3


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the station controller (what the systemd unit starts)"
    )
    p.add_argument("--config", required=True, help="station YAML file")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    configure_logging(level=args.log_level or cfg.logging.level, fmt=cfg.logging.format)
    from controller.runtime.daemon import run_daemon

    try:
        return asyncio.run(run_daemon(cfg, args.config))
    except BoosterError as exc:
        # A missing serial port or GPIO chip: say which, and let systemd retry later.
        get_logger("boosterd").error("cannot start", error=str(exc))
        return EXIT_STARTUP

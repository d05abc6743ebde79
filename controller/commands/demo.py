"""``boosterd demo``: simulator and controller in one process, with a live dashboard.

No hardware, no arguments: the example station runs on the simulator (relays on the
simulated GPIO backend, values through the real register map and codec), with the
whole controller around it: control loop, SQLite buffer, status socket, and the MQTT
uplink when ``--mqtt`` names a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.commands._station import EXIT_CONFIG, load_or_report
from controller.errors import BoosterError

#: config/station.example.yaml, shipped in the package (controller/examples links to it),
#: so ``boosterd demo`` runs from an installed wheel as well as from a checkout.
DEFAULT_CONFIG = Path(__file__).parents[1] / "examples" / "station.example.yaml"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the simulated station and the controller with a live dashboard"
    )
    p.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="station file (default: the example)"
    )
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    p.add_argument("--duration", type=float, help="stop after this many simulated seconds")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. pump_trip:p1@120 or suction_loss@300+120 (repeatable)",
    )
    p.add_argument(
        "--start-hour", type=float, default=6.0, help="simulated time of day to start at (today)"
    )
    p.add_argument(
        "--start",
        type=_local_time,
        metavar="YYYY-MM-DDTHH:MM",
        help="simulated date and time to start at, in the station's time zone (sets the "
        "weekday too); telemetry and alarm ts follow the simulated clock from there",
    )
    p.add_argument(
        "--drain-limit",
        type=float,
        metavar="SECONDS",
        help="with --duration and --mqtt: how long to wait, once the simulated time is up, "
        "for the broker to have every sample (default 120); exit status 3 if it does not",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mqtt", metavar="HOST:PORT", help="forward telemetry to this broker")
    p.add_argument(
        "--mqtt-station-auth",
        action="store_true",
        help="use the station file's TLS and credentials with --mqtt (default: plain, anonymous)",
    )
    p.add_argument("--state-dir", help="where the buffer and status socket go (default: temp)")
    p.add_argument("--plain", action="store_true", help="print a status line per simulated minute")
    p.add_argument(
        "--hmi-port", type=int, default=8080, help="web HMI port on 127.0.0.1 (0: any free port)"
    )
    p.add_argument("--no-hmi", action="store_true", help="do not serve the web HMI")
    p.set_defaults(handler=run)


def _local_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a date and time such as 2026-12-01T05:00"
        ) from None


def run(args: argparse.Namespace) -> int:
    from controller.logs import configure_logging
    from harness.demo import DemoOptions, run_demo

    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if args.speed <= 0:
        print("boosterd demo: --speed must be positive", file=sys.stderr)
        return EXIT_CONFIG
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="boosterd-demo-"))
    configure_logging(level="warning", fmt="console", stream=sys.stderr)
    try:
        options = DemoOptions(
            speed=args.speed,
            duration_s=args.duration,
            faults=list(args.fault),
            start_hour=args.start_hour,
            start=args.start,
            mqtt_station_auth=args.mqtt_station_auth,
            seed=args.seed,
            mqtt=args.mqtt,
            state_dir=state_dir,
            live=sys.stdout.isatty() and not args.plain,
            hmi_port=None if args.no_hmi else args.hmi_port,
        )
        if args.drain_limit is not None:
            options.drain_limit_s = args.drain_limit
        return asyncio.run(run_demo(cfg, options))
    except BoosterError as exc:
        print(f"boosterd demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0

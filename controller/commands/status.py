"""``boosterd status``: what the running daemon is doing, from its local socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from controller.config import ConfigError, load_config
from controller.config.schema import StatusConfig
from controller.dashboard import render
from controller.state.dump import read
from controller.state.models import LocalStatus
from controller.status_server import StatusUnavailable, query


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "status", help="show live values, pumps, alarms and uplink state of the running daemon"
    )
    p.add_argument("--config", help="station file (to find the socket)")
    p.add_argument("--socket", help=f"status socket (default {StatusConfig().socket})")
    p.add_argument(
        "--json", action="store_true", help="print the status as the socket sent it, as JSON"
    )
    p.add_argument(
        "--lang", choices=("id", "en"), help="language of state names (default: site.language)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = args.socket or StatusConfig().socket
    if args.config and not args.socket:
        try:
            path = load_config(args.config).status.socket
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    try:
        reply = asyncio.run(query(path))
    except StatusUnavailable as exc:
        print(f"boosterd status: {exc}", file=sys.stderr)
        return 3
    if not isinstance(reply, dict) or not reply.get("ok"):
        print(f"boosterd status: daemon refused: {reply}", file=sys.stderr)
        return 3
    sent = reply["status"]
    if args.json:
        print(json.dumps(sent, indent=2, sort_keys=True))
    else:
        # Read leniently: a daemon not yet restarted after an upgrade may send an older
        # shape; what is missing shows as "-" rather than a traceback.
        status = read(LocalStatus, sent if isinstance(sent, dict) else {})
        # Piped into a file or a ticket, keep whole rows rather than 80 columns.
        from rich.console import Console  # only here: every command's module is imported

        Console(width=None if sys.stdout.isatty() else 120).print(render(status, args.lang))
    return 0

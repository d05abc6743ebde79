"""The ``boosterd`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from controller import __version__

#: Subcommand modules under controller.commands; each has ``register`` and ``run``.
COMMANDS = ("check", "read", "run", "outputs_off", "sim", "demo", "status", "hmi_user", "hmi_cert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boosterd",
        description="Edge controller for water booster pump stations.",
    )
    parser.add_argument("--version", action="version", version=f"boosterd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"controller.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

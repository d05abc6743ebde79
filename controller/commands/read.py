"""``boosterd read CONFIG``: poll every point once; the commissioning tool.

A technician wiring a new transmitter runs it and sees, per point, the engineering
value, the raw registers and the quality. Exit 0 when every point is good, 1 when any
is bad, 2 for a station file that does not load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from controller.commands._station import EXIT_CONFIG, load_or_report
from controller.values import Reading

if TYPE_CHECKING:
    from rich.table import Table

EXIT_BAD_POINT = 1


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "read", help="poll every configured point once and show values, raw registers, quality"
    )
    p.add_argument("config", help="station YAML file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from controller.logs import configure_logging
    from drivers.modbus.acquisition import read_once

    configure_logging(level="error", fmt="console", stream=sys.stderr)
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    readings = asyncio.run(read_once(cfg))
    if args.json:
        print(json.dumps({name: _as_json(r) for name, r in readings.items()}, indent=2))
    else:
        from rich.console import Console  # not at the top: the daemon imports every command

        Console().print(_table(readings))
    return 0 if all(r.good for r in readings.values()) else EXIT_BAD_POINT


def _as_json(r: Reading) -> dict[str, Any]:
    out = r.as_dict()
    out["raw"] = list(r.raw)
    return out


def _table(readings: dict[str, Reading]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="boosterd read")
    for col in ("point", "value", "unit", "raw", "quality"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for name, r in readings.items():
        raw = " ".join(f"{w:04x}" for w in r.raw)
        quality = (
            Text("good", "green")
            if r.good
            else Text(f"BAD {r.reason.value if r.reason else ''} {r.detail}".strip(), "red")
        )
        table.add_row(name, _value_text(r), r.unit, raw, quality)
    return table


def _value_text(r: Reading) -> str:
    """The value with the digits its source carries: a totaliser in full, never 9.87654e+08."""
    v = r.as_dict()["v"]
    if not isinstance(v, float):
        return "-"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)

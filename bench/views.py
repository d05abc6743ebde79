"""What reading the typed models costs the Sparkplug node and the HMI (issue 15).

    .venv/bin/python -m bench.views [--number 20000] [--check] [--save]

* Sparkplug, per buffered sample (every live row and every replayed historical one):
  the stored bytes to metric values. Typed: ``loads``, the ``TelemetryMessage`` built
  unvalidated (``backlog.telemetry_message``), ``sample_values`` over it and its schema.
  Before: ``loads``, ``decode_sample`` to the long form, and the long-form reader
  (``long_form_values``, the former ``sample_values`` verbatim). SQLite is left out:
  it is the same for both.
* Sparkplug, per live row too: the status metrics. Typed: the daemon's
  ``station_status`` and ``status_values`` over it. Before: the same status dumped to
  its JSON dict (as the former ``Daemon.status_payload`` did) and read by key
  (``_dict_status_values`` below, the code as of commit 28faadc).
* HMI, once a second: the frame (``HmiServer.snapshot``, the live view in both
  languages, encoded), and what it no longer does: dump the ``LocalStatus`` to a dict.

The example drive station (5 points, one bad and one held; 3 pumps, one locked out,
one switched Off, a drive). Each figure is the best of 7 runs of ``--number`` calls, in
microseconds per call.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import timeit
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.common import Target, add_arguments, finish
from controller.audit import AuditLog
from controller.config import load_config
from controller.config.schema import HmiConfig, StationConfig
from controller.control.core import ControlCore, ControlOutputs, PumpInputs
from controller.hmi.history import History
from controller.hmi.live import live_view
from controller.hmi.server import HmiServer
from controller.runtime.loop import make_sample
from controller.state.build import point_value, station_status
from controller.state.dump import fields_of, to_json
from controller.state.models import LocalStatus, LoopView, SiteInfo
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.encoding import decode_sample, dumpb, dumps, loads
from controller.telemetry.sparkplug.backlog import telemetry_message
from controller.telemetry.sparkplug.metrics import (
    MANUAL_SUFFIX,
    MODE,
    PRESSURE_MANAGEMENT,
    PUMP_MODE_SUFFIX,
    SETPOINT,
    Value,
    long_form_values,
    sample_values,
    status_values,
)
from controller.values import BadReason, Reading
from tests.conftest import VFD_CONFIG


def _dict_status_values(status: Mapping[str, Any], manual: Mapping[str, bool]) -> dict[str, Value]:
    """``status_values`` before the models: the status's JSON dict read by key."""

    def number(v: Any) -> float | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v) if math.isfinite(v) else None

    alarms = [a for a in status.get("alarms") or [] if isinstance(a, Mapping)]
    pm = status.get("pressure_management")
    mode = status.get("mode")
    out: dict[str, Value] = {
        SETPOINT: number(status.get("base_setpoint_bar")),
        MODE: None if mode is None else str(mode),
        PRESSURE_MANAGEMENT: dumps(pm) if pm is not None else "",
        "Alarms/Active": ",".join(str(a.get("id")) for a in alarms),
        "Alarms/Count": len(alarms),
    }
    for name, on in manual.items():
        out[f"Pumps/{name}{MANUAL_SUFFIX}"] = bool(on)
    for name, row in (status.get("pumps") or {}).items():
        if isinstance(row, Mapping):
            out[f"Pumps/{name}{PUMP_MODE_SUFFIX}"] = "off" if row.get("out_of_service") else "auto"
    return out


def best_us(fn: Callable[[], object], number: int) -> float:
    return round(min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6, 2)


def _station() -> tuple[StationConfig, ControlCore, dict[str, Reading]]:
    cfg = load_config(VFD_CONFIG)
    core = ControlCore(cfg, now=0.0)
    units = {"suction_pressure": "bar", "discharge_pressure": "bar", "flow": "m3/h",
             "panel_temperature": "degC", "p1_output_hz": "Hz"}  # fmt: skip
    readings = {name: Reading.ok(name, 2.9, unit) for name, unit in units.items()}
    readings["panel_temperature"] = Reading.bad("panel_temperature", "degC", BadReason.WIRE_BREAK)
    readings["flow"] = readings["flow"].hold(Reading.bad("flow", "m3/h", BadReason.TIMEOUT))
    core.pump_mode("P3", "off")
    return cfg, core, readings


def _row(readings: dict[str, Reading]) -> tuple[bytes, Any]:
    out = ControlOutputs(
        relays={"P1": True, "P2": False, "P3": False}, mode="auto", setpoint_bar=3.0,
        demand=1.25, state="auto", speeds={"P1": 0.8125},
        pump_states={"P1": "running", "P2": "locked out", "P3": "out of service"},
        lockouts={"P2": "motor protection tripped"},
    )  # fmt: skip
    pumps = {name: PumpInputs(feedback=None, fault=False) for name in ("P1", "P2", "P3")}
    body = make_sample(readings, out, pumps)
    schema = body["sch"]
    payload = dumpb({"seq": 123456, "boot": 3, "ts": 1_795_939_200_123, **body, "sch": schema.id})
    return payload, schema


def run(number: int) -> dict[str, Any]:
    cfg, core, readings = _station()
    payload, schema = _row(readings)

    def typed_row() -> dict[str, Value]:
        return sample_values(123456, telemetry_message(loads(payload)), schema)

    def long_row() -> dict[str, Value]:
        return long_form_values(123456, decode_sample(loads(payload), schema))

    # The same metrics, or the comparison would mean nothing.
    assert list(typed_row().items()) == list(long_row().items())

    def typed_status() -> dict[str, Value]:
        return status_values(station_status(core.status()), core.manual)

    def dict_status() -> dict[str, Value]:
        body: dict[str, Any] = to_json(station_status(core.status()))
        body["site"] = cfg.site.id
        return _dict_status_values(body, core.manual)

    assert typed_status() == dict_status()

    def local() -> LocalStatus:
        site = cfg.site
        return LocalStatus(
            **fields_of(station_status(core.status())),
            pressure_point=cfg.control.pressure_point,
            values={name: point_value(r) for name, r in readings.items()},
            site=SiteInfo(id=site.id, name=site.name, language=site.language),
            version="bench",
            loop=LoopView(
                ticks=1,
                overruns=0,
                missed=0,
                max_tick_ms=1.0,
                jitter_ms_p50=0.1,
                jitter_ms_p99=0.5,
                jitter_ms_max=0.9,
            ),
            acquisition={"buses": {"rtu0": {"polls": 100, "errors": 1}}},
            buffer={"backlog": 0},
            uplink={"connected": True},
            ready=True,
        )

    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        history = History(Path(tmp) / "history.sqlite3")
        history.open()
        server = HmiServer(
            HmiConfig(port=0, users_file=str(Path(tmp) / "users.json")),
            station=lambda: cfg,
            snapshot=local,
            manual=lambda: core.manual,
            commands=CommandProcessor(core),
            audit=AuditLog(Path(tmp) / "audit.jsonl"),
            history=history,
        )

        def frame() -> None:
            snap = server.snapshot(1)
            for lang in ("en", "id"):
                json.dumps(live_view(snap, lang), separators=(",", ":"))

        status = local()
        hmi_frame = best_us(frame, max(1, number // 20))
        dumped = best_us(lambda: to_json(status), max(1, number // 20))
        history.close()

    figures: dict[str, Any] = {
        "sparkplug_row_typed_us": best_us(typed_row, number),
        "sparkplug_row_long_form_us": best_us(long_row, number),
        "sparkplug_status_typed_us": best_us(typed_status, max(1, number // 10)),
        "sparkplug_status_dict_us": best_us(dict_status, max(1, number // 10)),
        "hmi_frame_us": hmi_frame,
        "hmi_local_status_to_json_us": dumped,
    }
    figures["sparkplug_row_typed_vs_long_form"] = round(
        figures["sparkplug_row_typed_us"] / figures["sparkplug_row_long_form_us"], 3
    )
    figures["sparkplug_status_typed_vs_dict"] = round(
        figures["sparkplug_status_typed_us"] / figures["sparkplug_status_dict_us"], 3
    )
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--number", type=int, default=20000)
    add_arguments(ap)
    args = ap.parse_args()
    figures = run(args.number)
    targets = [
        # Typed views cost no more than the dicts they replaced (within noise).
        Target("sparkplug_row_typed_vs_long_form", "<=", 1.1, "issue 15: no dearer per sample"),
        Target("sparkplug_status_typed_vs_dict", "<=", 1.1, "issue 15: no dearer per live row"),
    ]
    command = "python -m bench.views " + " ".join(sys.argv[1:])
    finish("views", figures, targets, args, command=command.strip())


if __name__ == "__main__":
    main()

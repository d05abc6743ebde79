"""NCMD: a host's writes to writable metrics, turned into the JSON commands the
``CommandProcessor`` validates (the same rules, the same log, the same counters).

Hostile input in, a result out, never an exception: a payload that is not a Sparkplug
payload, too large, with too many metrics, with a value of the wrong type or a NaN is
rejected with a reason the host sees in ``Node Control/Command Result``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from controller.telemetry.commands import (
    MAX_PAYLOAD_BYTES,
    CommandProcessor,
    Invalid,
    loads_bounded,
)
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from controller.telemetry.sparkplug.metrics import (
    ACKNOWLEDGE,
    MANUAL_SUFFIX,
    MODE,
    PRESSURE_MANAGEMENT,
    PUMP_MODE_SUFFIX,
    REBIRTH,
    SETPOINT,
    Catalogue,
    Value,
)

#: An NCMD is a few metrics; a pressure-management write is the largest (a JSON text).
MAX_NCMD_BYTES = 4 * MAX_PAYLOAD_BYTES
MAX_NCMD_METRICS = 32
_U64 = (1 << 64) - 1


@dataclass
class Outcome:
    """What one NCMD led to: results for the host, and whether to rebirth."""

    results: list[dict[str, Any]]
    rebirth: bool = False


def _value(m: pb.Payload.Metric) -> Value | bytes:
    if m.is_null:
        return None
    kind = m.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("float_value", "double_value", "boolean_value", "string_value"):
        value: Value = getattr(m, kind)
        return value
    if kind in ("int_value", "long_value"):
        raw = int(getattr(m, kind))
        bits = 32 if kind == "int_value" else 64
        signed = m.datatype in (pb.Int8, pb.Int16, pb.Int32, pb.Int64)
        if signed and raw >= 1 << (bits - 1):
            raw -= 1 << bits
        return raw
    return b""  # bytes, dataset, template, extension: nothing writable takes them


class NcmdHandler:
    """Applies NCMD payloads through ``commands``; rebirth is the node's own business."""

    def __init__(
        self,
        catalogue: Catalogue,
        commands: CommandProcessor | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalogue = catalogue
        self.commands = commands
        self.clock = clock
        self._ids = itertools.count(1)
        self.session = 0

    def handle(self, raw: bytes, *, topic: str) -> Outcome:
        """Decode and apply one NCMD payload. Never raises (except on cancellation)."""
        if len(raw) > MAX_NCMD_BYTES:
            return self._refused(topic, None, f"NCMD of {len(raw)} bytes refused; at most "
                                 f"{MAX_NCMD_BYTES} are accepted")  # fmt: skip
        try:
            payload = pb.Payload.FromString(raw)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            return self._refused(topic, None, f"NCMD is not a Sparkplug B payload ({exc})")
        if len(payload.metrics) > MAX_NCMD_METRICS:
            return self._refused(topic, None, f"NCMD with {len(payload.metrics)} metrics "
                                 f"refused; at most {MAX_NCMD_METRICS}")  # fmt: skip
        ts_s = payload.timestamp / 1000.0 if payload.HasField("timestamp") else self.clock()
        outcome = Outcome(results=[])
        for m in payload.metrics:
            self._one(m, ts_s, topic, outcome)
        return outcome

    def _one(self, m: pb.Payload.Metric, ts_s: float, topic: str, outcome: Outcome) -> None:
        d = self.catalogue.by_name.get(m.name) if m.name else self.catalogue.by_alias.get(m.alias)
        name = d.name if d is not None else (m.name or f"alias {m.alias}")[:128]
        if d is None or not d.writable:
            writable = ", ".join(x.name for x in self.catalogue.defs if x.writable)
            outcome.results += self._refused(
                topic, name, f"metric {name!r} is not writable; writable: {writable}"
            ).results
            return
        value = _value(m)
        if d.name == REBIRTH:
            if value is True:
                outcome.rebirth = True
            else:
                outcome.results += self._refused(topic, name, "Rebirth takes Boolean true").results
            return
        if isinstance(value, bytes):
            outcome.results += self._refused(
                topic, name, f"metric {name!r} takes a {_type_name(d.datatype)} value"
            ).results
            return
        outcome.results.append(self._apply(name, value, ts_s, topic))

    def _apply(self, name: str, value: Value, ts_s: float, topic: str) -> dict[str, Any]:
        try:
            command, data = _command(name, value)
        except Invalid as exc:
            return self._refused(topic, name, str(exc)).results[0]
        if self.commands is None:
            return {"metric": name, "ok": False, "error": "commands are disabled on this station"}
        data = {"id": f"ncmd-{self.session}-{next(self._ids)}", "ts": ts_s, **data}
        # allow_nan: a NaN the host wrote becomes the NaN token the processor refuses by name.
        raw = json.dumps(data, allow_nan=True).encode()
        reply = self.commands.handle(command, raw, topic=f"{topic} {name}")
        result = {"metric": name, "ok": bool(reply.get("ok")), "error": reply.get("error")}
        if "acknowledged" in reply:
            result["acknowledged"] = reply["acknowledged"]
        return result

    def _refused(self, topic: str, name: str | None, reason: str) -> Outcome:
        if self.commands is not None:
            reply = self.commands.refuse("sparkplug", b"{}", reason, topic=topic)
            reason = str(reply["error"])
        return Outcome(results=[{"metric": name, "ok": False, "error": reason}])


def _command(name: str, value: Value) -> tuple[str, dict[str, Any]]:
    """The JSON command (name, fields) a write to ``name`` means."""
    if name == SETPOINT:
        return "setpoint", {"value": value}
    if name == MODE:
        return "mode", {"mode": value}
    if name == ACKNOWLEDGE:
        if value in (None, "", True):
            return "ack", {}
        return "ack", {"alarm": value}
    if name == PRESSURE_MANAGEMENT:
        if value in (None, "", "null"):
            return "pressure_management", {"pressure_management": None}
        if not isinstance(value, str):
            raise Invalid("Control/Pressure Management takes a JSON object as String, or ''")
        return "pressure_management", {"pressure_management": loads_bounded(value)}
    if name.startswith("Pumps/") and name.endswith(MANUAL_SUFFIX):
        pump = name[len("Pumps/") : -len(MANUAL_SUFFIX)]
        return "pump", {"pump": pump, "on": value}
    if name.startswith("Pumps/") and name.endswith(PUMP_MODE_SUFFIX):
        pump = name[len("Pumps/") : -len(PUMP_MODE_SUFFIX)]
        return "pump_mode", {"pump": pump, "mode": value}
    raise Invalid(f"metric {name!r} is not writable")


def _type_name(datatype: int) -> str:
    return str(pb.DataType.Name(datatype)) if datatype in pb.DataType.values() else "known"

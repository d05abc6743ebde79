"""JSON as SCADA reads it: always valid, never a NaN or Infinity token.

Python's ``json`` writes ``NaN`` and ``Infinity`` for non-finite floats by default,
which is not JSON: a strict parser on the SCADA side rejects the whole message. Every
payload that leaves the station (telemetry, status, alarms, command replies, the status
socket) is encoded here. A non-finite float becomes ``null``; a value that carries a
quality is already bad with a reason by then (``Reading.ok`` refuses non-finite values),
so ``null`` is only the last guard, never the way a bad value is reported.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from controller.state.dump import to_json
from controller.state.models import SchemaMessage, SchemaPoint


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (containers copied)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


#: ``json.dumps`` with options builds an encoder per call; these are built once (an
#: encoder keeps no state between calls, so one serves every thread).
_TEXT = json.JSONEncoder(allow_nan=False, default=str)
_COMPACT = json.JSONEncoder(allow_nan=False, default=str, separators=(",", ":"))


def dumps(obj: Any) -> str:
    """Strict JSON text of ``obj``: non-finite floats as null, unknown objects as text."""
    try:
        return _TEXT.encode(obj)
    except ValueError:  # a NaN or infinity somewhere: the rare path pays for the copy
        return _TEXT.encode(finite(obj))


def dumpb(obj: Any) -> bytes:
    """``dumps`` without spaces, as bytes: what is stored and published, byte for byte."""
    try:
        text = _COMPACT.encode(obj)
    except ValueError:
        text = _COMPACT.encode(finite(obj))
    return text.encode()


def loads(payload: bytes | str) -> dict[str, Any]:
    """A stored or published message back as a dict (samples and alarm events alike)."""
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError(f"not a telemetry message: {type(obj).__name__}")
    return obj


# -- telemetry format 2 ---------------------------------------------------------------------
#
# A sample names nothing it can refer to: point names, units and pump names are sent once,
# in a retained schema message (``<base>/schema/<id>``); each sample carries the schema's
# ``id`` and its values as an array in the schema's order. docs/mqtt.md is the contract.

TELEMETRY_VERSION = 2

#: Pump flag bits in a format-2 sample (``pmp`` array), as docs/mqtt.md lists them.
PUMP_ON = 1  # relay commanded on
PUMP_FEEDBACK = 2  # run feedback contact closed
PUMP_NO_FEEDBACK = 4  # no feedback contact wired (feedback unknown)
PUMP_FAULT = 8  # motor protection input tripped
PUMP_EXERCISING = 16
PUMP_LOCKED_OUT = 32
PUMP_OUT_OF_SERVICE = 64  # switched Off (pump_mode off)


@dataclass(frozen=True)
class TelemetrySchema:
    """Point names and units, and pump names, in the order a format-2 sample lists them."""

    points: tuple[tuple[str, str], ...]
    pumps: tuple[str, ...]

    @cached_property
    def id(self) -> str:
        """A short content hash: the same station file gives the same id after a restart."""
        return hashlib.sha256(dumpb(self.as_dict(with_id=False))).hexdigest()[:6]

    def message(self) -> SchemaMessage:
        """The retained ``schema/<id>`` message that describes this schema."""
        return SchemaMessage(
            id=self.id,
            points=[SchemaPoint(name=n, unit=u) for n, u in self.points],
            pumps=list(self.pumps),
        )

    def as_dict(self, *, with_id: bool = True) -> dict[str, Any]:
        """The schema message as a dict; without ``id``, what the id is a hash of."""
        if with_id:
            body: dict[str, Any] = to_json(self.message())
            return body
        return {
            "v": TELEMETRY_VERSION,
            "points": [{"name": n, "unit": u} for n, u in self.points],
            "pumps": list(self.pumps),
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> TelemetrySchema:
        """The schema a ``schema`` message (or the buffer's copy of one) describes."""
        points = tuple((str(p["name"]), str(p["unit"])) for p in body["points"])
        return cls(points=points, pumps=tuple(str(p) for p in body["pumps"]))


def pump_state(flags: int) -> str:
    """The pump state a flag word encodes (``locked out``, ``out of service``,
    ``exercising``, ``running``, ``ready``)."""
    if flags & PUMP_LOCKED_OUT:
        return "locked out"
    if flags & PUMP_OUT_OF_SERVICE:
        return "out of service"
    if flags & PUMP_EXERCISING:
        return "exercising"
    return "running" if flags & PUMP_ON else "ready"


def decode_sample(payload: bytes | str | dict[str, Any], schema: TelemetrySchema) -> dict[str, Any]:
    """A format-2 sample expanded to the long form (format 1's names and nesting):
    ``values.<point> = {v, unit, q[, reason, detail]}``, ``pumps.<name> = {on, feedback,
    fault, state[, lockout, speed_pct]}``, plus seq, boot, ts, mode, state, setpoint_bar,
    demand. For consumers that want names, e.g. another uplink reading the buffer."""
    msg = payload if isinstance(payload, dict) else loads(payload)
    if msg.get("v") != TELEMETRY_VERSION or msg.get("sch") != schema.id:
        raise ValueError(f"sample is not format 2 of schema {schema.id}: v={msg.get('v')!r} "
                         f"sch={msg.get('sch')!r}")  # fmt: skip
    out: dict[str, Any] = {k: msg[k] for k in ("seq", "boot", "ts") if k in msg}
    if msg.get("ts_unsynced"):
        out["ts_unsynced"] = True
    out.update(mode=msg["m"], state=msg["st"], setpoint_bar=msg["sp"], demand=msg["dem"])
    bad: dict[str, list[str]] = msg.get("bad", {})
    held: dict[str, list[str]] = msg.get("held", {})
    values: dict[str, Any] = {}
    for (name, unit), v in zip(schema.points, msg["val"], strict=True):
        if name in bad:
            reason = bad[name]
            values[name] = {"v": None, "unit": unit, "q": "bad", "reason": reason[0]}
            if len(reason) > 1 and reason[1]:
                values[name]["detail"] = reason[1]
        else:
            values[name] = {"v": v, "unit": unit, "q": "good"}
            if name in held:
                why = held[name]
                values[name].update(held=True, reason=why[0])
                if len(why) > 1 and why[1]:
                    values[name]["detail"] = why[1]
    out["values"] = values
    pumps: dict[str, Any] = {}
    speeds: list[float | None] = msg.get("spd", [None] * len(schema.pumps))
    lockouts: dict[str, str] = msg.get("lock", {})
    for name, flags, speed in zip(schema.pumps, msg["pmp"], speeds, strict=True):
        row: dict[str, Any] = {
            "on": bool(flags & PUMP_ON),
            "feedback": None if flags & PUMP_NO_FEEDBACK else bool(flags & PUMP_FEEDBACK),
            "fault": bool(flags & PUMP_FAULT),
            "state": pump_state(flags),
        }
        if name in lockouts:
            row["lockout"] = lockouts[name]
        if speed is not None:
            row["speed_pct"] = speed
        pumps[name] = row
    out["pumps"] = pumps
    return out

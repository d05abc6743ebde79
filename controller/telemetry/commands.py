"""SCADA commands: validated, deduplicated by id, never able to defeat a protection.

A command is a JSON object on ``<prefix>/<site>/cmd/<name>``::

    {"id": "c-123", "ts": "2026-11-24T08:00:00Z", "value": 3.2}        setpoint
    {"id": "c-124", "ts": 1795939200, "mode": "manual"}                 mode
    {"id": "c-125", "ts": "...", "pump": "P2", "on": true}              pump
    {"id": "c-126", "ts": "...", "alarm": "high_pressure"}              ack (alarm optional)
    {"id": "c-127", "ts": "...", "pressure_management": {...} | null}   pressure_management

The reply on ``.../cmd/<name>/result`` is ``{"id", "ok", "error"}``. A repeated id is
answered with the stored reply and not executed again; a command older than
``max_age_s`` (or from too far in the future) is rejected; so is anything malformed.
The target (the control core) applies the checks that depend on the station: a
setpoint outside the allowed range (as the current station file sets it), a pump
command outside manual mode. Protections are applied after commands on
every tick, so no command can switch one off.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from controller.errors import BoosterError

COMMANDS = ("setpoint", "mode", "pump", "ack", "pressure_management")
MAX_PAYLOAD_BYTES = 4096
FUTURE_SKEW_S = 60.0
REMEMBERED_IDS = 1000


class CommandTarget(Protocol):
    """What commands act on (the control core); a rejection raises a BoosterError."""

    def set_setpoint(self, bar: float) -> None: ...

    def set_mode(self, mode: str) -> None: ...

    def pump(self, name: str, on: bool) -> None: ...

    def ack(self, alarm_id: str | None = None) -> list[str]: ...

    def set_pressure_management(self, data: Mapping[str, Any] | None) -> None: ...


class Invalid(Exception):
    """The command is malformed; the message is the reply's error."""


def _number(payload: dict[str, Any], key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"'{key}' must be a number")
    if not math.isfinite(value):
        raise Invalid(f"'{key}' must be finite")
    return float(value)


def _text(payload: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 128:
        raise Invalid(f"'{key}' must be a non-empty string")
    return value


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise Invalid("'ts' must be ISO 8601 or Unix seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise Invalid("'ts' must be finite")
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("'ts' is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise Invalid("'ts' needs a time zone (e.g. a trailing Z)")
        return parsed.timestamp()
    raise Invalid("'ts' is required (ISO 8601 with zone, or Unix seconds)")


class CommandProcessor:
    """``handle(name, payload) -> reply``; synchronous, so it is testable without a broker."""

    def __init__(
        self,
        target: CommandTarget,
        *,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.max_age_s = max_age_s
        self.clock = clock
        self._replies: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.executed = 0
        self.rejected = 0

    def handle(self, name: str, payload: bytes) -> dict[str, Any]:
        """Validate and execute one command; returns the reply ``{id, ok, error, ...}``."""
        try:
            data = self._parse(payload)
        except Invalid as exc:
            self.rejected += 1
            return {"id": None, "ok": False, "error": str(exc)}
        cid = data["id"]
        if cid in self._replies:
            self._replies.move_to_end(cid)
            return dict(self._replies[cid], repeated=True)
        reply = self._execute(name, cid, data)
        self._replies[cid] = reply
        while len(self._replies) > REMEMBERED_IDS:
            self._replies.popitem(last=False)
        return reply

    def _parse(self, payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Invalid(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise Invalid("payload is not JSON") from None
        if not isinstance(data, dict):
            raise Invalid("payload must be a JSON object")
        _text(data, "id")
        return data

    def _execute(self, name: str, cid: str, data: dict[str, Any]) -> dict[str, Any]:
        try:
            if name not in COMMANDS:
                raise Invalid(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
            ts = _timestamp(data.get("ts"))
            age = self.clock() - ts
            if age > self.max_age_s:
                raise Invalid(f"command is stale ({age:.0f} s old, limit {self.max_age_s:g} s)")
            if age < -FUTURE_SKEW_S:
                raise Invalid(f"command is from the future ({-age:.0f} s ahead)")
            result: dict[str, Any] = {}
            if name == "setpoint":
                # The range check is the target's: it follows the station file on reload.
                self.target.set_setpoint(_number(data, "value"))
            elif name == "mode":
                mode = _text(data, "mode")
                assert mode is not None
                self.target.set_mode(mode)
            elif name == "pump":
                pump = _text(data, "pump")
                on = data.get("on")
                if not isinstance(on, bool):
                    raise Invalid("'on' must be true or false")
                assert pump is not None
                self.target.pump(pump, on)
            elif name == "ack":
                alarm = _text(data, "alarm", required=False)
                result["acknowledged"] = self.target.ack(alarm)
            else:
                if "pressure_management" not in data:
                    raise Invalid(
                        "'pressure_management' is required: an object, or null for the "
                        "fixed setpoint"
                    )
                pm = data["pressure_management"]
                if pm is not None and not isinstance(pm, dict):
                    raise Invalid("'pressure_management' must be an object or null")
                self.target.set_pressure_management(pm)
        except (Invalid, BoosterError) as exc:
            self.rejected += 1
            return {"id": cid, "ok": False, "error": str(exc)}
        self.executed += 1
        return {"id": cid, "ok": True, "error": None, **result}

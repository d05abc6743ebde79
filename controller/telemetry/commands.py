"""SCADA commands: validated, deduplicated by (command, id), never able to defeat a protection.

A command is a JSON object on ``<prefix>/<site>/cmd/<name>``::

    {"id": "c-123", "ts": "2026-11-24T08:00:00Z", "value": 3.2}        setpoint
    {"id": "c-124", "ts": 1795939200, "mode": "manual"}                 mode
    {"id": "c-125", "ts": "...", "pump": "P2", "on": true}              pump
    {"id": "c-128", "ts": "...", "pump": "P2", "mode": "off"}           pump_mode
    {"id": "c-126", "ts": "...", "alarm": "high_pressure"}              ack (alarm optional)
    {"id": "c-127", "ts": "...", "pressure_management": {...} | null}   pressure_management

The reply on ``.../cmd/<name>/result`` is ``{"id", "ok", "error"}`` (a ``CommandReply``,
controller/state/models.py). A command carried
out is remembered by (name, id): sent again, it is answered with the stored reply and
not executed twice. A rejection is not remembered, so it never shadows a later valid
command with the same id. A command older than ``max_age_s`` (or from too far in the
future) is rejected; so is anything malformed, and the payload is bounded (size,
nesting depth, length of a number) before it is parsed. The values are validated here,
against the station file in force (``CommandTarget.control``, which follows a reload): a
setpoint must be finite and inside the allowed range, a mode one of ``MODES`` (a pump's
mode one of ``PUMP_MODES``), a pressure
management table valid like the station file's; the target (the control core) receives
validated values and refuses only what depends on its own state (a pump command outside
manual mode or for a locked-out or switched-Off pump, an ack of an alarm that is not
active). SCADA, the
Sparkplug NCMD and the web HMI all come through ``CommandProcessor``, so they share these
checks. Protections are applied after commands on every tick, so no command can switch
one off.

Nothing a message holds can make ``handle`` raise: an unexpected failure is logged with
its traceback and answered ``ok: false``, so the SCADA link never dies from a payload.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from controller.config.schema import ControlConfig, PressureManagementConfig
from controller.control.commands import MODES, PUMP_MODES, CommandRejected
from controller.errors import BoosterError
from controller.logs import get_logger
from controller.state.dump import to_json
from controller.state.models import CommandReply
from controller.telemetry.clock import PLAUSIBLE_EPOCH

log = get_logger(__name__)

COMMANDS = ("setpoint", "mode", "pump", "pump_mode", "ack", "pressure_management")
MAX_PAYLOAD_BYTES = 4096
#: The deepest command is pressure_management.schedule[i].days[j]: 5 levels.
MAX_DEPTH = 16
#: A double needs at most 24 characters ("-2.2250738585072014e-308"); a Unix time in ms 13.
#: Longer literals are refused before conversion: a 310-digit integer overflows float().
MAX_NUMBER_CHARS = 32
MAX_ERROR_CHARS = 500  # a reply's error stays readable whatever the payload echoed into it
FUTURE_SKEW_S = 60.0
#: The longest text field (an id, a pump's name, a mode) a command may carry.
MAX_TEXT_CHARS = 128
REMEMBERED_COMMANDS = 1000


class CommandTarget(Protocol):
    """What commands act on (the control core), with validated values; a rejection that
    depends on the target's state raises a BoosterError."""

    @property
    def control(self) -> ControlConfig:
        """The control section in force: what setpoints and tables are checked against."""
        ...

    def set_setpoint(self, bar: float) -> None: ...

    def set_mode(self, mode: str) -> None: ...

    def pump(self, name: str, on: bool) -> None: ...

    def pump_mode(self, name: str, mode: str) -> None: ...

    def ack(self, alarm_id: str | None = None) -> list[str]: ...

    def set_pressure_management(self, pm: PressureManagementConfig | None) -> None: ...


# -- command values, checked against the station file in force ------------------------------


def valid_setpoint(bar: object, control: ControlConfig) -> float:
    """``bar`` as a base setpoint: a finite number inside the configured range."""
    if not isinstance(bar, (int, float)) or isinstance(bar, bool) or not math.isfinite(bar):
        raise CommandRejected("setpoint must be a finite number of bar")
    if not control.setpoint_min_bar <= bar <= control.setpoint_max_bar:
        raise CommandRejected(
            f"setpoint {bar} bar is outside the allowed "
            f"{control.setpoint_min_bar}-{control.setpoint_max_bar} bar"
        )
    return float(bar)


def _one_of(value: object, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise CommandRejected(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def valid_mode(mode: object) -> str:
    """``mode`` if it is one of ``MODES``."""
    return _one_of(mode, MODES, "mode")


def valid_pump_mode(mode: object) -> str:
    """``mode`` if it is one of ``PUMP_MODES``."""
    return _one_of(mode, PUMP_MODES, "pump mode")


def valid_pressure_management(
    data: Mapping[str, Any] | None, control: ControlConfig
) -> PressureManagementConfig | None:
    """SCADA's schedule / flow compensation, validated like the station file (with its own
    pydantic models); None stays None (back to the fixed setpoint)."""
    if data is None:
        return None
    try:
        pm = PressureManagementConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "pressure_management"
        raise CommandRejected(f"{where}: {first['msg']}") from None
    for entry in pm.schedule:
        if not control.setpoint_min_bar <= entry.setpoint_bar <= control.setpoint_max_bar:
            raise CommandRejected(
                f"schedule setpoint {entry.setpoint_bar} bar at {entry.at} is outside "
                f"the allowed {control.setpoint_min_bar}-{control.setpoint_max_bar} bar"
            )
    if pm.flow_compensation is not None and control.flow_point is None:
        raise CommandRejected("flow compensation needs a flow point in the station file")
    return pm


#: Called after every handled or refused command: (name, payload, reply, topic).
AuditHook = Callable[[str, bytes, dict[str, Any], str | None], None]


class Invalid(Exception):
    """The command is malformed; the message is the reply's error."""


# -- bounded JSON ---------------------------------------------------------------------------


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting in JSON text, brackets inside strings not counted.

    A linear scan, so a payload can be refused for its depth before ``json.loads``
    recurses into it (about 1000 levels exhaust Python's stack: RecursionError).
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _int_literal(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise Invalid(f"a number has {len(text)} digits; at most {MAX_NUMBER_CHARS} are accepted")
    return int(text)


def _float_literal(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise Invalid(
            f"a number is {len(text)} characters long; at most {MAX_NUMBER_CHARS} are accepted"
        )
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"the number {text} is out of range: numbers must be finite")
    return value


def _constant(name: str) -> Any:
    raise Invalid(f"{name} is not JSON: numbers must be finite")


def loads_bounded(raw: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for hostile input: UTF-8 only, depth and number length bounded,
    no NaN/Infinity; every refusal is ``Invalid`` with a reason for the sender."""
    if not isinstance(raw, str):
        try:
            # Decoded here, not by json: it would guess UTF-16/32 from NUL bytes.
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("payload is not JSON (not UTF-8 text)") from None
    else:
        text = raw
    depth = nesting_depth(text)
    if depth > max_depth:
        raise Invalid(f"payload nests {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(
            text,
            parse_int=_int_literal,
            parse_float=_float_literal,
            parse_constant=_constant,
        )
    except ValueError:
        raise Invalid("payload is not JSON") from None


# -- fields -----------------------------------------------------------------------------------


def _number(payload: dict[str, Any], key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"'{key}' must be a number")
    number = float(value)  # bounded literals: never an OverflowError
    if not math.isfinite(number):
        raise Invalid(f"'{key}' must be finite")
    return number


def _text(payload: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Invalid(f"'{key}' must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise Invalid(f"'{key}' is {len(value)} characters long; at most {MAX_TEXT_CHARS}")
    return value


def _command_id(payload: dict[str, Any]) -> str:
    cid = _text(payload, "id")
    assert cid is not None
    # Echoed in the reply and the log: control characters and lone surrogates (from
    # \ud800 escapes) would forge log lines or make the reply unreadable to strict parsers.
    if not cid.isprintable():
        raise Invalid("'id' must be printable text")
    return cid


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise Invalid("'ts' must be ISO 8601 or Unix seconds")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts):
            raise Invalid("'ts' must be finite")
        return ts
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("'ts' is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise Invalid("'ts' needs a time zone (e.g. a trailing Z)")
        try:
            return parsed.timestamp()
        except (ValueError, OverflowError):  # e.g. year 1 shifted by the zone
            raise Invalid("'ts' is out of range") from None
    raise Invalid("'ts' is required (ISO 8601 with zone, or Unix seconds)")


def _seconds(value: float) -> str:
    return f"{value:.0f}" if abs(value) < 1e12 else f"{value:.3g}"


def _clean_error(text: str) -> str:
    """The reply's error as plain UTF-8 of bounded length (it may echo what was sent)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text


def _short(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."


# -- the processor ------------------------------------------------------------------------


class CommandProcessor:
    """``handle(name, payload) -> reply``; synchronous, so it is testable without a broker."""

    def __init__(
        self,
        target: CommandTarget,
        *,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        audit: AuditHook | None = None,
    ) -> None:
        self.target = target
        self.audit = audit
        self.max_age_s = max_age_s
        self.clock = clock
        # Only commands carried out: a rejection stored here would shadow the later,
        # valid command that reuses its id (a stale retry, a typo'd topic).
        self._done: OrderedDict[tuple[str, str], CommandReply] = OrderedDict()
        self.executed = 0
        self.rejected = 0
        self.failed = 0

    def handle(self, name: str, payload: bytes, *, topic: str | None = None) -> dict[str, Any]:
        """Validate and execute one command; returns the reply ``{id, ok, error, ...}``.

        Never raises (except on cancellation): one log line per command, with ``topic``.
        """
        where = topic if topic is not None else f"cmd/{_short(name)}"
        cid: str | None = None
        try:
            data = self._parse(payload)
            cid = _command_id(data)
            reply = self._carry_out(name, cid, data)
        except Invalid as exc:
            reply = self._rejection(cid, str(exc))
        except Exception as exc:
            # A bug, not the sender's fault: say so, keep the link, keep the traceback.
            self.failed += 1
            log.error("command failed", topic=where, id=cid, error=repr(exc), exc_info=exc)
            failed: dict[str, Any] = to_json(
                CommandReply(
                    id=cid,
                    ok=False,
                    error=_clean_error(
                        f"the station failed to handle this command ({type(exc).__name__}); "
                        "it may not have been carried out: check the status, see the station log"
                    ),
                )
            )
            self._audit(name, payload, failed, topic)
            return failed
        log.info("command", topic=where, name=_short(name), id=reply.id, ok=reply.ok,
                 error=reply.error, repeated=bool(reply.repeated))  # fmt: skip
        body: dict[str, Any] = to_json(reply)
        self._audit(name, payload, body, topic)
        return body

    def _audit(self, name: str, payload: bytes, reply: dict[str, Any], topic: str | None) -> None:
        """Tell the audit log; its failure is logged, never the command's."""
        if self.audit is None:
            return
        try:
            self.audit(name, bytes(payload), reply, topic)
        except Exception as exc:
            log.error("command not audited", topic=topic, error=repr(exc), exc_info=exc)

    def refuse(
        self, name: str, payload: bytes, reason: str, *, topic: str | None = None
    ) -> dict[str, Any]:
        """Answer a message that must not be executed (e.g. a retained one) without
        running it; its id is echoed when it can be read."""
        cid: str | None = None
        try:
            cid = _command_id(self._parse(payload))
        except Invalid:
            pass
        except Exception as exc:  # the id is a courtesy: never let it cost the reply
            log.error("command id unreadable", topic=topic, error=repr(exc), exc_info=exc)
        reply = self._rejection(cid, reason)
        log.info("command refused", topic=topic or f"cmd/{_short(name)}", id=cid,
                 error=reply.error)  # fmt: skip
        body: dict[str, Any] = to_json(reply)
        self._audit(name, payload, body, topic)
        return body

    def _rejection(self, cid: str | None, error: str) -> CommandReply:
        self.rejected += 1
        return CommandReply(id=cid, ok=False, error=_clean_error(error))

    def _parse(self, payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Invalid(f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
        data = loads_bounded(payload)
        if not isinstance(data, dict):
            raise Invalid("payload must be a JSON object")
        return data

    def _carry_out(self, name: str, cid: str, data: dict[str, Any]) -> CommandReply:
        key = (name, cid)
        done = self._done.get(key)
        if done is not None:
            self._done.move_to_end(key)
            return replace(done, repeated=True)
        acknowledged = self._execute(name, data)
        self.executed += 1
        reply = CommandReply(id=cid, ok=True, error=None, acknowledged=acknowledged)
        self._done[key] = reply
        while len(self._done) > REMEMBERED_COMMANDS:
            self._done.popitem(last=False)
        return reply

    def _check_age(self, data: dict[str, Any]) -> None:
        ts = _timestamp(data.get("ts"))
        now = self.clock()
        if now < PLAUSIBLE_EPOCH:
            # Our clock is not set (a Pi without RTC booted at 1970 and has no network
            # time yet): an age measured against it means nothing, and refusing every
            # command as "from the future" would lock SCADA out. The (command, id) cache
            # still refuses a replay of anything carried out.
            return
        age = now - ts
        if age > self.max_age_s:
            raise Invalid(f"command is stale ({_seconds(age)} s old, limit {self.max_age_s:g} s)")
        if age < -FUTURE_SKEW_S:
            raise Invalid(f"command is from the future ({_seconds(-age)} s ahead)")

    def _execute(self, name: str, data: dict[str, Any]) -> list[str] | None:
        """Run one valid-looking command; ``Invalid`` (or a BoosterError, turned into
        ``Invalid``) when it is refused. Returns what an ack acknowledged (None for the
        other commands)."""
        if name not in COMMANDS:
            raise Invalid(f"unknown command {_short(name)!r}; commands: {', '.join(COMMANDS)}")
        self._check_age(data)
        try:
            return self._dispatch(name, data)
        except BoosterError as exc:
            raise Invalid(str(exc)) from exc

    def _dispatch(self, name: str, data: dict[str, Any]) -> list[str] | None:
        if name == "setpoint":
            # Checked against the station file in force: it follows a reload.
            self.target.set_setpoint(valid_setpoint(_number(data, "value"), self.target.control))
        elif name == "mode":
            self.target.set_mode(valid_mode(_text(data, "mode")))
        elif name == "pump":
            pump = _text(data, "pump")
            on = data.get("on")
            if not isinstance(on, bool):
                raise Invalid("'on' must be true or false")
            assert pump is not None
            self.target.pump(pump, on)
        elif name == "pump_mode":
            pump = _text(data, "pump")
            assert pump is not None
            self.target.pump_mode(pump, valid_pump_mode(_text(data, "mode")))
        elif name == "ack":
            return self.target.ack(_text(data, "alarm", required=False))
        else:
            if "pressure_management" not in data:
                raise Invalid(
                    "'pressure_management' is required: an object, or null for the fixed setpoint"
                )
            pm = data["pressure_management"]
            if pm is not None and not isinstance(pm, dict):
                raise Invalid("'pressure_management' must be an object or null")
            self.target.set_pressure_management(valid_pressure_management(pm, self.target.control))
        return None

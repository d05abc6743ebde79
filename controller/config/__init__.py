"""Load and validate a station file; every error is located and reported at once.

Reading is bounded (``Limits``: size, nesting, aliases, values, number length, time),
so a hostile or mistaken file is refused with a located message instead of hanging or
crashing whatever reads it: ``boosterd check``, ``run``, a SIGHUP reload, ``outputs-off``.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from pathlib import Path as FsPath
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from controller.config.checks import cross_check
from controller.config.loader import (
    DEFAULT_LIMITS,
    Budget,
    LimitExceeded,
    Limits,
    Path,
    Positions,
    format_path,
    load_yaml,
    read_station_text,
)
from controller.config.schema import StationConfig
from controller.errors import ConfigError, ConfigIssue

__all__ = [
    "DEFAULT_LIMITS",
    "ConfigError",
    "Limits",
    "StationConfig",
    "load_config",
    "parse_config",
    "read_config_text",
]

#: More errors than this are summed up in one line: a file of ten thousand unknown keys
#: needs fixing as a whole, not ten thousand lines of report.
MAX_REPORTED_ISSUES = 100
#: A message quoting a value the technician wrote is cut to this length.
MAX_MESSAGE_CHARS = 400


def load_config(path: str | FsPath, *, limits: Limits = DEFAULT_LIMITS) -> StationConfig:
    """Read and validate a station file within ``limits``; raise ConfigError listing
    every problem (never another exception for anything the file holds)."""
    name = str(path)
    budget = Budget(limits, name)
    return _parse(read_config_text(name, limits), name, budget)


def read_config_text(name: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The station file's text, read within ``limits``; ConfigError saying why it cannot be."""
    try:
        return read_station_text(name, limits)
    except FileNotFoundError as exc:
        raise ConfigError(name, [ConfigIssue(name, None, None, "", "file not found")]) from exc
    except LimitExceeded as exc:
        raise ConfigError(name, [exc.issue]) from exc
    except UnicodeDecodeError as exc:
        issue = ConfigIssue(name, *_line_col_of_byte(exc), "",
                            f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} "
                            f"at offset {exc.start}); is this the station file?")  # fmt: skip
        raise ConfigError(name, [issue]) from exc
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(name, [ConfigIssue(name, None, None, "", f"cannot read: {why}")]) from exc


def parse_config(
    text: str, file: str = "<string>", *, limits: Limits = DEFAULT_LIMITS
) -> StationConfig:
    """Validate station YAML given as text, within ``limits``."""
    # Characters first: a cheap bound before encoding a text that may be huge.
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "replace")) > limits.max_bytes:
        message = f"the file is larger than {limits.max_bytes} bytes (the size limit)"
        raise ConfigError(file, [ConfigIssue(file, None, None, "", message)])
    return _parse(text, file, Budget(limits, file))


def _parse(text: str, file: str, budget: Budget) -> StationConfig:
    data, positions, issues = load_yaml(text, file, budget)
    if data is None:
        raise ConfigError(file, issues)
    if not isinstance(data, dict):
        issues.append(ConfigIssue(file, 1, 1, "", "the top level must be a mapping of sections"))
        raise ConfigError(file, issues)
    try:
        budget.check_time(None)
        try:
            cfg = StationConfig.model_validate(data)
        except ValidationError as exc:
            # A value the loader already refused (too long, not finite) is reported once.
            known = {i.path for i in issues}
            issues.extend(
                issue
                for err in exc.errors()
                if (issue := _issue_from_pydantic(err, file, positions)).path not in known
            )
            issues.extend(_cross_check_despite(data, exc, file, positions))
            raise ConfigError(file, _report(issues)) from None
        except Exception as exc:
            # A validator that let something other than ValueError escape (ZoneInfo
            # raises IsADirectoryError for timezone: Asia): still a refusal, never a
            # crash of check, run or outputs-off.
            issue = ConfigIssue(file, 1, 1, "", f"the file could not be checked "
                                f"({type(exc).__name__}: {exc}); please report this")  # fmt: skip
            raise ConfigError(file, [*issues, issue]) from exc
        budget.check_time(None)
        for path, message in cross_check(cfg):
            issues.append(_located(file, positions, path, message))
        budget.check_time(None)
    except LimitExceeded as exc:
        raise ConfigError(file, [exc.issue]) from None
    if issues:
        raise ConfigError(file, _report(issues))
    return cfg


def _line_col_of_byte(exc: UnicodeDecodeError) -> tuple[int, int]:
    head = exc.object[: exc.start]
    return head.count(b"\n") + 1, exc.start - (head.rfind(b"\n") + 1) + 1


#: Sections no cross-check of another section looks into: with a schema error in one of
#: them, the rest of the station can still be cross-checked with it left out.
_INDEPENDENT_SECTIONS = frozenset({"uplink", "buffer", "logging", "status", "simulation"})


def _cross_check_despite(
    data: dict[str, Any], exc: ValidationError, file: str, positions: Positions
) -> list[ConfigIssue]:
    """Cross-check errors too, in the same report, when the schema errors all lie in
    independent sections (a typo in the uplink and a duplicate relay line are found
    in one run). Elsewhere a value that was not understood would make the cross-checks
    report its consequences as errors of their own, so they wait for a clean schema."""
    bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    if not bad or not bad <= _INDEPENDENT_SECTIONS:
        return []
    try:
        cfg = StationConfig.model_validate({k: v for k, v in data.items() if k not in bad})
    except ValidationError:
        return []
    return [
        _located(file, positions, path, message)
        for path, message in cross_check(cfg)
        if not path or str(path[0]) not in bad
    ]


def _report(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Every issue in file order, at most MAX_REPORTED_ISSUES of them."""
    ordered = sorted(issues, key=lambda i: (i.line or 0, i.column or 0, i.path))
    if len(ordered) <= MAX_REPORTED_ISSUES:
        return ordered
    rest = len(ordered) - MAX_REPORTED_ISSUES
    last = ordered[MAX_REPORTED_ISSUES - 1]
    more = ConfigIssue(last.file, None, None, "", f"... and {rest} more errors not shown")
    return [*ordered[:MAX_REPORTED_ISSUES], more]


def _located(file: str, positions: Positions, path: Path, message: str) -> ConfigIssue:
    probe = path
    while probe and probe not in positions:
        probe = probe[:-1]
    line, col = positions.get(probe, (None, None))
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return ConfigIssue(file, line, col, format_path(path), message)


def _found(value: Any) -> str:
    """The value as the technician wrote it, short enough for one line of report."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        if value.bit_length() < 14_000:  # str() refuses more than 4300 digits
            return f"an integer of {len(str(abs(value)))} digits"
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57]) + f"... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _issue_from_pydantic(err: Any, file: str, positions: Positions) -> ConfigIssue:
    loc: Path = tuple(err["loc"])
    kind: str = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(StationConfig, loc[:-1])
        msg = f"unknown key {key!r}"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            msg += f"; did you mean {close[0]!r}?"
        elif allowed:
            msg += f" (allowed here: {', '.join(allowed)})"
        return _located(file, positions, loc, msg)
    if kind == "missing":
        return _located(file, positions, loc, "required field is missing")
    if kind == "finite_number":
        found = _found(err.get("input"))
        return _located(file, positions, loc, f"must be a finite number; found {found}")
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        return _located(file, positions, loc, msg)
    msg = msg[0].lower() + msg[1:]
    return _located(file, positions, loc, f"expected: {msg}; found {_found(err.get('input'))}")


def _allowed_keys(model: type[BaseModel], loc: Path) -> list[str]:
    """The field names of the model that stands at ``loc`` in the schema."""
    current: Any = model
    for seg in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(seg))
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] and Annotated[...] to reach the model or container."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp

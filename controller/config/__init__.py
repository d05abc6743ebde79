"""Load and validate a station file; every error is located and reported at once."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path as FsPath
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from controller.config.checks import cross_check
from controller.config.loader import Path, Positions, format_path, load_yaml
from controller.config.schema import StationConfig
from controller.errors import ConfigError, ConfigIssue

__all__ = ["ConfigError", "StationConfig", "load_config", "parse_config"]


def load_config(path: str | FsPath) -> StationConfig:
    """Read and validate a station file; raise ConfigError listing every problem."""
    name = str(path)
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(name, [ConfigIssue(name, None, None, "", "file not found")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, [ConfigIssue(name, None, None, "", f"cannot read: {exc}")]) from exc
    return parse_config(text, name)


def parse_config(text: str, file: str = "<string>") -> StationConfig:
    """Validate station YAML given as text."""
    data, positions, issues = load_yaml(text, file)
    if data is None:
        raise ConfigError(file, issues)
    if not isinstance(data, dict):
        issues.append(ConfigIssue(file, 1, 1, "", "the top level must be a mapping of sections"))
        raise ConfigError(file, issues)
    try:
        cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        issues.extend(_issue_from_pydantic(err, file, positions) for err in exc.errors())
        issues.extend(_cross_check_despite(data, exc, file, positions))
        raise ConfigError(file, _sorted(issues)) from None
    for path, message in cross_check(cfg):
        issues.append(_located(file, positions, path, message))
    if issues:
        raise ConfigError(file, _sorted(issues))
    return cfg


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


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda i: (i.line or 0, i.column or 0, i.path))


def _located(file: str, positions: Positions, path: Path, message: str) -> ConfigIssue:
    probe = path
    while probe and probe not in positions:
        probe = probe[:-1]
    line, col = positions.get(probe, (None, None))
    return ConfigIssue(file, line, col, format_path(path), message)


def _found(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
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

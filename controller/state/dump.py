"""A model as the JSON-ready dict it stands for, and back (leniently, for display).

``to_json`` is the one rendering of every model: fields in declared order, a field typed
``... | Absent`` left out while None, enums as their text, pydantic models (the station
file's pressure management) as their ``model_dump``. ``validate`` is strict (pydantic,
for tests and the schema). ``read`` builds a model from a dict that may be partial or
from another release (``boosterd status`` against a daemon not yet restarted after an
upgrade): missing fields become None, unknown words stay text; for display only.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

T = TypeVar("T")


def to_json(obj: Any) -> Any:
    """``obj`` (a model, or containers of them) as plain dicts, lists and scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for name, omit in _fields(type(obj)):
            value = getattr(obj, name)
            if value is None and omit:
                continue
            out[name] = to_json(value)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    return obj


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """Each field's name, and whether it is left out while None (typed ``| Absent``)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((f.name, _absent(hints[f.name])) for f in dataclasses.fields(cls))


def _absent(hint: Any) -> bool:
    return any(
        typing.get_origin(arg) is typing.Annotated
        and any(type(m) is SkipJsonSchema for m in typing.get_args(arg)[1:])
        for arg in typing.get_args(hint)
    )


@functools.cache
def adapter(kind: Hashable) -> TypeAdapter[Any]:
    """pydantic's view of a model (or a union of them), built once."""
    return TypeAdapter(kind)  # type: ignore[arg-type]  # a model class or a union of them


def validate(kind: type[T], data: Any) -> T:
    """``data`` (a dict, or JSON text) as a ``kind``, strictly: pydantic's
    ValidationError says what does not match the contract."""
    checker = adapter(kind)  # type: ignore[arg-type]  # a class is hashable
    if isinstance(data, str | bytes):
        return checker.validate_json(data)  # type: ignore[no-any-return]
    return checker.validate_python(data)  # type: ignore[no-any-return]


def read(kind: type[T], data: Mapping[str, Any]) -> T:
    """A ``kind`` built from ``data`` without validation: what is missing is None, what
    is unknown is dropped, nested models are read the same way. For display only."""
    kwargs: dict[str, Any] = {}
    for name, hint, default in _read_plan(typing.cast(type, kind)):
        value = data.get(name)
        if value is None and default is not dataclasses.MISSING:
            value = default
        kwargs[name] = _read_value(hint, value)
    return kind(**kwargs)


@functools.cache
def _read_plan(kind: type) -> tuple[tuple[str, Any, Any], ...]:
    """Each field's name, resolved type hint and default: resolving the hints of a model
    costs ~0.1 ms, and a model's fields never change."""
    hints = typing.get_type_hints(kind, include_extras=True)
    return tuple((f.name, hints[f.name], f.default) for f in dataclasses.fields(kind))


def _read_value(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if value is None:
        # A list or a mapping the model always has reads as empty when missing.
        return {} if origin is dict else [] if origin is list else None
    if origin is typing.Annotated:
        return _read_value(typing.get_args(hint)[0], value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) or typing.get_origin(arg) in (dict, list):
                return _read_value(arg, value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return read(hint, value) if isinstance(value, Mapping) else None
    if origin is dict and isinstance(value, Mapping):
        inner = typing.get_args(hint)[1]
        return {k: _read_value(inner, v) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        inner = typing.get_args(hint)[0]
        return [_read_value(inner, v) for v in value]
    return value


def omitted_fields(cls: type) -> frozenset[str]:
    """The fields of a model left out of its JSON while None (typed ``| Absent``)."""
    return frozenset(name for name, absent in _fields(cls) if absent)


def fields_of(model: Any) -> dict[str, Any]:
    """A model's fields by name, to build a larger model from a smaller one
    (``OnlineStatus`` from a ``StationStatus``): shallow, unlike ``to_json``."""
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}

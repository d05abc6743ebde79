"""Registers to engineering values and back, in every data type and byte/word order.

Byte order names follow the usual vendor convention for a 32-bit value whose bytes,
most significant first, are A B C D:

* ``ABCD`` big-endian words, high word first (the Modbus specification's order);
* ``CDAB`` high and low word swapped ("word swap", common on flow meters);
* ``BADC`` bytes swapped inside each word, high word first;
* ``DCBA`` fully little-endian.

For 16-bit types only the byte swap matters: ``ABCD``/``CDAB`` read a register as is,
``BADC``/``DCBA`` swap its two bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from controller.config.datatypes import DATA_TYPES, REGISTER_COUNT
from controller.config.schema import ByteOrder, PointConfig
from controller.values import BadReason, Reading

#: Loop current below this is an open loop (a cut cable or a dead transmitter).
WIRE_BREAK_MA = 3.8
#: Loop current above this is a transmitter fault or a short, not a reading.
OVER_RANGE_MA = 20.5

_FORMAT = {n: t.struct_format for n, t in DATA_TYPES.items() if t.struct_format is not None}
BYTE_ORDERS: tuple[str, ...] = get_args(ByteOrder)


def register_count(dtype: str) -> int:
    return REGISTER_COUNT[dtype]


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one (data type, byte order) sits in registers, as two precompiled structs:
    ``words`` turns the registers (in ``reversed`` order when the words are swapped)
    into the value's big-endian bytes and back; ``value`` is the type's own format.
    Equal to joining the words big-endian and permuting the bytes by the order's name
    (tests/test_codec.py checks every type and order against that reference), without
    a bytes object per word."""

    count: int
    words: struct.Struct
    reversed: bool
    value: struct.Struct
    #: the integer type's range (None for float32): encode rounds and clamps into it
    limits: tuple[int, int] | None


def _layout(dtype: str, byte_order: str) -> _Layout:
    n = REGISTER_COUNT[dtype]
    byte_swap = byte_order in ("BADC", "DCBA")
    words = struct.Struct(("<" if byte_swap else ">") + "H" * n)
    limits = None
    if dtype != "float32":
        bits = 16 * n
        signed = dtype[0] == "i"
        limits = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    # A 16-bit value has no word order: CDAB reads as ABCD, DCBA as BADC.
    word_swap = n > 1 and byte_order in ("CDAB", "DCBA")
    return _Layout(n, words, word_swap, struct.Struct(_FORMAT[dtype]), limits)


_LAYOUTS = {(dtype, order): _layout(dtype, order) for dtype in _FORMAT for order in BYTE_ORDERS}


def _layout_of(dtype: str, byte_order: str) -> _Layout:
    layout = _LAYOUTS.get((dtype, byte_order))
    if layout is None:
        if byte_order not in BYTE_ORDERS:
            raise ValueError(f"unknown byte order {byte_order!r}")
        raise ValueError(f"unknown data type {dtype!r}")
    return layout


def decode_registers(regs: Sequence[int], *, dtype: str, byte_order: str = "ABCD") -> float:
    """The number held in ``regs`` (as many registers as ``dtype`` needs)."""
    layout = _layout_of(dtype, byte_order)
    if len(regs) != layout.count:
        raise ValueError(f"{dtype} needs {layout.count} registers, got {len(regs)}")
    words = [r & 0xFFFF for r in regs]
    if layout.reversed:
        words.reverse()
    value: float = layout.value.unpack(layout.words.pack(*words))[0]
    return value


def encode_value(value: float, *, dtype: str, byte_order: str = "ABCD") -> list[int]:
    """Registers holding ``value`` (rounded and clamped to the integer type's range)."""
    layout = _layout_of(dtype, byte_order)
    limits = layout.limits
    if limits is None:
        data = layout.value.pack(value)
    else:
        data = layout.value.pack(min(max(round(value), limits[0]), limits[1]))
    words = list(layout.words.unpack(data))
    if layout.reversed:
        words.reverse()
    return words


#: Significant digits kept for a value read from an integer register: more than any 32-bit
#: count has, fewer than float64 arithmetic noise (3 * 0.1 = 0.30000000000000004).
INTEGER_DIGITS = 15


def float32_digits(value: float) -> int:
    """Fewest significant digits that give back the same float32: what the source carries."""
    try:
        target = struct.pack(">f", value)
        for digits in range(6, 9):
            if struct.pack(">f", float(f"{value:.{digits}g}")) == target:
                return digits
    except OverflowError:
        pass  # scaled beyond float32's range: the scaling carries the precision
    return 9


def source_digits(point: PointConfig, value: float) -> int | None:
    """Significant digits of ``value`` as ``point``'s registers carry it (None: all)."""
    if point.type == "float32":
        return float32_digits(value)
    if point.type == "bool":
        return None
    return INTEGER_DIGITS


def raw_to_current_ma(point: PointConfig, raw: float) -> float:
    span = point.span_4_20ma
    assert span is not None
    return 4.0 + 16.0 * (raw - span.raw_at_4ma) / (span.raw_at_20ma - span.raw_at_4ma)


def current_to_raw(point: PointConfig, ma: float) -> list[int]:
    """Registers an analog input module reports for a loop current of ``ma``."""
    span = point.span_4_20ma
    if span is None:
        raise ValueError("not a 4-20 mA point")
    raw = span.raw_at_4ma + (ma - 4.0) / 16.0 * (span.raw_at_20ma - span.raw_at_4ma)
    return encode_value(raw, dtype=point.type, byte_order=point.byte_order)


def from_engineering(point: PointConfig, value: float) -> list[int]:
    """Registers (or one bit for coils/discrete inputs) that read back as ``value``."""
    if point.type == "bool":
        return [1 if value else 0]
    span = point.span_4_20ma
    if span is not None:
        ma = 4.0 + 16.0 * (value - span.eng_at_4ma) / (span.eng_at_20ma - span.eng_at_4ma)
        return current_to_raw(point, ma)
    raw = (value - point.offset) / point.scale if point.scale else 0.0
    return encode_value(raw, dtype=point.type, byte_order=point.byte_order)


def to_engineering(
    name: str, point: PointConfig, words: Sequence[int], *, t_mono: float = 0.0
) -> Reading:
    """Decode, scale and range-check one point; never raises for bad data."""
    raw = tuple(map(int, words))
    unit = point.unit
    if point.type == "bool":
        if len(raw) != 1:
            return Reading.bad(name, unit, BadReason.DECODE, "no bit", raw=raw, t_mono=t_mono)
        return Reading.ok(name, 1.0 if raw[0] else 0.0, unit, raw=raw, t_mono=t_mono)
    try:
        number = decode_registers(raw, dtype=point.type, byte_order=point.byte_order)
    except (ValueError, struct.error) as exc:
        return Reading.bad(name, unit, BadReason.DECODE, str(exc), raw=raw, t_mono=t_mono)
    if not math.isfinite(number):
        return Reading.bad(
            name, unit, BadReason.DECODE, f"not a number: {number}", raw=raw, t_mono=t_mono
        )
    span = point.span_4_20ma
    if span is not None:
        ma = raw_to_current_ma(point, number)
        if ma < WIRE_BREAK_MA:
            return Reading.bad(
                name, unit, BadReason.WIRE_BREAK, f"{ma:.2f} mA", raw=raw, t_mono=t_mono
            )
        if ma > OVER_RANGE_MA:
            return Reading.bad(
                name, unit, BadReason.OUT_OF_RANGE, f"{ma:.2f} mA", raw=raw, t_mono=t_mono
            )
        value = span.eng_at_4ma + (ma - 4.0) / 16.0 * (span.eng_at_20ma - span.eng_at_4ma)
    else:
        value = number * point.scale + point.offset
    if point.valid_min is not None and value < point.valid_min:
        return Reading.bad(
            name,
            unit,
            BadReason.OUT_OF_RANGE,
            f"{value:g} below {point.valid_min:g}",
            raw=raw,
            t_mono=t_mono,
        )
    if point.valid_max is not None and value > point.valid_max:
        return Reading.bad(
            name,
            unit,
            BadReason.OUT_OF_RANGE,
            f"{value:g} above {point.valid_max:g}",
            raw=raw,
            t_mono=t_mono,
        )
    return Reading.ok(name, value, unit, raw=raw, t_mono=t_mono, digits=source_digits(point, value))

"""Registers to engineering values: every type and word order, scaling, 4-20 mA limits."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config.schema import PointConfig, Span4To20mA
from controller.values import BadReason
from drivers.modbus.codec import (
    current_to_raw,
    decode_registers,
    encode_value,
    from_engineering,
    to_engineering,
)

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


@pytest.mark.parametrize(
    ("order", "regs"),
    [("ABCD", [0x42F6, 0xE979]), ("CDAB", [0xE979, 0x42F6]),
     ("BADC", [0xF642, 0x79E9]), ("DCBA", [0x79E9, 0xF642])],
)  # fmt: skip
def test_float32_known_vectors(order: str, regs: list[int]) -> None:
    # 123.456 is 0x42F6E979 as IEEE 754 single precision.
    assert decode_registers(regs, dtype="float32", byte_order=order) == pytest.approx(
        123.456, abs=1e-4
    )
    assert encode_value(123.456, dtype="float32", byte_order=order) == regs


def test_sixteen_bit_byte_swap() -> None:
    assert decode_registers([0x1234], dtype="uint16", byte_order="ABCD") == 0x1234
    assert decode_registers([0x1234], dtype="uint16", byte_order="BADC") == 0x3412
    assert decode_registers([0xFFFE], dtype="int16", byte_order="CDAB") == -2


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", sorted(RANGES))
@given(data=st.data())
def test_integers_round_trip(dtype: str, order: str, data: st.DataObject) -> None:
    lo, hi = RANGES[dtype]
    value = data.draw(st.integers(lo, hi))
    regs = encode_value(value, dtype=dtype, byte_order=order)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_registers(regs, dtype=dtype, byte_order=order) == value


@pytest.mark.parametrize("order", ORDERS)
@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip(order: str, value: float) -> None:
    regs = encode_value(value, dtype="float32", byte_order=order)
    assert decode_registers(regs, dtype="float32", byte_order=order) == value


def test_scale_and_offset() -> None:
    point = PointConfig(kind="input", address=3, type="int16", scale=0.1, offset=-5, unit="degC")
    r = to_engineering("t", point, [0xFF38])  # -200 raw
    assert r.good
    assert r.value == pytest.approx(-25.0)
    assert from_engineering(point, -25.0) == [0xFF38]


SPAN = Span4To20mA(raw_at_4ma=4000, raw_at_20ma=20000, eng_at_4ma=0.0, eng_at_20ma=10.0)
MA_POINT = PointConfig(kind="input", address=0, type="uint16", span_4_20ma=SPAN, unit="bar")


def test_four_to_twenty_ma_span() -> None:
    assert to_engineering("p", MA_POINT, [12000]).value == pytest.approx(5.0)
    assert to_engineering("p", MA_POINT, current_to_raw(MA_POINT, 20.0)).value == pytest.approx(10)


def test_wire_break_below_3_8_ma_and_over_range_above_20_5_ma() -> None:
    broken = to_engineering("p", MA_POINT, current_to_raw(MA_POINT, 3.5))
    assert broken.reason is BadReason.WIRE_BREAK
    assert "3.50 mA" in broken.detail
    assert to_engineering("p", MA_POINT, current_to_raw(MA_POINT, 3.9)).good
    over = to_engineering("p", MA_POINT, current_to_raw(MA_POINT, 20.8))
    assert over.reason is BadReason.OUT_OF_RANGE


def test_valid_range_and_nan_are_bad_not_exceptions() -> None:
    point = PointConfig(address=0, type="float32", valid_min=-1, valid_max=500, unit="m3/h")
    assert (
        to_engineering("f", point, encode_value(600, dtype="float32")).reason
        is BadReason.OUT_OF_RANGE
    )
    nan_regs = [int.from_bytes(struct.pack(">f", math.nan)[i : i + 2], "big") for i in (0, 2)]
    assert to_engineering("f", point, nan_regs).reason is BadReason.DECODE
    assert to_engineering("f", point, [1]).reason is BadReason.DECODE  # one register short


# -- the precompiled layouts against the definition ------------------------------------


def _reference_order(data: bytes, byte_order: str) -> bytes:
    """The byte orders by their definition: A B C D most significant first."""
    if len(data) == 2:
        return data[::-1] if byte_order in ("BADC", "DCBA") else data
    a, b, c, d = data
    return {
        "ABCD": data,
        "CDAB": bytes((c, d, a, b)),
        "BADC": bytes((b, a, d, c)),
        "DCBA": bytes((d, c, b, a)),
    }[byte_order]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [*sorted(RANGES), "float32"])
@given(data=st.data())
def test_layouts_equal_the_definition(dtype: str, order: str, data: st.DataObject) -> None:
    """Any registers decode, and any value encodes, as joining the words big-endian and
    permuting the bytes by the order's name does (the codec precompiles that per type
    and order)."""
    fmt = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}[dtype]
    n = struct.calcsize(fmt) // 2
    regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    wire = b"".join(r.to_bytes(2, "big") for r in regs)
    expected = struct.unpack(fmt, _reference_order(wire, order))[0]
    got = decode_registers(regs, dtype=dtype, byte_order=order)
    assert got == expected or (math.isnan(got) and math.isnan(expected))
    if dtype == "float32":
        value = data.draw(st.floats(width=32))
        packed = struct.pack(fmt, value)
    else:
        lo, hi = RANGES[dtype]
        value = data.draw(st.floats(lo - 1e6, hi + 1e6) | st.integers(lo, hi))
        packed = struct.pack(fmt, min(max(round(value), lo), hi))
    wire = _reference_order(packed, order)
    words = [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]
    assert encode_value(value, dtype=dtype, byte_order=order) == words


def test_unknown_type_or_order_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="byte order"):
        decode_registers([1, 2], dtype="float32", byte_order="XYZW")
    with pytest.raises(ValueError, match="data type"):
        encode_value(1.0, dtype="float64")

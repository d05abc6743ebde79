"""The one data-type table: what the schema accepts, counts and the codec packs agree."""

from __future__ import annotations

import struct
from typing import get_args

import pytest

from controller.config.datatypes import DATA_TYPES, REGISTER_COUNT
from controller.config.schema import DataType, PointConfig
from drivers.modbus.codec import decode_registers, encode_value, register_count


def test_the_schema_accepts_exactly_the_types_in_the_table() -> None:
    assert set(get_args(DataType)) == set(DATA_TYPES)


@pytest.mark.parametrize("dtype", sorted(n for n, t in DATA_TYPES.items() if t.struct_format))
def test_each_format_fills_exactly_its_registers(dtype: str) -> None:
    spec = DATA_TYPES[dtype]
    assert spec.struct_format is not None
    assert struct.calcsize(spec.struct_format) == 2 * spec.register_count
    words = encode_value(7.0, dtype=dtype)
    assert len(words) == register_count(dtype) == REGISTER_COUNT[dtype]
    assert decode_registers(words, dtype=dtype) == 7.0


@pytest.mark.parametrize("dtype", sorted(DATA_TYPES))
def test_a_point_spans_the_table_s_register_count(dtype: str) -> None:
    kind = "coil" if dtype == "bool" else "holding"
    point = PointConfig(kind=kind, address=10, type=dtype)
    assert point.register_count == DATA_TYPES[dtype].register_count

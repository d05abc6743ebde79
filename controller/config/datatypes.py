"""The Modbus data types a point can declare: register count and wire format, one table.

The station file's schema checks a point's registers fit the address space with
``register_count``; the codec packs and unpacks words with ``struct_format``. A type
added here is known to both at once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATA_TYPES", "REGISTER_COUNT", "DataTypeSpec"]


@dataclass(frozen=True, slots=True)
class DataTypeSpec:
    """How one data type sits in registers."""

    #: registers it occupies (a coil or discrete input is one bit: counted as one)
    register_count: int
    #: ``struct`` format of its big-endian (ABCD) bytes; None for a bit
    struct_format: str | None


DATA_TYPES: dict[str, DataTypeSpec] = {
    "int16": DataTypeSpec(1, ">h"),
    "uint16": DataTypeSpec(1, ">H"),
    "int32": DataTypeSpec(2, ">i"),
    "uint32": DataTypeSpec(2, ">I"),
    "float32": DataTypeSpec(2, ">f"),
    "bool": DataTypeSpec(1, None),
}

#: Registers a data type occupies, by name (the view the schema needs).
REGISTER_COUNT: dict[str, int] = {name: t.register_count for name, t in DATA_TYPES.items()}

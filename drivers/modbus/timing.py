"""Modbus RTU wire timing, from the Modbus over serial line specification.

A character is start + data + parity + stop bits; frames are separated by 3.5
character times of silence, fixed at 1.75 ms above 19200 baud.
"""

from __future__ import annotations

import math

#: What a slave takes to answer after the request's last byte (5-50 ms in the field).
DEFAULT_TURNAROUND_S = 0.010

READ_REQUEST_BYTES = 8  # slave, function, address(2), count(2), crc(2)
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


def char_time_s(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds one character occupies on the wire."""
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return bits / baudrate


def frame_gap_s(baudrate: int, char_s: float) -> float:
    """The silent interval that ends a frame (t3.5)."""
    return 0.00175 if baudrate > 19200 else 3.5 * char_s


def read_response_bytes(kind: str, count: int) -> int:
    """Bytes in the response to a read of ``count`` registers or bits."""
    if kind in ("coil", "discrete"):
        return 5 + math.ceil(count / 8)
    return 5 + 2 * count


def transaction_time_s(
    *,
    baudrate: int,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: int = 1,
    request_bytes: int = READ_REQUEST_BYTES,
    response_bytes: int,
    turnaround_s: float = DEFAULT_TURNAROUND_S,
) -> float:
    """Wire time of one request/response pair, both inter-frame gaps and the turnaround."""
    char_s = char_time_s(baudrate, bytesize, parity, stopbits)
    gap = frame_gap_s(baudrate, char_s)
    return (request_bytes + response_bytes) * char_s + 2 * gap + turnaround_s

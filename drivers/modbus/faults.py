"""How a poll can fail on the wire, and the quality each failure gives a point.

One table for the field and the simulator. On a real bus the frame checks in
``rtu.py``/``channels.py`` raise a ``TransactionError`` carrying the reason, and
acquisition stores it on every point of the block; the simulated source
(``simulator/source.py``), which skips the wire, looks the reason up here.
tests/test_fault_quality.py runs each kind through both (the real acquisition against
the real slave on a serial line, and the simulated source) and checks that they agree
with this table.
"""

from __future__ import annotations

from enum import StrEnum

from controller.values import BadReason
from drivers.modbus.rtu import EXCEPTION_NAMES

__all__ = ["FAULT_QUALITY", "UNEXPECTED_QUALITY", "WireFault", "fault_detail"]


class WireFault(StrEnum):
    """How a slave fails a request, as the master sees it."""

    #: no byte back before the timeout
    SILENT = "silent"
    #: an answer whose CRC does not match
    BAD_CRC = "bad_crc"
    #: bytes that are no answer to the request (wrong id, function or length)
    GARBAGE = "garbage"
    #: an exception response: the slave is alive and refuses
    EXCEPTION = "exception"


#: The quality a point gets when its poll fails this way.
FAULT_QUALITY: dict[WireFault, BadReason] = {
    WireFault.SILENT: BadReason.TIMEOUT,
    WireFault.BAD_CRC: BadReason.FRAMING,
    WireFault.GARBAGE: BadReason.FRAMING,
    WireFault.EXCEPTION: BadReason.EXCEPTION,
}

#: The quality of a poll that failed in a way nobody foresaw (a bug, not the line):
#: bad, and counted apart as ``internal`` in the slave's statistics.
UNEXPECTED_QUALITY = BadReason.FRAMING

_DETAIL = {
    WireFault.SILENT: "no answer",
    WireFault.BAD_CRC: "CRC error",
    WireFault.GARBAGE: "garbled frame",
}


def fault_detail(fault: WireFault, *, exception_code: int = 4) -> str:
    """A technician's words for the failure (the field's own text for an exception)."""
    if fault is WireFault.EXCEPTION:
        return f"code {exception_code} ({EXCEPTION_NAMES.get(exception_code, 'unknown')})"
    return _DETAIL[fault]

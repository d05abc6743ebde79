"""JSON as SCADA reads it: always valid, never a NaN or Infinity token.

Python's ``json`` writes ``NaN`` and ``Infinity`` for non-finite floats by default,
which is not JSON: a strict parser on the SCADA side rejects the whole message. Every
payload that leaves the station (telemetry, status, alarms, command replies, the status
socket) is encoded here. A non-finite float becomes ``null``; a value that carries a
quality is already bad with a reason by then (``Reading.ok`` refuses non-finite values),
so ``null`` is only the last guard, never the way a bad value is reported.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (containers copied)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON text of ``obj``: non-finite floats as null, unknown objects as text."""
    try:
        return json.dumps(obj, allow_nan=False, default=str)
    except ValueError:  # a NaN or infinity somewhere: the rare path pays for the copy
        return json.dumps(finite(obj), allow_nan=False, default=str)

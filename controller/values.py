"""Values with quality: what acquisition hands to control, buffer and uplink."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace


class Quality(enum.StrEnum):
    GOOD = "good"
    BAD = "bad"


class BadReason(enum.StrEnum):
    """Why a value is bad; the words SCADA and the technician see."""

    TIMEOUT = "timeout"  # the slave did not answer
    FRAMING = "framing"  # CRC error, short or garbled frame
    EXCEPTION = "exception"  # the slave answered with a Modbus exception (code in detail)
    OUT_OF_RANGE = "out_of_range"  # outside valid_min/valid_max, or 4-20 mA above 20.5 mA
    WIRE_BREAK = "wire_break"  # 4-20 mA loop below 3.8 mA
    STALE = "stale"  # no fresh value within the point's staleness limit
    BACKOFF = "backoff"  # slave is being left alone after failures
    NOT_POLLED = "not_polled"  # no read has been made yet
    DECODE = "decode"  # registers do not decode (e.g. float NaN/inf)
    IMPLAUSIBLE = "implausible"  # faster than max_rate_per_s, or a totaliser going backwards


@dataclass(frozen=True, slots=True)
class PumpInputs:
    """One pump's digital inputs as read from its GPIO lines (``drivers.gpio.factory.PumpIO``),
    as the control core receives them. The relay is an output: ``PumpIO.states()``."""

    feedback: bool | None  # None: no run-feedback input configured
    fault: bool  # motor protection tripped; False when the pump has no fault input


@dataclass(frozen=True, slots=True)
class Reading:
    """One point's latest value. ``value`` is None exactly when quality is bad.

    A *held* reading is good: the last good value, kept for a short while after a failed
    poll so that one corrupted frame never trips a protection; ``reason``/``detail`` then
    say why the fresh read failed and ``t_mono`` is when the held value was read.
    """

    name: str
    value: float | None
    unit: str
    quality: Quality
    reason: BadReason | None = None
    detail: str = ""
    raw: tuple[int, ...] = ()
    #: monotonic time the value was acquired (or the failure observed)
    t_mono: float = 0.0
    #: significant digits the source carries (None: all of a float64)
    digits: int | None = None
    held: bool = False

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD

    @classmethod
    def ok(
        cls,
        name: str,
        value: float,
        unit: str,
        *,
        raw: tuple[int, ...] = (),
        t_mono: float = 0.0,
        digits: int | None = None,
    ) -> Reading:
        if not math.isfinite(value):
            return cls.bad(
                name, unit, BadReason.DECODE, f"not finite: {value}", raw=raw, t_mono=t_mono
            )
        return cls(name, value, unit, Quality.GOOD, None, "", raw, t_mono, digits)

    def hold(self, failure: Reading) -> Reading:
        """This good reading standing in for ``failure`` (a failed read just after it)."""
        return replace(self, reason=failure.reason, detail=failure.detail, held=True)

    @classmethod
    def bad(
        cls,
        name: str,
        unit: str,
        reason: BadReason,
        detail: str = "",
        *,
        raw: tuple[int, ...] = (),
        t_mono: float = 0.0,
    ) -> Reading:
        return cls(name, None, unit, Quality.BAD, reason, detail, raw, t_mono)

    def wire_value(self) -> float | None:
        """The value as telemetry and the status carry it: as many digits as the source
        carries (a 32-bit totaliser stays exact, a float32 does not grow float64 noise
        digits: 123.456, not 123.45600128173828)."""
        v = self.value
        if v is not None and self.digits is not None:
            v = float(f"{v:.{self.digits}g}")
        return v

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form used in telemetry and status."""
        v = self.wire_value()
        out: dict[str, object] = {"v": v, "unit": self.unit, "q": self.quality.value}
        if self.held:
            out["held"] = True
        if self.reason is not None:
            out["reason"] = self.reason.value
            if self.detail:
                out["detail"] = self.detail
        return out

"""The one place the Sparkplug node touches the SQLite buffer (re-point it here if its API moves).

Rows come back oldest first as ``(seq, ts_ms, sample)``, the sample typed (a
``TelemetryMessage`` and the schema that names its values) or, for a row an older release
left, its long-form dict; a row is dropped from the buffer only once the broker is known
to have it (``confirm_upto``). Alarm events have their own numbered stream, durable like
samples: ``(seq, ts_ms, event JSON text)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.state.enums import ControlState, Mode, coerce
from controller.state.models import TelemetryMessage
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.encoding import TELEMETRY_VERSION, TelemetrySchema, dumps, loads
from controller.telemetry.sparkplug.metrics import iso_to_ms

#: A buffered sample: format 2 as its model with its schema, or a format-1 row's dict.
StoredSample = tuple[TelemetryMessage, TelemetrySchema] | dict[str, Any]
Row = tuple[int, int, StoredSample]
AlarmRow = tuple[int, int, str]


@dataclass
class Backlog:
    buffer: SampleBuffer

    async def rows_after(self, seq: int, limit: int, *, upto: int | None = None) -> list[Row]:
        """Up to ``limit`` rows with ``seq < row <= upto``, oldest first."""
        rows = await self.buffer.fetch(after_seq=seq, limit=limit)
        out = []
        for s, ts, payload in rows:
            sample = self._sample(payload)
            own = sample[0].ts if isinstance(sample, tuple) else sample.get("ts")
            out.append((s, _stamp_ms(own, ts), sample))
        return [r for r in out if upto is None or r[0] <= upto]

    def _sample(self, payload: bytes) -> StoredSample:
        """The stored bytes: telemetry format 2 as its model, with the schema the sample
        was taken with; format 1 (an older release's row) as its dict."""
        msg = loads(payload)
        if msg.get("v") == TELEMETRY_VERSION:
            return telemetry_message(msg), self.buffer.schemas[str(msg["sch"])]
        return msg

    async def confirm_upto(self, seq: int) -> None:
        """The broker has every row up to ``seq``: drop them."""
        await self.buffer.delete_upto(seq)

    async def newest(self) -> Row | None:
        """The newest row on disk, if any (for the values of a birth certificate)."""
        last = self.last_seq()
        rows = await self.rows_after(max(0, last - 64), 64)
        return rows[-1] if rows else None

    def last_seq(self) -> int:
        """The seq of the newest sample appended (committed or not)."""
        return int(self.buffer.stats()["last_seq"])

    def committed_upto(self) -> int:
        """The newest seq on disk: appended samples wait in memory until the next commit."""
        stats = self.buffer.stats()
        return int(stats["last_seq"]) - int(stats["pending"])

    def backlog(self) -> int:
        return int(self.buffer.stats()["backlog"])

    async def flush(self) -> None:
        """Commit what waits in memory now (or keep it there while the disk refuses)."""
        await self.buffer.flush_or_keep()

    # -- alarm events -------------------------------------------------------------------------

    def append_alarm(self, event: dict[str, Any]) -> int:
        return self.buffer.append_alarm(event)

    def last_alarm_seq(self) -> int:
        """The seq of the newest alarm event appended (committed or not)."""
        return int(self.buffer.stats()["last_alarm_seq"])

    async def alarms_after(self, seq: int, limit: int) -> list[AlarmRow]:
        """Up to ``limit`` alarm events after ``seq`` (and after those confirmed), oldest
        first; events still in memory are committed first, so none leaves undurable."""
        if self.buffer.alarms_waiting():
            await self.buffer.flush_or_keep()
        rows = await self.buffer.fetch_alarms(after_seq=seq, limit=limit)
        out = []
        for s, ts, data in rows:
            event = loads(data)
            out.append((s, _stamp_ms(event.get("ts"), ts), dumps(event)))
        return out

    async def confirm_alarms_upto(self, seq: int) -> None:
        await self.buffer.delete_alarms_upto(seq)


def telemetry_message(msg: dict[str, Any]) -> TelemetryMessage:
    """A stored format-2 sample as its model, unvalidated (the station wrote it; the
    state tests validate what it writes). A word an enum does not know stays text."""
    return TelemetryMessage(
        seq=msg["seq"],
        boot=msg["boot"],
        ts=msg["ts"],
        ts_unsynced=msg.get("ts_unsynced"),
        sch=msg["sch"],
        m=coerce(Mode, msg["m"]),
        st=coerce(ControlState, msg["st"]),
        sp=msg["sp"],
        dem=msg["dem"],
        val=msg["val"],
        pmp=msg["pmp"],
        bad=msg.get("bad"),
        held=msg.get("held"),
        lock=msg.get("lock"),
        spd=msg.get("spd"),
    )


def _stamp_ms(own: Any, row_ts: str) -> int:
    """The time a row was taken, in ms: its own stamp (format 2: ms; alarms and format 1:
    ISO with ms), else the row's, which the buffer keeps to the second only (two samples
    of one second would share a historical timestamp, and a historian keeps one)."""
    if isinstance(own, int) and not isinstance(own, bool):
        return own
    if isinstance(own, str):
        try:
            return iso_to_ms(own)
        except ValueError:
            pass
    return iso_to_ms(row_ts)

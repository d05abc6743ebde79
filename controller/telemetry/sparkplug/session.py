"""Sparkplug session numbers: bdSeq (per connect, persisted) and seq (per message)."""

from __future__ import annotations

import os
from pathlib import Path

from controller.logs import get_logger

log = get_logger(__name__)


class BdSeqStore:
    """The birth/death sequence number: +1 on every accepted MQTT CONNECT, 0-255, kept in
    a file so a restarted (or SIGKILLed) node never reuses the number of its last session."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: int | None = None

    def _last(self) -> int | None:
        try:
            value = int(self.path.read_text().strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("sparkplug bdSeq file unreadable; starting from 0", path=str(self.path),
                        error=str(exc))  # fmt: skip
            return None
        return value if 0 <= value <= 255 else None

    def peek(self) -> int:
        """The bdSeq for the next CONNECT: one above the last session's."""
        last = self.current if self.current is not None else self._last()
        return 0 if last is None else (last + 1) % 256

    def commit(self, value: int) -> None:
        """The CONNECT with ``value`` was accepted: it is this session's, written to disk
        before the birth that carries it. A refused or failed attempt commits nothing, so
        a host sees bdSeq rise by exactly one from session to session."""
        self.current = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(f"{value}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            # Not fatal: the host sees a bdSeq that may repeat after a restart, no worse.
            log.warning("sparkplug bdSeq not saved", path=str(self.path), error=str(exc))

    def next(self) -> int:
        """``peek`` and ``commit`` in one."""
        value = self.peek()
        self.commit(value)
        return value


class SeqCounter:
    """``seq`` of NBIRTH (0) and every NDATA after it (+1, 255 wraps to 0)."""

    def __init__(self) -> None:
        self.value = -1

    def birth(self) -> int:
        self.value = 0
        return 0

    def next(self) -> int:
        self.value = (self.value + 1) % 256
        return self.value

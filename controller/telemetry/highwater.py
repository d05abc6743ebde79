"""A small durable record beside the buffer: the boot counter and seq ceilings.

It lives outside the SQLite file on purpose: when the buffer file is damaged and moved
aside, this record still says which ``seq`` numbers may already have reached SCADA, so
the fresh buffer continues above them instead of renumbering.

* ``boot``: incremented and made durable at every start, before anything is published;
  every message carries it, so SCADA can tell a gap left by a restart (the boot changed)
  from a loss in transit (same boot).
* ``ceiling[stream]``: no seq above it has ever been handed out. Renewed in blocks ahead
  of use, so it costs one small write per block rather than one per sample.
* ``live[stream]``: no seq above it has been published straight from memory (while the
  disk refused to commit it). A restart continues above it even when the buffer file
  is intact, since those samples never reached the file.

The file holds two fixed-size slots, each with a generation and a CRC, and each write
overwrites the older slot in place followed by ``fdatasync``. A torn write damages at
most the slot being written, and an in-place overwrite needs no new disk block, so the
record can still be renewed on a partition that is full.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from controller.logs import get_logger

log = get_logger(__name__)

SLOT_BYTES = 512
MAGIC = "BSEQ1"


@dataclass
class HighWater:
    """The record's content; ``gen`` orders the two slots."""

    boot: int = 0
    ceiling: dict[str, int] = field(default_factory=dict)
    live: dict[str, int] = field(default_factory=dict)
    gen: int = 0

    def encode(self) -> bytes:
        body = json.dumps(
            {"gen": self.gen, "boot": self.boot, "ceiling": self.ceiling, "live": self.live},
            separators=(",", ":"),
            sort_keys=True,
        )
        line = f"{MAGIC} {zlib.crc32(body.encode()):08x} {body}\n".encode()
        if len(line) > SLOT_BYTES:
            raise ValueError(f"high-water record too long ({len(line)} bytes)")
        return line.ljust(SLOT_BYTES, b" ")

    @classmethod
    def decode(cls, raw: bytes) -> HighWater | None:
        """The slot's record, or None when it is empty, torn or damaged."""
        try:
            magic, crc, body = raw.decode().strip().split(" ", 2)
            if magic != MAGIC or int(crc, 16) != zlib.crc32(body.encode()):
                return None
            data = json.loads(body)
            return cls(
                boot=int(data["boot"]),
                ceiling={str(k): int(v) for k, v in data["ceiling"].items()},
                live={str(k): int(v) for k, v in data["live"].items()},
                gen=int(data["gen"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class HighWaterFile:
    """Reads and durably rewrites the record at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record = HighWater()
        #: False when the file existed but neither slot could be read.
        self.intact = True

    def load(self) -> HighWater:
        """Read the newest valid slot; a missing file is an empty record."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.record = HighWater()
            return self.record
        slots = [HighWater.decode(raw[i : i + SLOT_BYTES]) for i in (0, SLOT_BYTES)]
        valid = [s for s in slots if s is not None]
        if not valid:
            self.intact = False
            log.error("seq high-water record unreadable; relying on the buffer file",
                      path=str(self.path))  # fmt: skip
            self.record = HighWater()
        else:
            self.record = max(valid, key=lambda s: s.gen)
        return self.record

    def save(self) -> None:
        """Write the record durably into the older slot (raises OSError)."""
        self.record.gen += 1
        slot = self.record.gen % 2
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if created or os.fstat(fd).st_size < 2 * SLOT_BYTES:
                # Both slots allocated once, so later writes never need a new block.
                os.pwrite(fd, self.record.encode() * 2, 0)
                os.fsync(fd)
            else:
                os.pwrite(fd, self.record.encode(), slot * SLOT_BYTES)
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)


def fsync_dir(path: Path) -> None:
    """Make a file's creation or rename in ``path`` durable (its directory entry)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""SD-card write cost of the buffer's durability: bytes the block device receives per day.

    sudo .venv/bin/python -m bench.sd_writes [--seconds 60]

The buffer runs as in the station, in real time (the kernel's writeback works on real
time): one sample per tick of the example station (the bench.telemetry sample, 5 values
and 3 pumps) at 1 Hz and at 2 Hz (the example's ``tick_s: 0.5``), one commit per second,
and the link up, i.e. each committed batch read and deleted again as the uplink does
after its PUBACK. The buffer sits on a fresh ext4 image on a loop device, so the count
(``/sys/block/loopN/stat``, sectors written) includes everything the card would get:
SQLite's WAL and checkpoints, the high-water record, and ext4's journal. A ``sync`` at
the end adds whatever writeback still owed. Compared: ``full`` (this release: each
commit fsynced before the uplink can read it) and ``normal`` (the previous release:
``synchronous=NORMAL``, fsync only at checkpoints). Needs root (mount); prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.telemetry import SAMPLE
from controller.logs import configure_logging
from controller.telemetry.buffer import SampleBuffer


class NormalSyncBuffer(SampleBuffer):
    """The previous release's durability: commits reach the OS, not the card."""

    def _connect(self) -> Any:
        db = super()._connect()
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _quick(self, sql: str, *args: Any) -> int:
        db = self._conn()
        with db:
            return int(db.execute(sql, args).rowcount)


def _sectors_written(device: str) -> tuple[int, int]:
    fields = Path(f"/sys/block/{Path(device).name}/stat").read_text().split()
    return int(fields[4]), int(fields[6]) * 512  # write I/Os, bytes


async def _run(buffer: SampleBuffer, rate_hz: float, seconds: float) -> int:
    await buffer.open()
    acked = 0
    samples = 0
    started = time.monotonic()
    next_tick = started
    while time.monotonic() - started < seconds:
        buffer.append(SAMPLE)
        samples += 1
        if samples % max(1, round(rate_hz)) == 0:  # once a second, like buffer.run
            await buffer.flush()
            rows = await buffer.fetch(after_seq=acked, limit=100)
            if rows:
                acked = rows[-1][0]
                await buffer.delete_upto(acked)
        next_tick += 1.0 / rate_hz
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    await buffer.close()
    return samples


def measure(mode: str, rate_hz: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sd-") as tmp:
        image, mnt = Path(tmp, "sd.img"), Path(tmp, "mnt")
        mnt.mkdir()
        subprocess.run(["truncate", "-s", "256M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        try:
            device = subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], check=True,
                                    capture_output=True, text=True).stdout.strip()  # fmt: skip
            os.sync()
            ios0, bytes0 = _sectors_written(device)
            cls = SampleBuffer if mode == "full" else NormalSyncBuffer
            buf = cls(mnt / "buffer.sqlite3", site="bench")
            samples = asyncio.run(_run(buf, rate_hz, seconds))
            os.sync()
            ios1, bytes1 = _sectors_written(device)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    per_day = 86400.0 / seconds
    return {
        "mode": mode,
        "rate_hz": rate_hz,
        "seconds": seconds,
        "samples": samples,
        "mb_per_day": round((bytes1 - bytes0) * per_day / 1e6, 1),
        "write_ios_per_day": round((ios1 - ios0) * per_day),
        "kb_per_sample": round((bytes1 - bytes0) / samples / 1e3, 2),
    }


if __name__ == "__main__":
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    results = [measure(m, r, args.seconds) for m in ("full", "normal") for r in (1.0, 2.0)]
    print(json.dumps(results, indent=2))

"""SD-card write cost of the buffer's durability: bytes the block device receives per day.

    sudo .venv/bin/python -m bench.sd_writes [--seconds 60] [--check] [--save]

The buffer runs as in the station, in real time (the kernel's writeback works on real
time): one sample per tick of the example station (the bench.telemetry sample, 5 values
and 3 pumps) at 1 Hz and at 2 Hz (the example's ``tick_s: 0.5``), one commit per second,
and the link up, i.e. each committed batch read and deleted again as the uplink does
after its PUBACK. The buffer sits on a fresh ext4 image on a loop device, so the count
(``/sys/block/loopN/stat``, sectors written) includes everything the card would get:
SQLite's WAL and checkpoints, the high-water record, and ext4's journal. A ``sync`` at
the end adds whatever writeback still owed. Before the count starts, the cycle runs
flat out until SQLite's WAL has wrapped (the steady state of a station running for
more than a few minutes). Compared: ``full`` (this release: each
commit fsynced before the uplink can read it, the deletes of delivered rows folded into
the next commit) and ``normal`` (the same with ``synchronous=NORMAL``, the previous
release's setting: fsync only at checkpoints). Needs root (mount); prints JSON, with
the CPU time of each run (this process, the buffer's thread included) beside its wall.

Target: a 32 GB card rated for 3 000 write cycles lasts at least 10 years of this
release's (``full``) writes at the example's 2 Hz (CARD_GB, CARD_CYCLES): a station is
expected to run a decade on its card, and wear levelling spreads the writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Clock, Target, add_arguments, finish
from bench.telemetry import SAMPLE
from controller.logs import configure_logging
from controller.telemetry.buffer import SampleBuffer

#: The card the target is stated for: 32 GB, rated for 3 000 program/erase cycles.
CARD_GB = 32
CARD_CYCLES = 3000
WARM_UP_CYCLES = 1500  # > 1000 WAL frames: the WAL has wrapped after a checkpoint


class NormalSyncBuffer(SampleBuffer):
    """The same transactions with the previous release's durability: commits reach
    the OS, and the card only at checkpoints or when the kernel writes back."""

    def _commit(self, *args: Any) -> None:
        # Each commit: the evictions after it put FULL back (SampleBuffer._quick).
        self._conn().execute("PRAGMA synchronous=NORMAL")
        super()._commit(*args)


def _sectors_written(device: str) -> tuple[int, int]:
    fields = Path(f"/sys/block/{Path(device).name}/stat").read_text().split()
    return int(fields[4]), int(fields[6]) * 512  # write I/Os, bytes


async def _warm_up(buffer: SampleBuffer, cycles: int) -> int:
    """Run the commit/deliver cycle flat out until the WAL has wrapped at least once:
    from then on it overwrites its blocks in place, the station's steady state (a fresh
    WAL allocating blocks journals far more)."""
    acked = 0
    for _ in range(cycles):
        buffer.append(SAMPLE)
        await buffer.flush()
        rows = await buffer.fetch(after_seq=acked, limit=100)
        acked = rows[-1][0]
        await buffer.delete_upto(acked)
    return acked


async def _run(
    buffer: SampleBuffer, rate_hz: float, seconds: float, device: str
) -> tuple[int, int, int]:
    await buffer.open()
    acked = await _warm_up(buffer, WARM_UP_CYCLES)
    await asyncio.to_thread(os.sync)
    ios0, bytes0 = _sectors_written(device)
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
    await asyncio.to_thread(os.sync)  # what writeback still owes counts too
    ios1, bytes1 = _sectors_written(device)
    await buffer.close()
    return samples, ios1 - ios0, bytes1 - bytes0


def measure(mode: str, rate_hz: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sd-") as tmp:
        image, mnt = Path(tmp, "sd.img"), Path(tmp, "mnt")
        mnt.mkdir()
        subprocess.run(["truncate", "-s", "256M", str(image)], check=True)
        # No lazy initialisation: its background zeroing would count as our writes.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                        str(image)], check=True)  # fmt: skip
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        try:
            device = subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], check=True,
                                    capture_output=True, text=True).stdout.strip()  # fmt: skip
            cls = SampleBuffer if mode == "full" else NormalSyncBuffer
            buf = cls(mnt / "buffer.sqlite3", site="bench")
            clock = Clock()
            samples, ios, written = asyncio.run(_run(buf, rate_hz, seconds, device))
            wall_s, cpu_s = clock.wall_s(), clock.cpu_s()
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    per_day = 86400.0 / seconds
    return {
        "mode": mode,
        "rate_hz": rate_hz,
        "seconds": seconds,
        "samples": samples,
        "mb_per_day": round(written * per_day / 1e6, 1),
        "write_ios_per_day": round(ios * per_day),
        "kb_per_sample": round(written / samples / 1e3, 2),
        "card_years": round(CARD_GB * 1e9 * CARD_CYCLES / (written * per_day) / 365, 1),
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 2),
    }


if __name__ == "__main__":
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--modes", default="full,normal")
    add_arguments(ap)
    args = ap.parse_args()
    modes = args.modes.split(",")
    results = [measure(m, r, args.seconds) for m in modes for r in (1.0, 2.0)]
    figures: dict[str, Any] = {}
    for r in results:
        key = f"{r['mode']}_{r['rate_hz']:g}hz"
        figures[f"{key}_mb_per_day"] = r["mb_per_day"]
        figures[f"{key}_card_years"] = r["card_years"]
    figures["cpu_s"] = round(sum(r["cpu_s"] for r in results), 2)
    figures["wall_s"] = round(sum(r["wall_s"] for r in results), 1)
    targets = []
    if "full_2hz_card_years" in figures:
        why = f"a {CARD_GB} GB card of {CARD_CYCLES} cycles lasts 10 years"
        targets.append(Target("full_2hz_card_years", ">=", 10.0, why))
    command = "python -m bench.sd_writes " + " ".join(sys.argv[1:])
    finish("sd_writes", figures, targets, args, command=command.strip(), tables={"runs": results})

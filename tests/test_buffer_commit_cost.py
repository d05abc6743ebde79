"""What a buffer commit writes, and that writing less loses nothing (issue 14).

A commit that only adds rows writes the rows (one INSERT, a transaction of its own): no
``meta`` mark, no cap checks. A reopened file continues above ``max(meta, MAX(seq))``, so a
commit's newest row covers the mark; the mark is written where a transaction can leave
the table without the newest row (delivered rows deleted, an eviction, rows published
from memory). These tests kill, cut the power on and reopen a buffer after each kind of
transaction and check that seq never goes back and no committed row is lost.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.encoding import loads
from tests.conftest import REPO
from tests.support.disk_full import limit_pages
from tests.support.waiting import wait_until
from tests.test_power_cut_durability import _loop_mount_possible, ext4_image

T0 = 1_800_000_000.0


async def _next_seq(path: Path) -> int:
    """The seq the buffer at ``path`` hands out first after a restart."""
    buf = SampleBuffer(path, site="s1", clock=lambda: T0)
    await buf.open()
    try:
        return buf.append({"after": "restart"})
    finally:
        buf._samples.pending.clear()  # probe only: nothing written
        await buf.close()


async def _crash(buf: SampleBuffer) -> None:
    """Stop ``buf`` as a crash would: its file closed, nothing flushed or written."""
    db, buf._db = buf._conn(), None
    buf._samples.pending.clear()
    buf._alarms.pending.clear()
    await buf._call(db.close)
    await buf.close()


@pytest.mark.asyncio
async def test_a_commit_that_only_adds_rows_writes_the_rows_and_nothing_else(
    tmp_path: Path,
) -> None:
    now = [T0]
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", clock=lambda: now[0])
    await buf.open()
    buf.append({"n": 0})
    await buf.flush()  # the first commit reads the file's size and runs the age cap
    statements: list[str] = []
    await buf._call(buf._conn().set_trace_callback, statements.append)
    for i in range(1, 20):
        buf.append({"n": i})
        buf.append({"n": i})
        await buf.flush()
        now[0] += 1.0
    await buf._call(buf._conn().set_trace_callback, None)
    # One statement per commit, its own transaction: both rows in one INSERT.
    assert len(statements) == 19
    assert all(s.startswith("INSERT OR REPLACE INTO samples ") for s in statements), statements
    assert all(s.count("), (") == 1 for s in statements)
    await buf.close()


@pytest.mark.asyncio
async def test_seq_continues_above_rows_delivered_and_deleted_in_every_way(tmp_path: Path) -> None:
    """Each transaction that can take the newest row away, then a restart."""
    path = tmp_path / "b.sqlite3"
    now = [T0]
    buf = SampleBuffer(path, site="s1", max_age_days=1, clock=lambda: now[0])
    await buf.open()
    top = 0
    for _ in range(5):  # commits that only add rows: no mark written
        top = buf.append({"n": 1})
        await buf.flush()
    await buf.delete_upto(top)
    await buf.flush()  # deletes every row, adds none: the mark must say top
    await buf.close()
    assert await _next_seq(path) == top + 1

    buf = SampleBuffer(path, site="s1", max_age_days=1, clock=lambda: now[0])
    await buf.open()
    buf.append({"n": 2})
    await buf.flush()
    await buf.delete_upto(buf.committed_top())
    top = buf.append({"n": 3})
    await buf.flush()  # deletes the delivered row and adds the newest: it stays, no mark
    assert [r[0] for r in await buf.fetch(after_seq=0, limit=10)] == [top]
    await _crash(buf)
    assert await _next_seq(path) == top + 1

    buf = SampleBuffer(path, site="s1", max_age_days=1, clock=lambda: now[0])
    await buf.open()
    for _ in range(3):
        top = buf.append({"n": 5})
    await buf.flush()
    now[0] += 2 * 86400  # every row old: the age cap takes the newest too
    buf.append_alarm({"id": "a", "event": "raise"})  # a commit that adds no sample
    await buf.flush()
    assert await buf.fetch(after_seq=0, limit=10) == []
    assert buf.evicted >= 3
    await _crash(buf)
    assert await _next_seq(path) == top + 1


@pytest.mark.asyncio
async def test_rows_sent_from_memory_are_never_numbered_again_once_the_disk_takes_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    buf.append({"n": 0, "pad": "x" * 500})
    await buf.flush()
    await limit_pages(buf, None)  # the disk is full from here on
    for i in range(1, 40):
        buf.append({"n": i, "pad": "x" * 500})
    await buf.flush_or_keep()
    assert buf.write_error is not None
    rows = await buf.fetch(after_seq=0, limit=100)  # the newest ones from memory
    top = rows[-1][0]
    await buf.delete_upto(top)  # the broker has them: they are never written
    await limit_pages(buf, 1_000_000)  # space again
    await buf.flush_or_keep()  # writes only the probe row, below top: the mark covers top
    assert buf.write_error is None
    # The live mark beside the file is lowered to top: the file itself knows top now.
    assert buf._highwater.record.live.get("samples", 0) == top
    with sqlite3.connect(path) as db:
        mark = dict(db.execute("SELECT key, value FROM meta"))["last_seq"]
        assert max(mark, db.execute("SELECT MAX(seq) FROM samples").fetchone()[0]) >= top
    await buf.close()
    assert await _next_seq(path) == top + 1


_WRITER = textwrap.dedent(
    """
    import asyncio, os, random, signal, sys
    from controller.telemetry.buffer import SampleBuffer

    async def main(path, seed, kill_at):
        rng = random.Random(seed)
        now = [1_800_000_000.0]
        buf = SampleBuffer(path, site="s1", clock=lambda: now[0])
        await buf.open()
        acked = 0
        for i in range(10**9):
            for _ in range(rng.randint(1, 3)):
                buf.append({"n": i})
            now[0] += 1.0
            await buf.flush()
            # Committed (fsynced): from here SCADA may hold it.
            print("committed", buf.committed_top(), acked, flush=True)
            if rng.random() < 0.3:  # the link delivers part of the backlog
                rows = await buf.fetch(after_seq=acked, limit=rng.randint(1, 5))
                if rows:
                    acked = rows[-1][0]
                    await buf.delete_upto(acked)
                    print("acked", acked, flush=True)
            if kill_at is not None and i == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    kill = None if sys.argv[3] == "-" else int(sys.argv[3])
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), kill))
    """
)


def _writer(path: Path, seed: int, kill_at: int | None, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(seed), str(kill_at or "-")],
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _committed(log: Path) -> tuple[int, int]:
    """The newest seq committed and the newest acknowledged, as the writer printed them."""
    top = acked = 0
    text = log.read_text()
    # The writer may be mid-line as the log is read: only whole lines count.
    for line in text[: text.rfind("\n") + 1].splitlines():
        words = line.split()
        if words and words[0] == "committed":
            top = int(words[1])
        elif words and words[0] == "acked":
            acked = int(words[1])
    return top, acked


async def _check_reopened(path: Path, top: int, acked: int) -> None:
    """Every committed row not acknowledged is there, in order; seq goes on above top."""
    buf = SampleBuffer(path, site="s1", clock=lambda: T0)
    await buf.open()
    rows = await buf.fetch(after_seq=acked, limit=100_000)
    seqs = [r[0] for r in rows]
    assert seqs[: top - acked] == list(range(acked + 1, top + 1)), (acked, top, seqs[:5])
    assert all("n" in loads(r[2]) for r in rows)
    nxt = buf.append({"after": "restart"})
    assert nxt > max([top, *seqs]), (nxt, top)
    buf._samples.pending.clear()
    await buf.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sigkill_after_commits_without_a_mark_loses_no_row_and_reuses_no_seq(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "b.sqlite3"
    log = tmp_path / "writer.log"
    proc = _writer(path, seed, kill_at=40 + 7 * seed, log=log)
    await asyncio.to_thread(proc.wait, 60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    top, acked = _committed(log)
    assert top > 40
    await _check_reopened(path, top, acked)


@pytest.mark.slow
@pytest.mark.skipif(not _loop_mount_possible(), reason="needs root and loop-mounted ext4")
def test_power_cuts_during_commits_without_a_mark_lose_no_committed_row(tmp_path: Path) -> None:
    """The card's view (tests/test_power_cut_durability.py): a copy of the ext4 image
    taken while the writer is stopped holds only what reached the device."""
    image = tmp_path / "sd.img"
    snapshots: list[tuple[Path, int, int]] = []
    log = tmp_path / "writer.log"
    with ext4_image(image, tmp_path / "sd") as sd:
        proc = _writer(sd / "b.sqlite3", 4, kill_at=None, log=log)
        try:
            for i, at in enumerate((30, 95, 170)):
                wait_until(lambda at=at: _committed(log)[0] >= at, timeout=30,  # type: ignore[misc]
                           what=f"{at} rows committed")  # fmt: skip
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    top, acked = _committed(log)  # all printed after their fsync
                    copy = tmp_path / f"cut{i}.img"
                    shutil.copyfile(image, copy)
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
                snapshots.append((copy, top, acked))
        finally:
            proc.kill()
            proc.wait(timeout=15)
    for copy, top, acked in snapshots:
        with ext4_image(copy, tmp_path / f"{copy.stem}.mnt", size_mb=None) as cut:
            asyncio.run(_check_reopened(cut / "b.sqlite3", top, acked))


# -- the worker thread ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_worker_runs_calls_in_order_and_hands_back_results_and_errors(
    tmp_path: Path,
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1")
    await buf.open()
    order: list[int] = []
    results = await asyncio.gather(*(buf._call(lambda i=i: order.append(i) or i * i)
                                     for i in range(50)))  # fmt: skip
    assert order == list(range(50))
    assert results == [i * i for i in range(50)]
    assert await buf._call(threading.current_thread) is not threading.current_thread()

    def boom() -> None:
        raise ValueError("disk said no")

    with pytest.raises(ValueError, match="disk said no"):
        await buf._call(boom)
    await buf.close()
    with pytest.raises(RuntimeError):
        await buf._call(int)


@pytest.mark.asyncio
async def test_a_call_cancelled_before_the_worker_takes_it_never_runs(tmp_path: Path) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1")
    await buf.open()
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        ran.append("slow")

    first = asyncio.create_task(buf._call(slow))
    await asyncio.to_thread(started.wait, 10)
    second = asyncio.create_task(buf._call(ran.append, "cancelled"))
    await asyncio.sleep(0)  # queued behind the slow call
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    await buf._call(ran.append, "after")
    assert ran == ["slow", "after"]
    await buf.close()

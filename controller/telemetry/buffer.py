"""The local store-and-forward buffer: every sample on disk until the broker has it.

* SQLite in WAL mode; one row per sample with a per-site sequence number that keeps
  rising across restarts (a high-water mark in the ``meta`` table, never reused even
  after rows are deleted) and a UTC timestamp.
* ``append`` only queues in memory; the flusher commits the queue once per
  ``commit_interval_s`` in one transaction, to spare the SD card. After SIGKILL or a
  power cut at most the samples of that uncommitted interval are lost.
* A size cap and an age cap evict the oldest rows first and count what they evicted.
* When the disk refuses writes (full, read-only, failing card) the samples wait in
  memory and every interval retries; past ``max_pending`` the oldest waiting samples
  are dropped and counted as evicted, so a dead SD card never exhausts the Pi's RAM.
  ``write_error`` says why while it lasts.
* At start-up ``PRAGMA quick_check`` runs; a damaged file is moved aside as
  ``<name>.corrupt-<UTC time>`` and a fresh buffer started, never refusing to run. Its
  sequence restarts above the old one (at the current Unix time in milliseconds), so
  SCADA still sees ``seq`` rise.
* Every SQLite call runs on one dedicated worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from controller.aio import wait_event
from controller.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def utc_iso(epoch_s: float | None = None) -> str:
    """UTC ISO 8601 with milliseconds and a trailing Z (now, or at ``epoch_s``)."""
    t = datetime.now(UTC) if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    """The current UTC time as ``utc_iso`` writes it."""
    return utc_iso()


class SampleBuffer:
    """Samples on disk, numbered by ``seq``, until the uplink has had them acknowledged."""

    def __init__(
        self,
        path: str | Path,
        *,
        site: str,
        max_mb: float = 512.0,
        max_age_days: float = 60.0,
        commit_interval_s: float = 1.0,
        max_pending: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.site = site
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.max_age_s = max_age_days * 86400.0
        self.commit_interval_s = commit_interval_s
        self.max_pending = max(1, max_pending)
        self._pending: list[tuple[int, str, str]] = []
        #: Why the last commit failed, while commits keep failing; None when writable.
        self.write_error: str | None = None
        self._next_seq = 1
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        self.rows = 0
        self.evicted = 0
        self.corrupt_recovered = 0
        self.commits = 0
        self.last_acked = 0
        self.over_cap = False

    # -- thread plumbing --------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "SampleBuffer.open() first"
        return self._db

    # -- open / integrity -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file; quarantine it and start afresh if it is damaged."""
        await self._call(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        restart_seq = 0
        try:
            db = self._connect()
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
        except sqlite3.DatabaseError as exc:
            self._quarantine(str(exc))
            restart_seq = int(self.clock() * 1000)
            db = self._connect()
        self._db = db
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        top = db.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM samples").fetchone()
        self._next_seq = max(int(meta.get("last_seq", 0)), int(top[0]), restart_seq) + 1
        self.rows = int(top[1])
        self.evicted = int(meta.get("evicted", 0))
        self.corrupt_recovered += int(meta.get("corrupt_recovered", 0))
        if self.corrupt_recovered and restart_seq:
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('corrupt_recovered', ?)",
                (self.corrupt_recovered,),
            )
            db.commit()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process crash; a power cut may lose the
        # last commits but never corrupts the file.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        return db

    def _quarantine(self, reason: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(f"{self.path}.corrupt-{stamp}{suffix}"))
        self.corrupt_recovered += 1
        log.error(
            "buffer file damaged; moved aside, starting a fresh one",
            path=str(self.path),
            reason=reason,
            moved_to=f"{self.path}.corrupt-{stamp}",
        )

    # -- writing ----------------------------------------------------------------------------

    def append(self, sample: dict[str, Any]) -> int:
        """Queue one sample; returns its seq. Never blocks, never touches the disk."""
        seq = self._next_seq
        self._next_seq += 1
        ts = utc_iso(self.clock())
        self._pending.append((seq, ts, json.dumps(sample, separators=(",", ":"), default=str)))
        self._cap_pending()
        return seq

    def _cap_pending(self) -> None:
        """Past ``max_pending`` (only while the disk refuses writes), drop the oldest
        waiting samples: a tenth at a time, like the size cap, so this drops once per
        many appends rather than on every one."""
        if len(self._pending) <= self.max_pending:
            return
        n = len(self._pending) - self.max_pending + self.max_pending // 10
        del self._pending[:n]
        self.evicted += n
        log.warning(
            "buffer cannot write: oldest samples waiting in memory dropped",
            dropped=n,
            total=self.evicted,
            error=self.write_error,
        )

    async def flush(self) -> int:
        """Commit the queued samples in one transaction; returns how many."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        try:
            await self._call(self._commit, batch)
        except BaseException:
            self._pending[:0] = batch  # keep them for the next attempt
            self._cap_pending()
            raise
        return len(batch)

    def _commit(self, batch: list[tuple[int, str, str]]) -> None:
        db = self._conn()
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", batch)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (batch[-1][0],))
        self.rows += len(batch)
        self.commits += 1
        # The batch is on disk now: an eviction failing must not send it back to the queue.
        try:
            self._evict()
        except sqlite3.Error as exc:
            log.warning("buffer eviction failed; retried after the next commit", error=str(exc))

    def _evict(self) -> None:
        db = self._conn()
        evicted = 0
        cutoff_iso = utc_iso(self.clock() - self.max_age_s)
        with db:
            evicted += db.execute("DELETE FROM samples WHERE ts < ?", (cutoff_iso,)).rowcount
        page = db.execute("PRAGMA page_size").fetchone()[0]
        used = (
            db.execute("PRAGMA page_count").fetchone()[0]
            - db.execute("PRAGMA freelist_count").fetchone()[0]
        ) * page
        self.over_cap = used > self.max_bytes
        if self.over_cap and self.rows > 0:
            # Drop the oldest tenth; freed pages are reused, so the file stops growing.
            n = max(1, self.rows // 10)
            with db:
                evicted += db.execute(
                    "DELETE FROM samples WHERE seq IN "
                    "(SELECT seq FROM samples ORDER BY seq LIMIT ?)",
                    (n,),
                ).rowcount
        if evicted:
            self.rows = max(0, self.rows - evicted)
            self.evicted += evicted
            with db:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('evicted', ?)", (self.evicted,))
            log.warning("buffer full: oldest samples evicted", evicted=evicted, total=self.evicted)

    async def run(self, stop: asyncio.Event) -> None:
        """Commit once per interval until ``stop``; then a last flush."""
        while not stop.is_set():
            await wait_event(stop, self.commit_interval_s)
            await self._flush_or_keep()

    async def _flush_or_keep(self) -> None:
        """Flush; a disk error keeps the samples for the next interval and is logged
        once when it starts and once when it ends, not every second."""
        try:
            await self.flush()
        except (sqlite3.Error, OSError) as exc:
            if self.write_error is None:
                log.error("buffer cannot write; samples wait in memory", error=str(exc),
                          path=str(self.path), pending=len(self._pending))  # fmt: skip
            self.write_error = str(exc)
            return
        if self.write_error is not None:
            log.info("buffer writable again", pending=len(self._pending))
            self.write_error = None

    # -- reading / acknowledging ------------------------------------------------------------

    async def fetch(self, *, after_seq: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        """Up to ``limit`` ``(seq, ts, sample)`` rows after ``after_seq``, oldest first."""
        return await self._call(self._fetch, after_seq, limit)

    def _fetch(self, after_seq: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, ts, data FROM samples WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            .fetchall()
        )
        return [(int(seq), str(ts), json.loads(data)) for seq, ts, data in rows]

    async def delete_upto(self, seq: int) -> int:
        """Drop the rows up to ``seq`` (the broker has them); returns how many."""
        return await self._call(self._delete_upto, seq)

    def _delete_upto(self, seq: int) -> int:
        db = self._conn()
        with db:
            n = db.execute("DELETE FROM samples WHERE seq <= ?", (seq,)).rowcount
        self.rows = max(0, self.rows - n)
        self.last_acked = max(self.last_acked, seq)
        return int(n)

    async def close(self) -> None:
        """Final flush, then close the file and the worker thread."""
        try:
            await self.flush()
        finally:
            if self._db is not None:
                db, self._db = self._db, None
                await self._call(db.close)
            self._executor.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        """Counters for the status: rows, backlog, pending, evicted, over_cap, last_seq, ..."""
        return {
            "rows": self.rows,
            "backlog": self.rows + len(self._pending),
            "pending": len(self._pending),
            "evicted": self.evicted,
            "over_cap": self.over_cap,
            "last_seq": self._next_seq - 1,
            "corrupt_recovered": self.corrupt_recovered,
            "commits": self.commits,
            "write_error": self.write_error,
        }

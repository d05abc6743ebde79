"""The local store-and-forward buffer: every sample and alarm event on disk until the
broker has it.

* SQLite in WAL mode; two streams, ``samples`` and ``alarms``, each one row per message
  with its own sequence number that keeps rising across restarts, never reused even
  after rows are deleted, and a UTC timestamp. A reopened file continues above its
  newest row or the high-water mark in the ``meta`` table, whichever is higher: a
  commit that only adds rows leaves its newest row as the mark and writes nothing
  else; the ``meta`` mark is written in the transactions that may delete the newest row
  (delivered rows, evictions) or follow rows published from memory.
* ``append`` only queues in memory; the flusher commits the queue once per
  ``commit_interval_s`` in one transaction with ``synchronous=FULL``: the commit is on
  the card (fsync) before the uplink can read it, so nothing SCADA has received can be
  lost by a power cut and numbered again. A power cut loses at most the samples of the
  last uncommitted interval, which were never published.
* Beside the file, a small durable record (``highwater.py``) holds the boot counter and
  seq ceilings renewed in blocks ahead of use: after a damaged file, seq continues just
  above anything handed out before, and samples published straight from memory (below)
  are never numbered again after a restart.
* Each row holds the message exactly as it is published (``seq``, ``boot``, ``ts``, then
  the body, compact JSON encoded once at ``append``): replay sends the stored bytes and
  never decodes them. ``encoding.loads`` (and ``decode_sample`` for format-2 samples)
  turns them back into a dict. The telemetry schemas the samples refer to are kept in
  the ``schemas`` table, so a backlog taken before a station-file change still decodes.
* A size cap and an age cap evict the oldest rows first and count what they evicted.
  Neither grows with the backlog: the size check reads the used pages (when the rows
  added since the last reading could reach a 1/1024 of the cap); the age cap runs
  once per ``EVICT_EVERY_S`` of the wall clock and deletes a seq range (a walk from the
  oldest row to the first young one), never a scan of the table.
  The age cap only runs on a synchronised wall clock (``clock.py``) and only on rows
  stamped by one: rows stamped at 1970 are never evicted as "old" when the clock is set.
  Rows are evicted by age oldest-seq first: a row behind a younger one (the clock
  stepped back) goes when the rows before it have gone.
  Samples stamped on an unsynchronised clock carry ``"ts_unsynced": true``.
* When the disk refuses writes (full, read-only, failing card) the rows wait in memory,
  every interval retries, and ``fetch`` also hands out the waiting rows, so live
  telemetry keeps flowing while the link is up; rows the broker has acknowledged are
  dropped from memory, never written. Past ``max_pending`` the oldest waiting samples
  are dropped and counted as evicted, so a dead SD card never exhausts the Pi's RAM.
  ``write_error`` says why while it lasts.
* At start-up ``PRAGMA quick_check`` runs; a damaged file is moved aside as
  ``<name>.corrupt-<UTC time>`` and a fresh buffer started, never refusing to run.
* Every SQLite call runs on one dedicated worker thread, never on the event loop; a
  commit costs the loop one queue entry and one wake-up (``_Worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from controller.aio import wait_event
from controller.logs import get_logger
from controller.telemetry.clock import ClockSync, plausible_only
from controller.telemetry.encoding import TelemetrySchema, dumpb, loads
from controller.telemetry.highwater import HighWaterFile, fsync_dir

log = get_logger(__name__)
T = TypeVar("T")

#: seq numbers reserved per write of the high-water record (about 1 h at 1 Hz).
CEILING_BLOCK = 4096
#: Alarm events kept at most, on disk and waiting in memory (oldest dropped first).
MAX_ALARM_ROWS = 10_000
MAX_ALARM_PENDING = 1_000
#: How often (wall-clock seconds) the age cap looks for old rows: the cap is days, so a
#: minute late costs nothing, and a commit pays for it once a minute, not every second.
EVICT_EVERY_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, data TEXT NOT NULL,
                                    synced INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS alarms (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, data TEXT NOT NULL,
                                   synced INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS schemas (id TEXT PRIMARY KEY, data BLOB NOT NULL);
"""

#: A stream's high-water mark in ``meta`` (the boot counter and ``evicted`` live there too).
MARK_SQL = "INSERT OR REPLACE INTO meta VALUES (?, ?)"
#: Pages in use: the file's pages less the free ones (one statement, not three pragmas).
USED_PAGES_SQL = (
    "SELECT (SELECT page_count FROM pragma_page_count())"
    " - (SELECT freelist_count FROM pragma_freelist_count())"
)

#: One queued message: (seq, its stamp in Unix seconds, the published bytes, stamped on
#: a synchronised clock, the stamp in whole Unix seconds for the age cap).
Row = tuple[int, float, bytes, bool, int]
#: One message for the uplink: (seq, ts, the bytes to publish as they are).
Fetched = tuple[int, str, bytes]


def utc_iso(epoch_s: float | None = None) -> str:
    """UTC ISO 8601 with milliseconds and a trailing Z (now, or at ``epoch_s``)."""
    t = datetime.now(UTC) if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    """The current UTC time as ``utc_iso`` writes it."""
    return utc_iso()


SCHEMA_SQL = "INSERT OR REPLACE INTO schemas VALUES (?, ?)"
#: Rows up to this many go into one INSERT statement (one text per count, each prepared
#: once: sqlite3 caches statements by their text); a longer batch is an executemany.
ROWS_PER_INSERT = 16
_ROW = "(?, '', ?, ?, ?)"
_INSERT_SQL = {
    t: [f"INSERT OR REPLACE INTO {t} (seq, ts, data, synced, t) VALUES " + ", ".join([_ROW] * n)
        for n in range(ROWS_PER_INSERT + 1)]
    for t in ("samples", "alarms")
}  # fmt: skip
_DELETE_SQL = {t: f"DELETE FROM {t} WHERE seq <= ?" for t in ("samples", "alarms")}


def _inserts(table: str, batch: list[Row]) -> tuple[str, Any, bool]:
    """The statement that stores ``batch``: (SQL, parameters, whether an executemany)."""
    if len(batch) > ROWS_PER_INSERT:
        return _INSERT_SQL[table][1], [(r[0], r[2], r[3], r[4]) for r in batch], True
    params = [v for seq, _, data, synced, t in batch for v in (seq, data, synced, t)]
    return _INSERT_SQL[table][len(batch)], params, False


@dataclass
class _Stream:
    """One numbered stream (a table), its queue and its delivery marks."""

    table: str
    meta_key: str
    next_seq: int = 1
    #: The highest seq the file has held or the uplink has had from memory, and the
    #: value of the file's ``meta`` mark for it: a reopened file continues above
    #: ``max(meta, MAX(seq))``, so the mark is written only where a transaction can
    #: leave the table without a row at ``high`` (``_needs_mark``).
    high: int = 0
    marked: int = 0
    pending: list[Row] = field(default_factory=list)
    #: The batch being committed right now (still readable from memory meanwhile).
    inflight: list[Row] = field(default_factory=list)
    acked: int = 0
    #: Rows up to here are still in the file though delivered: deleted in the next
    #: commit's transaction, which touches the same pages anyway (half the card writes
    #: of a transaction of their own per delivery).
    deleted: int = 0
    #: The highest seq handed to the uplink from memory, i.e. never committed first.
    from_memory: int = 0
    #: While the disk refuses writes, the last row delivered from memory: committed
    #: again and again when nothing else waits, to learn when the disk takes rows again.
    probe: Row | None = None

    def waiting(self) -> list[Row]:
        return [*self.inflight, *self.pending]


#: A call for the worker: (its claim, the loop and future awaiting it, what to run).
_Job = tuple[list[bool], asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any],
             tuple[Any, ...]]  # fmt: skip


class _Worker:
    """One thread that runs the buffer's calls in order, off the event loop.

    ``run_in_executor`` costs a commit two futures chained across threads; here a call
    is a queue entry and one wake-up of the loop (``call_soon_threadsafe``) with its
    result. As with an executor, a call whose caller is cancelled before the thread has
    taken it never runs (its claim is gone); one already running finishes, unheard."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("buffer worker already shut down")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        claim = [True]  # popped once: by the thread to run it, or here to cancel it
        self._jobs.put((claim, loop, future, fn, args))
        try:
            return await future
        except asyncio.CancelledError:
            with contextlib.suppress(IndexError):  # IndexError: already running
                claim.pop()
            raise

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            claim, loop, future, fn, args = job
            try:
                claim.pop()
            except IndexError:
                continue  # cancelled before it started
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the caller, as an executor does
                self._reply(loop, _fail, future, exc)
            else:
                self._reply(loop, _succeed, future, result)
            del job, future, fn, args

    @staticmethod
    def _reply(loop: asyncio.AbstractEventLoop, how: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(how, *args)

    def shutdown(self) -> None:
        """Finish the calls queued, then end the thread (blocks until it has)."""
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class SampleBuffer:
    """Samples and alarm events on disk, numbered by ``seq``, until the uplink has had
    them acknowledged."""

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
        clock_synced: Callable[[], bool] | None = None,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        # An injected clock is the test's or the simulation's truth: only its
        # plausibility counts, not the host's synchronisation.
        if clock_synced is None:
            clock_synced = ClockSync() if clock is time.time else plausible_only(clock)
        self.clock_synced = clock_synced
        self.site = site
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.max_age_s = max_age_days * 86400.0
        self.commit_interval_s = commit_interval_s
        self.max_pending = max(1, max_pending)
        self._samples = _Stream("samples", "last_seq")
        self._alarms = _Stream("alarms", "last_alarm_seq")
        self._highwater = HighWaterFile(Path(f"{self.path}.seq"))
        #: Why the last commit failed, while commits keep failing; None when writable.
        self.write_error: str | None = None
        self._db: sqlite3.Connection | None = None
        self._flush_lock = asyncio.Lock()
        self._worker = _Worker("buffer")
        self.boot = 0
        self.rows = 0
        self.evicted = 0
        self.alarms_dropped = 0
        self.corrupt_recovered = 0
        self.commits = 0
        self.over_cap = False
        self.synced = True
        #: Telemetry schemas the stored samples refer to (id -> schema); new ones wait in
        #: ``_new_schemas`` for the next commit.
        self.schemas: dict[str, TelemetrySchema] = {}
        self._new_schemas: list[TelemetrySchema] = []
        self._age_checked: float | None = None
        self._page_size = 4096
        #: Sample bytes committed since the file's size was last read (``_evict``).
        self._unmeasured = self.max_bytes
        #: Set when new samples can be fetched (committed, or waiting in memory while
        #: the disk refuses writes); the uplink waits on it instead of polling.
        self.samples_ready = asyncio.Event()
        #: Set when an alarm event is appended.
        self.alarms_ready = asyncio.Event()

    @property
    def _pending(self) -> list[Row]:
        return self._samples.pending

    @property
    def last_acked(self) -> int:
        return self._samples.acked

    # -- thread plumbing --------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._worker.call(fn, *args)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "SampleBuffer.open() first"
        return self._db

    # -- open / integrity -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file; quarantine it and start afresh if it is damaged.
        Counts this start in the boot counter, durably, before anything is published."""
        await self._call(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = self._highwater.load()
        existed = self.path.exists()
        trusted = existed  # does the file know every seq handed out before?
        try:
            db = self._connect()
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
        except sqlite3.DatabaseError as exc:
            self._quarantine(str(exc))
            trusted = False
            db = self._connect()
        self._db = db
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        for stream in (self._samples, self._alarms):
            top = db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {stream.table}").fetchone()[0]
            floor = max(int(meta.get(stream.meta_key, 0)), int(top))
            floor = max(floor, record.live.get(stream.table, 0))
            if not trusted:
                # The file lost what it knew (damaged, or removed): continue above the
                # ceiling, the most that can have been handed out before.
                floor = max(floor, record.ceiling.get(stream.table, 0))
            stream.next_seq = floor + 1
            stream.high = floor
            stream.marked = int(meta.get(stream.meta_key, 0))
        self.rows = int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        for sid, data in db.execute("SELECT id, data FROM schemas"):
            self.schemas[str(sid)] = TelemetrySchema.from_dict(loads(data))
        self.evicted = int(meta.get("evicted", 0))
        self.corrupt_recovered += int(meta.get("corrupt_recovered", 0))
        self.boot = max(record.boot, int(meta.get("boot", 0))) + 1
        record.boot = self.boot
        self._highwater.save()
        with db:
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (self.boot,))
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('corrupt_recovered', ?)",
                (self.corrupt_recovered,),
            )
        if not existed or not trusted:
            fsync_dir(self.path.parent)  # the new file's directory entry, too
        if not trusted and self.corrupt_recovered:
            log.warning("buffer seq continues above the high-water record",
                        next_seq=self._samples.next_seq, boot=self.boot)  # fmt: skip

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is fsynced before it returns, so whatever the uplink reads (and
        # SCADA may then hold) survives a power cut. Evictions use NORMAL (_quick).
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        for table in ("samples", "alarms"):
            columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if "synced" not in columns:  # a buffer written by an earlier release
                db.execute(f"ALTER TABLE {table} ADD COLUMN synced INTEGER NOT NULL DEFAULT 1")
            if "t" not in columns:
                # The stamp as an integer (4 bytes) rather than ISO text (24): rows written
                # since format 2 leave ``ts`` empty; older rows keep their text, t NULL.
                db.execute(f"ALTER TABLE {table} ADD COLUMN t INTEGER")
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
        """Queue one sample; returns its seq. Never blocks, never touches the disk.

        The message is encoded here, once: ``{"seq", "boot", "ts"[, "ts_unsynced"]}``
        then ``sample``'s keys. A ``TelemetrySchema`` under ``sch`` is stored (once)
        and replaced by its id."""
        schema = sample.get("sch")
        if isinstance(schema, TelemetrySchema):
            sid = schema.id
            if sid not in self.schemas:
                self.schemas[sid] = schema
                self._new_schemas.append(schema)
            seq = self._queue(self._samples, sample, sid)
        else:
            seq = self._queue(self._samples, sample)
        if len(self._samples.pending) > self.max_pending:
            self._cap_pending()
        if self.write_error is not None:
            self.samples_ready.set()  # goes out from memory: no commit to wait for
        return seq

    def append_alarm(self, event: dict[str, Any]) -> int:
        """Queue one alarm event like a sample (its own seq); returns that seq."""
        seq = self._queue(self._alarms, event)
        overflow = len(self._alarms.pending) - MAX_ALARM_PENDING
        if overflow > 0:
            del self._alarms.pending[:overflow]
            self.alarms_dropped += overflow
        self.alarms_ready.set()
        return seq

    def _queue(self, stream: _Stream, data: dict[str, Any], sch: str | None = None) -> int:
        seq = stream.next_seq
        stream.next_seq = seq + 1
        self.synced = synced = self.clock_synced()
        now = self.clock()
        # Samples carry Unix milliseconds (format 2, 11 bytes shorter); alarm events keep
        # the ISO text their documented format has. The row keeps ``now``: the ISO text
        # a row fetched from memory goes out with is made only then.
        stamp = round(now * 1000) if stream is self._samples else utc_iso(now)
        # One dict per message, built once per tick: "sch" (the schema's id in place of
        # the schema) keeps its place in it.
        if synced:
            message = {"seq": seq, "boot": self.boot, "ts": stamp, **data}
        else:
            message = {"seq": seq, "boot": self.boot, "ts": stamp, "ts_unsynced": True, **data}
        if sch is not None:
            message["sch"] = sch
        stream.pending.append((seq, now, dumpb(message), synced, int(now)))
        return seq

    def _cap_pending(self) -> None:
        """Past ``max_pending`` (only while the disk refuses writes), drop the oldest
        waiting samples: a tenth at a time, like the size cap, so this drops once per
        many appends rather than on every one."""
        pending = self._samples.pending
        if len(pending) <= self.max_pending:
            return
        n = len(pending) - self.max_pending + self.max_pending // 10
        del pending[:n]
        self.evicted += n
        log.warning(
            "buffer cannot write: oldest samples waiting in memory dropped",
            dropped=n,
            total=self.evicted,
            error=self.write_error,
        )

    async def flush(self) -> int:
        """Commit the queued samples and alarms in one transaction; returns how many."""
        async with self._flush_lock:  # the flusher and an orderly stop's final flush
            return await self._flush()

    async def _flush(self) -> int:
        streams = (self._samples, self._alarms)
        deletes = [s.acked if s.acked > s.deleted else 0 for s in streams]
        if not any(s.pending for s in streams):
            probe = self._samples.probe if self.write_error is not None else None
            if probe is not None:
                self._samples.pending = [probe]
            elif not any(deletes):
                return 0
        for s in streams:
            s.inflight, s.pending = s.pending, []
        batches = [s.inflight for s in streams]
        schemas, self._new_schemas = self._new_schemas, []
        try:
            await self._call(self._commit, batches, deletes, schemas)
        except BaseException:
            self._new_schemas[:0] = schemas
            for s in streams:
                # Keep them for the next attempt, except what the broker already has.
                s.pending[:0] = [r for r in s.inflight if r[0] > s.acked]
            self._cap_pending()
            raise
        finally:
            for s in streams:
                s.inflight = []
        for s, upto in zip(streams, deletes, strict=True):
            s.deleted = max(s.deleted, upto)
        self._samples.probe = None
        if batches[0]:
            self.samples_ready.set()
        return sum(len(b) for b in batches)

    def _commit(
        self, batches: list[list[Row]], deletes: list[int], schemas: list[TelemetrySchema]
    ) -> None:
        streams = (self._samples, self._alarms)
        tops = [b[-1][0] if b else 0 for b in batches]
        self._reserve([(s, top) for s, b, top in zip(streams, batches, tops, strict=True) if b])
        marks = [
            self._mark_due(s, top, upto)
            for s, top, upto in zip(streams, tops, deletes, strict=True)
        ]
        ops: list[tuple[str, Any, bool]] = [
            (SCHEMA_SQL, (schema.id, dumpb(schema.as_dict())), False) for schema in schemas
        ]
        for stream, batch, upto, (mark, _) in zip(streams, batches, deletes, marks, strict=True):
            if upto:
                ops.append((_DELETE_SQL[stream.table], (upto,), False))
            if batch:
                ops.append(_inserts(stream.table, batch))
            if mark:
                ops.append((MARK_SQL, (stream.meta_key, mark), False))
        db = self._conn()
        if len(ops) == 1 and not ops[0][2]:
            # The usual commit, rows added and nothing else: one statement, a transaction
            # of its own (committed and fsynced as it completes, all rows or none).
            db.execute(ops[0][0], ops[0][1])
        else:
            with db:
                db.execute("BEGIN")
                for sql, params, many in ops:
                    (db.executemany if many else db.execute)(sql, params)
        for stream, (mark, high) in zip(streams, marks, strict=True):
            stream.high = high
            stream.marked = mark or stream.marked
        # Rows delivered from memory meanwhile (disk errors) are not backlog.
        samples, alarms = batches
        acked = self._samples.acked
        self.rows += sum(1 for r in samples if r[0] > acked)
        self.commits += 1
        # The batch is on disk now: an eviction failing must not send it back to the queue.
        try:
            self._evict(bool(alarms), sum(len(r[2]) for r in samples))
        except sqlite3.Error as exc:
            log.warning("buffer eviction failed; retried after the next commit", error=str(exc))

    @staticmethod
    def _mark_due(stream: _Stream, top: int, upto: int) -> tuple[int, int]:
        """The ``meta`` mark a commit must write for ``stream`` (0: none) and the
        stream's ``high`` after it. A reopened file continues above ``max(meta,
        MAX(seq))``: an insert keeps every row before it, so the batch's newest row
        covers it; the mark is needed only when this transaction deletes rows and no
        row at ``high`` stays, or when the uplink had newer rows from memory (the disk
        refused writes) than the file ever held."""
        high = max(stream.high, top, stream.from_memory)
        # What the file knows after it: the rows before an insert stay; a delete may
        # take all but the batch's newest row (if it keeps that), or that row too.
        kept = max(stream.marked, top if top > upto else 0) if upto else max(stream.high, top)
        return (high if high > kept else 0), high

    def _reserve(self, tops: list[tuple[_Stream, int]], *, live: bool = False) -> bool:
        """Raise the durable ceiling (and the live mark) above ``tops`` before those seq
        numbers can leave the station; False (and nothing raised) when the record
        cannot be written."""
        record = self._highwater.record
        if not live and all(record.ceiling.get(s.table, 0) >= top for s, top in tops):
            return True  # the usual commit: inside the block reserved before
        before = (dict(record.ceiling), dict(record.live))
        for stream, top in tops:
            if record.ceiling.get(stream.table, 0) < top:
                record.ceiling[stream.table] = top + CEILING_BLOCK
            if live and record.live.get(stream.table, 0) < top:
                record.live[stream.table] = record.ceiling[stream.table]
        if (record.ceiling, record.live) == before:
            return True
        try:
            self._highwater.save()
        except OSError as exc:
            record.ceiling, record.live = before
            log.error("seq high-water record not written", path=str(self._highwater.path),
                      error=str(exc))  # fmt: skip
            return False
        return True

    def _reserve_live(self, stream: _Stream, top: int) -> bool:
        return self._reserve([(stream, top)], live=True)

    def _quick(self, sql: str, *args: Any, mark: _Stream | None = None) -> int:
        """A delete whose loss to a power cut is harmless (evicted rows come back):
        committed without an fsync of its own. One dict argument binds by name. With
        ``mark``, a delete that may take that stream's newest row writes its ``meta``
        mark in the same transaction (``_mark_due``)."""
        params: Any = args[0] if len(args) == 1 and isinstance(args[0], dict) else args
        db = self._conn()
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            with db:
                db.execute("BEGIN")
                n = db.execute(sql, params).rowcount
                if n > 0 and mark is not None and mark.high > mark.marked:
                    db.execute(MARK_SQL, (mark.meta_key, mark.high))
                    marked = mark.high
                else:
                    marked = 0
        finally:
            db.execute("PRAGMA synchronous=FULL")
        if mark is not None and marked:
            mark.marked = marked
        return int(n)

    def _age_due(self) -> bool:
        """Once per ``EVICT_EVERY_S`` of the wall clock (at once after a step back)."""
        now = self.clock()
        last = self._age_checked
        if last is not None and 0 <= now - last < EVICT_EVERY_S:
            return False
        self._age_checked = now
        return True

    def _evict_old(self, stream: _Stream, cutoff: float) -> int:
        """Delete the synced rows older than ``cutoff`` in front of the first young one:
        a walk along the primary key over the rows it deletes (and the few
        unsynchronised ones among them), a range delete, never a table scan."""
        db = self._conn()
        table = stream.table
        # Rows since format 2 have ``t``; older ones only their ISO text.
        stamp_old = "(CASE WHEN t IS NULL THEN ts < :iso ELSE t < :t END)"
        old = f"synced = 1 AND {stamp_old}"
        args = {"iso": utc_iso(cutoff), "t": cutoff}
        first_young = db.execute(
            f"SELECT seq FROM {table} WHERE synced = 1 AND NOT {stamp_old} ORDER BY seq LIMIT 1",
            args,
        ).fetchone()
        if first_young is None:  # every synced row old: the newest may go too
            return self._quick(f"DELETE FROM {table} WHERE {old}", args, mark=stream)
        return self._quick(
            f"DELETE FROM {table} WHERE seq < :young AND {old}", {**args, "young": first_young[0]}
        )

    def _evict(self, alarms: bool, added: int) -> None:
        """The caps, after a commit that added ``added`` bytes of samples (and alarm
        rows when ``alarms``): each check only when it can find something."""
        evicted = 0
        if self.clock_synced() and self._age_due():
            # Only rows stamped by a synchronised clock can be judged old by it.
            cutoff = self.clock() - self.max_age_s
            evicted += self._evict_old(self._samples, cutoff)
            self._evict_old(self._alarms, cutoff)
        if alarms:  # only new alarm rows can take the table past its cap
            # A range on the primary key: costs what it deletes.
            self._quick(
                "DELETE FROM alarms WHERE seq <= (SELECT MAX(seq) FROM alarms) - ?", MAX_ALARM_ROWS
            )
        # The file's used size, read when the rows added since the last reading could
        # have reached a 1/1024 of the cap (or while over it): the cap is overshot by
        # at most about that much, and a commit does not pay for the reading each time.
        self._unmeasured += added
        if not self.over_cap and self._unmeasured < self.max_bytes // 1024:
            self._finish_evict(evicted)
            return
        self._unmeasured = 0
        used = self._conn().execute(USED_PAGES_SQL).fetchone()[0] * self._page_size
        self.over_cap = used > self.max_bytes
        if self.over_cap and self.rows > 0:
            # Drop the oldest tenth; freed pages are reused, so the file stops growing.
            n = max(1, self.rows // 10)
            evicted += self._quick(
                "DELETE FROM samples WHERE seq IN (SELECT seq FROM samples ORDER BY seq LIMIT ?)",
                n,
                mark=self._samples,
            )
        self._finish_evict(evicted)

    def _finish_evict(self, evicted: int) -> None:
        if evicted:
            self.rows = max(0, self.rows - evicted)
            self.evicted += evicted
            self._quick("INSERT OR REPLACE INTO meta VALUES ('evicted', ?)", self.evicted)
            log.warning("buffer full: oldest samples evicted", evicted=evicted, total=self.evicted)

    async def run(self, stop: asyncio.Event) -> None:
        """Commit once per interval until ``stop``; then a last flush."""
        while not stop.is_set():
            await wait_event(stop, self.commit_interval_s)
            await self.flush_or_keep()

    def alarms_waiting(self) -> bool:
        """Alarm events queued in memory, not yet committed."""
        return bool(self._alarms.pending)

    async def flush_or_keep(self) -> None:
        """Flush; a disk error keeps the rows for the next interval and is logged once
        when it starts and once when it ends, not every second."""
        try:
            written = await self.flush()
        except (sqlite3.Error, OSError) as exc:
            if self.write_error is None:
                log.error("buffer cannot write; samples wait in memory and go out live",
                          error=str(exc), path=str(self.path),
                          pending=len(self._pending))  # fmt: skip
            self.write_error = str(exc)
            return
        if self.write_error is not None and written:
            log.info("buffer writable again", pending=len(self._pending))
            self.write_error = None
            await self._call(self._release_live)

    def _release_live(self) -> None:
        """The file knows the highest seq sent from memory now (``_commit`` wrote it to
        ``meta``): lower the live mark to it, so the next start leaves no gap."""
        record = self._highwater.record
        tops = {s.table: s.from_memory for s in (self._samples, self._alarms)}
        if any(record.live.get(t, 0) > top for t, top in tops.items()):
            record.live.update(tops)
            try:
                self._highwater.save()
            except OSError as exc:
                log.warning("seq high-water record not written", error=str(exc))

    # -- reading / acknowledging ------------------------------------------------------------

    async def fetch(self, *, after_seq: int, limit: int) -> list[Fetched]:
        """Up to ``limit`` ``(seq, ts, sample)`` rows after ``after_seq``, oldest first."""
        return await self._fetch_stream(self._samples, after_seq, limit)

    async def fetch_alarms(self, *, after_seq: int, limit: int) -> list[Fetched]:
        """Up to ``limit`` ``(seq, ts, event)`` alarm rows after ``after_seq``, in order."""
        return await self._fetch_stream(self._alarms, after_seq, limit)

    async def _fetch_stream(self, stream: _Stream, after_seq: int, limit: int) -> list[Fetched]:
        rows = await self._call(self._fetch, stream.table, max(after_seq, stream.acked), limit)
        if self.write_error is None or len(rows) >= limit:
            return rows
        # The disk refuses writes: what waits in memory goes out live, up to the seq
        # numbers the high-water record has durably reserved for it.
        after = rows[-1][0] if rows else after_seq
        extra = [r for r in stream.waiting() if r[0] > after][: limit - len(rows)]
        if not extra:
            return rows
        reserved = await self._call(self._reserve_live, stream, extra[-1][0])
        if not reserved:
            ceiling = self._highwater.record.live.get(stream.table, 0)
            extra = [r for r in extra if r[0] <= ceiling]
        if extra:
            stream.from_memory = max(stream.from_memory, extra[-1][0])
        return rows + [(seq, utc_iso(now), data) for seq, now, data, _, _ in extra]

    def _fetch(self, table: str, after_seq: int, limit: int) -> list[Fetched]:
        rows = (
            self._conn()
            .execute(
                f"SELECT seq, ts, data, t FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            .fetchall()
        )
        return [self._row(seq, ts, data, t) for seq, ts, data, t in rows]

    def _row(self, seq: int, ts: str, data: bytes | str, t: int | None) -> Fetched:
        if isinstance(data, str):  # the previous release's row: its body as text
            return seq, ts, self._legacy(seq, ts, data)
        return seq, ts if t is None else utc_iso(t), data

    def _legacy(self, seq: int, ts: str, body: str) -> bytes:
        """A row written by a release before format 2 (the body alone, as text): the
        message that release published for it."""
        return dumpb({"seq": seq, "boot": self.boot, "ts": ts, "site": self.site, **loads(body)})

    def committed_top(self) -> int:
        """The highest sample seq that may be on disk: everything above waits in memory
        (or is being committed), the newest samples."""
        s = self._samples
        return s.next_seq - 1 - len(s.pending) - len(s.inflight)

    async def delete_upto(self, seq: int) -> int:
        """Drop the sample rows up to ``seq`` (the broker has them); returns how many."""
        n = await self._delete(self._samples, seq)
        self.rows = max(0, self.rows - n)
        return n

    async def delete_alarms_upto(self, seq: int) -> int:
        """Drop the alarm rows up to ``seq`` (the broker has them)."""
        return await self._delete(self._alarms, seq)

    async def _delete(self, stream: _Stream, seq: int) -> int:
        if seq <= stream.acked:
            return 0
        n = await self._call(self._count, stream.table, stream.acked, seq)
        stream.acked = seq
        # Delivered from memory: no need to write them any more.
        delivered = [r for r in stream.pending if r[0] <= seq]
        if delivered and self.write_error is not None:
            stream.probe = delivered[-1]
        stream.pending[:] = [r for r in stream.pending if r[0] > seq]
        return n

    def _count(self, table: str, after: int, upto: int) -> int:
        sql = f"SELECT COUNT(*) FROM {table} WHERE seq > ? AND seq <= ?"
        return int(self._conn().execute(sql, (after, upto)).fetchone()[0])

    async def close(self) -> None:
        """Final flush, then close the file and the worker thread."""
        try:
            await self.flush()
        finally:
            if self._db is not None:
                db, self._db = self._db, None
                await self._call(db.close)
            self._worker.shutdown()

    def stats(self) -> dict[str, Any]:
        """Counters for the status: rows, backlog, pending, evicted, over_cap, last_seq, ..."""
        pending = len(self._samples.pending) + len(self._samples.inflight)
        return {
            "rows": self.rows,
            "backlog": self.rows + pending,
            "pending": pending,
            "evicted": self.evicted,
            "over_cap": self.over_cap,
            "last_seq": self._samples.next_seq - 1,
            "boot": self.boot,
            "clock_synced": self.synced,
            "alarms_pending": len(self._alarms.pending) + len(self._alarms.inflight),
            "last_alarm_seq": self._alarms.next_seq - 1,
            "alarms_dropped": self.alarms_dropped,
            "corrupt_recovered": self.corrupt_recovered,
            "commits": self.commits,
            "write_error": self.write_error,
        }

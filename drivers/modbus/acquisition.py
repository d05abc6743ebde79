"""Modbus acquisition: the poll plan executed per bus, values with quality.

* One asyncio task per bus; the blocks of a bus are read one after another (a serial
  line carries one transaction at a time), the buses run concurrently.
* The blocks due in a pass are coalesced into the fewest reads (``plan.coalesce``):
  a slow block next to a fast one rides in the fast block's request, and a block that
  would fall due before the next pass joins a read going out now. One read, one
  quality: a failed read marks the points of that read bad, no others. A slave that
  refuses a coalesced read (exception 2 or 3: a register in between it lacks, or a
  span too long for it) has those blocks read apart at once and from then on.
* A failed request is repeated ``retries`` times before the poll counts as failed, so
  one corrupted frame on a noisy line costs a repeat, not a value.
* Per-slave backoff only for silence: after ``silent_before_backoff`` requests in a row
  that got no byte back, the slave is left alone for ``backoff_s`` and then probed with
  one request, so a dead slave costs at most one timeout per backoff window. A slave
  that answers, however garbled, is alive and keeps its poll rate.
* Failures become qualities, never exceptions: no answer -> ``timeout``; a corrupted,
  incomplete or mismatched answer (wrong slave id, function code or length) ->
  ``framing``; an exception response -> ``exception`` with its code. Plausibility,
  the hold of the last good value and staleness are ``quality.PointGuard``'s.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.aio import wait_any
from controller.config.schema import BusConfig, StationConfig
from controller.logs import get_logger
from controller.values import BadReason, Reading
from drivers.modbus.channels import Channel, open_channel
from drivers.modbus.codec import from_engineering, to_engineering
from drivers.modbus.faults import UNEXPECTED_QUALITY
from drivers.modbus.plan import Block, Read, build_plan, coalesce
from drivers.modbus.quality import STALE_PERIODS, PointGuard, point_guards
from drivers.modbus.rtu import TransactionError

log = get_logger(__name__)

__all__ = ["STALE_PERIODS", "Acquisition", "BusPoller", "PassRecord", "SlaveStats", "read_once"]

#: Exception codes with which a slave refuses the span of a read: a register it does not
#: have (2, illegal data address) or more registers than it serves at once (3).
_REFUSED_SPAN = (2, 3)


@dataclass(frozen=True, slots=True)
class PassRecord:
    """One pass of a bus: when it ran, the reads it made, the requests they took."""

    started: float
    ended: float
    reads: tuple[Read, ...]
    requests: int
    #: silence the line still owed when the pass ended (t3.5 after the last byte, less
    #: what the pass's own work after that byte already took): the line is free for the
    #: next request at ``ended + quiet_s``
    quiet_s: float = 0.0


@dataclass
class SlaveStats:
    #: requests sent, repeats included
    requests: int = 0
    #: failed polls (every attempt failed), by reason
    errors: dict[str, int] = field(default_factory=dict)
    #: failed attempts, by reason, repeated or not: how noisy the line is
    line_errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0
    answered: int = 0
    backoff_until: float = 0.0
    backing_off: bool = False
    #: failed polls in a row
    failures_in_row: int = 0
    #: requests in a row that got no byte back
    silent_in_row: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "line_errors": dict(self.line_errors),
            "retries": self.retries,
            "latency_ms_avg": round(1000 * self.latency_sum_s / self.answered, 2)
            if self.answered
            else None,
            "latency_ms_max": round(1000 * self.latency_max_s, 2),
            "backing_off": self.backing_off,
        }


class BusPoller:
    """One bus: its channel, its blocks, its slaves' statistics."""

    def __init__(
        self,
        name: str,
        bus: BusConfig,
        blocks: list[Block],
        clock: Callable[[], float],
        guards: dict[str, PointGuard] | None = None,
        *,
        max_gap: int = 0,
    ) -> None:
        self.name = name
        self.bus = bus
        self.blocks = blocks
        #: unused registers a read may bridge (the plan's, from max_gap_registers)
        self.max_gap = max_gap
        #: pairs of blocks a slave refused to serve in one read
        self.apart: set[frozenset[int]] = set()
        #: the latest passes, newest last: what each cost on the wire and in time
        self.pass_log: deque[PassRecord] = deque(maxlen=1024)
        self.clock = clock
        self.next_due = dict.fromkeys(range(len(blocks)), 0.0)
        self.slaves: dict[int, SlaveStats] = {b.slave_id: SlaveStats() for b in blocks}
        self.guards = guards if guards is not None else {}
        self.readings: dict[str, Reading] = {}
        self.progress = 0
        self.passes = 0  # poll_due calls: a dead slave must not turn them into a busy loop
        #: point name -> (slave id, kind, address, registers or bit): the latest value wins
        self.pending_writes: dict[str, tuple[int, str, int, list[int]]] = {}
        self.write_errors = 0
        #: (block index, monotonic time) of every completed read, newest last (bounded)
        self.history: list[tuple[int, float]] = []
        self.channel: Channel = open_channel(name, bus)

    async def connect(self) -> bool:
        return await self.channel.connect()

    def close(self) -> None:
        self.channel.close()

    async def _write_pending(self) -> None:
        """Writes go first in a pass: a speed reference should not wait behind reads."""
        while self.pending_writes:
            name, (slave_id, kind, address, words) = next(iter(self.pending_writes.items()))
            del self.pending_writes[name]
            error: TransactionError | None = None
            for _ in range(1 + self.bus.retries):
                try:
                    await self.channel.write(slave_id, kind, address, words)
                except TransactionError as exc:
                    error = exc
                    if exc.reason is BadReason.EXCEPTION:
                        break  # the slave refused it: asking again changes nothing
                    continue
                error = None
                break
            if error is not None:
                self.write_errors += 1
                log.warning("write failed", bus=self.name, point=name, error=error.detail)
            self.progress += 1

    async def poll_due(self) -> None:
        """One pass: queued writes, then the due blocks, coalesced into the fewest reads."""
        self.passes += 1
        started = self.clock()
        requests = sum(s.requests for s in self.slaves.values())
        await self._write_pending()
        done: list[Read] = []
        for read in self._due_reads(self.clock(), started):
            stats = self.slaves[read.slave_id]
            now = self.clock()
            if now < stats.backoff_until:
                # The slave went silent earlier in this pass: it is being left alone, its
                # points keep their bad reason, and these blocks are due again when the
                # window ends (one probe per window).
                for i in read.members:
                    self.next_due[i] = stats.backoff_until
                continue
            for i in read.members:
                period = self.blocks[i].period_s
                self.next_due[i] = _next_slot(self.next_due[i], period, now, started)
            await self._poll_read(read)
            done.append(read)
        self.pass_log.append(
            PassRecord(
                started,
                self.clock(),
                tuple(done),
                sum(s.requests for s in self.slaves.values()) - requests,
                self.channel.quiet_left_s(),
            )
        )

    async def read_once(self) -> None:
        """Read every block once (the commissioning read of the module's ``read_once``):
        a slave that leaves a request unanswered is not asked again for its other
        blocks, whose points read as timed out with the first failure's detail."""
        silent: dict[int, Reading] = {}
        for read in coalesce(self.blocks, range(len(self.blocks)), max_gap=self.max_gap):
            stats = self.slaves[read.slave_id]
            if read.slave_id in silent:
                failure = silent[read.slave_id]
                detail = f"{failure.detail}; not asked again"
                for i in read.members:
                    for pp in self.blocks[i].points:
                        self._store(
                            Reading.bad(
                                pp.name, pp.config.unit, BadReason.TIMEOUT, detail, t_mono=0.0
                            )
                        )
                continue
            await self._poll_read(read, retry_silence=False)
            first = self.readings.get(self.blocks[read.members[0]].points[0].name)
            if stats.silent_in_row and first is not None and first.reason is BadReason.TIMEOUT:
                silent[read.slave_id] = first

    def _due_reads(self, now: float, started: float) -> list[Read]:
        """The reads of this pass. A block not due yet joins a read going out anyway when
        it would fall due before the next pass: one request instead of two."""
        due: list[int] = []
        later: list[int] = []
        for i, block in enumerate(self.blocks):
            stats = self.slaves[block.slave_id]
            if now < stats.backoff_until:
                if now >= self.next_due[i]:
                    self.next_due[i] = stats.backoff_until
                continue
            (due if now >= self.next_due[i] else later).append(i)
        if not due:
            return []
        next_pass = min(
            _next_slot(self.next_due[i], self.blocks[i].period_s, now, started) for i in due
        )
        # The tolerance keeps blocks on one grid (10 s and 0.5 s from the same start) from
        # being read a period early for a rounding error.
        early = [i for i in later if self.next_due[i] < next_pass - 1e-6]
        reads = coalesce(self.blocks, due + early, max_gap=self.max_gap, apart=self.apart)
        wanted = set(due)
        return [r for r in reads if wanted.intersection(r.members)]

    async def _attempts(
        self, read: Read, stats: SlaveStats, attempts: int, *, retry_silence: bool
    ) -> list[int]:
        """Read ``read`` with up to ``attempts`` requests; the last failure if all fail."""
        last: TransactionError | None = None
        for attempt in range(attempts):
            if attempt:
                stats.retries += 1
            stats.requests += 1
            try:
                words = await self.channel.read(read)
            except TransactionError as exc:
                last = exc
                stats.line_errors[exc.reason.value] = stats.line_errors.get(exc.reason.value, 0) + 1
                stats.silent_in_row = 0 if exc.answered else stats.silent_in_row + 1
                if exc.reason is BadReason.EXCEPTION:
                    break  # a refusal is an answer: asking again gets the same one
                if not (exc.answered or retry_silence):
                    break  # the commissioning read: one timeout per silent slave
                continue
            stats.silent_in_row = 0
            return words
        assert last is not None
        raise last

    def _attempts_now(self, stats: SlaveStats) -> int:
        # A slave in backoff gets one probe per window: its repeats would cost the live
        # slaves one more timeout each.
        return 1 if stats.backing_off else 1 + self.bus.retries

    async def _poll_read(self, read: Read, *, retry_silence: bool = True) -> None:
        """One transaction; its outcome, good or bad, goes to every point it serves."""
        stats = self.slaves[read.slave_id]
        started = self.clock()
        try:
            words = await self._attempts(
                read, stats, self._attempts_now(stats), retry_silence=retry_silence
            )
        except TransactionError as exc:
            if exc.code in _REFUSED_SPAN and len(read.members) > 1:
                await self._read_apart(read, exc, retry_silence=retry_silence)
                return
            self._failed(read, stats, exc.reason, exc.detail)
        except Exception as exc:  # a surprise must never reach the loop
            log.error("unexpected Modbus error", bus=self.name, error=repr(exc))
            self._failed(read, stats, UNEXPECTED_QUALITY, repr(exc), internal=True)
        else:
            self._answered(read, stats, words, started)
        self.progress += 1
        t = self.clock()
        self.history.extend((i, t) for i in read.members)
        if len(self.history) > 4096:
            del self.history[:2048]

    async def _read_apart(self, read: Read, exc: TransactionError, *, retry_silence: bool) -> None:
        """The slave refused a coalesced read (a register in between it does not have, or
        more registers than it serves at once): never coalesce these blocks again, and
        read them one by one now, so the refusal costs one request, not their values."""
        self.apart.update(frozenset((i, j)) for i in read.members for j in read.members if i < j)
        log.info(
            "slave refused a coalesced read; reading its blocks apart",
            bus=self.name,
            slave=read.slave_id,
            start=read.start,
            count=read.count,
            detail=exc.detail,
        )
        for part in coalesce(self.blocks, read.members, max_gap=self.max_gap, apart=self.apart):
            await self._poll_read(part, retry_silence=retry_silence)

    def _answered(self, read: Read, stats: SlaveStats, words: list[int], started: float) -> None:
        t = self.clock()
        latency = t - started
        stats.answered += 1
        stats.latency_sum_s += latency
        stats.latency_max_s = max(stats.latency_max_s, latency)
        if stats.backing_off or stats.failures_in_row:
            log.info("slave answering again", bus=self.name, slave=read.slave_id)
        stats.failures_in_row = 0
        stats.backing_off = False
        stats.backoff_until = 0.0
        for i in read.members:
            for pp in self.blocks[i].points:
                offset = pp.config.address - read.start
                chunk = words[offset : offset + pp.config.register_count]
                self._store(to_engineering(pp.name, pp.config, chunk, t_mono=t))

    def _failed(
        self,
        read: Read,
        stats: SlaveStats,
        reason: BadReason,
        detail: str,
        *,
        internal: bool = False,
    ) -> None:
        t = self.clock()
        key = "internal" if internal else reason.value
        stats.errors[key] = stats.errors.get(key, 0) + 1
        stats.failures_in_row += 1
        for i in read.members:
            for pp in self.blocks[i].points:
                self._store(Reading.bad(pp.name, pp.config.unit, reason, detail, t_mono=t))
        if stats.silent_in_row >= self.bus.silent_before_backoff or internal:
            stats.backoff_until = t + self.bus.backoff_s
            if not stats.backing_off:
                log.warning(
                    "slave silent; backing off",
                    bus=self.name,
                    slave=read.slave_id,
                    detail=detail,
                    unanswered=stats.silent_in_row,
                    backoff_s=self.bus.backoff_s,
                )
            stats.backing_off = True
            return
        if stats.silent_in_row == 0:
            stats.backing_off = False  # it answered, if garbled: alive, back to full rate
        if stats.failures_in_row == 1:
            log.warning(
                "poll failed",
                bus=self.name,
                slave=read.slave_id,
                reason=reason.value,
                detail=detail,
            )

    def _store(self, reading: Reading) -> None:
        guard = self.guards.get(reading.name)
        self.readings[reading.name] = guard.update(reading) if guard is not None else reading


def _next_slot(due: float, period: float, now: float, pass_started: float) -> float:
    """The block's next poll: fixed rate without drift. The first read starts the
    schedule at the start of its pass, so blocks read together stay due together (one
    pass per tick, not one per block). Slots already missed (a slow slave held the bus)
    are skipped, not caught up in a burst of reads that would bring nothing new."""
    if not due:
        return pass_started + period
    missed = max(0, math.floor((now - due) / period))
    return due + (missed + 1) * period


class Acquisition:
    """Every bus of a station; ``read_all()`` is what the control loop reads."""

    def __init__(self, cfg: StationConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        plan = build_plan(cfg)
        self.guards = point_guards(cfg)
        self.pollers = [
            BusPoller(bp.name, bp.bus, list(bp.blocks), clock, self.guards, max_gap=bp.max_gap)
            for bp in plan.buses
        ]
        self.period_s = min((b.period_s for p in self.pollers for b in p.blocks), default=1.0)
        self._wake = asyncio.Event()  # a queued write wakes the bus loops early

    async def start(self) -> None:
        await asyncio.gather(*(p.connect() for p in self.pollers))

    def write(self, point: str, value: float) -> None:
        """Queue a write of ``value`` (engineering units) to a holding-register point."""
        dev_name, cfg_point = self.cfg.points()[point]
        dev = self.cfg.devices[dev_name]
        for poller in self.pollers:
            if poller.name == dev.bus:
                words = from_engineering(cfg_point, value)
                poller.pending_writes[point] = (
                    dev.slave_id,
                    cfg_point.kind,
                    cfg_point.address,
                    words,
                )
                self._wake.set()
                return

    async def close(self) -> None:
        for p in self.pollers:
            p.close()

    async def poll_due(self) -> None:
        await asyncio.gather(*(p.poll_due() for p in self.pollers))

    async def run(self, stop: asyncio.Event) -> None:
        """Each bus polls on its own, so a slow bus never holds back a fast one."""

        async def bus_loop(poller: BusPoller) -> None:
            while not stop.is_set():
                started = self.clock()
                await poller.poll_due()
                wake = min(poller.next_due.values(), default=started + self.period_s)
                delay = max(0.0, wake - self.clock())
                if delay and not poller.pending_writes:
                    self._wake.clear()
                    await wait_any((stop, self._wake), delay)
                else:
                    await asyncio.sleep(0)

        await asyncio.gather(*(bus_loop(p) for p in self.pollers))

    def read_all(self) -> dict[str, Reading]:
        now = self.clock()
        return {name: guard.view(now) for name, guard in self.guards.items()}

    @property
    def progress(self) -> int:
        return sum(p.progress for p in self.pollers)

    def stats(self) -> dict[str, Any]:
        return {
            p.name: {str(sid): s.as_dict() for sid, s in p.slaves.items()} for p in self.pollers
        }


async def read_once(cfg: StationConfig) -> dict[str, Reading]:
    """Poll every point once (the commissioning read).

    Buses are read at the same time, and a slave that leaves a request unanswered is
    not asked again for its other blocks: a dead slave costs one timeout, not one per
    block and repeat.
    """
    acq = Acquisition(cfg)
    await acq.start()
    try:
        await asyncio.gather(*(p.read_once() for p in acq.pollers))
        return acq.read_all()
    finally:
        await acq.close()

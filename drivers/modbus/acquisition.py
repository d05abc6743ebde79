"""Modbus acquisition on pymodbus: the poll plan executed per bus, values with quality.

* One asyncio task per bus; the blocks of a bus are read one after another (a serial
  line carries one transaction at a time), the buses run concurrently.
* Per-slave backoff: after a failed transaction the slave is left alone for
  ``backoff_s`` and then probed with one request, so a dead slave costs at most one
  timeout per backoff window and the other slaves keep their poll rate.
* Failures become qualities, never exceptions: no answer -> ``timeout``; bytes came
  back but pymodbus could not frame them (bad CRC, garbage) -> ``framing``; an
  exception response -> ``exception`` with its code; a value too old -> ``stale``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from controller.aio import wait_any
from controller.config.schema import BusConfig, StationConfig
from controller.logs import get_logger
from controller.values import BadReason, Reading
from drivers.modbus.codec import from_engineering, to_engineering
from drivers.modbus.plan import Block, build_plan

log = get_logger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge",
    6: "slave device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
#: A value older than this many poll periods (plus one timeout) is stale.
STALE_PERIODS = 3.0


@dataclass
class SlaveStats:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0
    answered: int = 0
    backoff_until: float = 0.0
    failures_in_row: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "latency_ms_avg": round(1000 * self.latency_sum_s / self.answered, 2)
            if self.answered
            else None,
            "latency_ms_max": round(1000 * self.latency_max_s, 2),
            "backing_off": self.failures_in_row > 0,
        }


class _Failure(Exception):
    def __init__(self, reason: BadReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class BusPoller:
    """One bus: its client, its blocks, its slaves' statistics."""

    def __init__(
        self, name: str, bus: BusConfig, blocks: list[Block], clock: Callable[[], float]
    ) -> None:
        self.name = name
        self.bus = bus
        self.blocks = blocks
        self.clock = clock
        self.next_due = dict.fromkeys(range(len(blocks)), 0.0)
        self.slaves: dict[int, SlaveStats] = {b.slave_id: SlaveStats() for b in blocks}
        self.readings: dict[str, Reading] = {}
        self.progress = 0
        self.passes = 0  # poll_due calls: a dead slave must not turn them into a busy loop
        #: point name -> (slave id, kind, address, registers or bit): the latest value wins
        self.pending_writes: dict[str, tuple[int, str, int, list[int]]] = {}
        self.write_errors = 0
        #: (block index, monotonic time) of every completed read, newest last (bounded)
        self.history: list[tuple[int, float]] = []
        self._rx = bytearray()
        self.client: AsyncModbusSerialClient | AsyncModbusTcpClient = self._make_client()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._rx.clear()
        else:
            self._rx += data
        return data

    def _make_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        b = self.bus
        common: dict[str, Any] = {
            "timeout": b.timeout_s,
            "retries": b.retries,
            "reconnect_delay": 1.0,
            "reconnect_delay_max": 30.0,
            "trace_packet": self._trace,
        }
        if b.type == "rtu":
            assert b.port is not None
            return AsyncModbusSerialClient(
                b.port,
                framer=FramerType.RTU,
                baudrate=b.baudrate,
                bytesize=b.bytesize,
                parity=b.parity,
                stopbits=b.stopbits,
                **common,
            )
        framer = FramerType.RTU if b.type == "rtu_over_tcp" else FramerType.SOCKET
        assert b.host is not None
        return AsyncModbusTcpClient(b.host, port=b.tcp_port, framer=framer, **common)

    async def connect(self) -> bool:
        try:
            return bool(await self.client.connect())
        except (OSError, ModbusException) as exc:
            log.warning("bus not connected", bus=self.name, error=str(exc))
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    async def _read(self, block: Block) -> list[int]:
        c = self.client
        n, sid = block.count, block.slave_id
        if not c.connected:
            await self.connect()
            if not c.connected:
                raise _Failure(BadReason.TIMEOUT, f"bus {self.name} not connected")
        try:
            if block.kind == "holding":
                rr = await c.read_holding_registers(block.start, count=n, device_id=sid)
            elif block.kind == "input":
                rr = await c.read_input_registers(block.start, count=n, device_id=sid)
            elif block.kind == "coil":
                rr = await c.read_coils(block.start, count=n, device_id=sid)
            else:
                rr = await c.read_discrete_inputs(block.start, count=n, device_id=sid)
        except ModbusException as exc:
            if self._rx:
                raise _Failure(
                    BadReason.FRAMING, f"unframeable reply {bytes(self._rx[:16]).hex()}"
                ) from exc
            raise _Failure(BadReason.TIMEOUT, f"no answer within {self.bus.timeout_s:g} s") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown")
            raise _Failure(BadReason.EXCEPTION, f"code {code} ({name})")
        if block.kind in ("coil", "discrete"):
            return [1 if b else 0 for b in rr.bits[: block.count]]
        regs = list(rr.registers)
        if len(regs) != block.count:
            raise _Failure(BadReason.FRAMING, f"{len(regs)} registers, asked {block.count}")
        return regs

    async def _write_pending(self) -> None:
        """Writes go first in a pass: a speed reference should not wait behind reads."""
        while self.pending_writes:
            name, (slave_id, kind, address, words) = next(iter(self.pending_writes.items()))
            del self.pending_writes[name]
            try:
                if kind == "coil":
                    rr = await self.client.write_coil(address, bool(words[0]), device_id=slave_id)
                elif len(words) == 1:
                    rr = await self.client.write_register(address, words[0], device_id=slave_id)
                else:
                    rr = await self.client.write_registers(address, words, device_id=slave_id)
                if rr.isError():
                    raise ModbusException(f"exception response {rr}")
            except (ModbusException, OSError) as exc:
                self.write_errors += 1
                log.warning("write failed", bus=self.name, point=name, error=str(exc))
            self.progress += 1

    async def poll_due(self) -> None:
        self.passes += 1
        await self._write_pending()
        for i, block in enumerate(self.blocks):
            now = self.clock()
            if now < self.next_due[i]:
                continue
            stats = self.slaves[block.slave_id]
            if now < stats.backoff_until:
                # The slave is being left alone: its points keep their bad reason, and
                # this block is due again when the window ends (one probe per window).
                self.next_due[i] = stats.backoff_until
                continue
            self.next_due[i] = max(self.next_due[i] + block.period_s, now)
            await self._poll_block(i, block, stats)

    async def _poll_block(self, index: int, block: Block, stats: SlaveStats) -> None:
        started = self.clock()
        stats.requests += 1
        try:
            words = await self._read(block)
        except _Failure as exc:
            t = self.clock()
            stats.errors[exc.reason.value] = stats.errors.get(exc.reason.value, 0) + 1
            stats.failures_in_row += 1
            stats.backoff_until = t + self.bus.backoff_s
            for pp in block.points:
                self.readings[pp.name] = Reading.bad(
                    pp.name, pp.config.unit, exc.reason, exc.detail, t_mono=t
                )
            if stats.failures_in_row == 1:
                log.warning(
                    "slave failed; backing off",
                    bus=self.name,
                    slave=block.slave_id,
                    reason=exc.reason.value,
                    detail=exc.detail,
                    backoff_s=self.bus.backoff_s,
                )
        except Exception as exc:  # a pymodbus surprise must never reach the loop
            t = self.clock()
            stats.errors["internal"] = stats.errors.get("internal", 0) + 1
            stats.backoff_until = t + self.bus.backoff_s
            for pp in block.points:
                self.readings[pp.name] = Reading.bad(
                    pp.name, pp.config.unit, BadReason.FRAMING, repr(exc), t_mono=t
                )
            log.error("unexpected Modbus error", bus=self.name, error=repr(exc))
        else:
            t = self.clock()
            latency = t - started
            stats.answered += 1
            stats.latency_sum_s += latency
            stats.latency_max_s = max(stats.latency_max_s, latency)
            if stats.failures_in_row:
                log.info("slave answering again", bus=self.name, slave=block.slave_id)
            stats.failures_in_row = 0
            stats.backoff_until = 0.0
            for pp in block.points:
                offset = pp.config.address - block.start
                chunk = words[offset : offset + pp.config.register_count]
                self.readings[pp.name] = to_engineering(pp.name, pp.config, chunk, t_mono=t)
        self.progress += 1
        self.history.append((index, self.clock()))
        if len(self.history) > 4096:
            del self.history[:2048]


class Acquisition:
    """Every bus of a station; ``snapshot()`` is what the control loop reads."""

    def __init__(self, cfg: StationConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        plan = build_plan(cfg)
        self.pollers = [BusPoller(bp.name, bp.bus, list(bp.blocks), clock) for bp in plan.buses]
        self._points = {
            name: (point, cfg.poll_period_s(point.poll), cfg.buses[dev].timeout_s)
            for name, (dev_name, point) in cfg.points().items()
            for dev in [cfg.devices[dev_name].bus]
        }
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

    def snapshot(self) -> dict[str, Reading]:
        now = self.clock()
        latest: dict[str, Reading] = {}
        for p in self.pollers:
            latest.update(p.readings)
        out: dict[str, Reading] = {}
        for name, (point, period, timeout) in self._points.items():
            r = latest.get(name)
            if r is None:
                out[name] = Reading.bad(name, point.unit, BadReason.NOT_POLLED, "no read yet")
            elif r.good and now - r.t_mono > STALE_PERIODS * period + timeout:
                out[name] = Reading.bad(
                    name,
                    point.unit,
                    BadReason.STALE,
                    f"last good value {now - r.t_mono:.1f} s old",
                    raw=r.raw,
                    t_mono=r.t_mono,
                )
            else:
                out[name] = r
        return out

    @property
    def progress(self) -> int:
        return sum(p.progress for p in self.pollers)

    def stats(self) -> dict[str, Any]:
        return {
            p.name: {str(sid): s.as_dict() for sid, s in p.slaves.items()} for p in self.pollers
        }


async def read_once(cfg: StationConfig) -> dict[str, Reading]:
    """Poll every point once (the commissioning read)."""
    acq = Acquisition(cfg)
    await acq.start()
    try:
        for p in acq.pollers:
            for i, block in enumerate(p.blocks):
                await p._poll_block(i, block, p.slaves[block.slave_id])
        return acq.snapshot()
    finally:
        await acq.close()

"""One request on a bus, whatever carries it: our RTU master, or pymodbus for Modbus TCP.

A channel makes exactly one attempt; retries, backoff and quality are acquisition's.
Every failure is a ``TransactionError`` that says whether the slave answered at all.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from controller.config.schema import BusConfig
from controller.logs import get_logger
from controller.values import BadReason
from drivers.modbus.plan import Read
from drivers.modbus.rtu import (
    EXCEPTION_NAMES,
    READ_FUNCTIONS,
    Link,
    RtuMaster,
    SerialLink,
    TcpLink,
    TransactionError,
    read_request,
    write_request,
)
from drivers.modbus.timing import char_time_s, frame_gap_s

log = get_logger(__name__)


class Channel(Protocol):
    async def connect(self) -> bool: ...

    def close(self) -> None: ...

    async def read(self, read: Read) -> list[int]:
        """The read's registers (or bits as 0/1); raises ``TransactionError``."""
        ...

    async def write(self, slave_id: int, kind: str, address: int, words: list[int]) -> None: ...

    def quiet_left_s(self) -> float:
        """Seconds before the line may carry the next request (t3.5 still to run)."""
        ...


def open_channel(name: str, bus: BusConfig) -> Channel:
    """RTU lines (serial or behind a transparent gateway) on our master; TCP on pymodbus."""
    if bus.type == "tcp":
        return PymodbusTcpChannel(name, bus)
    return RtuChannel(name, bus)


def _unpack(block: Read, pdu: bytes) -> list[int]:
    data = pdu[2:]
    if block.kind in ("coil", "discrete"):
        return [(data[i // 8] >> (i % 8)) & 1 for i in range(block.count)]
    return list(struct.unpack(f">{block.count}H", data))


class RtuChannel:
    def __init__(self, name: str, bus: BusConfig) -> None:
        self.name = name
        link: Link
        if bus.type == "rtu":
            assert bus.port is not None
            link = SerialLink(
                bus.port,
                baudrate=bus.baudrate,
                bytesize=bus.bytesize,
                parity=bus.parity,
                stopbits=bus.stopbits,
            )
        else:
            assert bus.host is not None
            link = TcpLink(bus.host, bus.tcp_port, timeout_s=bus.timeout_s)
        char_s = char_time_s(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
        self.master = RtuMaster(
            link,
            timeout_s=bus.timeout_s,
            char_s=char_s,
            echo=bus.echo,
            gap_s=frame_gap_s(bus.baudrate, char_s),
        )

    async def connect(self) -> bool:
        try:
            await self.master.link.open()
        except (OSError, TimeoutError) as exc:
            log.warning("bus not connected", bus=self.name, error=str(exc))
            return False
        return True

    def close(self) -> None:
        self.master.link.close()
        self.master.timer.close()

    def quiet_left_s(self) -> float:
        m = self.master
        return max(0.0, m.link.last_rx + m.gap_s - time.monotonic())

    async def read(self, block: Read) -> list[int]:
        pdu = await self.master.transact(
            block.slave_id, read_request(block.kind, block.start, block.count)
        )
        return _unpack(block, pdu)

    async def write(self, slave_id: int, kind: str, address: int, words: list[int]) -> None:
        await self.master.transact(slave_id, write_request(kind, address, words))


class PymodbusTcpChannel:
    """Modbus TCP: the MBAP header's transaction id already pairs answers with requests;
    we still check the unit id and the function code pymodbus does not."""

    def __init__(self, name: str, bus: BusConfig) -> None:
        self.name = name
        self.bus = bus
        self._rx = bytearray()
        assert bus.host is not None
        self.client = AsyncModbusTcpClient(
            bus.host,
            port=bus.tcp_port,
            framer=FramerType.SOCKET,
            timeout=bus.timeout_s,
            retries=0,  # acquisition retries, so that it sees every attempt
            reconnect_delay=1.0,
            reconnect_delay_max=30.0,
            trace_packet=self._trace,
        )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._rx.clear()
        else:
            self._rx += data
        return data

    async def connect(self) -> bool:
        try:
            return bool(await self.client.connect())
        except (OSError, ModbusException) as exc:
            log.warning("bus not connected", bus=self.name, error=str(exc))
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    async def _call(self, slave_id: int, fc: int, request: Callable[[], Awaitable[Any]]) -> Any:
        if not self.client.connected:
            await self.connect()
            if not self.client.connected:
                raise TransactionError(
                    BadReason.TIMEOUT, f"bus {self.name} not connected", answered=False
                )
        try:
            rr = await request()
        except ModbusException as exc:
            if self._rx:
                raise TransactionError(
                    BadReason.FRAMING,
                    f"unframeable reply {bytes(self._rx[:16]).hex()}",
                    answered=True,
                ) from exc
            raise TransactionError(
                BadReason.TIMEOUT, f"no answer within {self.bus.timeout_s:g} s", answered=False
            ) from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown")
            raise TransactionError(
                BadReason.EXCEPTION, f"code {code} ({name})", answered=True, code=code
            )
        got_fc = int(getattr(rr, "function_code", fc))
        got_id = int(getattr(rr, "dev_id", slave_id))
        if got_fc != fc or got_id != slave_id:
            raise TransactionError(
                BadReason.FRAMING,
                f"reply from unit {got_id} function {got_fc}, asked unit {slave_id} function {fc}",
                answered=True,
            )
        return rr

    def quiet_left_s(self) -> float:
        return 0.0  # TCP: no silence between frames

    async def read(self, block: Read) -> list[int]:
        c, n, sid, start = self.client, block.count, block.slave_id, block.start
        fc = READ_FUNCTIONS[block.kind]
        calls = {
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
            "coil": c.read_coils,
            "discrete": c.read_discrete_inputs,
        }
        call = calls[block.kind]
        rr = await self._call(sid, fc, lambda: call(start, count=n, device_id=sid))
        if block.kind in ("coil", "discrete"):
            return [1 if b else 0 for b in rr.bits[:n]]
        regs = [int(r) for r in rr.registers]
        if len(regs) != n:
            raise TransactionError(
                BadReason.FRAMING, f"{len(regs)} registers, asked {n}", answered=True
            )
        return regs

    async def write(self, slave_id: int, kind: str, address: int, words: list[int]) -> None:
        c = self.client
        if kind == "coil":
            await self._call(
                slave_id, 5, lambda: c.write_coil(address, bool(words[0]), device_id=slave_id)
            )
        elif len(words) == 1:
            await self._call(
                slave_id, 6, lambda: c.write_register(address, words[0], device_id=slave_id)
            )
        else:
            await self._call(
                slave_id, 16, lambda: c.write_registers(address, words, device_id=slave_id)
            )

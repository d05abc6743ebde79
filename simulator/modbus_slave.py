"""Our own Modbus slaves, independent of pymodbus: RTU on a serial line, TCP and RTU-over-TCP.

They serve a ``RegisterImage`` (the station file's register maps) and can misbehave on
demand, per slave and per request: stay silent, answer with a broken CRC or with
garbage, or answer with an exception code.

Optional baud emulation makes a pty spend the time a real line spends: a pty delivers
the request at once, so the reply leaves when the request's last character would have
arrived, plus the t3.5 silence by which a slave knows the request ended, plus the
reply's own characters; timed with a timerfd, not asyncio's millisecond sleeps. It also
checks the master's side of the rule: a request that starts less than t3.5 after the
previous reply ended would run on from it in every receiver, so it is counted
(``short_gaps``) and ignored, as a real slave would.

Supported functions: 1, 2 (bits), 3, 4 (registers), 5, 6, 15, 16 (writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass

from drivers.modbus.deadline import DeadlineTimer
from drivers.modbus.timing import char_time_s, frame_gap_s
from simulator.registers import ILLEGAL_FUNCTION, ModbusException, RegisterImage, SlaveTables


@dataclass(frozen=True)
class SlaveFault:
    mode: str  # silent | bad_crc | garbage | exception
    exception_code: int = 4


FaultHook = Callable[[int], SlaveFault | None]


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + struct.pack("<H", crc16(frame))


_READ = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


def _read(image: RegisterImage, bus: str, slave_id: int, fc: int, pdu: bytes) -> bytes:
    """Functions 1 to 4: bits packed eight to a byte, or registers big-endian."""
    address, count = struct.unpack(">HH", pdu[1:5])
    limit = 2000 if fc in (1, 2) else 125
    if not 1 <= count <= limit:
        raise ModbusException(3, "quantity out of range")
    words = image.read(bus, slave_id, _READ[fc], address, count)
    if fc in (1, 2):
        packed = bytearray((count + 7) // 8)
        for i, bit in enumerate(words):
            if bit:
                packed[i // 8] |= 1 << (i % 8)
        return bytes((fc, len(packed))) + bytes(packed)
    return bytes((fc, 2 * count)) + struct.pack(f">{count}H", *words)


def _write_coil(slave: SlaveTables, pdu: bytes) -> bytes:
    address, value = struct.unpack(">HH", pdu[1:5])
    slave.write("coil", address, [1 if value == 0xFF00 else 0])
    return pdu[:5]


def _write_register(slave: SlaveTables, pdu: bytes) -> bytes:
    address, value = struct.unpack(">HH", pdu[1:5])
    slave.write("holding", address, [value])
    return pdu[:5]


def _write_coils(slave: SlaveTables, pdu: bytes) -> bytes:
    address, count, _nbytes = struct.unpack(">HHB", pdu[1:6])
    bits = [(pdu[6 + i // 8] >> (i % 8)) & 1 for i in range(count)]
    slave.write("coil", address, bits)
    return pdu[:5]


def _write_registers(slave: SlaveTables, pdu: bytes) -> bytes:
    address, count, _nbytes = struct.unpack(">HHB", pdu[1:6])
    values = list(struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count]))
    slave.write("holding", address, values)
    return pdu[:5]


#: The write functions by code; each answers with the request's first five bytes.
_WRITE: dict[int, Callable[[SlaveTables, bytes], bytes]] = {
    5: _write_coil,
    6: _write_register,
    15: _write_coils,
    16: _write_registers,
}


def handle_pdu(image: RegisterImage, bus: str, slave_id: int, pdu: bytes) -> bytes:
    """The response PDU for a request PDU (an exception PDU for a refused request)."""
    fc = pdu[0]
    try:
        if fc in _READ:
            return _read(image, bus, slave_id, fc, pdu)
        # An unknown slave is refused before an unknown function (exception 2, not 1).
        slave = image.slave(bus, slave_id)
        if slave is None:
            raise ModbusException(2)
        write = _WRITE.get(fc)
        if write is None:
            raise ModbusException(ILLEGAL_FUNCTION)
        return write(slave, pdu)
    except ModbusException as exc:
        return bytes((fc | 0x80, exc.code))
    except (struct.error, IndexError):
        return bytes((fc | 0x80, 3))


def request_length(buf: bytes) -> int | None:
    """Length of the RTU request at the start of ``buf``, once enough bytes are there."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return 4  # unknown function: slave id, fc, crc; answered with an exception


@dataclass
class SlaveStats:
    requests: int = 0
    replies: int = 0
    crc_errors: int = 0
    faults: int = 0
    #: requests that followed a reply with less than t3.5 of silence (baud emulation)
    short_gaps: int = 0
    #: the shortest silence seen between a reply's end and the next request (emulation)
    min_silence_s: float | None = None


class _Responder:
    """Shared RTU logic: which slave, which fault, what reply frame."""

    def __init__(self, image: RegisterImage, bus: str, faults: FaultHook | None) -> None:
        self.image = image
        self.bus = bus
        self.faults = faults
        self.stats = SlaveStats()

    def serves(self, slave_id: int) -> bool:
        return self.image.slave(self.bus, slave_id) is not None

    def reply_pdu(self, slave_id: int, pdu: bytes) -> tuple[bytes | None, SlaveFault | None]:
        fault = self.faults(slave_id) if self.faults else None
        self.stats.requests += 1
        if fault is not None:
            self.stats.faults += 1
            if fault.mode == "silent":
                return None, fault
            if fault.mode == "exception":
                return bytes((pdu[0] | 0x80, fault.exception_code)), fault
        return handle_pdu(self.image, self.bus, slave_id, pdu), fault

    def rtu_reply(self, frame: bytes) -> bytes | None:
        if crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
            self.stats.crc_errors += 1
            return None  # a slave ignores a corrupted request
        slave_id = frame[0]
        if not self.serves(slave_id):
            return None
        pdu, fault = self.reply_pdu(slave_id, frame[1:-2])
        if pdu is None:
            return None
        out = with_crc(bytes((slave_id,)) + pdu)
        if fault is not None and fault.mode == "bad_crc":
            out = out[:-2] + bytes((out[-2] ^ 0xFF, out[-1]))
        elif fault is not None and fault.mode == "garbage":
            out = bytes((slave_id,)) + os.urandom(max(3, len(out) - 1))
        self.stats.replies += 1
        return out


class RtuSlave(_Responder):
    """Every slave of one bus, answering on one end of a serial line."""

    def __init__(
        self,
        image: RegisterImage,
        *,
        bus: str,
        port: str,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        emulate_baud: bool = False,
        faults: FaultHook | None = None,
    ) -> None:
        super().__init__(image, bus, faults)
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.emulate_baud = emulate_baud
        self._fd: int | None = None
        self._buf = bytearray()
        self._last_byte = 0.0
        self._frame_start = 0.0  # when the first bytes of the frame in _buf arrived
        self._reply_end = 0.0  # when the last reply's last character left (emulation)
        self._char = char_time_s(baudrate, bytesize, parity, stopbits)
        self._gap = frame_gap_s(baudrate, self._char)
        self._timer = DeadlineTimer()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)

    async def close(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            for task in list(self._tasks):
                task.cancel()
            os.close(self._fd)
            self._fd = None
            self._timer.close()

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the other end went away; socat will bring it back or we close
        now = time.monotonic()
        if self._buf and now - self._last_byte > self._gap + 0.02:
            self._buf.clear()  # silence ended the previous (partial) frame
        if not self._buf:
            self._frame_start = now
        self._last_byte = now
        self._buf += data
        while True:
            n = request_length(bytes(self._buf))
            if n is None or len(self._buf) < n:
                return
            frame, self._buf = bytes(self._buf[:n]), self._buf[n:]
            start, self._frame_start = self._frame_start, now
            if self.emulate_baud and not self._quiet_before(start):
                continue
            reply = self.rtu_reply(frame)
            if reply is not None:
                # The request's characters, then t3.5 of silence ends it, then the reply's.
                due = start + (len(frame) + len(reply)) * self._char + self._gap
                task = asyncio.get_running_loop().create_task(self._send(reply, due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _quiet_before(self, start: float) -> bool:
        """Whether the line was silent for t3.5 between the last reply and this request."""
        if not self._reply_end:
            return True
        silence = start - self._reply_end
        st = self.stats
        st.min_silence_s = silence if st.min_silence_s is None else min(st.min_silence_s, silence)
        if silence >= self._gap:
            return True
        st.short_gaps += 1
        return False

    async def _send(self, reply: bytes, due: float) -> None:
        if self.emulate_baud:
            await self._timer.sleep_until(due)
            self._reply_end = time.monotonic()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, reply)


class TcpSlave(_Responder):
    """The same slaves behind a Modbus TCP (MBAP) or RTU-over-TCP gateway."""

    def __init__(
        self,
        image: RegisterImage,
        *,
        bus: str,
        host: str = "127.0.0.1",
        port: int = 502,
        framing: str = "mbap",
        faults: FaultHook | None = None,
    ) -> None:
        super().__init__(image, bus, faults)
        self.host = host
        self.port = port
        self.framing = framing
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                if self.framing == "mbap":
                    header = await reader.readexactly(7)
                    tid, _pid, length, unit = struct.unpack(">HHHB", header)
                    pdu = await reader.readexactly(length - 1)
                    if not self.serves(unit):
                        continue
                    out, _fault = self.reply_pdu(unit, pdu)
                    if out is None:
                        continue
                    writer.write(struct.pack(">HHHB", tid, 0, len(out) + 1, unit) + out)
                else:
                    head = await reader.readexactly(2)
                    buf = head
                    while (n := request_length(buf)) is None or len(buf) < n:
                        buf += await reader.readexactly(1)
                    reply = self.rtu_reply(buf)
                    if reply is None:
                        continue
                    writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

"""Our own Modbus RTU master: one request, one checked answer, on a serial port or a TCP gateway.

pymodbus's RTU client accepts an answer whose function code differs from the request's,
keeps receive bytes across requests in ways that change with every minor release, and
waits out the whole timeout on a corrupted frame. On a long RS-485 run beside motor
cables that turns one flipped bit into a slave backed off, or a late answer from one
slave into the next slave's values. A master is small enough to own:

* before each request the receive side is emptied (kernel buffer and ours), so a late
  answer to an earlier request can never be read as the answer to this one;
* with ``echo`` the request's own bytes are read back and dropped first (adapters
  without automatic direction control, or with local echo switched on);
* an answer is taken only with a good CRC, the slave id and function code asked, and
  the byte count asked; a well-formed frame from another slave (a late answer) is
  dropped and the wait goes on;
* stray bytes before an answer (a transceiver switching direction) are skipped;
* a corrupted answer fails ``SETTLE_S`` after it is complete (unless a good one
  follows), not after the whole timeout, and is reported as *answered*: the slave is
  alive, only the line is noisy;
* frames keep the specification's 3.5 characters of silence between them (t3.5, fixed
  at 1.75 ms above 19,200 baud), timed to a fraction of a millisecond (``deadline``):
  asyncio's own sleeps round up to whole milliseconds, a third of a transaction at
  115,200 baud.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import struct
import termios
import time
import tty
from dataclasses import dataclass, field

from controller.aio import wait_event
from controller.values import BadReason
from drivers.modbus.deadline import DeadlineTimer

#: Functions whose answer is a byte count and data.
READ_FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_WRITE_FUNCTIONS = (5, 6, 15, 16)


class TransactionError(Exception):
    """A request that brought no usable answer.

    ``answered`` is True when bytes came back (a corrupted or mismatched answer, an
    exception response): the slave is alive, so this is not a reason to back it off.
    """

    def __init__(
        self, reason: BadReason, detail: str, *, answered: bool, code: int | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.answered = answered
        #: the exception code of an exception response
        self.code = code


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """The Modbus CRC (sent low byte first)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def frame(slave_id: int, pdu: bytes) -> bytes:
    """An RTU frame: slave id, PDU, CRC."""
    body = bytes((slave_id,)) + pdu
    return body + struct.pack("<H", crc16(body))


def read_request(kind: str, start: int, count: int) -> bytes:
    return struct.pack(">BHH", READ_FUNCTIONS[kind], start, count)


def write_request(kind: str, address: int, words: list[int]) -> bytes:
    """Function 5 for a coil, 6 for one register, 16 for several."""
    if kind == "coil":
        return struct.pack(">BHH", 5, address, 0xFF00 if words[0] else 0)
    if len(words) == 1:
        return struct.pack(">BHH", 6, address, words[0] & 0xFFFF)
    n = len(words)
    return struct.pack(f">BHHB{n}H", 16, address, n, 2 * n, *(w & 0xFFFF for w in words))


def expected_length(request_pdu: bytes) -> int:
    """Bytes in the normal answer to ``request_pdu`` (the whole frame, CRC included)."""
    fc = request_pdu[0]
    if fc in (1, 2):
        count = int(struct.unpack(">H", request_pdu[3:5])[0])
        return 5 + (count + 7) // 8
    if fc in (3, 4):
        count = int(struct.unpack(">H", request_pdu[3:5])[0])
        return 5 + 2 * count
    return 8  # writes echo address and value/quantity


def _frame_length(buf: bytes | bytearray) -> int | None:
    """Length of the answer frame at the start of ``buf`` (None: not enough bytes yet).

    Unknown function codes give the shortest frame, so garbage fails its CRC at once.
    """
    if len(buf) < 3:
        return None
    fc = buf[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4):
        return 5 + buf[2]
    if fc in _WRITE_FUNCTIONS:
        return 8
    return 5


#: After a frame that fails its CRC, how long to wait for a good answer behind it (a
#: slave's turnaround after an echo); a corrupted answer costs this, not a timeout.
SETTLE_S = 0.05


def _resync(buf: bytes | bytearray, slave_id: int, fc: int) -> int | None:
    """Offset after 0 where an answer from ``slave_id`` to function ``fc`` may start."""
    for k in range(1, len(buf)):
        if buf[k] != slave_id:
            continue
        if k + 1 == len(buf) or buf[k + 1] in (fc, fc | 0x80):
            return k
    return None


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


class Link:
    """A byte pipe to the bus; subclasses fill ``buffer`` and set ``arrived``."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.error: str | None = None  # why the link broke; reopened at the next request
        self.last_rx = 0.0  # monotonic time of the last byte received

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    async def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def discard_input(self) -> None:
        self.buffer.clear()
        self.arrived.clear()

    def _feed(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.buffer += data
        self.arrived.set()

    def _broken(self, why: str) -> None:
        self.error = why
        self.arrived.set()


_BAUD = {
    1200: termios.B1200,
    2400: termios.B2400,
    4800: termios.B4800,
    9600: termios.B9600,
    19200: termios.B19200,
    38400: termios.B38400,
    57600: termios.B57600,
    115200: termios.B115200,
}


#: serial_struct.flags (the fifth int) and its ASYNC_LOW_LATENCY bit (linux/tty_flags.h)
_SERIAL_FLAGS = 4
_ASYNC_LOW_LATENCY = 1 << 13


def _low_latency(fd: int) -> None:
    """Ask the driver to hand received bytes over at once. An FTDI adapter otherwise
    holds them up to its 16 ms latency timer: more than a whole transaction at 19,200
    baud and above. Drivers without the setting (a pty, most others) are left as they are."""
    buf = array.array("i", [0] * 32)
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCGSERIAL, buf)
        if not buf[_SERIAL_FLAGS] & _ASYNC_LOW_LATENCY:
            buf[_SERIAL_FLAGS] |= _ASYNC_LOW_LATENCY
            fcntl.ioctl(fd, termios.TIOCSSERIAL, buf)


class SerialLink(Link):
    """An RS-485 adapter's tty, raw, with the bus's baud rate and character format."""

    def __init__(
        self, port: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int
    ) -> None:
        super().__init__()
        self.port = port
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None and self.error is None

    async def open(self) -> None:
        self.close()
        fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            # Two masters on one line garble each other's frames: refuse a port in use.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise OSError(
                f"serial port {self.port} is in use by another process "
                "(is boosterd running? stop it for 'boosterd read')"
            ) from exc
        try:
            self._configure(fd)
        except (OSError, termios.error) as exc:
            os.close(fd)
            raise OSError(f"serial port {self.port} cannot be configured: {exc}") from exc
        self._fd = fd
        self.error = None
        self.discard_input()
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def _configure(self, fd: int) -> None:
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        cflag = attrs[2] & ~(termios.CSIZE | termios.PARENB | termios.PARODD | termios.CSTOPB)
        cflag |= termios.CREAD | termios.CLOCAL
        cflag |= termios.CS8 if self.bytesize == 8 else termios.CS7
        if self.parity != "N":
            cflag |= termios.PARENB | (termios.PARODD if self.parity == "O" else 0)
        if self.stopbits == 2:
            cflag |= termios.CSTOPB
        attrs[2] = cflag
        attrs[3] &= ~termios.ECHO
        attrs[4] = attrs[5] = _BAUD[self.baudrate]
        attrs[6][termios.VMIN] = 0
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        _low_latency(fd)

    def close(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    def discard_input(self) -> None:
        if self._fd is not None:
            # Bytes the kernel holds but the loop has not read yet: a late answer.
            with contextlib.suppress(OSError):
                termios.tcflush(self._fd, termios.TCIFLUSH)
            self._drain_kernel()
        super().discard_input()

    def _drain_kernel(self) -> None:
        """Read away what tcflush cannot reach (a pty ignores it)."""
        assert self._fd is not None
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            while os.read(self._fd, 4096):
                pass

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._stop_reading(f"serial port {self.port}: {exc.strerror or exc}")
            return
        if data:
            self._feed(data)

    def _stop_reading(self, why: str) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
        self._broken(why)

    async def write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                await asyncio.sleep(0.001)  # the tty's output buffer is full: rare
                continue
            except OSError as exc:
                self._stop_reading(f"serial port {self.port}: {exc.strerror or exc}")
                raise TransactionError(BadReason.TIMEOUT, self.error or "", answered=False) from exc
            view = view[n:]


class _TcpReceiver(asyncio.Protocol):
    def __init__(self, link: TcpLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._broken(f"gateway {self.link.host}:{self.link.port} closed the connection")
        self.link.transport = None


class TcpLink(Link):
    """An RS-485 line behind a transparent TCP gateway (RTU frames over TCP)."""

    def __init__(self, host: str, port: int, *, timeout_s: float) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None

    @property
    def is_open(self) -> bool:
        return self.transport is not None and self.error is None

    async def open(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(max(self.timeout_s, 1.0)):
            transport, _ = await loop.create_connection(
                lambda: _TcpReceiver(self), self.host, self.port
            )
        self.transport = transport
        self.error = None
        self.discard_input()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


@dataclass
class RtuMaster:
    """Transactions on one link, one at a time (the caller serialises them)."""

    link: Link
    timeout_s: float
    char_s: float
    echo: bool = False
    #: silence the line keeps between frames (t3.5); every slave listens to every frame
    gap_s: float = 0.0
    timer: DeadlineTimer = field(default_factory=DeadlineTimer)

    async def transact(self, slave_id: int, pdu: bytes) -> bytes:
        """Send ``pdu`` to ``slave_id``; the answer's PDU (function code first)."""
        if not self.link.is_open:
            await self._reopen()
        request = frame(slave_id, pdu)
        # Sent sooner, the request would run on from the last answer in every slave's
        # receiver and fail its CRC: silence, then a repeat.
        await self.timer.sleep_until(self.link.last_rx + self.gap_s)
        self.link.discard_input()
        await self.link.write(request)
        sent = time.monotonic()
        wire = len(request) * self.char_s
        deadline = sent + wire + self.timeout_s + expected_length(pdu) * self.char_s
        if self.echo:
            await self._drop_echo(request, sent + wire + self.timeout_s, slave_id, pdu, deadline)
        return await self._answer(slave_id, pdu, deadline)

    async def _reopen(self) -> None:
        try:
            await self.link.open()
        except (OSError, TimeoutError) as exc:
            raise TransactionError(
                BadReason.TIMEOUT, f"bus not connected: {exc}", answered=False
            ) from exc

    async def _wait_bytes(self, deadline: float) -> bool:
        """Wait for more bytes until ``deadline``; False when it passed."""
        link = self.link
        link.arrived.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await wait_event(link.arrived, remaining)
        if link.error is not None:
            raise TransactionError(BadReason.TIMEOUT, link.error, answered=False)
        return True

    async def _drop_echo(
        self, request: bytes, echo_by: float, slave_id: int, pdu: bytes, deadline: float
    ) -> None:
        buf = self.link.buffer
        while len(buf) < len(request):
            if not await self._wait_bytes(echo_by):
                if not buf:
                    raise TransactionError(
                        BadReason.TIMEOUT,
                        "no local echo of the request: does this adapter echo? (bus 'echo')",
                        answered=False,
                    )
                break
        echoed = bytes(buf[: len(request)])
        if echoed == request:
            del buf[: len(request)]
            return
        garbled = TransactionError(
            BadReason.FRAMING,
            f"local echo {echoed.hex()} differs from the request {request.hex()}",
            answered=True,
        )
        try:
            await self._answer(slave_id, pdu, deadline)
        except TransactionError:
            # The line garbled our own request on its way out: the slave saw it garbled too.
            raise garbled from None
        raise TransactionError(
            BadReason.FRAMING,
            "the answer came back with no local echo before it: this adapter does not "
            "echo (set the bus's 'echo: false')",
            answered=True,
        )

    async def _answer(self, slave_id: int, pdu: bytes, deadline: float) -> bytes:
        buf = self.link.buffer
        dropped: list[str] = []
        corrupted: str | None = None
        wait_until = deadline
        while True:
            n = _frame_length(buf)
            if n is not None and len(buf) >= n:
                answer = bytes(buf[:n])
                if crc16(answer[:-2]) != struct.unpack("<H", answer[-2:])[0]:
                    # A stray byte before the answer (a transceiver switching direction
                    # often makes one) shifts the frame: look for ours further on.
                    start = _resync(buf, slave_id, pdu[0])
                    if start is not None:
                        del buf[:start]
                        continue
                    # Corrupted, or not an answer at all (an unexpected echo): ours may
                    # still follow within a slave's turnaround, not a whole timeout.
                    corrupted = corrupted or f"CRC error in reply {answer[:16].hex()}"
                    del buf[:n]
                    wait_until = min(deadline, time.monotonic() + SETTLE_S)
                    continue
                del buf[:n]
                if answer[0] != slave_id:
                    # A late answer from another slave: not ours, and ours may still come.
                    dropped.append(f"a reply from slave {answer[0]}")
                    continue
                return self._check(answer, pdu)
            if not await self._wait_bytes(wait_until):
                break
        if corrupted is not None:
            raise TransactionError(BadReason.FRAMING, corrupted, answered=True)
        if buf:
            raise TransactionError(
                BadReason.FRAMING,
                f"incomplete reply {bytes(buf[:16]).hex()} ({len(buf)} bytes)",
                answered=True,
            )
        detail = f"no answer within {self.timeout_s:g} s"
        if dropped:
            detail += f" (dropped {', '.join(dropped)})"
        raise TransactionError(BadReason.TIMEOUT, detail, answered=False)

    @staticmethod
    def _check(answer: bytes, pdu: bytes) -> bytes:
        """The answer's PDU if it answers ``pdu``; else why not."""
        fc, want = answer[1], pdu[0]
        if fc == want | 0x80:
            code = answer[2]
            name = EXCEPTION_NAMES.get(code, "unknown")
            raise TransactionError(
                BadReason.EXCEPTION, f"code {code} ({name})", answered=True, code=code
            )
        if fc & 0x7F != want:
            raise TransactionError(
                BadReason.FRAMING,
                f"reply has function {fc & 0x7F}, asked {want}",
                answered=True,
            )
        if len(answer) != expected_length(pdu):
            raise TransactionError(
                BadReason.FRAMING,
                f"reply of {len(answer)} bytes, a reply to this request has {expected_length(pdu)}",
                answered=True,
            )
        if fc in _WRITE_FUNCTIONS and answer[2:6] != pdu[1:5]:
            raise TransactionError(
                BadReason.FRAMING,
                f"write confirmation {answer[2:6].hex()} does not match {pdu[1:5].hex()}",
                answered=True,
            )
        return answer[1:-2]

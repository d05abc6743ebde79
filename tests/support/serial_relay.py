"""A noisy RS-485 line for tests: a relay between the controller's and the slaves' serial ports.

Two socat pty pairs with a relay thread between them::

    controller -- pty pair -- [relay] -- pty pair -- slaves (simulator)
    controller_port                                  slave_port

The relay passes bytes both ways and does to them what a long RS-485 run beside motor
cables and a cheap adapter do: flips a bit in a reply (or a request) at a given rate,
delays replies (a late answer), sends a reply twice, and echoes every request back to
the controller (an adapter with local echo). A seeded RNG makes a run repeatable; the
faults can be changed while the line runs, and ``stats`` counts what was done.

The relay works on what one read returns, which on a pty is one whole frame (the slaves
write each answer with one write); "a reply" below means that.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import random
import selectors
import shutil
import tempfile
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from simulator.ptypair import PtyPair


@dataclass(frozen=True)
class LineFaults:
    """What the line does; rates are probabilities per frame."""

    #: a reply gets one random bit flipped
    reply_flip_rate: float = 0.0
    #: a request gets one random bit flipped (the slave then ignores it: silence)
    request_flip_rate: float = 0.0
    #: a reply is held back this long, at ``late_rate``
    late_s: float = 0.0
    late_rate: float = 0.0
    #: a reply arrives twice
    duplicate_rate: float = 0.0
    #: every request comes back to the controller first, as from an echoing adapter
    echo: bool = False


@dataclass
class RelayStats:
    requests: int = 0
    replies: int = 0
    requests_flipped: int = 0
    replies_flipped: int = 0
    late: int = 0
    duplicated: int = 0
    echoed: int = 0


@dataclass
class SerialRelay:
    """Start with ``SerialRelay.start(faults, seed=...)``; always ``close()``."""

    controller_port: str
    slave_port: str
    faults: LineFaults
    stats: RelayStats
    _pairs: tuple[PtyPair, PtyPair] = field(repr=False)
    _dir: str = field(repr=False)
    _rng: random.Random = field(repr=False)
    _fds: tuple[int, int] = field(repr=False)
    _wake: tuple[int, int] = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _queue: list[tuple[float, int, int, bytes]] = field(default_factory=list, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    @classmethod
    def start(cls, faults: LineFaults | None = None, *, seed: int = 1) -> SerialRelay:
        tmp = tempfile.mkdtemp(prefix="boosterd-relay-")
        to_controller = PtyPair.start(Path(tmp, "controller"))
        try:
            to_slaves = PtyPair.start(Path(tmp, "line"))
        except Exception:
            to_controller.close()
            raise
        # The relay holds the far end of each pair: the controller side's "sim" end and
        # the slave side's "device" end.
        fd_c = _open_raw(to_controller.slave_end)
        fd_s = _open_raw(to_slaves.device)
        relay = cls(
            controller_port=to_controller.device,
            slave_port=to_slaves.slave_end,
            faults=faults or LineFaults(),
            stats=RelayStats(),
            _pairs=(to_controller, to_slaves),
            _dir=tmp,
            _rng=random.Random(seed),
            _fds=(fd_c, fd_s),
            _wake=os.pipe(),
        )
        relay._thread = threading.Thread(target=relay._run, name="serial relay", daemon=True)
        relay._thread.start()
        return relay

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in (*self._fds, *self._wake):
            with contextlib.suppress(OSError):
                os.close(fd)
        for pair in self._pairs:
            pair.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the relay thread ---------------------------------------------------------------

    def _run(self) -> None:
        fd_c, fd_s = self._fds
        sel = selectors.DefaultSelector()
        sel.register(fd_c, selectors.EVENT_READ, "request")
        sel.register(fd_s, selectors.EVENT_READ, "reply")
        sel.register(self._wake[0], selectors.EVENT_READ, "wake")
        try:
            while not self._stop.is_set():
                timeout = None
                if self._queue:
                    timeout = max(0.0, self._queue[0][0] - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data == "wake":
                        return
                    try:
                        data = os.read(key.fd, 4096)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return  # a pty went away: the line is being closed
                    if data:
                        self._received(key.data, data)
                self._send_due()
        finally:
            sel.close()

    def _received(self, direction: str, data: bytes) -> None:
        fd_c, fd_s = self._fds
        f, rng, st = self.faults, self._rng, self.stats
        now = time.monotonic()
        if direction == "request":
            st.requests += 1
            if f.request_flip_rate and rng.random() < f.request_flip_rate:
                data = _flip(data, rng)
                st.requests_flipped += 1
            if f.echo:
                st.echoed += 1
                self._schedule(now, fd_c, data)
            self._schedule(now, fd_s, data)
            return
        st.replies += 1
        if f.reply_flip_rate and rng.random() < f.reply_flip_rate:
            data = _flip(data, rng)
            st.replies_flipped += 1
        at = now
        if f.late_rate and rng.random() < f.late_rate:
            at += f.late_s
            st.late += 1
        self._schedule(at, fd_c, data)
        if f.duplicate_rate and rng.random() < f.duplicate_rate:
            st.duplicated += 1
            self._schedule(at, fd_c, data)

    def _schedule(self, at: float, fd: int, data: bytes) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), fd, data))

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now:
            _, _, fd, data = heapq.heappop(self._queue)
            with contextlib.suppress(OSError):
                os.write(fd, data)


def _open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


def _flip(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one random bit inverted."""
    out = bytearray(data)
    bit = rng.randrange(8 * len(out))
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)

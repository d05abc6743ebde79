"""The fault relay itself: what it promises to do to the bytes, it does."""

from __future__ import annotations

import os
import time
import tty

from tests.support.serial_relay import LineFaults, SerialRelay
from tests.support.waiting import wait_until

FRAME = bytes(range(1, 9))


def _open(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


def _read_some(fd: int, n: int, timeout: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.001)
    return out


def _exchange(relay: SerialRelay, frames: int) -> tuple[bytes, bytes]:
    """Send ``frames`` requests and as many replies; what each side received."""
    controller, slave = _open(relay.controller_port), _open(relay.slave_port)
    try:
        got_slave, got_controller = b"", b""
        for _ in range(frames):
            os.write(controller, FRAME)
            got_slave += _read_some(slave, len(FRAME))
            os.write(slave, FRAME)
            got_controller += _read_some(controller, len(FRAME))
        time.sleep(0.05)
        with_late = _read_some(controller, 1, timeout=0.2)
        return got_slave, got_controller + with_late
    finally:
        os.close(controller)
        os.close(slave)


def _bit_errors(a: bytes, b: bytes) -> int:
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))


def test_a_clean_relay_passes_bytes_unchanged_both_ways() -> None:
    relay = SerialRelay.start()
    try:
        to_slave, to_controller = _exchange(relay, 20)
    finally:
        relay.close()
    assert to_slave == FRAME * 20
    assert to_controller == FRAME * 20


def test_flips_one_bit_per_corrupted_frame_at_the_rate_asked_repeatably() -> None:
    counts = []
    for _ in range(2):
        relay = SerialRelay.start(LineFaults(reply_flip_rate=0.2), seed=5)
        try:
            _, to_controller = _exchange(relay, 100)
        finally:
            relay.close()
        frames = [to_controller[i : i + 8] for i in range(0, len(to_controller), 8)]
        errors = [_bit_errors(f, FRAME) for f in frames]
        assert set(errors) <= {0, 1}
        assert sum(errors) == relay.stats.replies_flipped
        counts.append(relay.stats.replies_flipped)
    assert 10 <= counts[0] <= 35  # 20 % of 100
    assert counts[0] == counts[1]  # the seed makes the line repeatable


def test_echo_duplicates_and_late_replies() -> None:
    relay = SerialRelay.start(LineFaults(echo=True, duplicate_rate=1.0))
    try:
        _, to_controller = _exchange(relay, 3)
    finally:
        relay.close()
    # Each request comes back first, then its reply twice.
    assert to_controller.count(FRAME) == 9
    assert relay.stats.echoed == 3
    assert relay.stats.duplicated == 3

    relay = SerialRelay.start(LineFaults(late_s=0.3, late_rate=1.0))
    try:
        controller, slave = _open(relay.controller_port), _open(relay.slave_port)
        os.write(slave, FRAME)
        sent = time.monotonic()
        wait_until(lambda: relay.stats.late == 1, timeout=5, what="the reply held back")
        assert _read_some(controller, 8, timeout=5) == FRAME
        assert time.monotonic() - sent >= 0.3
        os.close(controller)
        os.close(slave)
    finally:
        relay.close()

"""Wire timing on a real pty: t3.5 kept to the fraction of a millisecond, by the master
and checked by the emulating slave; the emulation spends what a real line spends."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from controller.config import load_config
from controller.values import BadReason
from drivers.modbus.deadline import DeadlineTimer
from drivers.modbus.rtu import RtuMaster, SerialLink, TransactionError, read_request
from drivers.modbus.timing import char_time_s, frame_gap_s
from simulator.modbus_slave import RtuSlave
from simulator.registers import RegisterImage
from tests.support.serial_pair import SerialPair
from tests.support.stations import example_station, write_station


@pytest.mark.asyncio
async def test_deadline_timer_wakes_on_time_not_on_the_next_millisecond() -> None:
    timer = DeadlineTimer()
    assert timer.precise  # Linux: a timerfd
    late = []
    try:
        for _ in range(40):
            deadline = time.monotonic() + 0.0011
            await timer.sleep_until(deadline)
            woke = time.monotonic()
            assert woke >= deadline  # never early
            late.append(woke - deadline)
        # asyncio.sleep(1.1 ms) rounds up to 2 ms: 0.9 ms late every time.
        assert statistics.median(late) < 0.0005, late
        # A cancelled sleep is disarmed: the next one is not woken by its expiry.
        sleeper = asyncio.create_task(timer.sleep_until(time.monotonic() + 0.002))
        await asyncio.sleep(0)
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        deadline = time.monotonic() + 0.02
        await timer.sleep_until(deadline)
        assert time.monotonic() >= deadline
    finally:
        timer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("parity", ["N", "E"])
async def test_emulated_line_spends_request_reply_and_gaps_and_the_master_keeps_t3_5(
    serial_pair: SerialPair, tmp_path: Path, parity: str
) -> None:
    baud = 9600
    cfg = load_config(write_station(tmp_path / "s.yaml", example_station(serial_pair.b)))
    image = RegisterImage.from_config(cfg)
    slave = RtuSlave(image, bus="rs485", port=serial_pair.a, baudrate=baud, parity=parity,
                     emulate_baud=True)  # fmt: skip
    await slave.start()
    char = char_time_s(baud, 8, parity, 1)
    gap = frame_gap_s(baud, char)
    link = SerialLink(serial_pair.b, baudrate=baud, bytesize=8, parity=parity, stopbits=1)
    master = RtuMaster(link, timeout_s=0.2, char_s=char, gap_s=gap)
    try:
        await link.open()
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            pdu = await master.transact(2, read_request("holding", 4112, 4))
            took.append(time.monotonic() - t0)
            assert len(pdu) == 2 + 8
        # Request (8) and reply (13) characters of 10 or 11 bits, and the t3.5 that ends
        # the request: never faster than the real line (one character more with parity).
        line = (8 + 13) * char + gap
        assert min(took) >= line
        assert slave.stats.short_gaps == 0
        assert slave.stats.min_silence_s is not None
        assert slave.stats.min_silence_s >= gap
    finally:
        link.close()
        master.timer.close()
        await slave.close()


@pytest.mark.asyncio
async def test_the_emulating_slave_ignores_a_request_sent_sooner_than_t3_5(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    """A master that does not wait t3.5 after the last reply: its request runs on from
    that reply in every receiver. At 1,200 baud t3.5 is 29 ms, so a request sent at
    once after the reply is sooner than that even on a busy machine."""
    baud = 1200
    cfg = load_config(write_station(tmp_path / "s.yaml", example_station(serial_pair.b)))
    slave = RtuSlave(RegisterImage.from_config(cfg), bus="rs485", port=serial_pair.a,
                     baudrate=baud, emulate_baud=True)  # fmt: skip
    await slave.start()
    char = char_time_s(baud)
    link = SerialLink(serial_pair.b, baudrate=baud, bytesize=8, parity="N", stopbits=1)
    polite = RtuMaster(link, timeout_s=0.5, char_s=char, gap_s=frame_gap_s(baud, char))
    rude = RtuMaster(link, timeout_s=0.05, char_s=char, gap_s=0.0)
    try:
        await link.open()
        await polite.transact(1, read_request("input", 0, 1))
        with pytest.raises(TransactionError) as failed:
            await rude.transact(1, read_request("input", 0, 1))
        assert failed.value.reason is BadReason.TIMEOUT
        assert slave.stats.short_gaps == 1
        # Asked again after t3.5, it answers.
        await polite.transact(1, read_request("input", 0, 1))
        assert slave.stats.short_gaps == 1
    finally:
        link.close()
        polite.timer.close()
        rude.timer.close()
        await slave.close()

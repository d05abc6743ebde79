"""A noisy RS-485 line degrades gracefully: checked answers, retries, backoff only for
silence, plausibility, hold of the last good value. Real ptys, our own slaves."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from controller.config import load_config
from controller.config.schema import StationConfig
from controller.values import BadReason
from drivers.modbus.acquisition import Acquisition, read_once
from simulator.modbus_slave import RtuSlave, SlaveFault, with_crc
from simulator.registers import RegisterImage
from tests.support.serial_pair import SerialPair
from tests.support.serial_relay import LineFaults, SerialRelay
from tests.support.stations import example_station, three_slave_station, write_station

SUCTION = 1.25  # bar, slave 1 input register 0 (4-20 mA counts)
FLOW = 42.25  # m3/h, slave 2 holding 4112, float32 CDAB

#: (request frame, the correct reply) -> what the slave sends instead (None: nothing)
Tamper = Callable[[bytes, bytes], bytes | None]


class ScriptedSlave(RtuSlave):
    """Our simulator's slaves, with a hook that may replace any reply."""

    tamper: Tamper | None = None

    def rtu_reply(self, frame: bytes) -> bytes | None:
        reply = super().rtu_reply(frame)
        if reply is None or self.tamper is None:
            return reply
        return self.tamper(frame, reply)


@dataclass
class Line:
    cfg: StationConfig
    image: RegisterImage
    slave: ScriptedSlave
    faults: dict[int, SlaveFault]


def _station(tmp_path: Path, port: str, **bus: Any) -> StationConfig:
    """The example station with every point polled each tick, no register gap bridged
    (our slaves refuse unmapped registers): the flow meter is one block read."""
    data = example_station(port)
    data["buses"]["rs485"].update({"max_gap_registers": 0, **bus})  # type: ignore[index]
    devices: Any = data["devices"]
    for dev in devices.values():
        for point in dev["points"].values():
            point["poll"] = "fast"
    return load_config(write_station(tmp_path / "station.yaml", data))


async def _line(cfg: StationConfig, slave_port: str) -> Line:
    image = RegisterImage.from_config(cfg)
    image.set_value("suction_pressure", SUCTION)
    image.set_value("discharge_pressure", 3.5)
    image.set_value("flow", FLOW)
    image.set_value("volume_total", 1234.567)
    faults: dict[int, SlaveFault] = {}
    slave = ScriptedSlave(image, bus="rs485", port=slave_port, faults=faults.get)
    await slave.start()
    return Line(cfg, image, slave, faults)


@pytest_asyncio.fixture
async def line(serial_pair: SerialPair, tmp_path: Path) -> AsyncIterator[Line]:
    cfg = _station(tmp_path, serial_pair.b)
    ln = await _line(cfg, serial_pair.a)
    try:
        yield ln
    finally:
        await ln.slave.close()


class Clock:
    """Acquisition's clock, advanced by the test (the wire still runs in real time)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _poll_once(cfg: StationConfig, clock: Clock | None = None) -> Acquisition:
    acq = Acquisition(cfg, clock=clock or Clock())
    await acq.start()
    await acq.poll_due()
    return acq


def _slave_stats(acq: Acquisition, slave_id: int) -> Any:
    return acq.pollers[0].slaves[slave_id]


# -- answers that do not answer the request are rejected ---------------------------------


@pytest.mark.asyncio
async def test_a_reply_with_another_function_code_is_rejected(line: Line) -> None:
    def as_function_4(request: bytes, reply: bytes) -> bytes | None:
        if request[0] == 2:  # the flow meter's holding registers (function 3)
            return with_crc(bytes((reply[0], 4)) + reply[2:-2])
        return reply

    line.slave.tamper = as_function_4
    acq = await _poll_once(line.cfg)
    try:
        flow = acq.read_all()["flow"]
        assert flow.reason is BadReason.FRAMING
        assert "function 4, asked 3" in flow.detail
        assert acq.read_all()["suction_pressure"].good
        # It answered: garbled, but alive; not a reason to leave it alone.
        assert not _slave_stats(acq, 2).backing_off
    finally:
        await acq.close()


@pytest.mark.asyncio
async def test_a_late_reply_from_another_slave_is_dropped_and_the_right_one_taken(
    line: Line,
) -> None:
    late_from_1 = with_crc(bytes((1, 3, 4, 0x12, 0x34, 0x56, 0x78)))

    def late_reply_first(request: bytes, reply: bytes) -> bytes | None:
        return late_from_1 + reply if request[0] == 2 else reply

    line.slave.tamper = late_reply_first
    acq = await _poll_once(line.cfg)
    try:
        assert acq.read_all()["flow"].value == pytest.approx(FLOW)
        assert _slave_stats(acq, 2).line_errors == {}
    finally:
        await acq.close()


@pytest.mark.asyncio
async def test_only_a_reply_from_another_slave_means_no_answer_and_keeps_it(
    line: Line,
) -> None:
    def someone_else(request: bytes, reply: bytes) -> bytes | None:
        return with_crc(bytes((7,)) + reply[1:-2]) if request[0] == 2 else reply

    line.slave.tamper = someone_else
    acq = await _poll_once(line.cfg)
    try:
        flow = acq.read_all()["flow"]
        assert flow.reason is BadReason.TIMEOUT
        assert "dropped a reply from slave 7" in flow.detail
        assert flow.value is None
    finally:
        await acq.close()


@pytest.mark.asyncio
async def test_a_reply_of_the_wrong_length_is_rejected(line: Line) -> None:
    def one_register_short(request: bytes, reply: bytes) -> bytes | None:
        if request[0] != 2:
            return reply
        data = reply[3:-4]
        return with_crc(bytes((2, 3, len(data))) + data)

    line.slave.tamper = one_register_short
    acq = await _poll_once(line.cfg)
    try:
        flow = acq.read_all()["flow"]
        assert flow.reason is BadReason.FRAMING
        assert "bytes" in flow.detail
    finally:
        await acq.close()


@pytest.mark.asyncio
async def test_stale_bytes_on_the_line_are_discarded_before_a_request(
    line: Line, serial_pair: SerialPair
) -> None:
    """A late answer that would pass every check (same slave, function, length) must not
    be read as the answer to the next request."""
    clock = Clock()
    acq = Acquisition(line.cfg, clock=clock)
    await acq.start()
    try:
        await acq.poll_due()
        assert acq.read_all()["suction_pressure"].value == pytest.approx(SUCTION)
        # "An earlier answer" of slave 1's first block: 12000 counts = 5.0 bar on both.
        stale = with_crc(bytes((1, 4, 4)) + struct.pack(">HH", 12000, 12000))
        assert line.slave._fd is not None
        os.write(line.slave._fd, stale)
        # Let the bytes reach the controller's side (kernel buffer or the link's own).
        await asyncio.sleep(0.05)
        clock.t += 1.0
        line.image.set_value("suction_pressure", 1.5)
        await acq.poll_due()
        assert acq.read_all()["suction_pressure"].value == pytest.approx(1.5)
        assert _slave_stats(acq, 1).line_errors == {}
    finally:
        await acq.close()


# -- retries and backoff -------------------------------------------------------------


@pytest.mark.asyncio
async def test_retry_then_success_counts_no_failure(line: Line) -> None:
    corrupt_next = {"flow": True}

    def corrupt_once(request: bytes, reply: bytes) -> bytes | None:
        if request[0] == 2 and corrupt_next["flow"]:
            corrupt_next["flow"] = False
            return reply[:-1] + bytes((reply[-1] ^ 0x01,))
        return reply

    line.slave.tamper = corrupt_once
    acq = await _poll_once(line.cfg)
    try:
        flow = acq.read_all()["flow"]
        assert flow.good
        assert not flow.held
        assert flow.value == pytest.approx(FLOW)
        stats = _slave_stats(acq, 2)
        assert stats.errors == {}
        assert stats.failures_in_row == 0
        assert stats.retries == 1
        assert stats.line_errors == {"framing": 1}
    finally:
        await acq.close()


@pytest.mark.asyncio
async def test_with_retries_0_one_corrupted_reply_fails_the_poll_but_backs_nothing_off(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    cfg = _station(tmp_path, serial_pair.b, retries=0)
    ln = await _line(cfg, serial_pair.a)
    ln.faults[2] = SlaveFault("bad_crc")
    clock = Clock()
    acq = await _poll_once(cfg, clock)
    try:
        stats = _slave_stats(acq, 2)
        assert stats.errors == {"framing": 1}
        assert not stats.backing_off
        ln.faults.clear()
        clock.t += cfg.control.tick_s  # the next tick, well inside backoff_s
        await acq.poll_due()
        assert acq.read_all()["flow"].value == pytest.approx(FLOW)
    finally:
        await acq.close()
        await ln.slave.close()


@pytest.mark.asyncio
async def test_corrupted_answers_never_back_a_slave_off(line: Line) -> None:
    line.faults[2] = SlaveFault("garbage")
    clock = Clock()
    acq = Acquisition(line.cfg, clock=clock)
    await acq.start()
    try:
        for _ in range(5):
            await acq.poll_due()
            clock.t += line.cfg.control.tick_s
        stats = _slave_stats(acq, 2)
        assert not stats.backing_off
        assert stats.failures_in_row == 5  # polled every tick, each poll failed
        assert stats.requests == 10  # and each one was repeated once
        assert acq.read_all()["flow"].reason is BadReason.FRAMING
    finally:
        await acq.close()


@pytest.mark.asyncio
async def test_backoff_only_after_consecutive_silences(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    cfg = _station(tmp_path, serial_pair.b, retries=0, silent_before_backoff=3)
    ln = await _line(cfg, serial_pair.a)
    clock = Clock()
    acq = Acquisition(cfg, clock=clock)
    await acq.start()
    try:
        ln.faults[2] = SlaveFault("silent")
        stats = _slave_stats(acq, 2)
        for polls in (1, 2):
            await acq.poll_due()
            clock.t += cfg.control.tick_s
            assert stats.silent_in_row == polls
            assert not stats.backing_off
        # An answer, even a corrupted one, starts the count again.
        ln.faults[2] = SlaveFault("bad_crc")
        await acq.poll_due()
        clock.t += cfg.control.tick_s
        assert stats.silent_in_row == 0
        ln.faults[2] = SlaveFault("silent")
        for _ in range(3):
            assert not stats.backing_off
            await acq.poll_due()
            clock.t += cfg.control.tick_s
        assert stats.backing_off
        assert stats.backoff_until == pytest.approx(clock.t - cfg.control.tick_s + 1.0)
        requests = stats.requests
        await acq.poll_due()  # inside the window: the slave is left alone
        assert stats.requests == requests
        assert acq.read_all()["discharge_pressure"].good
    finally:
        await acq.close()
        await ln.slave.close()


# -- hold of the last good value -----------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_poll_holds_the_last_good_value_then_turns_bad(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    cfg = _station(tmp_path, serial_pair.b, hold_s=2.0)
    ln = await _line(cfg, serial_pair.a)
    clock = Clock()
    acq = Acquisition(cfg, clock=clock)
    await acq.start()
    try:
        await acq.poll_due()
        good_at = clock.t
        ln.faults[1] = SlaveFault("bad_crc")
        clock.t += 0.5
        await acq.poll_due()
        held = acq.read_all()["suction_pressure"]
        assert held.good
        assert held.held
        assert held.value == pytest.approx(SUCTION)
        assert held.reason is BadReason.FRAMING
        assert held.as_dict()["held"] is True
        clock.t = good_at + 2.0  # still within hold_s
        assert acq.read_all()["suction_pressure"].held
        clock.t = good_at + 2.01
        bad = acq.read_all()["suction_pressure"]
        assert not bad.good
        assert bad.reason is BadReason.FRAMING
        assert "CRC error" in bad.detail
        # A fresh good read ends it.
        ln.faults.clear()
        await acq.poll_due()
        fresh = acq.read_all()["suction_pressure"]
        assert fresh.good
        assert not fresh.held
    finally:
        await acq.close()
        await ln.slave.close()


# -- plausibility ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_implausible_jump_and_a_totaliser_going_back_are_bad_not_good(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    cfg = _station(tmp_path, serial_pair.b, hold_s=0.0)
    points = {**cfg.devices["ai_module"].points, **cfg.devices["flow_meter"].points}
    limited = {
        "panel_temperature": points["panel_temperature"].model_copy(update={"max_rate_per_s": 1.0}),
        "volume_total": points["volume_total"].model_copy(update={"monotonic": True}),
    }
    devices = {
        name: dev.model_copy(
            update={"points": {p: limited.get(p, c) for p, c in dev.points.items()}}
        )
        for name, dev in cfg.devices.items()
    }
    cfg = cfg.model_copy(update={"devices": devices})
    ln = await _line(cfg, serial_pair.a)
    ln.image.set_value("panel_temperature", 30.0)
    clock = Clock()
    acq = Acquisition(cfg, clock=clock)
    await acq.start()
    try:
        await acq.poll_due()
        assert acq.read_all()["panel_temperature"].value == pytest.approx(30.0)
        ln.image.set_value("panel_temperature", 1666.6)
        ln.image.set_value("volume_total", 1200.0)
        clock.t += 0.5
        await acq.poll_due()
        snap = acq.read_all()
        temp, total = snap["panel_temperature"], snap["volume_total"]
        assert temp.reason is BadReason.IMPLAUSIBLE, temp
        assert "max_rate_per_s 1" in temp.detail
        assert total.reason is BadReason.IMPLAUSIBLE, total
        assert "went back" in total.detail
        # Values within the limits are good again at once.
        ln.image.set_value("panel_temperature", 30.4)
        ln.image.set_value("volume_total", 1234.6)
        clock.t += 0.5
        await acq.poll_due()
        snap = acq.read_all()
        assert snap["panel_temperature"].value == pytest.approx(30.4)
        assert snap["volume_total"].value == pytest.approx(1234.6)
    finally:
        await acq.close()
        await ln.slave.close()


# -- local echo ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("adapter_echoes", "bus_echo"), [(True, True), (True, False), (False, True)]
)
async def test_local_echo_is_read_back_and_dropped(
    tmp_path: Path, adapter_echoes: bool, bus_echo: bool
) -> None:
    relay = SerialRelay.start(LineFaults(echo=adapter_echoes))
    try:
        cfg = _station(tmp_path, relay.controller_port, echo=bus_echo)
        ln = await _line(cfg, relay.slave_port)
        acq = await _poll_once(cfg)
        try:
            snap = acq.read_all()
        finally:
            await acq.close()
            await ln.slave.close()
    finally:
        relay.close()
    if adapter_echoes:
        assert relay.stats.echoed >= 2
        # Set or not, the echo is never taken for the answer: with 'echo' it is read
        # back and compared; without, it fails as an answer and the real one is found.
        assert snap["suction_pressure"].value == pytest.approx(SUCTION)
        assert snap["flow"].value == pytest.approx(FLOW)
    else:  # 'echo' set for an adapter that does not echo: said plainly
        flow = snap["flow"]
        assert flow.reason is BadReason.FRAMING
        assert "this adapter does not echo" in flow.detail


# -- the commissioning read ------------------------------------------------------------


@pytest.mark.asyncio
async def test_read_waits_one_timeout_per_silent_slave(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    data = three_slave_station(serial_pair.b)
    data["buses"]["rs485"]["timeout_s"] = 0.5  # type: ignore[index]
    cfg = load_config(write_station(tmp_path / "station.yaml", data))
    image = RegisterImage.from_config(cfg)
    image.set_value("discharge_pressure", 3.5)
    slave = RtuSlave(image, bus="rs485", port=serial_pair.a, faults={3: SlaveFault("silent")}.get)
    await slave.start()
    try:
        started = time.monotonic()
        readings = await read_once(cfg)
        elapsed = time.monotonic() - started
    finally:
        await slave.close()
    assert readings["pump_contactor"].reason is BadReason.TIMEOUT
    assert readings["int32_ABCD"].reason is BadReason.TIMEOUT
    assert readings["discharge_pressure"].good
    assert slave.stats.faults == 1  # slave 3 has four blocks: asked once, not again
    assert elapsed < 0.5 + 0.4, elapsed


@pytest.mark.asyncio
async def test_read_json_keeps_a_32_bit_totaliser_exact(
    serial_pair: SerialPair, tmp_path: Path
) -> None:
    data = example_station(serial_pair.b)
    devices: Any = data["devices"]
    devices["flow_meter"]["points"]["volume_total"]["scale"] = 1.0
    path = write_station(tmp_path / "station.yaml", data)
    cfg = load_config(path)
    ln = await _line(cfg, serial_pair.a)
    ln.image.set_value("volume_total", 987654321)
    ln.image.set_value("flow", 123.456)
    outputs = []
    try:
        for extra in (["--json"], []):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller.cli", "read", str(path), *extra,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(60):
                out, err = await proc.communicate()
            outputs.append((out.decode(), err.decode()))
    finally:
        await ln.slave.close()
    (as_json, err), (table, _) = outputs
    values = json.loads(as_json)
    assert values["volume_total"]["v"] == 987654321, err
    assert values["flow"]["v"] == 123.456  # float32's own digits, no float64 noise
    assert "987654321" in table
    assert "123.456 " in table


# -- late and duplicated replies through the fault relay ------------------------------


@pytest.mark.asyncio
async def test_late_and_duplicated_replies_are_never_taken_for_another_request(
    tmp_path: Path,
) -> None:
    """Two slaves whose blocks look alike (same function, same length): a late or
    doubled answer of one would pass every check but the slave id and the flush."""
    relay = SerialRelay.start(LineFaults(late_s=0.15, late_rate=0.2, duplicate_rate=0.2), seed=3)
    try:
        data = example_station(relay.controller_port)
        devices: Any = data["devices"]
        for dev, sid in (("twin_a", 5), ("twin_b", 6)):
            devices[dev] = {"bus": "rs485", "slave_id": sid, "points": {
                f"{dev}_x": {"kind": "holding", "address": 0, "type": "uint16"},
                f"{dev}_y": {"kind": "holding", "address": 1, "type": "uint16"},
            }}  # fmt: skip
        cfg = load_config(write_station(tmp_path / "station.yaml", data))
        ln = await _line(cfg, relay.slave_port)
        want = {"twin_a_x": 11, "twin_a_y": 12, "twin_b_x": 21, "twin_b_y": 22}
        for name, value in want.items():
            ln.image.set_value(name, value)
        clock = Clock()
        acq = Acquisition(cfg, clock=clock)
        await acq.start()
        good = 0
        try:
            for _ in range(40):
                await acq.poll_due()
                clock.t += cfg.control.tick_s
                snap = acq.read_all()
                for name, value in want.items():
                    if snap[name].good:
                        good += 1
                        assert snap[name].value == value, snap[name]
        finally:
            await acq.close()
            await ln.slave.close()
    finally:
        relay.close()
    assert relay.stats.late >= 5, relay.stats
    assert relay.stats.duplicated >= 5, relay.stats
    assert good >= 100


@pytest.mark.parametrize(
    ("due", "now", "started", "expected"),
    [
        (0.0, 100.003, 100.0, 100.5),  # first read: the pass's start sets the phase
        (100.5, 100.51, 100.5, 101.0),  # on time: one period on
        (100.5, 101.7, 101.6, 102.0),  # a slow slave held the bus: missed slots skipped
    ],
)
def test_blocks_keep_a_fixed_rate_without_bursts(
    due: float, now: float, started: float, expected: float
) -> None:
    from drivers.modbus.acquisition import _next_slot

    assert _next_slot(due, 0.5, now, started) == pytest.approx(expected)


@pytest.mark.asyncio
@pytest.mark.parametrize("stray", [b"\x00", b"\xff", b"\x02\x00"])
async def test_a_stray_byte_before_the_answer_does_not_lose_it(line: Line, stray: bytes) -> None:
    """RS-485 transceivers switching direction often put a stray byte on the line."""

    def stray_first(request: bytes, reply: bytes) -> bytes | None:
        return stray + reply if request[0] == 2 else reply

    line.slave.tamper = stray_first
    acq = await _poll_once(line.cfg)
    try:
        assert acq.read_all()["flow"].value == pytest.approx(FLOW)
        assert _slave_stats(acq, 2).line_errors == {}
    finally:
        await acq.close()

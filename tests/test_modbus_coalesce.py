"""Blocks due together go out in one request; a read's failure stays that read's.

Over a real pty pair against the simulator's slaves, counting the requests the slave
received; acquisition's clock is a test clock, so "due" is decided, not waited for.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from controller.config import load_config
from controller.config.schema import StationConfig
from controller.values import BadReason
from drivers.modbus.acquisition import Acquisition
from drivers.modbus.plan import Block, coalesce
from simulator.modbus_slave import RtuSlave, SlaveFault
from simulator.registers import RegisterImage
from tests.support.serial_pair import SerialPair
from tests.support.stations import example_station, write_station

SUCTION, DISCHARGE, FLOW, VOLUME = 1.25, 3.5, 42.25, 1234.567


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TamperingSlave(RtuSlave):
    """The simulator's slaves, answering garbage to reads that start at ``garble``."""

    garble: int | None = None

    def rtu_reply(self, frame: bytes) -> bytes | None:
        reply = super().rtu_reply(frame)
        start = struct.unpack(">H", frame[2:4])[0]
        if reply is not None and self.garble is not None and start == self.garble:
            return bytes((frame[0],)) + b"\x55" * (len(reply) - 1)
        return reply


@dataclass
class Line:
    cfg: StationConfig
    image: RegisterImage
    slave: TamperingSlave
    faults: dict[int, SlaveFault]
    clock: Clock
    acq: Acquisition

    async def pass_at(self, t: float) -> int:
        """One pass of the real polling code at test time ``t``; requests it sent."""
        before = self.slave.stats.requests
        self.clock.now = 1000.0 + t
        await self.acq.poll_due()
        return self.slave.stats.requests - before


def _station(tmp_path: Path, port: str, *, slow_s: float, inlet_address: int) -> StationConfig:
    """The example station with a slow point next to the AI module's fast ones: per
    slave one fast and one slow block, near each other, and a far slow block
    (panel_temperature at 40) that no read may bridge to."""
    data: Any = example_station(port)
    data["buses"]["rs485"]["max_gap_registers"] = 4
    data["control"]["tick_s"] = 0.5
    data["poll_classes"]["slow"]["period_s"] = slow_s
    points = data["devices"]["ai_module"]["points"]
    points["panel_temperature"]["address"] = 40
    points["inlet_temperature"] = {"kind": "input", "address": inlet_address, "type": "int16",
                                   "scale": 0.1, "unit": "degC", "poll": "slow"}  # fmt: skip
    return load_config(write_station(tmp_path / "station.yaml", data))


@pytest_asyncio.fixture
async def make_line(serial_pair: SerialPair, tmp_path: Path) -> AsyncIterator[Any]:
    lines: list[Line] = []

    async def make(*, slow_s: float, inlet_address: int = 2) -> Line:
        cfg = _station(tmp_path, serial_pair.b, slow_s=slow_s, inlet_address=inlet_address)
        # The simulated AI module has only the registers of the station's points.
        image = RegisterImage.from_config(cfg)
        for name, value in (("suction_pressure", SUCTION), ("discharge_pressure", DISCHARGE),
                            ("flow", FLOW), ("volume_total", VOLUME),
                            ("panel_temperature", 21.5), ("inlet_temperature", 28.5)):  # fmt: skip
            image.set_value(name, value)
        faults: dict[int, SlaveFault] = {}
        slave = TamperingSlave(image, bus="rs485", port=serial_pair.a, faults=faults.get)
        await slave.start()
        clock = Clock()
        acq = Acquisition(cfg, clock=clock)
        await acq.start()
        line = Line(cfg, image, slave, faults, clock, acq)
        lines.append(line)
        return line

    yield make
    for line in lines:
        await line.acq.close()
        await line.slave.close()


@pytest.mark.asyncio
async def test_adjacent_blocks_of_two_poll_classes_due_together_take_one_request(
    make_line: Any,
) -> None:
    line: Line = await make_line(slow_s=1.0)
    poller = line.acq.pollers[0]
    # 5 blocks: AI fast 0-1, AI slow 2, AI slow 40 (far), meter fast 4112, meter slow 4114.
    assert len(poller.blocks) == 5
    # Every block due: AI 0-2 in one read, the far block alone, the meter 4112-4115.
    assert await line.pass_at(0.0) == 3
    reads = poller.pass_log[-1].reads
    assert sorted((r.slave_id, r.start, r.count) for r in reads) == [
        (1, 0, 3), (1, 40, 1), (2, 4112, 4),
    ]  # fmt: skip
    snap = line.acq.read_all()
    assert snap["inlet_temperature"].value == pytest.approx(28.5)
    assert snap["volume_total"].value == pytest.approx(VOLUME)
    assert snap["suction_pressure"].value == pytest.approx(SUCTION)
    # Only the fast blocks due: one request per slave, the slow registers not read.
    assert await line.pass_at(0.5) == 2
    assert sorted((r.start, r.count) for r in poller.pass_log[-1].reads) == [(0, 2), (4112, 2)]
    # Both due again: still one request per run of nearby registers.
    assert await line.pass_at(1.0) == 3
    assert line.slave.stats.requests == sum(p.requests for p in poller.pass_log)


@pytest.mark.asyncio
async def test_a_block_falling_due_before_the_next_pass_rides_along(make_line: Any) -> None:
    """Periods that do not divide (0.5 s and 0.7 s): the slow blocks are read with the
    fast ones a little early rather than in passes of their own."""
    line: Line = await make_line(slow_s=0.7)
    poller = line.acq.pollers[0]
    assert await line.pass_at(0.0) == 3
    line.image.set_value("inlet_temperature", 30.0)
    # The slow blocks fall due at 0.7, before the next pass at 1.0: those next to a
    # fast block are read now; the far one waits for its own time (no read of its own
    # goes out early).
    assert await line.pass_at(0.5) == 2
    assert line.acq.read_all()["inlet_temperature"].value == pytest.approx(30.0)
    # Their schedule keeps its rate: next due 1.4 (before the pass at 1.5), not 1.2.
    assert poller.next_due[1] == pytest.approx(1000.0 + 1.4)
    assert await line.pass_at(1.0) == 3
    # Nothing is due at 1.2: no pass reads anything.
    assert await line.pass_at(1.2) == 0


@pytest.mark.asyncio
async def test_a_garbled_read_marks_only_its_own_points_bad(make_line: Any) -> None:
    line: Line = await make_line(slow_s=1.0)
    await line.pass_at(0.0)
    line.slave.garble = 0  # the AI module's read of 0-2: garbage, every repeat
    await line.pass_at(1.0)
    snap = line.acq.read_all()
    for name in ("suction_pressure", "discharge_pressure", "inlet_temperature"):
        reading = line.acq.pollers[0].readings[name]
        assert reading.reason is BadReason.FRAMING, reading
    # The same slave's other read, and the other slave's, are good and fresh.
    assert snap["panel_temperature"].good
    assert snap["panel_temperature"].value == pytest.approx(21.5)
    assert snap["flow"].good
    # An exception from the meter: its read's points, no others.
    line.slave.garble = None
    line.faults[2] = SlaveFault("exception", 4)
    await line.pass_at(2.0)
    readings = line.acq.pollers[0].readings
    assert readings["flow"].reason is BadReason.EXCEPTION
    assert readings["volume_total"].reason is BadReason.EXCEPTION
    assert readings["suction_pressure"].good
    assert readings["inlet_temperature"].good
    # And the loop goes on: faults gone, every point good at the next pass.
    line.faults.clear()
    await line.pass_at(3.0)
    assert all(r.good for r in line.acq.pollers[0].readings.values())


@pytest.mark.asyncio
async def test_a_slave_refusing_a_coalesced_read_has_its_blocks_read_apart(
    make_line: Any,
) -> None:
    """A device without the register between two blocks answers exception 2 to the read
    that bridges it: the blocks are read apart at once (their values stay good) and are
    never coalesced again, so the refusal costs one request once."""
    line: Line = await make_line(slow_s=1.0, inlet_address=3)  # register 2: a hole
    poller = line.acq.pollers[0]
    assert await line.pass_at(0.0) == 1 + 2 + 1 + 1  # refused 0-3, then 0-1 and 3 apart
    snap = line.acq.read_all()
    assert snap["suction_pressure"].value == pytest.approx(SUCTION)
    assert snap["inlet_temperature"].value == pytest.approx(28.5)
    stats = poller.slaves[1]
    assert stats.errors == {}
    # From now on apart: 2 requests for the AI module's near blocks, no refusal.
    assert await line.pass_at(1.0) == 2 + 1 + 1
    assert line.acq.read_all()["inlet_temperature"].good


def _block(slave_id: int, kind: str, start: int, count: int) -> Block:
    return Block("rs485", "dev", slave_id, kind, start, count, 1.0, ())


@pytest.mark.parametrize(
    ("blocks", "max_gap", "apart", "expected"),
    [
        # adjacent, then a gap of 4 bridged, a gap of 5 not
        ([(1, "input", 0, 2), (1, "input", 2, 1), (1, "input", 7, 1), (1, "input", 13, 1)],
         4, (), [(0, 8, (0, 1, 2)), (13, 1, (3,))]),
        # overlapping blocks merge; another slave or kind never does
        ([(1, "holding", 10, 4), (1, "holding", 12, 4), (2, "holding", 16, 2),
          (1, "input", 16, 2)], 8, (), [(10, 6, (0, 1)), (16, 2, (2,)), (16, 2, (3,))]),
        # 125 registers at most in one read
        ([(1, "holding", 0, 100), (1, "holding", 100, 25), (1, "holding", 125, 1)],
         8, (), [(0, 125, (0, 1)), (125, 1, (2,))]),
        # bits: the gap allowance is 16x, the limit 2000
        ([(1, "coil", 0, 8), (1, "coil", 72, 8), (1, "coil", 1990, 20)],
         4, (), [(0, 80, (0, 1)), (1990, 20, (2,))]),
        # a pair a slave refused stays apart, the others still merge
        ([(1, "input", 0, 2), (1, "input", 3, 1), (1, "input", 4, 1)],
         4, {frozenset((0, 1))}, [(0, 2, (0,)), (3, 2, (1, 2))]),
        # gap 0: only touching blocks merge
        ([(1, "input", 0, 2), (1, "input", 2, 1), (1, "input", 4, 1)],
         0, (), [(0, 3, (0, 1)), (4, 1, (2,))]),
    ],
)  # fmt: skip
def test_coalesce_table(
    blocks: list[tuple[int, str, int, int]],
    max_gap: int,
    apart: Any,
    expected: list[tuple[int, int, tuple[int, ...]]],
) -> None:
    bs = [_block(*b) for b in blocks]
    reads = coalesce(bs, range(len(bs)), max_gap=max_gap, apart=apart)
    assert [(r.start, r.count, r.members) for r in reads] == expected
    for r in reads:
        assert {bs[i].slave_id for i in r.members} == {r.slave_id}

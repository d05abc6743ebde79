"""Modbus RTU acquisition over a real serial line (socat pty pair) against our own slaves."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from controller.config import load_config
from controller.config.schema import StationConfig
from controller.values import BadReason, Reading
from drivers.modbus.acquisition import Acquisition, read_once
from simulator.modbus_slave import RtuSlave, SlaveFault, TcpSlave
from simulator.registers import RegisterImage
from tests.support.serial_pair import SerialPair
from tests.support.stations import ORDERS, three_slave_station, write_station

VALUES = {
    "int32": -123456,
    "uint32": 3_000_000_000,
    "float32": 123.456,
}


@dataclass
class Bench:
    cfg: StationConfig
    image: RegisterImage
    slave: RtuSlave
    faults: dict[int, SlaveFault]
    path: Path


@pytest_asyncio.fixture
async def bench(serial_pair: SerialPair, tmp_path: Path) -> AsyncIterator[Bench]:
    path = write_station(tmp_path / "station.yaml", three_slave_station(serial_pair.b))
    cfg = load_config(path)
    image = RegisterImage.from_config(cfg)
    faults: dict[int, SlaveFault] = {}
    slave = RtuSlave(image, bus="rs485", port=serial_pair.a, faults=faults.get)
    await slave.start()
    for dtype, value in VALUES.items():
        for order in ORDERS:
            image.set_value(f"{dtype}_{order}", value)
    for dtype in ("int16", "uint16"):
        for order in ("ABCD", "BADC"):
            image.set_value(f"{dtype}_{order}", 101.5)  # raw 201
    image.set_value("suction_pressure", 1.25)
    image.set_value("discharge_pressure", 3.5)
    image.set_value("flow", 42.25)
    image.set_value("volume_total", 1234.567)
    image.set_value("panel_temperature", -3.5)
    image.set_bit("pump_contactor", True)
    try:
        yield Bench(cfg, image, slave, faults, path)
    finally:
        await slave.close()


async def _poll(cfg: StationConfig) -> dict[str, Reading]:
    return await read_once(cfg)


@pytest.mark.asyncio
async def test_every_type_and_word_order_decodes_exactly(bench: Bench) -> None:
    readings = await _poll(bench.cfg)
    for dtype, value in VALUES.items():
        for order in ORDERS:
            r = readings[f"{dtype}_{order}"]
            assert r.good, r
            if dtype == "float32":
                assert r.value == pytest.approx(value, rel=1e-7)
            else:
                assert r.value == value
    for name in ("int16_ABCD", "int16_BADC", "uint16_ABCD", "uint16_BADC"):
        assert readings[name].value == 101.5
    assert readings["suction_pressure"].value == pytest.approx(1.25)
    assert readings["flow"].value == pytest.approx(42.25)
    assert readings["volume_total"].value == pytest.approx(1234.567)
    assert readings["panel_temperature"].value == pytest.approx(-3.5)
    assert readings["pump_contactor"].value == 1.0
    assert readings["door_switch"].value == 0.0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "reason", "detail"),
    [
        (SlaveFault("silent"), BadReason.TIMEOUT, "no answer"),
        (SlaveFault("bad_crc"), BadReason.FRAMING, "CRC error"),
        (SlaveFault("garbage"), BadReason.FRAMING, "reply"),
        (SlaveFault("exception", 6), BadReason.EXCEPTION, "code 6 (slave device busy)"),
    ],
)
async def test_slave_faults_give_quality_and_reason_others_stay_good(
    bench: Bench, fault: SlaveFault, reason: BadReason, detail: str
) -> None:
    bench.faults[2] = fault
    readings = await _poll(bench.cfg)
    flow = readings["flow"]
    assert flow.reason is reason
    assert detail in flow.detail
    assert readings["discharge_pressure"].good
    assert readings["float32_CDAB"].good


@pytest.mark.asyncio
async def test_wire_break_and_over_range_on_a_4_20_ma_input(bench: Bench) -> None:
    bench.image.set_current_ma("discharge_pressure", 0.0)
    bench.image.set_current_ma("suction_pressure", 21.0)
    readings = await _poll(bench.cfg)
    assert readings["discharge_pressure"].reason is BadReason.WIRE_BREAK
    assert readings["suction_pressure"].reason is BadReason.OUT_OF_RANGE


@pytest.mark.asyncio
async def test_silent_slave_leaves_the_others_on_time_and_recovers(bench: Bench) -> None:
    """The others keep period + at most one poll of the dead slave (its request and
    repeats); in backoff the dead one costs one timeout per window."""
    cfg = bench.cfg
    bus = cfg.buses["rs485"]
    tick = cfg.control.tick_s
    acq = Acquisition(cfg)
    await acq.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(acq.run(stop))
    poller = acq.pollers[0]
    dead = 2
    try:
        await _wait(lambda: acq.read_all()["flow"].good, 10)
        bench.faults[dead] = SlaveFault("silent")
        await _wait(lambda: poller.slaves[dead].errors.get("timeout", 0) >= 1, 10)
        first_failure = acq.clock()
        # Left alone only once it stayed silent silent_before_backoff requests in a row.
        await _wait(lambda: poller.slaves[dead].backing_off, 10)
        assert poller.slaves[dead].silent_in_row >= bus.silent_before_backoff
        backoff_from = acq.clock()
        requests_at_backoff = poller.slaves[dead].requests
        failures = poller.slaves[dead].errors["timeout"]
        await _wait(lambda: poller.slaves[dead].errors["timeout"] >= failures + 3, 15)
        observed_s = acq.clock() - backoff_from
        probes = poller.slaves[dead].requests - requests_at_backoff
        # One probe per backoff window, no more, and no repeats of a probe.
        assert probes <= observed_s / bus.backoff_s + 1
        live = [i for i, b in enumerate(poller.blocks) if b.slave_id != dead and b.period_s == tick]
        assert live
        for i in live:
            stamps = [t for j, t in poller.history if j == i and t >= first_failure]
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            assert len(gaps) >= 5, "the live slave was not polled"
            assert max(gaps) <= tick + (1 + bus.retries) * bus.timeout_s + 0.1, gaps
        assert acq.read_all()["discharge_pressure"].good
        assert acq.read_all()["flow"].reason is BadReason.TIMEOUT
        # Waiting out a backoff window is sleeping, not spinning: about one pass per tick.
        assert poller.passes <= 2 * (acq.clock() - first_failure) / tick + 20
        # Recovery at the next probe.
        bench.faults.pop(dead)
        await _wait(lambda: acq.read_all()["flow"].good, bus.backoff_s + 5)
        assert acq.read_all()["flow"].value == pytest.approx(42.25)
    finally:
        stop.set()
        await runner
        await acq.close()


async def _wait(cond: Callable[[], bool], within: float) -> None:
    """Wait for a condition with a deadline (acquisition has no event per value change)."""
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _boosterd(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_read_command_shows_engineering_values_and_exits_by_quality(bench: Bench) -> None:
    code, out, err = await _boosterd("read", str(bench.path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["flow"]["v"] == pytest.approx(42.25)
    assert data["flow"]["raw"] == [0, 0x4229]  # float32 CDAB: low word first
    assert data["discharge_pressure"]["v"] == pytest.approx(3.5)
    assert data["panel_temperature"]["v"] == pytest.approx(-3.5)
    bench.faults[2] = SlaveFault("silent")
    code, out, _ = await _boosterd("read", str(bench.path))
    assert code == 1
    assert "timeout" in out
    assert "discharge_pressure" in out


@pytest.mark.asyncio
@pytest.mark.parametrize("bus_type", ["tcp", "rtu_over_tcp"])
async def test_tcp_and_rtu_over_tcp_gateways(tmp_path: Path, bus_type: str) -> None:
    from tests.support.broker import free_port

    port = free_port()
    data = three_slave_station("/dev/null")
    data["buses"] = {"rs485": {"type": bus_type, "host": "127.0.0.1", "tcp_port": port,
                               "timeout_s": 0.2, "backoff_s": 1.0}}  # fmt: skip
    cfg = load_config(write_station(tmp_path / "tcp.yaml", data))
    image = RegisterImage.from_config(cfg)
    image.set_value("float32_DCBA", -7.25)
    image.set_value("flow", 12.5)
    faults: dict[int, SlaveFault] = {1: SlaveFault("exception", 2)}
    framing = "rtu" if bus_type == "rtu_over_tcp" else "mbap"
    slave = TcpSlave(image, bus="rs485", port=port, framing=framing, faults=faults.get)
    await slave.start()
    try:
        readings = await _poll(cfg)
    finally:
        await slave.close()
    assert readings["float32_DCBA"].value == pytest.approx(-7.25)
    assert readings["flow"].value == pytest.approx(12.5)
    assert readings["discharge_pressure"].reason is BadReason.EXCEPTION


@pytest.mark.asyncio
async def test_a_queued_write_reaches_the_slave_before_the_next_reads(bench: Bench) -> None:
    acq = Acquisition(bench.cfg)
    await acq.start()
    try:
        acq.write("int32_CDAB", -42)  # two registers: function 16
        acq.write("int16_ABCD", 21.0)  # one register (input kind here: the slave refuses)
        await acq.poll_due()
        snap = acq.read_all()
    finally:
        await acq.close()
    assert snap["int32_CDAB"].value == -42
    assert bench.slave.stats.requests > 0
    assert acq.pollers[0].write_errors == 1  # the input register cannot be written

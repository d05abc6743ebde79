"""The whole station through a noisy RS-485 line: pressure held, no extra pump starts.

The simulated station's transmitters are served by our RTU slaves behind the fault
relay (tests/support/serial_relay.py); the real acquisition reads them over the ptys
and the real control core runs the pumps. Time is the simulator's: each control tick
does its Modbus transactions on the wire, so ten simulated minutes take seconds and a
timeout still costs real waiting on the line. The same run on a clean line is the
reference.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.config import load_config
from controller.values import Reading
from drivers.modbus.acquisition import Acquisition
from simulator.closed_loop import ClosedLoop
from simulator.modbus_slave import RtuSlave
from simulator.source import SimSource
from tests.support.serial_relay import LineFaults, SerialRelay
from tests.support.stations import example_station, write_station

RUN_S = 600.0  # simulated seconds per run
SETTLED_S = 120.0  # pressure is judged after the start-up (power-on delay, first pumps)
STOP_STATES = {"suction_sensor_failure", "sensor_failure", "dry_run", "power_on_delay"}


@pytest.fixture(scope="module")
def aio_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread: the slaves and the acquisition live there while the
    closed loop (synchronous, in simulated time) runs in the test's thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="modbus loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


class WireSource:
    """``snapshot()`` for the control loop: the station's values read over the wire."""

    def __init__(self, sim: SimSource, acq: Acquisition, loop: asyncio.AbstractEventLoop) -> None:
        self.sim = sim
        self.acq = acq
        self.loop = loop

    def snapshot(self) -> dict[str, Reading]:
        self.sim.publish()  # what the transmitters say now, into the slaves' registers
        asyncio.run_coroutine_threadsafe(self.acq.poll_due(), self.loop).result(timeout=30)
        return self.acq.snapshot()


@dataclass
class Run:
    closed: ClosedLoop
    relay: SerialRelay
    acq_stats: dict[str, Any]

    @property
    def starts(self) -> int:
        return sum(len(ts) for ts in self.closed.station.start_times().values())

    def settled(self) -> list[tuple[float, float, str]]:
        tr = self.closed.trace
        rows = zip(tr.t, tr.pressure_bar, tr.state, strict=True)
        return [row for row in rows if row[0] >= SETTLED_S]


def run_station(
    tmp_path: Path,
    loop: asyncio.AbstractEventLoop,
    faults: LineFaults,
    *,
    seed: int,
    **bus: Any,
) -> Run:
    relay = SerialRelay.start(faults, seed=seed)
    try:
        data = example_station(relay.controller_port)
        data["buses"]["rs485"].update({"timeout_s": 0.1, **bus})  # type: ignore[index]
        cfg = load_config(write_station(tmp_path / f"station-{seed}.yaml", data))
        closed = ClosedLoop(cfg, start_hour=7.5, seed=3)
        station = closed.station

        async def start() -> tuple[RtuSlave, Acquisition]:
            slave = RtuSlave(closed.source.image, bus="rs485", port=relay.slave_port)
            await slave.start()
            acq = Acquisition(cfg, clock=lambda: float(station.t))
            await acq.start()
            return slave, acq

        slave, acq = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        closed.loop.source = WireSource(closed.source, acq, loop)
        try:
            closed.run(RUN_S)
        finally:

            async def stop() -> None:
                await acq.close()
                await slave.close()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        return Run(closed, relay, acq.stats()["rs485"])
    finally:
        relay.close()


NOISY = LineFaults(reply_flip_rate=0.01, request_flip_rate=0.01)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, aio_thread: asyncio.AbstractEventLoop) -> Run:
    """The reference: the same station on a clean line."""
    return run_station(tmp_path_factory.mktemp("clean"), aio_thread, LineFaults(), seed=1)


def test_one_percent_corrupted_frames_keep_the_pressure_and_add_no_starts(
    tmp_path: Path, aio_thread: asyncio.AbstractEventLoop, clean: Run
) -> None:
    noisy = run_station(tmp_path, aio_thread, NOISY, seed=7)
    # The line really was noisy, and acquisition saw it.
    assert noisy.relay.stats.replies_flipped >= 5, noisy.relay.stats
    assert noisy.relay.stats.requests_flipped >= 5, noisy.relay.stats
    line_errors = sum(sum(s["line_errors"].values()) for s in noisy.acq_stats.values())
    assert line_errors >= 10, noisy.acq_stats
    assert clean.relay.stats.replies_flipped == 0
    # The station never stopped for it...
    states = {state for _, _, state in noisy.settled()}
    assert not states & STOP_STATES, states
    assert not any(s["backing_off"] for s in noisy.acq_stats.values())
    # ...kept its pressure as on a clean line...
    clean_min = min(p for _, p, _ in clean.settled())
    noisy_min = min(p for _, p, _ in noisy.settled())
    assert noisy_min >= clean_min - 0.1, (noisy_min, clean_min)
    # ...and started no pump more often.
    assert clean.starts >= 1
    assert noisy.starts <= clean.starts, (noisy.starts, clean.starts)


def test_the_same_line_without_repeats_or_hold_stops_the_station(
    tmp_path: Path, aio_thread: asyncio.AbstractEventLoop, clean: Run
) -> None:
    """The line above is noisy enough to matter: with neither repeats nor a hold, every
    corrupted suction reading stops all pumps (the behaviour issue 12 reported)."""
    bare = run_station(tmp_path, aio_thread, NOISY, seed=7, retries=0, hold_s=0.0)
    states = [state for _, _, state in bare.settled()]
    assert "suction_sensor_failure" in states
    assert bare.starts > clean.starts
    assert min(p for _, p, _ in bare.settled()) < min(p for _, p, _ in clean.settled()) - 1.0

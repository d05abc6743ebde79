"""The simulated station read through a (noisy) serial line, in simulated time.

The station's transmitters are served by our RTU slaves behind the fault relay
(``serial_relay.py``); the real acquisition reads them over the ptys and the real
control core runs the pumps. Each control tick does its Modbus transactions on the
wire, so simulated minutes take seconds while a timeout still costs real waiting.
Used by tests/test_noisy_line_station.py and bench/noisy_line.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import load_config
from controller.values import Reading
from drivers.modbus.acquisition import Acquisition
from harness.closed_loop import ClosedLoop
from simulator.modbus_slave import RtuSlave
from simulator.source import SimSource
from tests.support.serial_relay import LineFaults, SerialRelay
from tests.support.stations import example_station, write_station

#: States in which the station stops or falls back because of what it read.
STOP_STATES = frozenset({"suction_sensor_failure", "sensor_failure", "dry_run"})


@contextmanager
def modbus_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread: the slaves and the acquisition live there while the
    closed loop (synchronous, in simulated time) runs in the caller's thread."""
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
    """``read_all()`` for the control loop: the station's values read over the wire."""

    def __init__(self, sim: SimSource, acq: Acquisition, loop: asyncio.AbstractEventLoop) -> None:
        self.sim = sim
        self.acq = acq
        self.loop = loop

    def read_all(self) -> dict[str, Reading]:
        self.sim.publish()  # what the transmitters say now, into the slaves' registers
        asyncio.run_coroutine_threadsafe(self.acq.poll_due(), self.loop).result(timeout=30)
        return self.acq.read_all()


@dataclass
class Run:
    closed: ClosedLoop
    relay: SerialRelay
    acq_stats: dict[str, Any]
    settled_s: float

    @property
    def starts(self) -> int:
        return sum(len(ts) for ts in self.closed.station.start_times().values())

    def settled(self) -> list[tuple[float, float, str]]:
        """(t, discharge bar, state) per tick once the start-up is over."""
        tr = self.closed.trace
        rows = zip(tr.t, tr.pressure_bar, tr.state, strict=True)
        return [row for row in rows if row[0] >= self.settled_s]

    def stop_episodes(self) -> int:
        """Times the station entered a stop or fallback state after start-up."""
        states = [state in STOP_STATES for _, _, state in self.settled()]
        return sum(1 for a, b in zip([False, *states], states, strict=False) if b and not a)


def run_station(
    tmp_path: Path,
    loop: asyncio.AbstractEventLoop,
    faults: LineFaults,
    *,
    seed: int,
    run_s: float,
    settled_s: float = 120.0,
    start_hour: float = 7.5,
    **bus: Any,
) -> Run:
    """Run the example station for ``run_s`` simulated seconds through a relay."""
    relay = SerialRelay.start(faults, seed=seed)
    try:
        data = example_station(relay.controller_port)
        # 115200 baud: the shortest silence between frames (1.75 ms), for speed; our
        # slaves answer at once, whatever the baud rate.
        line = {"timeout_s": 0.1, "baudrate": 115200, **bus}
        data["buses"]["rs485"].update(line)  # type: ignore[index]
        cfg = load_config(write_station(tmp_path / f"station-{seed}.yaml", data))
        closed = ClosedLoop(cfg, start_hour=start_hour, seed=3)
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
            closed.run(run_s)
        finally:

            async def stop() -> None:
                await acq.close()
                await slave.close()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        return Run(closed, relay, acq.stats()["rs485"], settled_s)
    finally:
        relay.close()

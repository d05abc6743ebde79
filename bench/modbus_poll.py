"""Modbus poll-cycle benchmark over a real pty with baud-rate emulation.

    .venv/bin/python -m bench.modbus_poll [--cycles 30]

For the example station at 9600, 19200 and 115200 baud: the measured time of a fast
poll cycle (the blocks due every tick) and of a full cycle (every block due), against
the wire-time limit computed from the frame sizes (drivers/modbus/timing.py, with the
simulator's zero turnaround), and the transactions per cycle against the minimum (one
per slave and register kind). Also: with one slave silent, the live slave's worst poll
gap against period + one poll of the dead slave (its request and repeats) + the fast
cycle's wire time; and the fast cycle on a noisy line (the test relay flipping one bit
in 1 % of the requests and 1 % of the replies): what the repeats cost and how many
polls still failed. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from controller.config import parse_config
from controller.logs import configure_logging
from drivers.modbus.acquisition import Acquisition
from drivers.modbus.plan import build_plan
from simulator.modbus_slave import RtuSlave, SlaveFault
from simulator.ptypair import PtyPair
from simulator.registers import RegisterImage

REPO = Path(__file__).resolve().parent.parent


def station(port: str, baud: int) -> Any:
    data = yaml.safe_load((REPO / "config" / "station.example.yaml").read_text())
    data["buses"]["rs485"].update({"port": port, "baudrate": baud, "timeout_s": 0.2,
                                   "backoff_s": 2.0})  # fmt: skip
    return parse_config(yaml.safe_dump(data), "bench")


async def measure(baud: int, cycles: int) -> dict[str, Any]:
    pair = PtyPair.start(Path(tempfile.mkdtemp(prefix="bench-pty-")) / "bus")
    cfg = station(pair.device, baud)
    image = RegisterImage.from_config(cfg)
    for name in cfg.points():
        image.set_value(name, 1.0)
    faults: dict[int, SlaveFault] = {}
    slave = RtuSlave(image, bus="rs485", port=pair.slave_end, baudrate=baud,
                     emulate_baud=True, faults=faults.get)  # fmt: skip
    await slave.start()
    acq = Acquisition(cfg)
    await acq.start()
    poller = acq.pollers[0]
    tick = cfg.control.tick_s
    plan = build_plan(cfg, turnaround_s=0.0).buses[0]
    fast = [(i, b) for i, b in enumerate(poller.blocks) if b.period_s <= tick]
    try:
        full_s, fast_s = [], []
        for _ in range(cycles):
            t0 = time.perf_counter()
            for i, b in fast:
                await poller._poll_block(i, b, poller.slaves[b.slave_id])
            fast_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i, b in enumerate(poller.blocks):
                await poller._poll_block(i, b, poller.slaves[b.slave_id])
            full_s.append(time.perf_counter() - t0)
        # A silent slave: the live slave's poll gaps while acquisition runs on its own.
        faults[2] = SlaveFault("silent")
        stop = asyncio.Event()
        poller.history.clear()
        runner = asyncio.create_task(acq.run(stop))
        await asyncio.sleep(6.0)  # a benchmark observes for a fixed time
        stop.set()
        await runner
        live = [i for i, b in fast if b.slave_id != 2]
        stamps = [t for i, t in poller.history if i in live]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
    finally:
        await acq.close()
        await slave.close()
        pair.close()
    minimum = len({(b.slave_id, b.kind) for b in poller.blocks})
    bus = cfg.buses["rs485"]
    fast_limit = sum(plan.block_time_s(b) for _, b in fast)
    return {
        "baud": baud,
        "fast_cycle_ms_p50": round(1000 * statistics.median(fast_s), 2),
        "fast_cycle_ms_max": round(1000 * max(fast_s), 2),
        "fast_cycle_wire_limit_ms": round(1000 * fast_limit, 2),
        "full_cycle_ms_p50": round(1000 * statistics.median(full_s), 2),
        "full_cycle_wire_limit_ms": round(1000 * plan.worst_cycle_s(), 2),
        "transactions_fast_cycle": len(fast),
        "transactions_full_cycle": len(poller.blocks),
        "transactions_minimum": minimum,
        "silent_slave_live_gap_ms_max": round(1000 * max(gaps), 1) if gaps else None,
        "silent_slave_bound_ms": round(
            1000 * (tick + (1 + bus.retries) * bus.timeout_s + fast_limit), 1
        ),
        **await measure_noisy(baud, cycles * 20),
    }


async def measure_noisy(baud: int, cycles: int) -> dict[str, Any]:
    """The fast cycle through a line corrupting 1 % of the frames each way."""
    from tests.support.serial_relay import LineFaults, SerialRelay

    relay = SerialRelay.start(LineFaults(reply_flip_rate=0.01, request_flip_rate=0.01), seed=1)
    cfg = station(relay.controller_port, baud)
    image = RegisterImage.from_config(cfg)
    for name in cfg.points():
        image.set_value(name, 1.0)
    slave = RtuSlave(image, bus="rs485", port=relay.slave_port, baudrate=baud,
                     emulate_baud=True)  # fmt: skip
    await slave.start()
    acq = Acquisition(cfg)
    await acq.start()
    poller = acq.pollers[0]
    fast = [(i, b) for i, b in enumerate(poller.blocks) if b.period_s <= cfg.control.tick_s]
    cycle_s = []
    try:
        for _ in range(cycles):
            t0 = time.perf_counter()
            for i, b in fast:
                await poller._poll_block(i, b, poller.slaves[b.slave_id])
            cycle_s.append(time.perf_counter() - t0)
    finally:
        await acq.close()
        await slave.close()
        relay.close()
    stats = list(poller.slaves.values())
    cycle_s.sort()
    return {
        "noisy_cycles": cycles,
        "noisy_frames_corrupted": relay.stats.requests_flipped + relay.stats.replies_flipped,
        "noisy_fast_cycle_ms_p50": round(1000 * statistics.median(cycle_s), 2),
        "noisy_fast_cycle_ms_p99": round(1000 * cycle_s[int(0.99 * len(cycle_s))], 2),
        "noisy_fast_cycle_ms_max": round(1000 * cycle_s[-1], 2),
        "noisy_repeats": sum(s.retries for s in stats),
        "noisy_failed_polls": sum(sum(s.errors.values()) for s in stats),
    }


async def main(cycles: int) -> list[dict[str, Any]]:
    return [await measure(baud, cycles) for baud in (9600, 19200, 115200)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cycles", type=int, default=30)
    args = ap.parse_args()
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args.cycles)), indent=2))
    sys.exit(0)

"""A real process that records samples and forwards them over MQTT.

The outage and SIGKILL tests run it: it appends ``--total`` samples at ``--rate`` per
second to a SampleBuffer and runs the Uplink (none with ``--port 0``), writing the last
appended seq to ``--progress`` so the test can wait on it. SIGTERM stops it cleanly.
``--sync-flag PATH`` stands in for systemd-timesyncd's flag file (the clock tests run
it under libfaketime, where the host kernel's own sync state means nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from controller.config.schema import UplinkConfig
from controller.control.core import ControlOutputs, PumpInputs
from controller.runtime.loop import make_sample
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.clock import ClockSync
from controller.telemetry.uplink import Uplink
from controller.values import Reading

SAMPLE = make_sample(
    {"discharge_pressure": Reading.ok("discharge_pressure", 3.01, "bar")},
    ControlOutputs(relays={"P1": True}, mode="auto", setpoint_bar=3.0, demand=0.8,
                   state="auto", pump_states={"P1": "running"}),
    {"P1": PumpInputs(feedback=True, fault=False)},
)  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--site", default="test-site")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--total", type=int, default=100)
    ap.add_argument("--progress", required=True)
    ap.add_argument("--sync-flag")
    ap.add_argument("--keepalive", type=int, default=5)
    args = ap.parse_args()
    synced = ClockSync(flag=Path(args.sync_flag), kernel=lambda: False) if args.sync_flag else None
    buf = SampleBuffer(args.db, site=args.site, commit_interval_s=0.2, clock_synced=synced)
    await buf.open()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    progress = Path(args.progress)

    async def produce() -> None:
        for i in range(args.total):
            if stop.is_set():
                return
            # A real format-2 sample (with its schema), marked with the writer's count.
            seq = buf.append({**SAMPLE, "n": i, "pid": os.getpid()})
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(str(seq))
            os.replace(tmp, progress)
            await asyncio.sleep(1 / args.rate)

    async def stop_when_done() -> None:
        await produce()
        if args.port == 0:
            await stop.wait()

    tasks = [stop_when_done(), buf.run(stop)]
    if args.port != 0:
        cfg = UplinkConfig(
            host="127.0.0.1",
            port=args.port,
            topic_prefix=args.prefix,
            keepalive_s=args.keepalive,
            batch_size=50,
            reconnect_max_s=1.0,
        )
        status = lambda: {"mode": "auto"}  # noqa: E731
        uplink = Uplink(cfg, site=args.site, buffer=buf, status=status, commands=None)
        tasks.append(uplink.run(stop))
    await asyncio.gather(*tasks)
    await buf.close()


if __name__ == "__main__":
    asyncio.run(main())

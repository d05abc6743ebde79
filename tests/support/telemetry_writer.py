"""A real process that records samples and forwards them over MQTT.

The outage and SIGKILL tests run it: it appends ``--total`` samples at ``--rate`` per
second to a SampleBuffer and runs the Uplink, writing the last appended seq to
``--progress`` so the test can wait on it. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from controller.config.schema import UplinkConfig
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.uplink import Uplink


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--site", default="test-site")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--total", type=int, default=100)
    ap.add_argument("--progress", required=True)
    args = ap.parse_args()
    buf = SampleBuffer(args.db, site=args.site, commit_interval_s=0.2)
    await buf.open()
    cfg = UplinkConfig(
        host="127.0.0.1",
        port=args.port,
        topic_prefix=args.prefix,
        keepalive_s=5,
        batch_size=50,
        reconnect_max_s=1.0,
    )
    uplink = Uplink(cfg, site=args.site, buffer=buf, status=lambda: {"mode": "auto"}, commands=None)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    progress = Path(args.progress)

    async def produce() -> None:
        for i in range(args.total):
            seq = buf.append({"n": i, "pid": os.getpid()})
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(str(seq))
            os.replace(tmp, progress)
            await asyncio.sleep(1 / args.rate)

    await asyncio.gather(produce(), buf.run(stop), uplink.run(stop))
    await buf.close()


if __name__ == "__main__":
    asyncio.run(main())

"""Telemetry benchmark: buffer write rate, backlog replay against an honest ceiling, and
catch-up measured with live samples arriving.

    .venv/bin/python -m bench.telemetry [--rows 20000] [--inflight 500] [--check] [--save]

* buffer: samples/s through ``append`` + one commit per 1,000 samples, with the example
  station's real samples (``make_sample``, format 2);
* replay: a backlog of ``--rows`` such samples sent by the Uplink to a local Mosquitto
  (MQTT 5, QoS 1, each row deleted only after its PUBACK, ``uplink.max_inflight`` =
  ``--inflight``) while the station appends a live sample every 0.1 s; the figure is
  the backlog's rows per second, and catch-up is the time until the buffer is empty;
* ceiling: bare aiomqtt publishing the same stored bytes (fetched from the buffer), same
  protocol version, QoS 1, same broker, same run, with a sliding window of each of
  ``WINDOWS`` messages in flight (paho's ``max_inflight_messages`` set to match): the
  fastest window is the ceiling. Replay must reach half of it.
Wall time and CPU time (this process: the uplink, or the bare client) for each.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiomqtt

from bench.buffer import samples, station
from bench.common import Clock, Target, add_arguments, finish
from controller.config.schema import UplinkConfig
from controller.logs import configure_logging
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.uplink import Uplink
from tests.support.broker import Broker

WINDOWS = (20, 100, 500, 1000, 2000)


def synced() -> bool:
    """A station's clock once NTP has set it: samples then carry no ``ts_unsynced``
    flag (19 bytes, only while the clock is not synchronised after a boot offline),
    whatever this machine's own clock state."""
    return True


POOL = samples(*station(5, 3, 0))
#: One example-station sample body (bench/sd_writes.py commits it per tick).
SAMPLE: dict[str, Any] = POOL[0]


async def buffer_rate(path: Path, rows: int) -> dict[str, float]:
    buf = SampleBuffer(path, site="bench", max_pending=rows + 1, clock_synced=synced)
    await buf.open()
    clock = Clock()
    for i in range(rows):
        buf.append(POOL[i % len(POOL)])
        if (i + 1) % 1000 == 0:
            await buf.flush()
    await buf.flush()
    wall, cpu = clock.wall_s(), clock.cpu_s()
    await buf.close()
    return {"per_s": rows / wall, "cpu_us_per_sample": 1e6 * cpu / rows}


async def filled(path: Path, rows: int) -> SampleBuffer:
    buf = SampleBuffer(path, site="bench", max_pending=rows + 1, clock_synced=synced)
    await buf.open()
    for i in range(rows):
        buf.append(POOL[i % len(POOL)])
    await buf.flush()
    return buf


async def replay(path: Path, port: int, rows: int, inflight: int) -> dict[str, float]:
    buf = await filled(path, rows)
    cfg = UplinkConfig(host="127.0.0.1", port=port, topic_prefix="bench", batch_size=500,
                       max_inflight=inflight)  # fmt: skip
    uplink = Uplink(cfg, site="bench", buffer=buf, status=dict, commands=None)
    stop = asyncio.Event()
    clock = Clock()
    tasks = [asyncio.create_task(uplink.run(stop)), asyncio.create_task(buf.run(stop))]
    backlog_s = None
    # Caught up: the backlog is through and every committed live row delivered too.
    while buf.stats()["rows"] > 0 or backlog_s is None:
        buf.append(POOL[0])  # the station keeps ticking at 10 Hz
        await asyncio.sleep(0.1)
        if backlog_s is None and uplink.published >= rows:
            backlog_s = clock.wall_s()
    catch_up, cpu = clock.wall_s(), clock.cpu_s()
    stop.set()
    await asyncio.gather(*tasks)
    await buf.close()
    return {"per_s": rows / backlog_s, "catch_up_s": catch_up, "cpu_s": cpu}


async def payloads(path: Path, rows: int) -> list[bytes]:
    buf = await filled(path, rows)
    out: list[bytes] = []
    while len(out) < rows:
        got = await buf.fetch(after_seq=len(out), limit=5000)
        out += [p for _, _, p in got]
    await buf.close()
    return out


async def bare(port: int, data: list[bytes], window: int) -> dict[str, float]:
    client = aiomqtt.Client("127.0.0.1", port, identifier=f"bench-bare-{window}",
                            protocol=aiomqtt.ProtocolVersion.V5,
                            max_inflight_messages=window)  # fmt: skip
    client.pending_calls_threshold = 2 * window  # a full window is the point
    async with client:
        room = asyncio.Semaphore(window)

        async def one(payload: bytes) -> None:
            try:
                await client.publish("bench/bare/telemetry", payload, qos=1)
            finally:
                room.release()

        clock = Clock()
        tasks = []
        for payload in data:
            await room.acquire()
            tasks.append(asyncio.create_task(one(payload)))
        await asyncio.gather(*tasks)
        return {"per_s": len(data) / clock.wall_s(), "cpu_s": clock.cpu_s()}


async def run(rows: int, inflight: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    broker = Broker()
    broker.start()
    try:
        write = await buffer_rate(tmp / "w.sqlite3", rows * 5)
        data = await payloads(tmp / "p.sqlite3", rows)
        ceilings = {w: await bare(broker.port, data, w) for w in WINDOWS}
        rep = await replay(tmp / "r.sqlite3", broker.port, rows, inflight)
    finally:
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    best = max(ceilings, key=lambda w: ceilings[w]["per_s"])
    ceiling = ceilings[best]["per_s"]
    return {
        "rows": rows,
        "bytes_per_message": round(sum(map(len, data)) / len(data)),
        "buffer_append_commit_samples_per_s": round(write["per_s"]),
        "buffer_cpu_us_per_sample": round(write["cpu_us_per_sample"], 1),
        "replay_msgs_per_s": round(rep["per_s"]),
        "replay_wall_s": round(rep["catch_up_s"], 2),
        "replay_cpu_s": round(rep["cpu_s"], 2),
        "replay_cpu_ms_per_1000_msgs": round(1e6 * rep["cpu_s"] / rows, 1),
        "replay_inflight": inflight,
        "ceiling_msgs_per_s": round(ceiling),
        "ceiling_window": best,
        "ceiling_cpu_ms_per_1000_msgs": round(1e6 * ceilings[best]["cpu_s"] / rows, 1),
        **{f"bare_window_{w}_msgs_per_s": round(c["per_s"]) for w, c in ceilings.items()},
        "replay_vs_ceiling": round(rep["per_s"] / ceiling, 2),
        "catch_up_s_with_live_10hz": round(rep["catch_up_s"], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--inflight", type=int, default=UplinkConfig().max_inflight)
    add_arguments(ap)
    args = ap.parse_args()
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    figures = asyncio.run(run(args.rows, args.inflight))
    targets = [
        Target("replay_vs_ceiling", ">=", 0.5, "issue 14: replay >= 0.5x an honest ceiling"),
        Target("bytes_per_message", "<=", 200, "issue 14: compact samples"),
    ]
    command = "python -m bench.telemetry " + " ".join(sys.argv[1:])
    finish("telemetry", figures, targets, args, command=command.strip())


if __name__ == "__main__":
    main()

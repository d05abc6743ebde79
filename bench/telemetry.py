"""Telemetry benchmark: buffer write rate, backlog replay rate, catch-up after an outage.

    .venv/bin/python -m bench.telemetry [--rows 10000]

* buffer: samples/s through ``append`` + one commit per flush (the daemon's policy),
  with the example station's sample (5 values, 3 pumps);
* replay: a backlog of ``--rows`` samples sent by the Uplink to a local Mosquitto (QoS 1,
  each row deleted only after its PUBACK), side by side with a bare aiomqtt QoS 1
  publish loop of the same payloads to the same broker (the practical ceiling);
* catch-up: how long a 1 h outage at 1 sample/s takes to drain while live samples keep
  arriving, from the measured replay rate.
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from controller.config.schema import UplinkConfig
from controller.logs import configure_logging
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.uplink import Uplink
from tests.support.broker import Broker

SAMPLE: dict[str, Any] = {
    "mode": "auto", "state": "auto", "setpoint_bar": 3.0, "demand": 1.41,
    "values": {
        name: {"v": 1.2345, "unit": unit, "q": "good"}
        for name, unit in [("suction_pressure", "bar"), ("discharge_pressure", "bar"),
                           ("panel_temperature", "degC"), ("flow", "m3/h"), ("volume_total", "m3")]
    },
    "pumps": {p: {"on": True, "feedback": True, "fault": False} for p in ("P1", "P2", "P3")},
}  # fmt: skip


async def buffer_rate(path: Path, rows: int) -> float:
    buf = SampleBuffer(path, site="bench", commit_interval_s=1.0)
    await buf.open()
    started = time.perf_counter()
    per_flush = max(1, rows // 20)
    for i in range(rows):
        buf.append(SAMPLE)
        if (i + 1) % per_flush == 0:
            await buf.flush()
    await buf.flush()
    elapsed = time.perf_counter() - started
    await buf.close()
    return rows / elapsed


async def replay_rate(path: Path, port: int, rows: int) -> float:
    buf = SampleBuffer(path, site="bench", max_pending=rows)
    await buf.open()
    for _ in range(rows):
        buf.append(SAMPLE)
    await buf.flush()
    cfg = UplinkConfig(host="127.0.0.1", port=port, topic_prefix="bench", batch_size=100)
    uplink = Uplink(cfg, site="bench", buffer=buf, status=dict, commands=None)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(uplink.run(stop))
    while uplink.published < rows:  # noqa: ASYNC110  (the uplink has no "published" event)
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await buf.close()
    return rows / elapsed


async def bare_rate(port: int, rows: int) -> float:
    payload = json.dumps({"seq": 1, "ts": "2026-11-24T00:00:00.000Z", **SAMPLE})
    client = aiomqtt.Client("127.0.0.1", port, identifier="bench-bare")
    client.pending_calls_threshold = 200  # 100 in flight is the point, not a warning
    async with client:
        started = time.perf_counter()
        for start in range(0, rows, 100):
            n = min(100, rows - start)
            await asyncio.gather(*(client.publish("bench/bare", payload, qos=1) for _ in range(n)))
        return rows / (time.perf_counter() - started)


async def main(rows: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    broker = Broker()
    broker.start()
    try:
        write = await buffer_rate(tmp / "w.sqlite3", rows * 5)
        replay = await replay_rate(tmp / "r.sqlite3", broker.port, rows)
        bare = await bare_rate(broker.port, rows)
    finally:
        broker.close()
    outage = 3600
    return {
        "buffer_append_commit_samples_per_s": round(write),
        "replay_msgs_per_s": round(replay),
        "bare_aiomqtt_qos1_msgs_per_s": round(bare),
        "replay_vs_bare": round(replay / bare, 2),
        "catch_up_after_1h_outage_at_1hz_s": round(outage / (replay - 1.0), 1),
        "rows": rows,
    }


if __name__ == "__main__":
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().rows)), indent=2))

"""Sparkplug benchmark: bytes per station-day on the wire, JSON scheme vs Sparkplug B; and
the backlog replay (historical) rate beside the live rate after a host outage.

    .venv/bin/python -m bench.sparkplug [--window 120] [--outage 30] [--rows 20000] [--check]

* bytes: the example station (``boosterd demo``: the whole daemon on the simulator, in
  real time) with ``control.tick_s: 1``, once per scheme, each through a TCP relay in
  front of a local Mosquitto that counts every byte both ways: MQTT fixed headers, topics,
  PUBACKs, keep-alive pings. Counted over ``--window`` seconds after a warm-up (connect
  and birth fall in the warm-up, reported apart), scaled to a day.
* backlog: the node in-process over a real SQLite buffer preloaded with ``--rows`` samples
  (a long outage), with a live sample appended every 0.1 s whose pressure always moves
  beyond the deadband (so every live sample is news): the historical rate and the live
  rate while the backlog drains, and the largest gap between two live NDATA.
* replay: the Sparkplug node with a primary host that goes offline for ``--outage``
  seconds (at ``--speed`` simulated seconds per second, so the backlog holds outage *
  speed / tick samples); then how fast the backlog arrives as historical data, and how
  many live NDATA arrived meanwhile (live data is not starved).
Prints JSON; ``--check`` fails on a missed target (5x fewer bytes than JSON, nothing
missing, live data never more than 1 s behind), ``--save`` writes bench/results/sparkplug.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import Target, add_arguments, finish
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker, free_port
from tests.support.sparkplug_host import Host, eventually


@dataclass
class Relay:
    """A TCP relay to the broker that counts the bytes each way."""

    target_port: int
    port: int = 0
    up: int = 0
    down: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.port = free_port()
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, up: bool) -> None:
        try:
            while data := await r.read(65536):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        br, bw = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(cr, bw, True), self._pipe(br, cw, False))

    @property
    def total(self) -> int:
        return self.up + self.down


def station_file(path: Path, uplink: dict[str, Any], *, tick_s: float) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = uplink
    data["control"]["tick_s"] = tick_s
    data["protections"]["power_on_delay_s"] = 1
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def demo(config: Path, port: int, state: Path, *, speed: float = 1.0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "demo", "--config", str(config), "--mqtt",
         f"127.0.0.1:{port}", "--plain", "--no-hmi", "--state-dir", str(state), "--start-hour", "7",
         "--speed", str(speed)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def bytes_per_day(broker: Broker, tmp: Path, window_s: float, warmup_s: float) -> Any:
    schemes = {
        "json": {"scheme": "json", "topic_prefix": "pdam"},
        "sparkplug": {"scheme": "sparkplug", "sparkplug": {"group_id": "pdam"}},
    }
    relays, procs = {}, []
    for name, uplink in schemes.items():
        relay = Relay(broker.port)
        await relay.start()
        relays[name] = relay
        cfg = station_file(tmp / f"{name}.yaml", uplink, tick_s=1.0)
        procs.append(demo(cfg, relay.port, tmp / f"state-{name}"))
    try:
        await asyncio.sleep(warmup_s)
        start = {n: r.total for n, r in relays.items()}
        t0 = time.monotonic()
        await asyncio.sleep(window_s)
        elapsed = time.monotonic() - t0
        out = {}
        for n, r in relays.items():
            window = r.total - start[n]
            out[n] = {
                "warmup_bytes": start[n],  # connect, birth and the first data
                "window_bytes": window,
                "bytes_per_s": round(window / elapsed, 1),
                "mb_per_day": round(window / elapsed * 86400 / 1e6, 2),
            }
        out["ratio_json_to_sparkplug"] = round(
            out["json"]["bytes_per_s"] / out["sparkplug"]["bytes_per_s"], 2
        )
        out["window_s"] = round(elapsed, 1)
        return out
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=15)


async def replay(broker: Broker, tmp: Path, outage_s: float, speed: float) -> Any:
    uplink = {"scheme": "sparkplug", "reconnect_max_s": 1.0,
              "sparkplug": {"group_id": "bench", "primary_host_id": "scada"}}  # fmt: skip
    cfg = station_file(tmp / "replay.yaml", uplink, tick_s=0.5)
    async with Host(broker.port, "bench") as host:
        online = await host.state(True)
        proc = demo(cfg, broker.port, tmp / "state-replay", speed=speed)
        try:
            await eventually(lambda: len(host.of("NDATA")) >= 2, within=60, what="data")
            await host.state(False, online)
            await asyncio.sleep(outage_s)
            mark = len(host.received)
            t0 = time.monotonic()
            await host.state(True)
            await eventually(lambda: len(host.of("NBIRTH")) == 2, within=30, what="rebirth")

            def hist() -> list[int]:
                return [v for _, v in host.values("Telemetry/Sample", historical=True)]

            def drained() -> bool:
                last = host.received[-1] if host.received else None
                return bool(
                    hist() and last is not None and last.kind == "NDATA"
                    and not any(m.is_historical for m in last.payload.metrics)
                )  # fmt: skip

            await eventually(drained, within=600, what="backlog drained")
            elapsed = time.monotonic() - t0
            samples = hist()
            after = host.received[mark:]
            live = [r for r in after if r.kind == "NDATA"
                    and not any(m.is_historical for m in r.payload.metrics)]  # fmt: skip
            hist_msgs = [r for r in after if r.kind == "NDATA" and r not in live]
            return {
                "outage_s": outage_s,
                "speed": speed,
                "historical_samples": len(samples),
                "contiguous": samples == list(range(samples[0], samples[0] + len(samples))),
                "drain_s": round(elapsed, 2),
                "historical_samples_per_s": round(len(samples) / elapsed, 1),
                "historical_bytes": sum(len(r.raw) for r in hist_msgs),
                "live_ndata_during_drain": len(live),
                "live_ndata_per_s_during_drain": round(len(live) / elapsed, 2),
                "violations": host.violations[:5],
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


async def backlog(broker: Broker, tmp: Path, rows: int) -> Any:
    from controller.config import StationConfig
    from controller.telemetry.buffer import SampleBuffer
    from controller.telemetry.sparkplug.node import SparkplugNode

    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {"host": "127.0.0.1", "port": broker.port, "scheme": "sparkplug",
                      "sparkplug": {"group_id": "backlog"}}  # fmt: skip
    data["buffer"] = {"path": str(tmp / "backlog.sqlite3"), "commit_interval_s": 0.1}
    cfg = StationConfig.model_validate(data)
    buffer = SampleBuffer(cfg.buffer.path, site=cfg.site.id, commit_interval_s=0.1)
    await buffer.open()

    def sample(p: float) -> dict[str, Any]:
        return {"mode": "auto", "state": "auto", "setpoint_bar": 3.0, "demand": 0.5,
                "values": {"discharge_pressure": {"v": p, "unit": "bar", "q": "good"},
                           "flow": {"v": 20.0 + p, "unit": "m3/h", "q": "good"}},
                "pumps": {"P1": {"on": True, "feedback": True, "fault": False}}}  # fmt: skip

    for i in range(rows):
        buffer.append(sample(3.0 + (i % 7) * 0.3))
    await buffer.flush()
    status = {"mode": "auto", "base_setpoint_bar": 3.0, "alarms": []}
    node = SparkplugNode(cfg, buffer=buffer, status=lambda: status, commands=None)
    stop = asyncio.Event()
    async with Host(broker.port, "backlog") as host:
        tasks = [asyncio.create_task(node.run(stop)), asyncio.create_task(buffer.run(stop))]
        await eventually(lambda: node.born, within=30, what="birth")
        t0 = time.monotonic()
        live_sent = 0
        while node.historical_sent < rows and time.monotonic() - t0 < 600:
            buffer.append(sample(3.0 + (live_sent % 2) * 1.0))  # always beyond the deadband
            live_sent += 1
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        await buffer.close()
    live = [r for r in host.of("NDATA")
            if not any(m.is_historical for m in r.payload.metrics)]  # fmt: skip
    live_during = [r for r in live if r.at - host.of("NBIRTH")[0].at <= elapsed]
    gaps = [b.at - a.at for a, b in itertools.pairwise(live_during)]
    hist = [v for _, v in host.values("Telemetry/Sample", historical=True)]
    return {
        "backlog_rows": rows,
        "drain_s": round(elapsed, 2),
        "historical_samples_per_s": round(node.historical_sent / elapsed, 1),
        "historical_complete_in_order": hist == list(range(1, rows + 1)),
        "live_samples_appended_during_drain": live_sent,
        "live_ndata_during_drain": len(live_during),
        "live_ndata_per_s_during_drain": round(len(live_during) / elapsed, 2),
        "max_gap_between_live_ndata_s": round(max(gaps), 3) if gaps else None,
    }


def figures_of(result: dict[str, Any]) -> dict[str, Any]:
    """The nested result as flat ``part.figure`` keys (lists as their length)."""
    out: dict[str, Any] = {}
    for part, row in result.items():
        for key, value in row.items():
            if isinstance(value, dict):
                out.update({f"{part}.{key}.{k}": v for k, v in value.items()})
            else:
                out[f"{part}.{key}"] = len(value) if isinstance(value, list) else value
    return out


TARGETS = [
    Target("bytes.ratio_json_to_sparkplug", ">=", 5.0,
           "issue 16: at least 5x fewer bytes than JSON at 1 s ticks"),
    Target("replay.contiguous", ">=", 1, "every sample of the outage, in order"),
    Target("replay.violations", "<=", 0, "the host's session rules (seq, bdSeq, births)"),
    Target("backlog.historical_complete_in_order", ">=", 1, "nothing missing, in order"),
    Target("backlog.max_gap_between_live_ndata_s", "<=", 1.0,
           "live data not starved by the backlog (a sample every 0.1 s)"),
]  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--only", choices=["bytes", "backlog", "replay"])
    add_arguments(parser)
    args = parser.parse_args()
    broker = Broker()
    broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-spb-") as tmp:
            result: dict[str, Any] = {}
            if args.only in (None, "bytes"):
                result["bytes"] = await bytes_per_day(broker, Path(tmp), args.window, args.warmup)
            if args.only in (None, "backlog"):
                result["backlog"] = await backlog(broker, Path(tmp), args.rows)
            if args.only in (None, "replay"):
                result["replay"] = await replay(broker, Path(tmp), args.outage, args.speed)
    finally:
        broker.close()
    figures = figures_of(result)
    targets = [t for t in TARGETS if t.figure in figures]
    command = " ".join(["python -m bench.sparkplug", *sys.argv[1:]])
    finish("sparkplug", figures, targets, args, command=command.replace(" --save", ""))


if __name__ == "__main__":
    asyncio.run(main())

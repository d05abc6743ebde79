"""Fleet benchmark: N stations on one local Mosquitto, the broker stopped and restarted.

    .venv/bin/python -m bench.fleet [--stations 500] [--workers 2] [--scheme json|sparkplug]
                                    [--outage 60] [--warmup 30]

Each station is a whole station minus the serial line and the relays: its own simulated
hydraulics and control core (``ClosedLoop``), its own SQLite buffer file, and its own MQTT
uplink (the JSON ``Uplink`` or the ``SparkplugNode``, with their back-off and jitter),
ticking once a second. ``--workers`` processes share the stations; each reports its
counters once a second. The main process checks what the broker delivers, per station:

* json: every ``seq`` from the station's first to its last sample arrived (duplicates
  allowed, as QoS 1 allows);
* sparkplug: NDATA ``seq`` continuous within each session (no lost message), and the
  samples of the outage arrived as historical data with no gap (``Telemetry/Sample``).

Reported: time until every station is connected again and until every backlog is drained,
reconnect counts, stations with gaps, broker CPU seconds and peak RSS, the workers' CPU
seconds (the generator's cost, apart from the broker's) and the checker's. Prints JSON;
``--check`` fails when a station has a gap or did not come back, ``--save`` writes
bench/results/fleet-<scheme>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bench.common import Target, add_arguments, finish
from controller.config import StationConfig
from controller.logs import configure_logging
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from controller.telemetry.sparkplug.node import SparkplugNode
from controller.telemetry.uplink import Uplink
from harness.closed_loop import ClosedLoop
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker

GROUP = "fleet"
TICK_S = 1.0


def site_id(i: int) -> str:
    return f"fleet-{i:04d}"


def station_config(i: int, scheme: str, port: int, state: Path) -> StationConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["site"]["id"] = site_id(i)
    data["control"]["tick_s"] = TICK_S
    data["protections"]["power_on_delay_s"] = 1
    data["uplink"] = {"host": "127.0.0.1", "port": port, "scheme": scheme,
                      "topic_prefix": GROUP, "reconnect_max_s": 30.0, "keepalive_s": 30,
                      "sparkplug": {"group_id": GROUP}}  # fmt: skip
    data["buffer"] = {"path": str(state / f"{site_id(i)}.sqlite3"), "commit_interval_s": 1.0}
    return StationConfig.model_validate(data)


# -- the worker: a share of the fleet in one process -------------------------------------------


async def worker(first: int, count: int, scheme: str, port: int, state: Path) -> None:
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    stop = asyncio.Event()
    loops, buffers, uplinks = [], [], []
    for i in range(first, first + count):
        cfg = station_config(i, scheme, port, state)
        loop = ClosedLoop(cfg, seed=i, start_hour=7.0)
        buffer = SampleBuffer(cfg.buffer.path, site=cfg.site.id, commit_interval_s=1.0)
        await buffer.open()
        loop.loop.sink = buffer.append
        uplink: Uplink | SparkplugNode
        if scheme == "sparkplug":
            core = loop.core
            assert core is not None
            uplink = SparkplugNode(cfg, buffer=buffer, status=core.status, commands=None)
        else:
            uplink = Uplink(cfg.uplink, site=cfg.site.id, buffer=buffer, status=dict,
                            commands=None)  # fmt: skip
        loops.append(loop)
        buffers.append(buffer)
        uplinks.append(uplink)
    tasks = [asyncio.create_task(b.run(stop)) for b in buffers]
    tasks += [asyncio.create_task(u.run(stop)) for u in uplinks]
    tasks.append(asyncio.create_task(_tick(loops, stop)))
    tasks.append(asyncio.create_task(_report(uplinks, buffers, stop)))
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    await reader.readline()  # the main process closes stdin (or writes a line) to stop us
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for b in buffers:
        await b.close()


async def _tick(loops: list[ClosedLoop], stop: asyncio.Event) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        for cl in loops:
            cl.station.step(TICK_S)
            cl.loop.tick(cl.station.t)
        next_at += TICK_S
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, next_at - time.monotonic())):
                await stop.wait()


async def _report(uplinks: list[Any], buffers: list[SampleBuffer], stop: asyncio.Event) -> None:
    while not stop.is_set():
        stats = [u.stats() for u in uplinks]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        line = {
            "connected": sum(1 for s in stats if s["connected"]),
            "born": sum(1 for s in stats if s.get("born", s["connected"])),
            "replaying": sum(1 for s in stats if s.get("replaying")),
            "backlog": sum(int(b.stats()["backlog"]) for b in buffers),
            "reconnects": sum(int(s["reconnects"]) for s in stats),
            "published": sum(int(s["published"]) for s in stats),
            "last_seq": {
                u.site if hasattr(u, "site") else "": int(b.stats()["last_seq"])
                for u, b in zip(uplinks, buffers, strict=True)
            },
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
        }
        print(json.dumps(line), flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()


# -- the checker: what the broker delivered ------------------------------------------------------


@dataclass
class Checker:
    scheme: str
    port: int
    json_seqs: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    spb_gaps: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    spb_expected: dict[str, int | None] = field(default_factory=dict)
    #: Historical sample numbers per node, one list per session (birth).
    spb_history: dict[str, list[list[int]]] = field(default_factory=lambda: defaultdict(list))
    #: The last messages (kind, seq) per node, and a copy of them at its first seq gap.
    spb_trace: dict[str, deque[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=8))
    )
    spb_gap_trace: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    messages: int = 0

    async def run(self) -> None:
        """Subscribe with a persistent session and come back after the broker's restart:
        the broker keeps (on disk) what arrives for us while we reconnect."""
        topic = f"{GROUP}/+/telemetry" if self.scheme == "json" else f"spBv1.0/{GROUP}/#"
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier="fleet-checker",
                                          clean_session=False,
                                          max_queued_incoming_messages=0) as client:  # fmt: skip
                    await client.subscribe(topic, qos=1)
                    async for message in client.messages:
                        self._one(message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    def _one(self, message: aiomqtt.Message) -> None:
        self.messages += 1
        raw = message.payload if isinstance(message.payload, bytes) else b""
        if self.scheme == "json":
            body = json.loads(raw)
            # Format 2 samples leave the site out of the body: it is in the topic.
            site = str(message.topic).split("/")[1]
            self.json_seqs[site].add(int(body["seq"]))
        else:
            self._sparkplug(str(message.topic), raw)

    def _sparkplug(self, topic: str, raw: bytes) -> None:
        parts = topic.split("/")
        kind, node = parts[2], parts[3]
        p = pb.Payload.FromString(raw)
        self.spb_trace[node].append((kind, p.seq if p.HasField("seq") else -1))
        if kind == "NDEATH":
            self.spb_expected[node] = None
            return
        if kind == "NBIRTH":
            self.spb_expected[node] = 1
            self.spb_history[node].append([])
            return
        if kind != "NDATA":
            return
        expected = self.spb_expected.get(node)
        if expected is not None and p.seq != expected:
            self.spb_gaps[node] += 1
            self.spb_gap_trace.setdefault(node, list(self.spb_trace[node]))
        self.spb_expected[node] = (p.seq + 1) % 256
        sample_alias = 4  # Telemetry/Sample: fourth in the catalogue (see metrics.py)
        if self.spb_history[node]:
            self.spb_history[node][-1] += [
                int(m.long_value) for m in p.metrics if m.alias == sample_alias and m.is_historical
            ]

    def verdict(self, stations: int, last_seq: dict[str, int]) -> dict[str, Any]:
        if self.scheme == "json":
            missing = {}
            for i in range(stations):
                seqs = self.json_seqs.get(site_id(i), set())
                top = last_seq.get(site_id(i), 0)
                # Delivered so far: every seq from the first seen to the station's newest.
                want = set(range(min(seqs), max(seqs) + 1)) if seqs else set()
                gap = len(want - seqs)
                if gap or not seqs or max(seqs) < top - 5:
                    missing[site_id(i)] = gap
            return {"stations_with_gaps": len(missing), "examples": dict(list(missing.items())[:5])}
        gaps = {n: g for n, g in self.spb_gaps.items() if g}
        holes = {}
        for i in range(stations):
            sessions = self.spb_history.get(site_id(i), [])
            # After the outage a session must bring its backlog, each without a gap.
            bad = len(sessions) < 2 or not sessions[-1]
            for hist in sessions:
                h = sorted(set(hist))
                bad = bad or (bool(h) and h != list(range(h[0], h[-1] + 1)))
            if bad:
                holes[site_id(i)] = [len(h) for h in sessions]
        examples: dict[str, Any] = {**dict(list(gaps.items())[:3]), **dict(list(holes.items())[:3])}
        examples.update({f"{n} trace": t for n, t in list(self.spb_gap_trace.items())[:3]})
        return {
            "stations_with_seq_gaps": len(gaps),
            "stations_with_history_holes": len(holes),
            "examples": examples,
        }


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Fleet:
    """A running fleet: the broker, the checker on it, and the worker processes with the
    latest counters each reported."""

    broker: Broker
    state: Path
    checker: Checker
    check_task: asyncio.Task[None]
    procs: list[asyncio.subprocess.Process]
    #: Each worker's latest counters, and its CPU seconds.
    latest: list[dict[str, Any]] = field(init=False)
    worker_cpu: list[float] = field(init=False)
    followers: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.latest = [{} for _ in self.procs]
        self.worker_cpu = [0.0 for _ in self.procs]

    def follow(self) -> None:
        """Read each worker's counters as they come."""

        async def follow(k: int, proc: asyncio.subprocess.Process) -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                self.latest[k] = json.loads(line)
                self.worker_cpu[k] = self.latest[k]["cpu_s"]

        self.followers = [asyncio.create_task(follow(k, p)) for k, p in enumerate(self.procs)]

    def total(self, key: str) -> int:
        return sum(int(s.get(key, 0)) for s in self.latest)

    async def close(self) -> None:
        """Stop the workers (kill those that do not stop), the checker and the broker."""
        for p in self.procs:
            if p.stdin is not None:
                p.stdin.write(b"stop\n")
                with contextlib.suppress(ConnectionError):
                    await p.stdin.drain()
        for p in self.procs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await p.wait()
            if p.returncode is None:
                p.kill()
        for f in self.followers:
            f.cancel()
        self.check_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.check_task
        self.broker.close()
        shutil.rmtree(self.state, ignore_errors=True)  # 500 buffer files


async def until(cond: Any, limit: float) -> float | None:
    """Seconds until ``cond()`` held (checked twice a second), None past ``limit``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if cond():
            return round(time.monotonic() - t0, 1)
        await asyncio.sleep(0.5)
    return None


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--stations", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheme", choices=["json", "sparkplug"], default="json")
    ap.add_argument("--outage", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--drain-limit", type=float, default=900.0)
    ap.add_argument("--worker", nargs=4, metavar=("FIRST", "COUNT", "PORT", "STATE"))
    add_arguments(ap)
    return ap.parse_args()


async def start_fleet(args: argparse.Namespace) -> Fleet:
    """The broker, the checker subscribed to it, and the workers sharing the stations."""
    state = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    # Persistence and queued QoS 0 serve the checker only: its session (and what arrives
    # while it reconnects after the restart) survives the broker's stop. The stations
    # connect with clean sessions and keep their own backlog.
    broker = Broker(
        extra_config=f"max_connections -1\npersistence true\npersistence_location {state}/\n"
        "queue_qos0_messages true\nmax_queued_messages 1000000"
    )
    broker.start()
    checker = Checker(args.scheme, broker.port)
    check_task = asyncio.create_task(checker.run())
    share = -(-args.stations // args.workers)
    procs = []
    for w in range(args.workers):
        first, count = w * share, min(share, args.stations - w * share)
        if count <= 0:
            break
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fleet", "--scheme", args.scheme, "--worker",
            str(first), str(count), str(broker.port), str(state), cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    fleet = Fleet(broker, state, checker, check_task, procs)
    fleet.follow()
    return fleet


async def run_outage(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, stop the broker for the outage, restart it, and measure the way back."""
    result: dict[str, Any] = {"stations": args.stations, "workers": len(fleet.procs),
                              "scheme": args.scheme, "outage_s": args.outage}  # fmt: skip
    broker, total = fleet.broker, fleet.total
    broker_pid = broker.pid
    result["all_connected_at_start_s"] = await until(
        lambda: total("connected") == args.stations, 300
    )
    cpu_a = proc_cpu_s(broker_pid)
    await asyncio.sleep(args.warmup)
    cpu0 = proc_cpu_s(broker_pid) - cpu_a
    reconnects0 = total("reconnects")
    broker.stop()
    await asyncio.sleep(args.outage)
    result["backlog_at_restart"] = total("backlog")
    broker.start()
    broker_pid = broker.pid
    t_restart = time.monotonic()
    result["reconnect_all_s"] = await until(
        lambda: total("connected") == args.stations, args.drain_limit
    )

    def drained() -> bool:
        if args.scheme == "json":
            return total("backlog") <= args.stations * 3
        return total("born") == args.stations and total("replaying") == 0

    await until(drained, args.drain_limit)
    result["drain_s"] = round(time.monotonic() - t_restart, 1)
    # The last backlog rows on their way to the checker (live ones keep coming).
    await asyncio.sleep(10)
    result["reconnects"] = total("reconnects") - reconnects0
    result["broker_cpu_s_after_restart"] = round(proc_cpu_s(broker_pid), 2)
    result["broker_cpu_s_before_outage_per_s"] = round(cpu0 / max(1.0, args.warmup), 3)
    result["broker_peak_rss_mb"] = round(proc_rss_mb(broker_pid), 1)
    result["generator_cpu_s"] = round(sum(fleet.worker_cpu), 1)
    result["generator_peak_rss_mb"] = round(sum(float(s.get("rss_mb", 0)) for s in fleet.latest), 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["checker_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    result["messages_checked"] = fleet.checker.messages
    last_seq = {k: v for s in fleet.latest for k, v in s.get("last_seq", {}).items()}
    result["check"] = fleet.checker.verdict(args.stations, last_seq)
    return result


def report_figures(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print (and with ``--check``/``--save``, judge and keep) the figures."""
    check = result.pop("check", {})
    examples = check.pop("examples", {})
    figures = {**result, **{f"check.{k}": v for k, v in check.items()}}
    gaps = ["check.stations_with_gaps"] if args.scheme == "json" else [
        "check.stations_with_seq_gaps", "check.stations_with_history_holes"]  # fmt: skip
    targets = [Target(g, "<=", 0, "every station's data delivered, nothing missing (by seq)")
               for g in gaps]  # fmt: skip
    targets.append(Target("reconnect_all_s", "<=", args.drain_limit, "every station back"))
    table = [{"station": k, "detail": str(v)} for k, v in examples.items()]
    command = " ".join(["python -m bench.fleet", *sys.argv[1:]]).replace(" --save", "")
    finish(f"fleet-{args.scheme}", figures, targets, args, command=command,
           tables={"stations with a problem": table} if table else None)  # fmt: skip


async def main() -> None:
    args = parse_args()
    if args.worker:
        first, count, port, state = args.worker
        await worker(int(first), int(count), args.scheme, int(port), Path(state))
        return
    fleet = await start_fleet(args)
    try:
        result = await run_outage(fleet, args)
    finally:
        await fleet.close()
    report_figures(result, args)


if __name__ == "__main__":
    asyncio.run(main())

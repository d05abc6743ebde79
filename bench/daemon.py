"""Daemon benchmark: memory, CPU, start-up time and tick jitter of a real 'boosterd run'.

    .venv/bin/python -m bench.daemon [--seconds 30] [--backlog 100000] [--check] [--save]

The example station runs on 'boosterd sim' (Modbus RTU over a socat pty), the daemon
as systemd would start it (NOTIFY_SOCKET set), its uplink to a local Mosquitto. For a
1 Hz and a 10 Hz control tick: resident memory (VmRSS), CPU time per wall time of one
core (and per tick), time from exec to READY=1. Then at 10 Hz with a backlog of
``--backlog`` real-size samples (the example station's, format 2, made by
``make_sample``) in the buffer: the replay's duration and CPU, and the tick jitter
(lateness of each tick after its deadline: p50, p99, max) over the daemon's ticks from
start to the end of the replay (the replay is most of them: the share is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.buffer import samples, station
from bench.common import Target, add_arguments, finish, proc_cpu_s, proc_rss_mb, start_sim
from controller.logs import configure_logging
from controller.status_server import query
from controller.telemetry.buffer import SampleBuffer
from tests.support.broker import Broker

REPO = Path(__file__).resolve().parent.parent
cpu_s = proc_cpu_s
rss_mb = proc_rss_mb


def prefill(path: Path, rows: int) -> None:
    pool = samples(*station(5, 3, 0))

    async def fill() -> None:
        buf = SampleBuffer(path, site="bs01-sukamaju", max_pending=rows)
        await buf.open()
        for i in range(rows):
            buf.append(pool[i % len(pool)])
        await buf.close()

    asyncio.run(fill())


def until_replayed(socket_path: str, timeout_s: float) -> dict[str, Any]:
    """Poll the status socket (the benchmark's side, not the daemon's) until the backlog
    is gone; the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        snap: dict[str, Any] = asyncio.run(query(socket_path))["status"]
        if snap["buffer"]["backlog"] <= 20 or time.monotonic() > deadline:
            return snap
        time.sleep(0.25)


def run_once(tick_s: float, seconds: float, backlog: int, broker: Broker) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    sim, data = start_sim(tmp, repo=REPO)
    data["control"]["tick_s"] = tick_s
    data["uplink"] = {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "bench"}
    config = tmp / "station.yaml"
    config.write_text(yaml.safe_dump(data))
    if backlog:
        prefill(Path(data["buffer"]["path"]), backlog)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify"))
    notify.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify"))
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", "--config", str(config)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        ready_s = time.monotonic() - started
        if backlog:
            cpu0, t0 = cpu_s(daemon.pid), time.monotonic()
            snap = until_replayed(data["status"]["socket"], 600)
            cpu1, t1 = cpu_s(daemon.pid), time.monotonic()
        else:
            time.sleep(3.0)  # settle after start-up before measuring
            cpu0, t0 = cpu_s(daemon.pid), time.monotonic()
            time.sleep(seconds)  # the measurement window
            cpu1, t1 = cpu_s(daemon.pid), time.monotonic()
            snap = asyncio.run(query(data["status"]["socket"]))["status"]
        result = {
            "window_s": round(t1 - t0, 1),
            "cpu_s": round(cpu1 - cpu0, 2),
            "cpu_ms_per_tick": round(1000 * (cpu1 - cpu0) / max(1, round((t1 - t0) / tick_s)), 3),
            "tick_hz": round(1 / tick_s),
            "ready_s": round(ready_s, 2),
            "rss_mb": round(rss_mb(daemon.pid), 1),
            "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "ticks": snap["loop"]["ticks"],
            "overruns": snap["loop"]["overruns"],
            "jitter_ms_p50": snap["loop"]["jitter_ms_p50"],
            "jitter_ms_p99": snap["loop"]["jitter_ms_p99"],
            "jitter_ms_max": snap["loop"]["jitter_ms_max"],
            "backlog_at_start": backlog,
            "backlog_after": snap["buffer"]["backlog"],
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
        sim.terminate()
        sim.wait(timeout=15)
        notify.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--backlog", type=int, default=100_000)
    add_arguments(ap)
    args = ap.parse_args()
    configure_logging(level="error", fmt="console", stream=sys.stderr)
    broker = Broker()
    broker.start()
    try:
        results = [
            run_once(1.0, args.seconds, 0, broker),
            run_once(0.1, args.seconds, 0, broker),
            run_once(0.1, args.seconds, args.backlog, broker),
        ]
    finally:
        broker.close()
    one, ten, rep = results
    figures = {
        "ready_s": ten["ready_s"],
        "window_s_1hz": one["window_s"],
        "cpu_s_1hz": one["cpu_s"],
        "rss_mb_1hz": one["rss_mb"],
        "cpu_pct_1hz": one["cpu_pct_of_one_core"],
        "rss_mb_10hz": ten["rss_mb"],
        "cpu_pct_10hz": ten["cpu_pct_of_one_core"],
        "cpu_ms_per_tick_10hz": ten["cpu_ms_per_tick"],
        "jitter_ms_p99_10hz": ten["jitter_ms_p99"],
        "replay_backlog": rep["backlog_at_start"],
        "replay_s": rep["window_s"],
        "replay_cpu_s": rep["cpu_s"],
        "replay_msgs_per_s": round(rep["backlog_at_start"] / max(rep["window_s"], 1e-3)),
        "replay_cpu_pct": rep["cpu_pct_of_one_core"],
        "replay_rss_mb": rep["rss_mb"],
        "replay_jitter_ms_p50": rep["jitter_ms_p50"],
        "replay_jitter_ms_p99": rep["jitter_ms_p99"],
        "replay_jitter_ms_max": rep["jitter_ms_max"],
        "replay_share_of_ticks_pct": round(100 * rep["window_s"] / max(rep["ticks"] * 0.1, 1e-3)),
        "replay_overruns": rep["overruns"],
        "replay_backlog_after": rep["backlog_after"],
    }
    targets = [
        Target("rss_mb_1hz", "<=", 60.0, "issue 6: under 60 MB RSS (Node-RED: bench.anchor)"),
        Target("cpu_pct_1hz", "<=", 2.0, "issue 6: under 2 % of one core at 1 Hz"),
        Target("jitter_ms_p99_10hz", "<=", 10.0, "issue 6: p99 jitter under 10 ms at 10 Hz"),
        Target("replay_jitter_ms_p99", "<=", 10.0, "issue 14: p99 < 10 ms at 10 Hz, replaying"),
        Target("replay_backlog_after", "<=", 20, "the replay finished within 600 s"),
        Target("replay_overruns", "<=", 0, "no tick overran while replaying"),
    ]
    command = "python -m bench.daemon " + " ".join(sys.argv[1:])
    finish("daemon", figures, targets, args, command=command.strip(), tables={"runs": results})


if __name__ == "__main__":
    main()

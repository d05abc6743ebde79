"""The Node-RED anchor: boosterd and a Node-RED flow doing the same Modbus work, side by
side, measured over the same window.

    (cd bench/anchors/node-red && npm ci)      # node-red 4.1.15, node-red-contrib-modbus 5.23.3
    .venv/bin/python -m bench.anchor [--seconds 60] [--settle 15] [--check] [--save]

Two ``boosterd sim`` processes run the example station (config/station.example.yaml),
each on its own socat pty (one RTU master per line): one is read by ``boosterd run`` at a
1 s tick (as systemd starts it, NOTIFY_SOCKET set, uplink to a local Mosquitto), the
other by Node-RED running ``bench/anchors/node-red/flow.json``: the same two slaves over
Modbus RTU at 9600 baud (the fast points every second, the slow ones every 10 s, as
boosterd polls them), a PI function node, and one telemetry message a second published
at QoS 1 to the same Mosquitto. After both publish and ``--settle`` seconds pass, the
window: resident memory (VmRSS, sampled every second: mean and peak) and CPU time of
each process, and the messages each published in the window (counted by a subscriber:
both did the work). boosterd does more than the flow (protections, staging, relays,
the SQLite buffer, watchdog, status); the flow is the smallest that does the same I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import Target, add_arguments, finish, proc_cpu_s, proc_rss_mb, start_sim
from tests.support.broker import Broker, free_port
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
ANCHOR = REPO / "bench" / "anchors" / "node-red"
RED_JS = ANCHOR / "node_modules" / "node-red" / "red.js"


def node_red_version() -> str:
    package = ANCHOR / "node_modules" / "node-red" / "package.json"
    return str(json.loads(package.read_text())["version"])


def count(path: Path, prefix: str) -> int:
    """Messages on topics under ``prefix`` that the subscriber wrote to ``path`` so far."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


Proc = subprocess.Popen[bytes]


def start_boosterd(tmp: Path, broker: Broker) -> tuple[Proc, Proc]:
    sim, data = start_sim(tmp, repo=REPO)
    data["control"]["tick_s"] = 1.0
    data["uplink"] = {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "bench"}
    config = tmp / "station.yaml"
    config.write_text(yaml.safe_dump(data))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify"))
    notify.settimeout(60)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", "--config", str(config)], cwd=REPO,
        env=dict(os.environ, NOTIFY_SOCKET=str(tmp / "notify")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
    finally:
        notify.close()
    return sim, daemon


def start_node_red(tmp: Path, broker: Broker) -> tuple[Proc, Proc]:
    sim, _ = start_sim(tmp, repo=REPO)
    user = tmp / "node-red"
    user.mkdir()
    (user / "flow.json").write_text((ANCHOR / "flow.json").read_text())
    env = dict(os.environ, MODBUS_PORT=str(tmp / "pty" / "rs485"), MQTT_PORT=str(broker.port),
               PORT=str(free_port()))  # fmt: skip
    red = subprocess.Popen(
        ["node", str(RED_JS), "--userDir", str(user), "--settings", str(ANCHOR / "settings.js"),
         str(user / "flow.json")],
        cwd=ANCHOR, env=env, stdout=(tmp / "node-red.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return sim, red


def measure(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU time and RSS of each process over the same ``seconds``."""
    cpu0 = {k: proc_cpu_s(p) for k, p in pids.items()}
    rss: dict[str, list[float]] = {k: [] for k in pids}
    t0 = time.monotonic()
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        for k, p in pids.items():
            rss[k].append(proc_rss_mb(p))
        time.sleep(min(1.0, max(0.0, end - now)))
    wall = time.monotonic() - t0
    out = {}
    for k, p in pids.items():
        cpu = proc_cpu_s(p) - cpu0[k]
        out[k] = {
            "window_s": round(wall, 1),
            "cpu_s": round(cpu, 2),
            "cpu_pct_of_one_core": round(100 * cpu / wall, 2),
            "rss_mb_mean": round(statistics.fmean(rss[k]), 1),
            "rss_mb_peak": round(max(rss[k]), 1),
        }
    return out


def run(seconds: float, settle: float) -> dict[str, Any]:
    if not RED_JS.exists():
        raise SystemExit(f"{RED_JS} is missing: run 'npm ci' in {ANCHOR} first")
    tmp = Path(tempfile.mkdtemp(prefix="bench-anchor-"))
    broker = Broker()
    broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp / "messages.txt"
    try:
        sub = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
             "-t", "bench/+/telemetry", "-t", "anchor/+/telemetry", "-F", "%t %p"],
            stdout=log.open("wb"),
        )  # fmt: skip
        procs.append(sub)
        (tmp / "boosterd").mkdir()
        (tmp / "nodered").mkdir()
        sim_b, daemon = start_boosterd(tmp / "boosterd", broker)
        procs += [sim_b, daemon]
        sim_n, red = start_node_red(tmp / "nodered", broker)
        procs += [sim_n, red]
        wait_until(lambda: count(log, "anchor/") > 0 and count(log, "bench/") > 0, timeout=90,
                   what="both publishing telemetry")  # fmt: skip
        time.sleep(settle)
        before = {"boosterd": count(log, "bench/"), "node_red": count(log, "anchor/")}
        figures = measure({"boosterd": daemon.pid, "node_red": red.pid}, seconds)
        for k, prefix in (("boosterd", "bench/"), ("node_red", "anchor/")):
            figures[k]["messages_per_s"] = round(
                (count(log, prefix) - before[k]) / figures[k]["window_s"], 2)  # fmt: skip
        return figures
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        broker.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="the measurement window")
    ap.add_argument("--settle", type=float, default=15.0, help="wait after both publish")
    add_arguments(ap)
    args = ap.parse_args()
    result = run(args.seconds, args.settle)
    ours, red = result["boosterd"], result["node_red"]
    figures = {
        "node_red_version": node_red_version(),
        "window_s": ours["window_s"],
        "boosterd_rss_mb": ours["rss_mb_mean"],
        "boosterd_rss_mb_peak": ours["rss_mb_peak"],
        "boosterd_cpu_s": ours["cpu_s"],
        "boosterd_cpu_pct": ours["cpu_pct_of_one_core"],
        "boosterd_messages_per_s": ours["messages_per_s"],
        "node_red_rss_mb": red["rss_mb_mean"],
        "node_red_rss_mb_peak": red["rss_mb_peak"],
        "node_red_cpu_s": red["cpu_s"],
        "node_red_cpu_pct": red["cpu_pct_of_one_core"],
        "node_red_messages_per_s": red["messages_per_s"],
        "rss_boosterd_vs_node_red": round(ours["rss_mb_mean"] / red["rss_mb_mean"], 2),
        "cpu_boosterd_vs_node_red": round(ours["cpu_s"] / max(red["cpu_s"], 1e-3), 2),
    }
    targets = [
        Target("boosterd_rss_mb", "<=", 60.0, "issue 6: under 60 MB RSS at 1 Hz"),
        Target("boosterd_cpu_pct", "<=", 2.0, "issue 6: under 2 % of one core at 1 Hz"),
        Target("boosterd_messages_per_s", ">=", 0.9, "the work was done: ~1 sample a second"),
        Target("node_red_messages_per_s", ">=", 0.9, "the work was done: ~1 sample a second"),
    ]
    command = "python -m bench.anchor " + " ".join(sys.argv[1:])
    rows = [{"process": k, **v} for k, v in result.items()]
    finish("anchor", figures, targets, args, command=command.strip(), tables={"processes": rows})


if __name__ == "__main__":
    main()

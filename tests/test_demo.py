"""The demo and the simulator can be measured from outside (issue 13, item 6): telemetry
on the simulated clock from a chosen start, the whole run delivered before exit, --mqtt
with the example station, a closed terminal ends the demo, ``boosterd sim --mqtt``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from controller.commands.sim import _controller_config
from tests.conftest import EXAMPLE_CONFIG
from tests.support.broker import Broker, free_port

SITE = "bs01-sukamaju"


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "controller.cli", "demo", "--plain", *args]


async def _run_and_collect(
    broker: Broker, state_dir: Path, *args: str, status: list[dict[str, Any]] | None = None
) -> tuple[subprocess.Popen[bytes], list[dict[str, Any]]]:
    """Run ``boosterd demo --mqtt`` to its end; every telemetry message it published
    (and, in ``status``, every status message)."""
    bodies: list[dict[str, Any]] = []
    status = [] if status is None else status
    async with aiomqtt.Client(broker.host, broker.port) as sub:
        await sub.subscribe(f"pdam/{SITE}/telemetry", qos=1)
        await sub.subscribe(f"pdam/{SITE}/status", qos=1)
        proc = subprocess.Popen(
            _demo("--mqtt", f"{broker.host}:{broker.port}", "--state-dir", str(state_dir),
                  *args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            messages = aiter(sub.messages)
            async with asyncio.timeout(120):
                while True:
                    try:
                        async with asyncio.timeout(3.0):
                            message = await anext(messages)
                    except TimeoutError:
                        if proc.poll() is not None:
                            break  # it exited after delivering: nothing more comes
                        continue
                    assert isinstance(message.payload, bytes)
                    if message.retain:
                        continue  # an earlier test's retained status
                    body = json.loads(message.payload)
                    if message.topic.matches(f"pdam/{SITE}/status"):
                        status.append(body)
                    else:
                        bodies.append(body)
        finally:
            proc.wait(timeout=60)
    return proc, bodies


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode() if proc.stderr else ""


@pytest.mark.asyncio
async def test_a_demo_run_is_delivered_whole_on_the_simulated_clock(
    broker: Broker, tmp_path: Path
) -> None:
    statuses: list[dict[str, Any]] = []
    proc, bodies = await _run_and_collect(
        broker, tmp_path, "--start", "2026-12-01T05:00", "--speed", "300", "--duration", "300",
        status=statuses,
    )  # fmt: skip
    assert proc.returncode == 0, _stderr(proc)
    seqs = {b["seq"] for b in bodies}
    assert all(b["v"] == 2 for b in bodies)  # telemetry format 2: ts in Unix milliseconds
    stamps = [datetime.fromtimestamp(b["ts"] / 1000, UTC) for b in bodies]
    # 300 simulated seconds at a 0.5 s tick: every sample, none missing.
    assert len(seqs) >= 600
    assert max(seqs) - min(seqs) + 1 == len(seqs)
    # 05:00 in Jakarta (UTC+7) is 22:00 UTC the day before; ts runs on the simulated clock.
    start = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    assert min(stamps) >= start
    assert (max(stamps) - start).total_seconds() <= 301
    # The status's ts too (the online ones: the offline one at the stop is the wall's).
    online = [datetime.fromisoformat(s["ts"]) for s in statuses if s["online"]]
    assert online
    assert all(0 <= (ts - start).total_seconds() <= 301 for ts in online)


@pytest.mark.asyncio
async def test_a_fast_demo_waits_until_its_whole_backlog_is_delivered(
    broker: Broker, tmp_path: Path
) -> None:
    # Speed 1500: ~3,000 samples a wall second, far more than the link takes while the
    # simulation runs; the rest is the drain's (issue 13 F4: it stalled on IDLE_WAIT_S).
    proc, bodies = await _run_and_collect(broker, tmp_path, "--speed", "1500", "--duration", "3600")
    assert proc.returncode == 0, _stderr(proc)
    seqs = sorted({b["seq"] for b in bodies})
    assert seqs == list(range(1, 7201))  # one per 0.5 s tick, from the first, no gap


@pytest.mark.asyncio
async def test_a_power_cut_without_a_ups_reboots_the_demo_controller(
    broker: Broker, tmp_path: Path
) -> None:
    start = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
    proc, bodies = await _run_and_collect(
        broker, tmp_path, "--start", "2026-12-01T05:00+00:00", "--speed", "200",
        "--duration", "300", "--fault", "power_cut@100+60,ups=0",
    )  # fmt: skip
    assert proc.returncode == 0, _stderr(proc)
    t = {(b["boot"], b["seq"]): b["ts"] / 1000 - start.timestamp() for b in bodies}
    boots = sorted({boot for boot, _ in t})
    assert len(boots) == 2
    assert boots[1] == boots[0] + 1  # it booted again: a new number
    before = sorted(seq for boot, seq in t if boot == boots[0])
    after = sorted(seq for boot, seq in t if boot == boots[1])
    # Every sample before the cut was delivered, none taken while the controller was dark.
    assert before == list(range(1, before[-1] + 1))
    assert 99.5 <= t[boots[0], before[-1]] <= 100.0
    assert min(t[boots[1], s] for s in after) >= 160.0
    assert after == list(range(after[0], after[-1] + 1))  # the new boot numbers on, no gap
    # The new boot restarts like after a real cut: first its power-on delay.
    first = next(b for b in bodies if (b["boot"], b["seq"]) == (boots[1], after[0]))
    assert first["st"] == "power_on_delay"


def test_a_drain_that_runs_out_of_its_bound_says_what_is_left_and_fails(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: not a sample gets out
    proc = subprocess.run(
        _demo("--mqtt", f"127.0.0.1:{port}", "--speed", "600", "--duration", "60",
              "--drain-limit", "1", "--state-dir", str(tmp_path), "--no-hmi"),
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3
    assert "120 samples not delivered 1 s after the simulated time ended" in proc.stderr


def test_closing_the_terminal_ends_the_demo(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _demo("--speed", "10", "--state-dir", str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # it runs: a line per simulated minute
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()


def test_sim_writes_the_broker_asked_for_and_keeps_the_other_uplink_settings(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {"host": "scada.example", "port": 8883, "protocol": "3.1.1",
                      "topic_prefix": "pdam-x", "keepalive_s": 45}  # fmt: skip
    station = tmp_path / "mine.yaml"
    station.write_text(yaml.safe_dump(data))
    out = tmp_path / "sim"
    out.mkdir()
    args = argparse.Namespace(config=str(station), pty_dir=str(out), gpio_dir="/tmp/g")
    args.mqtt = "127.0.0.1:1999"
    written = yaml.safe_load(_controller_config(args, {}).read_text())["uplink"]
    assert written["host"] == "127.0.0.1"
    assert written["port"] == 1999
    assert written["protocol"] == "3.1.1"
    assert written["topic_prefix"] == "pdam-x"
    assert written["keepalive_s"] == 45
    args.mqtt = None
    kept = yaml.safe_load(_controller_config(args, {}).read_text())["uplink"]
    assert kept["host"] == "scada.example"

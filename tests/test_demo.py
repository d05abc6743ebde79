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

import aiomqtt
import pytest
import yaml

from controller.commands.sim import _controller_config
from tests.conftest import EXAMPLE_CONFIG
from tests.support.broker import Broker

SITE = "bs01-sukamaju"


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "controller.cli", "demo", "--plain", *args]


@pytest.mark.asyncio
async def test_a_demo_run_is_delivered_whole_on_the_simulated_clock(
    broker: Broker, tmp_path: Path
) -> None:
    seqs: set[int] = set()
    stamps: list[datetime] = []
    async with aiomqtt.Client(broker.host, broker.port) as sub:
        await sub.subscribe(f"pdam/{SITE}/telemetry", qos=1)
        proc = subprocess.Popen(
            _demo(
                "--mqtt", f"{broker.host}:{broker.port}",
                "--start", "2026-12-01T05:00",
                "--speed", "300", "--duration", "300",
                "--state-dir", str(tmp_path),
            ),
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
                    body = json.loads(message.payload)
                    seqs.add(body["seq"])
                    assert body["v"] == 2  # telemetry format 2: ts in Unix milliseconds
                    stamps.append(datetime.fromtimestamp(body["ts"] / 1000, UTC))
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    # 300 simulated seconds at a 0.5 s tick: every sample, none missing.
    assert len(seqs) >= 600
    assert max(seqs) - min(seqs) + 1 == len(seqs)
    # 05:00 in Jakarta (UTC+7) is 22:00 UTC the day before; ts runs on the simulated clock.
    start = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    assert min(stamps) >= start
    assert (max(stamps) - start).total_seconds() <= 301


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

"""The Sparkplug node in-process against a real Mosquitto and a real SQLite buffer: both MQTT
protocol versions, alarm events, and a link lost while the node waits for its host."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import StationConfig
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.sparkplug.node import SparkplugNode
from tests.conftest import EXAMPLE_CONFIG
from tests.support.broker import Broker
from tests.support.sparkplug_host import Host, eventually

SAMPLE: dict[str, Any] = {
    "mode": "auto",
    "state": "auto",
    "setpoint_bar": 3.0,
    "demand": 0.5,
    "values": {"discharge_pressure": {"v": 3.01, "unit": "bar", "q": "good"}},
    "pumps": {"P1": {"on": True, "feedback": True, "fault": False, "state": "running"}},
}


def config(tmp: Path, port: int, group: str, **spb: object) -> StationConfig:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {"host": "127.0.0.1", "port": port, "scheme": "sparkplug",
                      "reconnect_max_s": 0.5, "protocol": spb.pop("protocol", "5"),
                      "sparkplug": {"group_id": group, **spb}}  # fmt: skip
    data["buffer"] = {"path": str(tmp / "buffer.sqlite3"), "commit_interval_s": 0.1}
    return StationConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running(cfg: StationConfig) -> AsyncIterator[tuple[SparkplugNode, SampleBuffer]]:
    buffer = SampleBuffer(cfg.buffer.path, site=cfg.site.id, commit_interval_s=0.1)
    await buffer.open()
    status = {"mode": "auto", "base_setpoint_bar": 3.0, "alarms": [], "pressure_management": None}
    node = SparkplugNode(cfg, buffer=buffer, status=lambda: status, commands=None)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(node.run(stop)), asyncio.create_task(buffer.run(stop))]
    try:
        yield node, buffer
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
        await buffer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_birth_data_alarm_event_and_death_on_either_mqtt_version(
    tmp_path: Path, broker: Broker, topic_root: str, protocol: str
) -> None:
    group = topic_root.replace("/", "-")[-60:]
    async with Host(broker.port, group) as host:
        cfg = config(tmp_path, broker.port, group, protocol=protocol)
        async with running(cfg) as (node, buffer):
            buffer.append(SAMPLE)
            await eventually(lambda: len(host.of("NBIRTH")) == 1, within=10, what="NBIRTH")
            buffer.append(dict(SAMPLE, state="filling"))
            await eventually(lambda: host.last("Control/State") == "filling", within=10,
                             what="a change by exception")  # fmt: skip
            node.publish_alarm({"event": "raised", "id": "dry_run", "message": "suction low"})
            await eventually(lambda: bool(host.last("Alarms/Last Event")), within=10,
                             what="the alarm event")  # fmt: skip
            assert json.loads(host.last("Alarms/Last Event"))["id"] == "dry_run"
        await eventually(lambda: len(host.of("NDEATH")) == 1, within=5, what="NDEATH")
        assert host.violations == []


@pytest.mark.asyncio
async def test_a_link_lost_while_waiting_for_the_host_reconnects_with_the_next_bdseq(
    tmp_path: Path, broker: Broker, topic_root: str
) -> None:
    group = topic_root.replace("/", "-")[-60:]
    cfg = config(tmp_path, broker.port, group, primary_host_id="nobody-home")
    async with running(cfg) as (node, _):
        await eventually(lambda: node.connected, within=10, what="connected")
        first = node.bdseq.current
        broker.stop()
        await eventually(lambda: not node.connected, within=10, what="link loss noticed")
        broker.start()
        await eventually(lambda: node.connected and node.bdseq.current != first, within=15,
                         what="a new session")  # fmt: skip
        # Attempts refused while the broker was down did not count: exactly one more.
        assert node.bdseq.current == ((first or 0) + 1) % 256
        assert not node.born  # still waiting for the host: no birth without it

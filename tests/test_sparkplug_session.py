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
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
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
            born = bdseq_of(host.of("NBIRTH")[0].payload)
            # MQTT 5: NDATA under a topic alias after the first; the host sees the topic.
            assert node._alias_sent is (protocol == "5")
            assert {r.topic for r in host.of("NDATA")} == {node.topics["NDATA"]}
        # NDEATH, then DISCONNECT; MQTT 5's carries "with Will" (0x04), as Sparkplug 3.0
        # asks, so the broker sends the Will too: the same bdSeq twice.
        deaths = 2 if protocol == "5" else 1
        await eventually(lambda: len(host.of("NDEATH")) == deaths, within=5, what="NDEATH")
        await asyncio.sleep(0.3)
        assert [bdseq_of(r.payload) for r in host.of("NDEATH")] == [born] * deaths
        assert host.violations == []


def bdseq_of(payload: pb.Payload) -> int:
    return int(next(m.long_value for m in payload.metrics if m.name == "bdSeq"))


@pytest.mark.asyncio
async def test_an_orderly_stop_sends_the_samples_taken_and_the_alarms_before_ndeath(
    tmp_path: Path, broker: Broker, topic_root: str
) -> None:
    group = topic_root.replace("/", "-")[-60:]
    cfg = config(tmp_path, broker.port, group, protocol="3.1.1")
    async with Host(broker.port, group) as host:
        async with running(cfg) as (node, buffer):
            buffer.append(SAMPLE)
            await eventually(lambda: len(host.of("NBIRTH")) == 1, within=10, what="NBIRTH")
            # Taken just before the stop: still in memory, neither committed nor sent.
            last = buffer.append(dict(SAMPLE, state="filling"))
            node.publish_alarm({"event": "raise", "id": "dry_run", "message": "suction low"})
            assert buffer.stats()["pending"] >= 1
        await eventually(lambda: bool(host.of("NDEATH")), within=5, what="NDEATH")
        kinds = [r.kind for r in host.received]
        death = kinds.index("NDEATH")
        assert kinds[death:] == ["NDEATH"]
        before = host.received[:death]
        seen = [(m.alias, m.is_historical) for r in before for m in r.payload.metrics]
        cat = node.catalogue.by_name
        assert (cat["Control/State"].alias, False) in seen
        assert host.last("Control/State") == "filling"
        assert host.last("Telemetry/Sample") == last
        assert json.loads(host.last("Alarms/Last Event"))["id"] == "dry_run"
        assert host.violations == []
    # Confirmed before the NDEATH: a restart has nothing of them to send again.
    reopened = SampleBuffer(cfg.buffer.path, site=cfg.site.id)
    await reopened.open()
    try:
        assert await reopened.fetch(after_seq=0, limit=10) == []
        assert await reopened.fetch_alarms(after_seq=0, limit=10) == []
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_alarms_raised_while_the_link_is_down_arrive_as_history_in_order(
    tmp_path: Path, broker: Broker, topic_root: str
) -> None:
    group = topic_root.replace("/", "-")[-60:]
    cfg = config(tmp_path, broker.port, group, primary_host_id="scada")
    broker.stop()
    async with running(cfg) as (node, buffer):
        ids = ["dry_run", "pump_fault_P1", "dry_run"]
        for alarm_id, event in zip(ids, ["raise", "raise", "clear"], strict=True):
            node.publish_alarm({"event": event, "id": alarm_id})
        await eventually(lambda: buffer.stats()["alarms_pending"] == 0, within=5,
                         what="the alarms on disk")  # fmt: skip
        broker.start()
        async with Host(broker.port, group) as host:
            await host.state(True)
            await eventually(lambda: len(host.values("Alarms/Last Event", historical=True)) >= 3,
                             within=15, what="the alarms as history")  # fmt: skip
            node.publish_alarm({"event": "ack", "id": "pump_fault_P1"})
            await eventually(lambda: bool(host.last("Alarms/Last Event")), within=10,
                             what="a live alarm after the birth")  # fmt: skip
            old = host.values("Alarms/Last Event", historical=True)
            events = [json.loads(v) for _, v in old]
            assert [(e["id"], e["event"]) for e in events] == list(
                zip(ids, ["raise", "raise", "clear"], strict=True)
            )
            assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
            # Each at its own time (ms), not at the time it was sent.
            assert [ts for ts, _ in old] == sorted(ts for ts, _ in old)
            birth_ts = host.of("NBIRTH")[0].payload.timestamp
            assert all(ts < birth_ts for ts, _ in old)
            assert json.loads(host.last("Alarms/Last Event"))["event"] == "ack"
            assert host.violations == []


@pytest.mark.asyncio
async def test_seq_wraps_from_255_to_0_within_a_session(
    tmp_path: Path, broker: Broker, topic_root: str
) -> None:
    group = topic_root.replace("/", "-")[-60:]
    cfg = config(tmp_path, broker.port, group)
    async with Host(broker.port, group) as host:
        async with running(cfg) as (_, buffer):
            buffer.append(SAMPLE)
            await eventually(lambda: len(host.of("NBIRTH")) == 1, within=10, what="NBIRTH")
            for k in range(300):  # each changes the state: one NDATA each
                buffer.append(dict(SAMPLE, state=f"s{k}"))
            await eventually(lambda: host.last("Control/State") == "s299", within=20,
                             what="300 NDATA")  # fmt: skip
        seqs = [r.payload.seq for r in host.of("NDATA")]
        assert len(seqs) >= 300
        wrap = seqs.index(255)
        assert seqs[wrap + 1] == 0
        assert host.violations == []  # every seq one above the one before, across the wrap


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

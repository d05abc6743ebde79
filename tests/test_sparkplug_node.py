"""The Sparkplug edge node as a primary host sees it: a real ``boosterd demo`` process (the
whole daemon on the simulator), a real Mosquitto, a host client that checks the session rules,
and Eclipse Tahu's JavaScript decoder reading what the station published."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from controller.errors import BoosterError
from controller.status_server import query
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker
from tests.support.sparkplug_host import Host, eventually
from tests.support.sparkplug_js import tahu_decode

NODE = "bs01-sukamaju"


@dataclass
class Node:
    """``boosterd demo`` with ``uplink.scheme: sparkplug``, startable and killable."""

    dir: Path
    broker: Broker
    group: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--config", str(self.dir / "st.yaml"),
             "--mqtt", f"127.0.0.1:{self.broker.port}", "--plain", "--no-hmi",
             "--state-dir", str(self.dir / "state"), *extra],
            cwd=REPO, stdout=(self.dir / "node.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=15)

    def log(self) -> str:
        return (self.dir / "node.log").read_text(errors="replace")

    async def status(self) -> dict[str, Any]:
        """The daemon's status from its socket ({} while it is not up)."""
        try:
            reply = await query(str(self.dir / "state" / "status.sock"), wait_s=1.0)
        except BoosterError:
            return {}
        return dict(reply["status"]) if reply.get("ok") else {}

    async def uplink(self) -> dict[str, object]:
        """The uplink's counters from the daemon's status socket ({} while it is not up)."""
        return dict((await self.status()).get("uplink", {}))

    async def wait_connected(self, within: float = 30.0) -> dict[str, object]:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            stats = await self.uplink()
            if stats.get("connected"):
                return stats
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the node did not connect within {within} s:\n{self.log()[-2000:]}")


@pytest_asyncio.fixture
async def node(tmp_path: Path, broker: Broker, topic_root: str) -> AsyncIterator[Node]:
    group = topic_root.replace("/", "-")[:60]
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {
        "scheme": "sparkplug",
        "reconnect_max_s": 1.0,
        "sparkplug": {"group_id": group, "primary_host_id": "scada", "history_batch": 10},
    }
    data["buffer"] = {"commit_interval_s": 0.2}
    data["protections"]["power_on_delay_s"] = 1
    (tmp_path / "st.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    n = Node(tmp_path, broker, group)
    try:
        yield n
    finally:
        if n.proc is not None and n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()


def bdseq(rec_payload: pb.Payload) -> int:
    return int(next(m.long_value for m in rec_payload.metrics if m.name == "bdSeq"))


@pytest.mark.asyncio
async def test_birth_waits_for_the_host_then_data_commands_and_rebirth_follow_the_rules(
    node: Node,
) -> None:
    async with Host(node.broker.port, node.group) as host:
        await host.state(False, 1)  # a host that was here once and is away
        node.start()
        stats = await node.wait_connected()
        assert stats["host_online"] is False
        assert stats["born"] is False
        # Connected and subscribed, the retained offline STATE read: still no birth.
        await asyncio.sleep(1.0)
        assert host.of("NBIRTH") == [], "NBIRTH before the primary host was online"
        assert (await node.uplink())["born"] is False
        await host.state(True)
        await eventually(lambda: len(host.of("NDATA")) >= 3, within=20, what="data")
        [birth] = host.of("NBIRTH")
        assert birth.payload.seq == 0
        assert birth.qos == 0
        names = {m.name: m for m in birth.payload.metrics}
        assert names["Node Control/Rebirth"].boolean_value is False
        assert names["bdSeq"].datatype == pb.Int64
        assert all(m.datatype for m in birth.payload.metrics)
        assert all(not m.name for r in host.of("NDATA") for m in r.payload.metrics)

        # Commands: one taken, one refused with its reason, garbage answered, link kept.
        await host.write(NODE, "Control/Setpoint", pb.Float, 3.6)
        await host.write(NODE, "Control/Setpoint", pb.Double, 42.0)
        await host.ncmd(NODE, b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x12")
        await host.write(NODE, "Control/Mode", pb.String, "off; DROP TABLE")
        await eventually(lambda: len(host.values("Node Control/Command Result")) >= 5,
                         within=15, what="four command results")  # fmt: skip
        results = [json.loads(v) for _, v in host.values("Node Control/Command Result") if v]
        assert results[0] == {"metric": "Control/Setpoint", "ok": True, "error": None}
        assert results[1]["ok"] is False
        assert "outside the allowed" in results[1]["error"]
        assert "not a Sparkplug B payload" in results[2]["error"]
        assert "mode must be one of" in results[3]["error"]
        await eventually(lambda: host.last("Control/Setpoint") == pytest.approx(3.6),
                         within=10, what="the written setpoint in DATA")  # fmt: skip
        data_before = len(host.of("NDATA"))
        await eventually(lambda: len(host.of("NDATA")) > data_before + 2, within=10,
                         what="data still flowing after hostile commands")  # fmt: skip

        # Rebirth: the same bdSeq, seq back to 0, every metric again.
        await host.write(NODE, "Node Control/Rebirth", pb.Boolean, True)
        await eventually(lambda: len(host.of("NBIRTH")) == 2, within=10, what="rebirth")
        second = host.of("NBIRTH")[1]
        assert bdseq(second.payload) == bdseq(birth.payload)
        assert len(second.payload.metrics) == len(birth.payload.metrics)
        await eventually(lambda: len(host.of("NDATA")) > data_before + 6, within=10,
                         what="data after rebirth")  # fmt: skip

        # Orderly stop: NDEATH with the session's bdSeq, then DISCONNECT; under MQTT 5 with
        # reason 0x04, so the broker sends the Will as well (Sparkplug 3.0): twice, same bdSeq.
        assert node.stop() == 0
        await eventually(lambda: len(host.of("NDEATH")) == 2, within=5, what="NDEATH")
        await asyncio.sleep(0.5)
        assert [bdseq(d.payload) for d in host.of("NDEATH")] == [bdseq(birth.payload)] * 2
        assert [r.kind for r in host.received[-2:]] == ["NDEATH", "NDEATH"]
        assert host.violations == []

        # An implementation we did not write reads every message.
        ours = [(r.topic, r.raw) for r in host.received if r.kind in ("NBIRTH", "NDATA", "NDEATH")]
        decoded = tahu_decode(ours)
        assert all("error" not in d for d in decoded), [d for d in decoded if "error" in d][:3]
        birth_metrics = decoded[0]["decoded"]["metrics"]
        assert all(m.get("type") for m in birth_metrics)
        assert decoded[0]["decoded"]["seq"] == "0"


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_30_s_host_outage_is_replayed_as_history_in_order_with_nothing_missing(
    node: Node,
) -> None:
    async with Host(node.broker.port, node.group) as host:
        online = await host.state(True)
        node.start()
        await eventually(lambda: len(host.of("NDATA")) >= 2, within=30, what="first data")
        first_bd = bdseq(host.of("NBIRTH")[0].payload)
        await host.state(False, online)  # offline, as new as the online: it counts
        # The node's NDEATH and (MQTT 5, DISCONNECT with Will) the broker's.
        await eventually(lambda: len(host.of("NDEATH")) == 2, within=10, what="NDEATH")
        assert {bdseq(r.payload) for r in host.of("NDEATH")} == {first_bd}
        outage_start = len(host.received)
        await asyncio.sleep(30)
        assert [r.kind for r in host.received[outage_start:]] == [], "data while host offline"
        await host.state(True)
        await eventually(lambda: len(host.of("NBIRTH")) == 2, within=15, what="birth after")
        assert bdseq(host.of("NBIRTH")[1].payload) == (first_bd + 1) % 256

        def replayed() -> list[int]:
            return [v for _, v in host.values("Telemetry/Sample", historical=True)]

        # At 0.5 s ticks a 30 s outage holds about 60 samples.
        await eventually(lambda: len(replayed()) >= 55 and host.of("NDATA")[-1].payload.seq > 0
                         and not any(m.is_historical for m in host.of("NDATA")[-1].payload.metrics),
                         within=30, what="the backlog replayed")  # fmt: skip
        samples = replayed()
        assert samples == list(range(samples[0], samples[0] + len(samples))), "gap or reorder"
        stamps = [ts for ts, _ in host.values("Telemetry/Sample", historical=True)]
        # Each at its own millisecond: two ticks of one second never share a timestamp.
        assert all(a < b for a, b in itertools.pairwise(stamps)), stamps[:6]
        live = [v for _, v in host.values("Telemetry/Sample", historical=False)]
        assert live[-1] > samples[-1]
        # Every historical row carries every value with its own original time.
        hist_pressure = host.values("Values/discharge_pressure", historical=True)
        assert len(hist_pressure) == len(samples)
        assert host.violations == []
        assert node.stop() == 0


@pytest.mark.asyncio
@pytest.mark.slow
async def test_bdseq_and_seq_across_a_broker_restart_and_a_sigkill(node: Node) -> None:
    async with Host(node.broker.port, node.group) as host:
        await host.state(True)
        node.start()
        await eventually(lambda: len(host.of("NDATA")) >= 2, within=30, what="first data")
        bd0 = bdseq(host.of("NBIRTH")[0].payload)
    node.broker.stop()
    await asyncio.sleep(3)
    node.broker.start()
    async with Host(node.broker.port, node.group) as host:
        await host.state(True)
        await eventually(lambda: len(host.of("NBIRTH")) == 1, within=20, what="birth after restart")
        bd1 = bdseq(host.of("NBIRTH")[0].payload)
        assert bd1 == (bd0 + 1) % 256  # the refused reconnects in between did not count
        await eventually(lambda: len(host.values("Telemetry/Sample", historical=True)) >= 4,
                         within=20, what="the broker-down samples as history")  # fmt: skip
        # SIGKILL: the broker publishes the Will, the NDEATH of exactly that session.
        assert node.stop(signal.SIGKILL) == -signal.SIGKILL
        await eventually(lambda: len(host.of("NDEATH")) == 1, within=30 + 15, what="the Will")
        assert bdseq(host.of("NDEATH")[0].payload) == bd1
        node.start()
        await eventually(lambda: len(host.of("NBIRTH")) == 2, within=20, what="birth after kill")
        assert bdseq(host.of("NBIRTH")[1].payload) == (bd1 + 1) % 256
        assert host.violations == []
        assert node.stop() == 0


@pytest.mark.asyncio
async def test_an_alarm_raised_while_the_host_is_away_survives_a_sigkill_as_history(
    node: Node,
) -> None:
    async with Host(node.broker.port, node.group) as host:
        await host.state(False, 1)  # away: the node connects but must not birth
        node.start("--fault", "pump_trip:P1@1")

        async def committed() -> dict[str, Any]:
            while True:
                status = await node.status()
                buf = status.get("buffer", {})
                if buf.get("last_alarm_seq", 0) >= 1 and buf.get("alarms_pending") == 0:
                    return status
                await asyncio.sleep(0.1)

        async with asyncio.timeout(30):
            status = await committed()
        raised = {a["id"] for a in status["alarms"]}
        assert raised, "the fault raised no alarm"
        boot = status["buffer"]["boot"]
        assert node.stop(signal.SIGKILL) == -signal.SIGKILL
        assert host.of("NBIRTH") == []
        node.start()  # no fault this time: the alarm exists only in the buffer on disk
        await node.wait_connected()
        await host.state(True)

        def history() -> list[dict[str, Any]]:
            return [json.loads(v) for _, v in host.values("Alarms/Last Event", historical=True)]

        await eventually(lambda: any(e["boot"] == boot for e in history()), within=20,
                         what="the alarm of the killed process, as history")  # fmt: skip
        # Raised by the killed process (its boot), not restored by the new one.
        assert {e["id"] for e in history() if e["event"] == "raise" and e["boot"] == boot} >= raised
        assert [e["seq"] for e in history()] == sorted(e["seq"] for e in history())
        assert host.violations == []
        assert node.stop() == 0

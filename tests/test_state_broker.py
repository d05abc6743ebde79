"""What the station really publishes matches the JSON Schemas in docs/schema/ (issue 15).

The whole controller runs on the simulator (``boosterd demo``, a real process, in fast
simulated time, with faults that raise alarms and make values bad) and forwards to a
real Mosquitto; an independent client takes every message from the broker, sends
commands (good, refused, repeated, unreadable), and each message is validated with
``jsonschema`` against the committed schema of its topic: telemetry, the retained
telemetry schema, status (online, then offline after SIGTERM), alarms, command replies.
The status socket's answer is checked against its model too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
import yaml
from jsonschema import Draft202012Validator

from controller.state.dump import validate
from controller.state.models import LocalStatus
from controller.status_server import query
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker

SITE = "bs01-sukamaju"
SCHEMAS = REPO / "docs" / "schema"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_for(topic: str, base: str) -> str:
    """The schema file of a topic under ``base`` (docs/mqtt.md's topic table)."""
    rest = topic.removeprefix(base + "/")
    if rest.startswith("schema/"):
        return "telemetry-schema.json"
    if rest.startswith("cmd/") and rest.endswith("/result"):
        return "cmd-result.json"
    if rest.startswith("cmd/"):
        return f"cmd-{rest.split('/')[1]}.json"
    return f"{rest}.json"


class Collected:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bool, Any]] = []
        self.changed = asyncio.Event()

    def on(self, topic: str) -> list[Any]:
        return [body for t, _, body in self.messages if t == topic]

    async def until(self, what: str, condition: Any, within: float = 15.0) -> None:
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            seen = sorted({t for t, _, _ in self.messages})
            raise AssertionError(f"no {what} within {within} s; topics seen: {seen}") from None


async def _collect(client: aiomqtt.Client, into: Collected) -> None:
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        try:
            body = json.loads(message.payload) if message.payload else None
        except ValueError:
            body = None  # our own unreadable command, echoed by the broker
        into.messages.append((str(message.topic), message.retain, body))
        into.changed.set()


@pytest.mark.asyncio
async def test_every_message_published_to_a_real_broker_matches_its_schema(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    station = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    station["uplink"]["topic_prefix"] = topic_root
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(station, sort_keys=False))
    base = f"{topic_root}/{SITE}"
    log = tmp_path / "demo.log"
    got = Collected()
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{base}/#", qos=1)
        collector = asyncio.create_task(_collect(client, got))
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--plain", "--no-hmi",
             "--config", str(config), "--mqtt", f"{broker.host}:{broker.port}",
             "--speed", "20", "--start-hour", "8", "--state-dir", str(tmp_path / "state"),
             # A bad value from the start, a pump locked out, a dry run that clears.
             "--fault", "slave_silent:flow_meter@1",
             "--fault", "pump_trip:P1@2",
             "--fault", "suction_loss@4+20"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        )  # fmt: skip
        try:
            alarms = f"{base}/alarm"
            await got.until("telemetry", lambda: len(got.on(f"{base}/telemetry")) >= 20)
            # The acknowledge below must find the lockout raised: wait for it too.
            await got.until(
                "dry-run raise and clear, P1 locked out",
                lambda: (
                    {(a["id"], a["event"]) for a in got.on(alarms)}
                    >= {("dry_run", "raise"), ("dry_run", "clear"), ("pump_lockout_P1", "raise")}
                ),
                within=20,
            )
            now = time.time()
            commands = [
                ("setpoint", {"id": "c1", "ts": now, "value": 3.2}),
                ("setpoint", {"id": "c2", "ts": now, "value": 70.0}),  # out of range
                ("setpoint", {"id": "c1", "ts": now, "value": 3.2}),  # repeated
                ("ack", {"id": "c3", "ts": now}),
                ("mode", {"id": "c4", "ts": now, "mode": "sideways"}),
            ]
            for name, payload in commands:
                await client.publish(f"{base}/cmd/{name}", json.dumps(payload), qos=1)
            await client.publish(f"{base}/cmd/mode", b"{not json", qos=1)
            replies = f"{base}/cmd/setpoint/result", f"{base}/cmd/ack/result"
            await got.until(
                "command replies",
                lambda: (
                    len(got.on(f"{base}/cmd/mode/result")) == 2
                    and len(got.on(replies[0])) == 3
                    and len(got.on(replies[1])) == 1
                ),
            )
            # The status socket answers with the model the dashboard reads.
            reply = await query(str(tmp_path / "state" / "status.sock"))
            local = validate(LocalStatus, reply["status"])
            assert local.site.id == SITE
            assert any(p.energy_kwh is not None for p in local.pumps.values())
            proc.send_signal(signal.SIGTERM)
            await got.until(
                "offline status",
                lambda: any(s["online"] is False for s in got.on(f"{base}/status")),
            )
            await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            collector.cancel()
    assert proc.returncode == 0, log.read_text(errors="replace")

    checked: dict[str, int] = {}
    for topic, _, body in got.messages:
        if body is None or (topic.startswith(f"{base}/cmd/") and not topic.endswith("/result")):
            continue  # our own commands
        name = schema_for(topic, base)
        try:
            validator(name).validate(body)
        except jsonschema.ValidationError as exc:
            raise AssertionError(f"{topic} does not match {name}: {exc.message}\n{body}") from exc
        checked[name] = checked.get(name, 0) + 1
    assert checked.keys() == {
        "telemetry.json",
        "telemetry-schema.json",
        "status.json",
        "alarm.json",
        "cmd-result.json",
    }
    # Each kind of message was there in its variants, so each part of a schema was used.
    samples = got.on(f"{base}/telemetry")
    assert any("bad" in s for s in samples)
    assert any("lock" in s for s in samples)
    statuses = got.on(f"{base}/status")
    assert statuses[0]["online"] is True
    assert statuses[-1] == {"online": False, "site": SITE, "version": statuses[0]["version"],
                            "ts": statuses[-1]["ts"]}  # fmt: skip
    assert any(s.get("alarms") for s in statuses)
    events = {(a["id"], a["event"]) for a in got.on(f"{base}/alarm")}
    assert ("pump_lockout_P1", "raise") in events
    assert ("pump_lockout_P1", "ack") in events
    setpoint = got.on(f"{base}/cmd/setpoint/result")
    assert [r["ok"] for r in setpoint] == [True, False, True]
    assert setpoint[2].get("repeated") is True
    assert got.on(f"{base}/cmd/ack/result")[0]["acknowledged"]
    assert [r["id"] for r in got.on(f"{base}/cmd/mode/result")] == ["c4", None]

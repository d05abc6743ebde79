"""Issue 11: no message on the command path can crash it or the SCADA link.

A property test drives arbitrary JSON-ish payloads through the real command path (the
CommandProcessor on a real ControlCore, relay and VFD stations); a real Mosquitto run
shows poison, retained and oversize commands leave telemetry and status untouched.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import load_config
from controller.config.schema import UplinkConfig
from controller.control.core import ControlCore
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.commands import COMMANDS, CommandProcessor
from controller.telemetry.uplink import (
    MAX_PACKET_BYTES,
    READ_LIMIT_BYTES,
    Uplink,
    _limit_reads,
)
from harness.demo import DemoOptions, demo_config, demo_daemon
from tests.conftest import EXAMPLE_CONFIG, VFD_CONFIG
from tests.support.broker import Broker
from tests.test_uplink import Subscriber, assert_complete

NOW = 1_800_000_000.0
STATIONS = {"relay": load_config(EXAMPLE_CONFIG), "vfd": load_config(VFD_CONFIG)}

# -- the property: any payload, any name, a well-formed reply -------------------------------

_numbers = st.one_of(
    st.floats(),  # NaN and the infinities come out as NaN/Infinity tokens
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([1e308, 5e-324, -0.0, 10**309, 2**64]),
)
_leaves = st.one_of(
    st.none(), st.booleans(), _numbers, st.text(max_size=30), st.text(min_size=3000, max_size=5000)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.sampled_from(
    ["id", "ts", "value", "mode", "pump", "on", "alarm", "pressure_management"]
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


_VALUE = b'{"id": "d", "ts": 1800000000, "value": '


def _deep(n: int, opener: bytes, closer: bytes) -> bytes:
    return opener * n + closer * n


_shaped = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=130) | _values, "ts": st.just(NOW) | _values},
    optional={
        "value": _values, "mode": st.sampled_from(["auto", "manual", "off"]) | _values,
        "pump": st.sampled_from(["P1", "P2", "P3", "P9"]) | _values, "on": _values,
        "alarm": _values, "pressure_management": _values,
    },
)  # fmt: skip
payloads = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(_fields, _values).map(_encode),
    _shaped.map(_encode),
    _values.map(_encode),
    st.integers(1, 3000).map(lambda n: _deep(n, b"[", b"]")),
    # Past the ~1000 levels that exhaust json's stack, yet within 4 KB.
    st.integers(1100, 2040).map(lambda n: _deep(n, b"[", b"]")),
    st.integers(520, 580).map(lambda n: _deep(n, b'{"":[', b"]}")),
    st.integers(1, 600).map(lambda n: _VALUE + b'{"a":' * n + b"1" + b"}" * n + b"}"),
    st.integers(300, 6000).map(lambda n: _VALUE + b"9" * n + b"}"),
    st.sampled_from(
        [b"NaN", b"Infinity", b'{"id":"x","ts":NaN}', b"\xff\xfe\x00{", b"\xc3\x28", b""]
    ),
    _shaped.map(lambda d: _encode(d).decode().encode("utf-16")),
)  # fmt: skip
names = st.one_of(st.sampled_from([*COMMANDS, "nosuch", ""]), st.text(max_size=300))


def assert_well_formed(reply: Any) -> None:
    assert isinstance(reply, dict)
    assert reply["id"] is None or isinstance(reply["id"], str)
    assert isinstance(reply["ok"], bool)
    assert reply["error"] is None or isinstance(reply["error"], str)
    assert (reply["error"] is None) == reply["ok"]
    # Strict JSON that any parser reads: no NaN/Infinity, no lone surrogates.
    text = json.dumps(reply, allow_nan=False, ensure_ascii=False)
    assert json.loads(text.encode("utf-8").decode("utf-8")) == reply


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    station=st.sampled_from(sorted(STATIONS)),
    messages=st.lists(st.tuples(names, payloads), min_size=1, max_size=6),
)
def test_any_payload_on_any_command_gets_a_well_formed_reply(
    station: str, messages: list[tuple[str, bytes]]
) -> None:
    cfg = STATIONS[station]
    core = ControlCore(cfg, now=0.0)
    proc = CommandProcessor(core, clock=lambda: NOW)
    for name, payload in messages:
        reply = proc.handle(name, payload)  # an exception here fails the test
        assert_well_formed(reply)
        assert proc.failed == 0, reply  # every refusal has a reason, not a traceback
    lo, hi = cfg.control.setpoint_min_bar, cfg.control.setpoint_max_bar
    assert math.isfinite(core.setpoint)
    assert lo <= core.setpoint <= hi


# -- a real broker: poison, retained and oversize messages -----------------------------------

SITE = "hostile-site"


async def _mosquitto_pub(port: int, topic: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, *args,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0


async def _until(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {within} s waiting for {what}") from None


def _retained(port: int, topic: str) -> str:
    out = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "--retained-only",
         "-W", "1"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return out.stdout


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_poison_retained_and_oversize_commands_leave_telemetry_and_status_alone(
    broker: Broker, tmp_path: Path, topic_root: str, protocol: str
) -> None:
    core = ControlCore(STATIONS["relay"], now=0.0)
    commands = CommandProcessor(core)
    seen: list[int] = []  # sizes of what reached the command processor
    handle = commands.handle

    def recording(name: str, payload: bytes, *, topic: str | None = None) -> dict[str, Any]:
        seen.append(len(payload))
        return handle(name, payload, topic=topic)

    commands.handle = recording  # type: ignore[method-assign]
    base = f"{topic_root}/{SITE}"
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="127.0.0.1", port=broker.port, topic_prefix=topic_root,
                       protocol=protocol, reconnect_max_s=0.5)  # type: ignore[arg-type]  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=core.status, commands=commands)
    telemetry = Subscriber(broker.port, f"{base}/telemetry", tmp_path / f"tel-{protocol}.txt")
    status = Subscriber(broker.port, f"{base}/status", tmp_path / f"status-{protocol}.txt")
    results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / f"res-{protocol}.txt")
    stop = asyncio.Event()
    produce = asyncio.Event()
    produce.set()

    async def producer() -> None:
        while produce.is_set():
            buf.append({"mode": core.mode})
            await buf.flush()
            await asyncio.sleep(0.05)

    def replies() -> dict[str, dict[str, Any]]:
        return {str(m["id"]): m for m in results.messages()}

    def sent() -> int:
        return len(set(telemetry.seqs()))

    now = str(time.time())
    # Stored by the broker before the station connects, as a careless SCADA engineer or an
    # attacker leaves them: a valid order and a poison one, both replayed on every subscribe.
    await _mosquitto_pub(broker.port, f"{base}/cmd/mode", "-r",
                         "-m", f'{{"id": "stored", "ts": {now}, "mode": "off"}}')  # fmt: skip
    await _mosquitto_pub(broker.port, f"{base}/cmd/pump", "-r", "-m", "[" * 3000 + "]" * 3000)
    producing = asyncio.create_task(producer())
    task = asyncio.create_task(uplink.run(stop))
    try:
        await _until(lambda: uplink.connected and sent() >= 5, "telemetry flowing")
        await _until(lambda: len(results.messages()) >= 2, "replies to the stored commands")
        stored = sorted(results.messages(), key=lambda m: str(m["id"]))
        assert [(m["id"], m["ok"]) for m in stored] == [(None, False), ("stored", False)]
        assert all("retained command ignored" in str(m["error"]) for m in stored)
        assert core.mode == "auto"  # never executed
        for name in ("mode", "pump"):
            await _until(lambda: _retained(broker.port, f"{base}/cmd/{name}") == "",  # noqa: B023
                         f"the retained cmd/{name} cleared", within=10)  # fmt: skip
        results.close()
        results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / f"res2-{protocol}.txt")
        # Poison: ~2000 levels in under 4 KB, and a 320-digit integer.
        deep = (
            b'{"id": "deep", "ts": ' + now.encode() + b', "v": ' + b"[" * 1900 + b"]" * 1900 + b"}"
        )
        (tmp_path / "deep.json").write_bytes(deep)
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-f", str(tmp_path / "deep.json"))
        huge = f'{{"id": "huge", "ts": {now}, "value": 1{"0" * 320}}}'
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-m", huge)
        # Unparseable, so the id cannot be read: the reply says why, with id null.
        await _until(lambda: len(results.messages()) >= 2, "replies to the poison")
        poison = results.messages()[:2]
        assert [(m["id"], m["ok"]) for m in poison] == [(None, False), (None, False)]
        assert "levels deep" in str(poison[0]["error"])
        assert "digits" in str(poison[1]["error"])

        # Retained while connected: MQTT 5 keeps the flag (Retain As Published), so it is
        # refused at once; 3.1.1 delivers it as a live command (docs/mqtt.md).
        if protocol == "5":
            await _mosquitto_pub(broker.port, f"{base}/cmd/mode", "-r",
                                 "-m", f'{{"id": "live", "ts": {now}, "mode": "off"}}')  # fmt: skip
            await _until(lambda: "live" in replies(), "the reply to the retained command")
            assert replies()["live"]["ok"] is False
            assert "retained command ignored" in str(replies()["live"]["error"])
            await _until(lambda: _retained(broker.port, f"{base}/cmd/mode") == "",
                         "the retained command cleared", within=10)  # fmt: skip
            assert core.mode == "auto"

        # Oversize: 1 MB, far above the packet size the uplink accepts.
        reconnects = uplink.reconnects
        big = b'{"id": "big", "ts": ' + now.encode() + b', "pad": "' + b"x" * 1_000_000 + b'"}'
        (tmp_path / "big.json").write_bytes(big)
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-f", str(tmp_path / "big.json"))
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint",
                             "-m", f'{{"id": "after", "ts": {now}, "value": 3.7}}')  # fmt: skip
        await _until(lambda: "after" in replies(), "the command after the oversize one")
        assert replies()["after"]["ok"] is True
        assert core.setpoint == 3.7
        assert uplink.reconnects == reconnects  # the link stayed up
        if protocol == "5":
            # Maximum Packet Size: the broker dropped it, the client never read it.
            assert max(seen) < MAX_PACKET_BYTES
            assert "big" not in replies()
        else:
            # MQTT 3.1.1 has no such property: it is read, then refused (docs/mqtt.md).
            assert max(seen) > 1_000_000
            assert any("larger than" in str(m["error"]) for m in results.messages())

        mark = max(telemetry.seqs())
        await _until(lambda: max(telemetry.seqs()) >= mark + 5, "telemetry still flowing")
        assert all(m["online"] is True for m in status.messages())
        assert status.messages()
    finally:
        produce.clear()
        await producing
        stop.set()
        await task
        telemetry.close()
        status.close()
        results.close()
    # No gap anywhere: every sample recorded was published (QoS 1 may repeat, never skip).
    backlog = buf.stats()["backlog"]
    await buf.close()
    seqs = telemetry.seqs()
    assert_complete(seqs, max(seqs))
    assert backlog == 0


@pytest.mark.asyncio
async def test_mqtt_3_1_1_drops_the_link_rather_than_read_a_frame_above_the_read_limit(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    core = ControlCore(STATIONS["relay"], now=0.0)
    commands = CommandProcessor(core)
    base = f"{topic_root}/{SITE}"
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="127.0.0.1", port=broker.port, topic_prefix=topic_root,
                       protocol="3.1.1", reconnect_max_s=0.5)  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=core.status, commands=commands)
    results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / "res-guard.txt")
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        await _until(lambda: uplink.connected, "the uplink connected")
        big = tmp_path / "big.bin"
        big.write_bytes(b"z" * (READ_LIMIT_BYTES + 1))
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-f", str(big))
        await _until(
            lambda: uplink.reconnects >= 1 and uplink.connected, "the link dropped and back"
        )
        for i in range(5):
            buf.append({"n": i})
        await buf.flush()
        await _until(lambda: uplink.published >= 5, "telemetry after the reconnect")
        after = json.dumps({"id": "after", "ts": time.time(), "value": 3.6})
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-m", after)
        await _until(lambda: bool(results.messages()), "the next command's reply")
        assert results.messages() == [{"id": "after", "ok": True, "error": None}]
        assert commands.rejected == 0  # the big one never reached the command path
    finally:
        stop.set()
        await task
        await buf.close()
        results.close()


@pytest.mark.asyncio
async def test_the_read_guard_fits_the_installed_paho() -> None:
    # It wraps a private paho method: an upgrade that renames it must fail here, loudly.
    cfg = UplinkConfig(host="127.0.0.1", port=1, protocol="3.1.1")  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=None, status=dict, commands=None)  # type: ignore[arg-type]
    client = uplink._client()
    assert _limit_reads(client, READ_LIMIT_BYTES) is True
    with pytest.raises(ConnectionAbortedError):
        client._client._sock_recv(READ_LIMIT_BYTES + 1)


@pytest.mark.asyncio
async def test_the_daemon_keeps_controlling_and_reporting_through_a_hostile_burst(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    options = DemoOptions(speed=1.0, state_dir=tmp_path, live=False)
    cfg = demo_config(STATIONS["relay"], options)
    uplink_cfg = cfg.uplink.model_copy(update={
        "enabled": True, "host": "127.0.0.1", "port": broker.port, "tls": None,
        "credentials_file": None, "topic_prefix": topic_root, "reconnect_max_s": 1.0,
    })  # fmt: skip
    daemon = demo_daemon(cfg.model_copy(update={"uplink": uplink_cfg}), options)
    base = f"{topic_root}/{cfg.site.id}"
    telemetry = Subscriber(broker.port, f"{base}/telemetry", tmp_path / "d-tel.txt")
    status = Subscriber(broker.port, f"{base}/status", tmp_path / "d-status.txt")
    results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / "d-res.txt")
    now = time.time()
    await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-r", "-m", "[" * 3000 + "]" * 3000)
    task = asyncio.create_task(daemon.run())
    try:
        await _until(lambda: len(telemetry.seqs()) >= 3, "the daemon's telemetry", within=30)
        poison = [
            b"[" * 2000 + b"]" * 2000,
            b'{"id": "h", "ts": %d, "value": 1%s}' % (now, b"0" * 320),
            b'{"id": "n", "ts": %d, "value": NaN}' % now,
            b'{"id": "i", "ts": %d, "pressure_management": {"ramp_bar_per_min": 1e999}}' % now,
        ]
        for i, body in enumerate(poison):
            (tmp_path / f"p{i}").write_bytes(body)
            await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-f", str(tmp_path / f"p{i}"))
        (tmp_path / "big").write_bytes(b"x" * 1_000_000)
        await _mosquitto_pub(broker.port, f"{base}/cmd/setpoint", "-f", str(tmp_path / "big"))
        await _until(lambda: len(results.messages()) >= 1 + len(poison), "every reply")
        assert all(m["ok"] is False for m in results.messages())
        assert "retained command ignored" in str(results.messages()[0]["error"])
        mark = max(telemetry.seqs())
        await _until(lambda: max(telemetry.seqs()) >= mark + 3, "telemetry after the burst")
        assert daemon.uplink is not None
        assert daemon.uplink.reconnects == 0
        assert daemon.core.setpoint == cfg.control.setpoint_bar
        assert all(m["online"] is True for m in status.messages())
    finally:
        daemon.stop.set()
        await task
        telemetry.close()
        status.close()
        results.close()
    seqs = telemetry.seqs()
    assert_complete(seqs, max(seqs))

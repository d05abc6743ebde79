"""The real-part fixtures are real: bytes cross the pty line, messages cross the broker."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import aiomqtt
import pytest
import serial

from tests.support.broker import Broker
from tests.support.serial_pair import SerialPair


def test_pty_pair_carries_bytes_both_ways_with_serial_settings(serial_pair: SerialPair) -> None:
    with (
        serial.Serial(serial_pair.a, baudrate=9600, parity="E", timeout=2) as a,
        serial.Serial(serial_pair.b, baudrate=9600, parity="E", timeout=2) as b,
    ):
        assert os.isatty(a.fileno())
        assert os.isatty(b.fileno())
        frame = bytes([0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD])
        a.write(frame)
        assert b.read(len(frame)) == frame
        b.write(b"\x01\x83\x02\xc0\xf1")
        assert a.read(5) == b"\x01\x83\x02\xc0\xf1"


def test_pty_pair_goes_away_when_closed() -> None:
    pair = SerialPair.start()
    assert pair.is_alive()
    assert os.path.exists(pair.a)
    pair.close()
    assert not pair.is_alive()
    assert not os.path.exists(pair.a)


async def _roundtrip(broker: Broker, topic: str) -> bytes:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"rt-{topic}") as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"hello", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError("no message")


@pytest.mark.asyncio
async def test_broker_delivers_and_can_be_stopped_and_restarted(
    broker: Broker, topic_root: str
) -> None:
    assert await _roundtrip(broker, f"{topic_root}/a") == b"hello"

    broker.stop()
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, timeout=1):
            pass

    broker.start()
    assert await _roundtrip(broker, f"{topic_root}/b") == b"hello"


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients missing")
def test_broker_serves_independent_clients(broker: Broker, topic_root: str) -> None:
    topic = f"{topic_root}/x"
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "10",
            "-q",
            "1",
        ],
        stdout=subprocess.PIPE,
    )
    # retained, so the order of subscribe and publish does not matter
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-t",
            topic,
            "-m",
            "42",
            "-r",
            "-q",
            "1",
        ],
        check=True,
        timeout=10,
    )
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == b"42"

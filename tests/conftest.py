"""Shared fixtures: real serial lines and a real MQTT broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.serial_pair import SerialPair

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config" / "station.example.yaml"
VFD_CONFIG = REPO / "config" / "station.vfd-example.yaml"


@pytest.fixture
def serial_pair() -> Iterator[SerialPair]:
    """A fresh socat pty pair per test."""
    pair = SerialPair.start()
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture(scope="session")
def _session_broker() -> Iterator[Broker]:
    broker = Broker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def broker(_session_broker: Broker) -> Iterator[Broker]:
    """The session's broker, running; a test may stop and restart it on the same port."""
    _session_broker.start()
    yield _session_broker
    _session_broker.start()  # leave it running for the next test


@pytest.fixture
def topic_root(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to the test, so tests sharing the broker never cross."""
    name: str = request.node.name
    return "test/" + name.replace("[", "_").replace("]", "_")

"""Log lines: journald priority prefix, one pipeline for third-party loggers, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from controller.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    structlog.reset_defaults()


def _lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


def test_json_lines_carry_journald_priority() -> None:
    buf = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buf)
    log = get_logger("boosterd.test")
    log.info("pump started", pump="P1")
    log.warning("slave silent", slave=2)
    log.error("dry run", suction_bar=0.05)
    lines = _lines(buf)
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    first = json.loads(lines[0][3:])
    assert first["event"] == "pump started"
    assert first["pump"] == "P1"
    assert first["level"] == "info"
    assert first["ts"].endswith("Z")


def test_third_party_loggers_use_the_same_pipeline() -> None:
    buf = io.StringIO()
    configure_logging(level="info", fmt="json", stream=buf)
    logging.getLogger("paho.mqtt.client").warning("connection lost %s", "broker:8883")
    logging.getLogger("paho.mqtt.client").info("chatter that stays hidden")
    # pymodbus reports every timeout with a frame dump; acquisition reports those itself.
    logging.getLogger("pymodbus.client").error("No response received")
    lines = _lines(buf)
    assert len(lines) == 1
    assert lines[0].startswith("<4>")
    record = json.loads(lines[0][3:])
    assert record["event"] == "connection lost broker:8883"
    assert record["logger"] == "paho.mqtt.client"


def test_pymodbus_speaks_through_the_pipeline_when_debugging() -> None:
    buf = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buf)
    logging.getLogger("pymodbus.client").error("No response received")
    record = json.loads(_lines(buf)[-1][3:])
    assert record["logger"] == "pymodbus.client"
    assert record["level"] == "error"


def test_secrets_are_masked() -> None:
    buf = io.StringIO()
    configure_logging(level="info", fmt="json", stream=buf)
    log = get_logger("boosterd.test")
    log.info("connecting", password="hunter2", mqtt_token="abc", host="broker")
    log.info("url mqtts://station:hunter2@broker:8883")
    text = buf.getvalue()
    assert "hunter2" not in text
    assert "abc" not in text
    assert "broker" in text


def test_console_format_is_key_value() -> None:
    buf = io.StringIO()
    configure_logging(level="info", fmt="console", stream=buf)
    get_logger("boosterd.test").info("tick", pressure_bar=3.01)
    line = _lines(buf)[0]
    assert "tick" in line
    assert "pressure_bar=3.01" in line
    assert not line.startswith("<")

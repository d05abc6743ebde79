"""The notify protocol reaches a real datagram socket, abstract namespace included."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from controller.sdnotify import Notifier, watchdog_interval_s


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_ready_watchdog_status_stopping_reach_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as rx:
        n = Notifier(path)
        assert n.enabled
        assert n.ready(status="starting")
        assert rx.recv(4096) == b"READY=1\nSTATUS=starting"
        assert n.watchdog()
        assert rx.recv(4096) == b"WATCHDOG=1"
        assert n.status("tick 12\n P1 on")
        assert rx.recv(4096) == b"STATUS=tick 12 P1 on"
        assert n.stopping()
        assert rx.recv(4096) == b"STOPPING=1"
        n.close()


def test_abstract_namespace_address() -> None:
    name = f"boosterd-test-{uuid.uuid4().hex}"
    with _receiver(b"\0" + name.encode()) as rx:
        n = Notifier("@" + name)
        assert n.watchdog()
        assert rx.recv(4096) == b"WATCHDOG=1"
        n.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert not n.ready()


def test_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert not n.watchdog()
    assert n.errors == 1


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == pytest.approx(10.0)
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None

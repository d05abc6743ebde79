"""The daemon as systemd runs it: a real 'boosterd run' process against a real 'boosterd sim'
process over a pty, relays through the shared simulated GPIO, telemetry to a real broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from controller.sdnotify import Notifier
from controller.status_server import query
from drivers.gpio.shared import SharedGpioPeer
from harness.demo import DemoOptions, demo_config, demo_daemon
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker
from tests.support.cli import boosterd
from tests.support.disk_full import limit_pages
from tests.support.waiting import wait_until

RELAYS = {"GPIO17": True, "GPIO27": True, "GPIO24": True}  # active low: idle high = off


@dataclass
class Station:
    dir: Path
    config: Path
    data: dict[str, object]
    notify: socket.socket
    sim: subprocess.Popen[bytes]
    topic_root: str
    broker: Broker
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        return str(self.dir / "status.sock")

    def start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, NOTIFY_SOCKET=str(self.dir / "notify"), WATCHDOG_USEC="2000000")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", "--config", str(self.config)],
            cwd=REPO, env=env, stdout=(self.dir / "daemon.log").open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self.daemon

    def messages(self, within: float = 15.0) -> Iterator[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                yield self.notify.recv(4096).decode()
            except TimeoutError:
                continue
        raise TimeoutError("no notify message in time")

    def drain(self) -> None:
        """Read what is queued: the kernel keeps only a few unread datagrams (max_dgram_qlen)."""
        self.notify.setblocking(False)
        try:
            while True:
                self.notify.recv(4096)
        except BlockingIOError:
            pass
        finally:
            self.notify.settimeout(0.5)

    def wait_for(self, prefix: str, within: float = 20.0) -> str:
        for msg in self.messages(within):
            if any(line.startswith(prefix) for line in msg.splitlines()):
                return msg
        raise AssertionError("unreachable")

    def status(self) -> dict[str, object]:
        reply = asyncio.run(query(self.socket_path))
        assert reply["ok"], reply
        return dict(reply["status"])

    def relays(self) -> dict[str, bool]:
        return SharedGpioPeer(self.dir / "gpio", idle_levels=RELAYS).outputs()

    def log(self) -> str:
        return (self.dir / "daemon.log").read_text(errors="replace")


@pytest.fixture
def station(tmp_path: Path, broker: Broker, topic_root: str) -> Iterator[Station]:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["buses"]["rs485"].update({"port": str(tmp_path / "pty" / "rs485"), "timeout_s": 0.2})
    data["gpio"] = {"backend": "sim", "sim_dir": str(tmp_path / "gpio")}
    data["buffer"] = {"path": str(tmp_path / "buffer.sqlite3"), "commit_interval_s": 0.2}
    data["status"] = {"socket": str(tmp_path / "status.sock")}
    data["uplink"] = {"host": "127.0.0.1", "port": broker.port, "topic_prefix": topic_root,
                      "reconnect_max_s": 1.0}  # fmt: skip
    data["protections"]["power_on_delay_s"] = 1
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    sim = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "sim", str(config), "--pty-dir",
         str(tmp_path / "pty"), "--gpio-dir", str(tmp_path / "gpio"), "--start-hour", "8"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until((tmp_path / "pty" / "rs485").exists, timeout=15, what="simulator pty")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.5)
    st = Station(tmp_path, config, data, notify, sim, topic_root, broker)
    try:
        yield st
    finally:
        if st.daemon is not None and st.daemon.poll() is None:
            st.daemon.kill()
            st.daemon.wait()
        sim.terminate()
        sim.wait(timeout=10)
        notify.close()


def retained_status(st: Station) -> dict[str, object]:
    out = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(st.broker.port), "-C", "1", "-W", "5",
         "-t", f"{st.topic_root}/bs01-sukamaju/status"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def test_ready_then_watchdog_then_sigterm_leaves_relays_safe_and_status_offline(
    station: Station,
) -> None:
    proc = station.start()
    ready = station.wait_for("READY=1")
    assert "STATUS=" in ready
    station.wait_for("WATCHDOG=1")
    station.wait_for("WATCHDOG=1")
    # The station is being controlled: a pump runs and the simulator saw its relay.
    wait_until(lambda: any(v is False for v in station.relays().values()), timeout=30,
               what="a relay energised")  # fmt: skip
    snap = station.status()
    assert snap["values"]["discharge_pressure"]["q"] == "good"  # type: ignore[index]
    assert retained_status(station)["online"] is True
    station.drain()
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert station.relays() == RELAYS
    station.wait_for("STOPPING=1", within=2)
    assert retained_status(station)["online"] is False


def test_sigkill_then_outputs_off_and_restart_leave_relays_safe(station: Station) -> None:
    proc = station.start()
    station.wait_for("READY=1")
    wait_until(lambda: any(v is False for v in station.relays().values()), timeout=30,
               what="a relay energised")  # fmt: skip
    proc.kill()
    proc.wait()
    # Like a Raspberry Pi kernel, the simulated chip keeps a released output's level:
    # the killed daemon's pump is still running...
    assert station.relays() != RELAYS
    # ...until systemd's ExecStopPost switches every relay off, even when a technician
    # has saved a broken station file meanwhile: the daemon kept the one it ran with.
    good = station.config.read_text()
    station.config.write_text(good.replace("pumps:", "pumps: [", 1))
    last_good = station.dir / "station.last-good.yaml"
    assert last_good.read_text() == good
    off = boosterd("outputs-off", "--config", str(station.config), "--last-good", str(last_good))
    assert off.returncode == 0, off.stderr
    assert "3 relays off" in off.stdout
    assert "last file the daemon ran with" in off.stderr
    assert station.relays() == RELAYS
    station.config.write_text(good)
    station.start()
    # Power-on delay: the restarted daemon holds every pump off before its first decision.
    wait_until(lambda: (station.dir / "gpio" / "outputs.json").stat().st_mtime > 0, timeout=5,
               what="outputs file")  # fmt: skip
    station.wait_for("READY=1")
    assert station.status()["state"] in ("power_on_delay", "auto")


def test_sighup_applies_a_valid_file_and_keeps_running_on_an_invalid_one(
    station: Station,
) -> None:
    proc = station.start()
    station.wait_for("READY=1")
    wait_until(lambda: any(v is False for v in station.relays().values()), timeout=30,
               what="a relay energised")  # fmt: skip
    data = dict(station.data)
    data["control"] = dict(data["control"], setpoint_bar=3.4)  # type: ignore[call-overload]
    station.config.write_text(yaml.safe_dump(data, sort_keys=False))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: station.status()["setpoint_bar"] == 3.4, timeout=10, what="new setpoint")
    assert "configuration reloaded" in station.log()
    broken = station.config.read_text().replace("setpoint_bar: 3.4", "setpoint_bar: 9")
    station.config.write_text(broken)
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload rejected" in station.log(), timeout=10, what="reload rejection")
    assert "setpoint_bar" in station.log()
    # The copy kept for outputs-off follows the accepted file, never the rejected one.
    kept = (station.dir / "station.last-good.yaml").read_text()
    assert "setpoint_bar: 3.4" in kept
    assert kept != station.config.read_text()
    assert proc.poll() is None
    assert station.status()["setpoint_bar"] == 3.4
    station.drain()
    station.wait_for("WATCHDOG=1")


@pytest.mark.asyncio
async def test_a_stalled_control_loop_stops_the_watchdog_pings(tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(tmp_path / "notify"))
    rx.setblocking(False)
    options = DemoOptions(speed=1.0, state_dir=tmp_path, live=False)
    from controller.config import load_config

    cfg = demo_config(load_config(EXAMPLE_CONFIG), options)
    daemon = demo_daemon(cfg, options)
    daemon.notifier = Notifier(str(tmp_path / "notify"))
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(daemon.run())

    async def next_message(within: float) -> str | None:
        try:
            data = await asyncio.wait_for(loop.sock_recv(rx, 4096), within)
        except TimeoutError:
            return None
        return data.decode()

    try:
        pings = 0
        async with asyncio.timeout(15):
            while pings < 2:
                msg = await next_message(5)
                pings += msg is not None and "WATCHDOG=1" in msg
        # Stall: the loop stops completing ticks (as a wedged task would).
        daemon.loop.tick = lambda now: daemon.loop.outputs  # type: ignore[assignment,method-assign,return-value]
        await next_message(1.0)  # a ping already in flight may still arrive
        silence_until = loop.time() + 3.0
        while loop.time() < silence_until:
            msg = await next_message(silence_until - loop.time())
            assert msg is None or "WATCHDOG=1" not in msg, "pinged while stalled"
    finally:
        daemon.stop.set()
        await task
        rx.close()


@pytest.mark.asyncio
async def test_a_full_buffer_raises_an_alarm(tmp_path: Path) -> None:
    from controller.config import load_config

    options = DemoOptions(speed=400.0, state_dir=tmp_path, live=False)
    cfg = demo_config(load_config(EXAMPLE_CONFIG), options)
    small = cfg.buffer.model_copy(update={"max_mb": 0.02, "commit_interval_s": 0.05})
    daemon = demo_daemon(cfg.model_copy(update={"buffer": small}), options)
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(60):
            while not daemon.core.alarms.is_active("buffer_evicting"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert daemon.buffer.evicted > 0
    finally:
        daemon.stop.set()
        await task


@pytest.mark.asyncio
async def test_a_disk_refusing_writes_raises_an_alarm_that_clears_when_it_writes_again(
    tmp_path: Path,
) -> None:
    from controller.config import load_config

    options = DemoOptions(speed=50.0, state_dir=tmp_path, live=False)
    cfg = demo_config(load_config(EXAMPLE_CONFIG), options)
    fast = cfg.buffer.model_copy(update={"commit_interval_s": 0.05})
    daemon = demo_daemon(cfg.model_copy(update={"buffer": fast}), options)
    task = asyncio.create_task(daemon.run())

    try:
        async with asyncio.timeout(30):
            while daemon.buffer.commits < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await limit_pages(daemon.buffer, None)  # the disk is full from here on
            while not daemon.core.alarms.is_active("buffer_write_failed"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert daemon.loop.stats.ticks > 0
        assert not task.done()  # control goes on without its disk
        await limit_pages(daemon.buffer, 1_000_000)
        async with asyncio.timeout(30):
            while daemon.core.alarms.is_active("buffer_write_failed"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert daemon.buffer.write_error is None
    finally:
        daemon.stop.set()
        await task


def test_outputs_off_reports_a_broken_station_file_without_touching_anything(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "station.yaml"
    bad.write_text("site:\n  id: x\npumps: 3\n")
    result = boosterd("outputs-off", "--config", str(bad))
    assert result.returncode == 2
    assert "pumps" in result.stderr
    assert "Traceback" not in result.stderr

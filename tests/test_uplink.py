"""Telemetry over a real Mosquitto broker: outages, SIGKILL, TLS, commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.config import load_config
from controller.config.schema import TlsConfig, UplinkConfig
from controller.control.core import ControlCore
from controller.state.build import station_status
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.uplink import Uplink
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker, free_port
from tests.support.waiting import wait_until

SITE = "test-site"


class Subscriber:
    """mosquitto_sub, an independent client, with a persistent session (QoS 1)."""

    def __init__(self, port: int, topic: str, out: Path, *extra: str) -> None:
        self.out = out
        self._fh = out.open("wb")
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c",
             "-i", f"sub-{os.getpid()}-{out.stem}", "-t", topic, "-d", *extra],
            stdout=self._fh, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # -d prints the protocol exchange: once SUBACK is in, nothing published is missed.
        wait_until(lambda: "SUBACK" in out.read_text(errors="replace"), timeout=10,
                   what=f"mosquitto_sub subscribed to {topic}")  # fmt: skip

    def messages(self) -> list[dict[str, object]]:
        # The last line may still be being written: only complete lines count.
        lines = self.out.read_text().split("\n")[:-1]
        return [json.loads(line) for line in lines if line.startswith("{")]

    def seqs(self) -> list[int]:
        return [int(m["seq"]) for m in self.messages()]  # type: ignore[call-overload]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self._fh.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory mosquitto can use: started as root it drops to its own user, which
    cannot enter pytest's private tmp_path."""
    d = Path(tempfile.mkdtemp(prefix="boosterd-mqtt-files-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def persistent_broker(shared_dir: Path) -> Iterator[Broker]:
    """A broker that keeps sessions and queued messages across its own restart."""
    store = shared_dir / "store"
    store.mkdir()
    store.chmod(0o777)
    broker = Broker(extra_config=f"persistence true\npersistence_location {store}/\n")
    broker.start()
    yield broker
    broker.close()


def writer(
    tmp_path: Path, port: int, prefix: str, total: int, rate: float = 20.0
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.telemetry_writer",
         "--db", str(tmp_path / "buf.sqlite3"), "--port", str(port), "--prefix", prefix,
         "--site", SITE, "--rate", str(rate),
         "--total", str(total), "--progress", str(tmp_path / "progress")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def progress(tmp_path: Path) -> int:
    try:
        return int((tmp_path / "progress").read_text())
    except (FileNotFoundError, ValueError):
        return 0


def assert_complete(seqs: list[int], upto: int) -> None:
    missing = sorted(set(range(1, upto + 1)) - set(seqs))
    assert not missing, f"{len(missing)} missing: {missing[:5]}...{missing[-5:]}"
    # In order: QoS 1 may repeat a message after a reconnect, never reorder the stream.
    # A replay interleaves live samples with the backlog (issue 14): the first arrivals
    # are two runs merged, the backlog and the live samples, each in seq order.
    firsts: dict[int, int] = {}
    for i, s in enumerate(seqs):
        firsts.setdefault(s, i)
    ordered = sorted(firsts, key=firsts.__getitem__)
    runs = [0, 0]  # the last seq of each run; greedy onto the highest tail below
    for s in ordered:
        fits = [i for i in (0, 1) if runs[i] < s]
        assert fits, f"seq {s} arrived after {runs}: neither run is in order"
        runs[max(fits, key=runs.__getitem__)] = s


@pytest.mark.slow
def test_a_30_s_broker_outage_loses_nothing(persistent_broker: Broker, tmp_path: Path,
                                             topic_root: str) -> None:  # fmt: skip
    sub = Subscriber(persistent_broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "sub.txt")
    total = 1000
    proc = writer(tmp_path, persistent_broker.port, topic_root, total)
    try:
        wait_until(lambda: len(sub.seqs()) >= 40, timeout=20, what="first telemetry")
        persistent_broker.stop()
        at_stop = progress(tmp_path)
        # The outage lasts while the controller records 30 s worth of samples (20/s).
        wait_until(lambda: progress(tmp_path) >= at_stop + 600, timeout=60, what="30 s of samples")
        persistent_broker.start()
        wait_until(lambda: total in sub.seqs(), timeout=90, what="the last seq")
        assert_complete(sub.seqs(), total)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sub.close()


def test_sigkill_loses_no_committed_sample_and_status_follows(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "sub.txt")
    status = Subscriber(broker.port, f"{topic_root}/{SITE}/status", tmp_path / "status.txt")
    proc = writer(tmp_path, broker.port, topic_root, total=10_000, rate=50)
    try:
        wait_until(lambda: len(sub.seqs()) >= 50, timeout=20, what="first telemetry")
        wait_until(lambda: any(m.get("online") for m in status.messages()), timeout=10,
                   what="status online")  # fmt: skip
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with sqlite3.connect(tmp_path / "buf.sqlite3") as db:
            # What a restart continues above: the newest row, or the meta mark once the
            # rows that held it are gone (controller/telemetry/buffer.py).
            committed = db.execute(
                "SELECT MAX(v) FROM (SELECT value AS v FROM meta WHERE key = 'last_seq'"
                " UNION ALL SELECT MAX(seq) FROM samples)"
            ).fetchone()[0]
        assert committed >= 50
        wait_until(lambda: status.messages()[-1].get("online") is False, timeout=15,
                   what="the Last Will: offline")  # fmt: skip
        proc = writer(tmp_path, broker.port, topic_root, total=20, rate=50)
        wait_until(lambda: max(sub.seqs(), default=0) >= committed + 20, timeout=30,
                   what="the restarted writer's samples")  # fmt: skip
        assert_complete(sub.seqs(), committed + 20)
        wait_until(lambda: status.messages()[-1].get("online") is True, timeout=10,
                   what="status online again")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sub.close()
        status.close()


def _certs(d: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, crt = (
        d / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt")
    )

    def run(*a: str) -> None:
        subprocess.run(a, check=True, capture_output=True)

    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ca, crt, key


def _tls_broker(shared_dir: Path, tmp_path: Path) -> tuple[Broker, int, Path, Path]:
    """A broker with a TLS listener that takes only user ``station``: the broker, its
    TLS port, its CA file, and a credentials file for the station."""
    ca, crt, key = _certs(shared_dir)
    passwd = shared_dir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "station", "s3cret-pw"],
                   check=True, capture_output=True)  # fmt: skip
    # mosquitto started as root reads these after dropping to its own user.
    for path in (ca, crt, key, passwd):
        path.chmod(0o755 if path.is_dir() else 0o644)
    tls_port = free_port()
    broker = Broker(extra_config=(
        f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n"
        f"password_file {passwd}\nper_listener_settings false\nallow_anonymous false\n"
    ))  # fmt: skip
    broker.start()
    creds = tmp_path / "mqtt"
    creds.write_text("station:s3cret-pw\n")
    return broker, tls_port, ca, creds


@pytest.mark.asyncio
async def test_tls_with_username_and_password(
    tmp_path: Path, shared_dir: Path, topic_root: str
) -> None:
    broker, tls_port, ca, creds = _tls_broker(shared_dir, tmp_path)
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="localhost", port=tls_port, topic_prefix=topic_root,
                       tls=TlsConfig(ca_file=str(ca)), credentials_file=str(creds))  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)
    sub = Subscriber(tls_port, f"{topic_root}/{SITE}/telemetry", tmp_path / "sub.txt",
                     "--cafile", str(ca), "-u", "station", "-P", "s3cret-pw")  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        for i in range(5):
            buf.append({"n": i})
        await buf.flush()
        async with asyncio.timeout(20):
            while len(sub.seqs()) < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert sub.seqs()[:5] == [1, 2, 3, 4, 5]
        assert uplink.connected
    finally:
        stop.set()
        await task
        await buf.close()
        sub.close()
        broker.close()
    assert "s3cret-pw" not in broker.log_path.read_text() if broker.log_path.exists() else True


@pytest.mark.asyncio
async def test_a_missing_ca_file_is_named_and_the_uplink_connects_once_it_appears(
    tmp_path: Path, shared_dir: Path, topic_root: str
) -> None:
    broker, tls_port, ca, creds = _tls_broker(shared_dir, tmp_path)
    missing = tmp_path / "pki" / "ca.pem"  # not provisioned yet
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="localhost", port=tls_port, topic_prefix=topic_root,
                       tls=TlsConfig(ca_file=str(missing)), credentials_file=str(creds),
                       reconnect_max_s=0.5)  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        async with asyncio.timeout(10):
            while uplink.last_error is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert uplink.last_error == f"cannot read TLS CA file {missing}: No such file or directory"
        assert not uplink.connected
        missing.parent.mkdir()
        shutil.copy(ca, missing)
        async with asyncio.timeout(10):
            while not uplink.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await buf.close()
        broker.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_commands_are_answered_and_alarms_sent_also_after_a_reconnect(
    broker: Broker, tmp_path: Path, topic_root: str, protocol: str
) -> None:
    core = ControlCore(load_config(EXAMPLE_CONFIG), now=0.0)
    commands = CommandProcessor(core)
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="127.0.0.1", port=broker.port, topic_prefix=topic_root,
                       protocol=protocol, reconnect_max_s=0.5)  # type: ignore[arg-type]  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=buf, commands=commands,
                    status=lambda: station_status(core.status()))  # fmt: skip
    base = f"{topic_root}/{SITE}"
    results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / "res.txt")
    alarms = Subscriber(broker.port, f"{base}/alarm", tmp_path / "alarm.txt")
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))

    async def publish(name: str, payload: dict[str, object]) -> None:
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
            "-t", f"{base}/cmd/{name}", "-m", json.dumps(payload),
        )  # fmt: skip
        await proc.wait()

    try:
        async with asyncio.timeout(10):
            while not uplink.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await publish("setpoint", {"id": "c1", "ts": time.time(), "value": 3.6})
        await publish("setpoint", {"id": "c2", "ts": time.time(), "value": 7.0})
        async with asyncio.timeout(10):
            while len(results.messages()) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        replies = {m["id"]: m for m in results.messages()}
        assert replies["c1"]["ok"] is True
        assert replies["c2"]["ok"] is False
        assert core.setpoint == 3.6
        uplink.publish_alarm({"id": "dry_run", "event": "raise"})
        async with asyncio.timeout(10):
            while not alarms.messages():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert alarms.messages()[0]["id"] == "dry_run"

        # The broker restarts without persistence: the uplink's subscription is gone
        # with it, so a command after the reconnect proves it was restored.
        results.close()
        broker.stop()
        broker.start()
        async with asyncio.timeout(15):
            while not (uplink.connected and uplink.reconnects >= 1):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / "res2.txt")
        await publish("setpoint", {"id": "c3", "ts": time.time(), "value": 3.2})
        async with asyncio.timeout(10):
            while not results.messages():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert results.messages()[0] == {"id": "c3", "ok": True, "error": None}
        assert core.setpoint == 3.2
    finally:
        stop.set()
        await task
        await buf.close()
        results.close()
        alarms.close()


class StallingLink:
    """A TCP relay to the broker that passes ``budget`` bytes per connection upstream,
    then stalls: a link too slow for a whole batch within the publish timeout."""

    def __init__(self, broker_port: int, budget: int) -> None:
        self.broker_port = broker_port
        self.budget = budget
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, budget: int | None
        ) -> None:
            while data := await src.read(4096):
                passed = data if budget is None else data[:budget]
                if budget is not None:
                    budget = max(0, budget - len(data))
                if passed:
                    dst.write(passed)
                    await dst.drain()

        try:
            await asyncio.wait(
                [asyncio.create_task(pump(c_reader, b_writer, self.budget)),
                 asyncio.create_task(pump(b_reader, c_writer, None))],
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            for w in (c_writer, b_writer):
                w.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.asyncio
async def test_a_link_too_slow_for_a_whole_batch_still_makes_progress(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    link = StallingLink(broker.port, budget=12_000)
    port = await link.start()
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "sub.txt")
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    total = 30
    for i in range(total):
        buf.append({"n": i, "pad": "x" * 1000})  # ~1 kB each: about 10 fit per connection
    await buf.flush()
    cfg = UplinkConfig(host="127.0.0.1", port=port, topic_prefix=topic_root, batch_size=50,
                       timeout_s=0.5, reconnect_max_s=0.2)  # fmt: skip
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    try:
        async with asyncio.timeout(30):
            while buf.stats()["rows"] > 0 or len(set(sub.seqs())) < total:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert link.connections >= 3  # no connection carried the whole batch
        assert_complete(sub.seqs(), total)
        assert uplink.published == total
    finally:
        stop.set()
        await task
        await buf.close()
        await link.close()
        sub.close()


@pytest.mark.asyncio
async def test_replaying_a_backlog_does_not_flood_the_log(
    broker: Broker, tmp_path: Path, topic_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    for i in range(300):
        buf.append({"n": i})
    await buf.flush()
    cfg = UplinkConfig(host="127.0.0.1", port=broker.port, topic_prefix=topic_root)
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING)
    task = asyncio.create_task(uplink.run(stop))
    try:
        async with asyncio.timeout(20):
            while uplink.published < 300:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await buf.close()
    # aiomqtt warns once per publish beyond its threshold; a batch in flight is normal.
    assert [r.getMessage() for r in caplog.records if r.name == "mqtt"] == []


def test_a_command_flood_logs_the_dropped_messages_once_a_minute_not_once_each() -> None:
    from controller.telemetry.uplink import _OncePerMinute

    flt = _OncePerMinute("Message queue is full")

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("mqtt", logging.WARNING, __file__, 1, msg, (), None)

    first = record("Message queue is full. Discarding message.")
    assert flt.filter(first) is True
    passed = [flt.filter(record("Message queue is full. Discarding message.")) for _ in range(500)]
    assert not any(passed)
    assert flt.suppressed == 500
    assert flt.filter(record("There are 12 pending publish calls.")) is True  # others untouched
    flt.period_s = 0.0
    again = record("Message queue is full. Discarding message.")
    assert flt.filter(again) is True
    assert "500 more" in again.getMessage()


class KickingLink:
    """A TCP relay to the broker that cuts every connection after ``after_s``: a broker
    (or firewall) that accepts the station and drops it again."""

    def __init__(self, broker_port: int, after_s: float) -> None:
        self.broker_port = broker_port
        self.after_s = after_s
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(4096):
                dst.write(data)
                await dst.drain()

        tasks = [asyncio.create_task(pump(c_reader, b_writer)),
                 asyncio.create_task(pump(b_reader, c_writer))]  # fmt: skip
        await asyncio.wait(tasks, timeout=self.after_s)
        for t in tasks:
            t.cancel()
        for w in (c_writer, b_writer):
            w.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("healthy_s", "expected"), [(30.0, [1.0, 2.0, 4.0]), (0.1, [1.0, 1.0, 1.0])]
)
async def test_the_reconnect_back_off_resets_only_after_a_healthy_connection(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy_s: float,
    expected: list[float],
) -> None:  # fmt: skip
    from structlog.testing import capture_logs

    import controller.telemetry.uplink as uplink_module

    monkeypatch.setattr(uplink_module, "HEALTHY_LINK_S", healthy_s)
    link = KickingLink(broker.port, after_s=0.3)
    port = await link.start()
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="127.0.0.1", port=port, topic_prefix="test/kick", reconnect_max_s=8)
    # Listening for commands is what notices the cut link at once.
    commands = CommandProcessor(ControlCore(load_config(EXAMPLE_CONFIG), now=0.0))
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=commands)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(uplink.run(stop))
        try:
            async with asyncio.timeout(20):
                while uplink.reconnects < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
            await buf.close()
            await link.close()
    retries = [e["retry_s"] for e in logs if e["event"] == "uplink down"]
    assert retries[:3] == expected


def test_the_reconnect_backoff_doubles_to_its_cap_and_starts_afresh_after_a_healthy_link() -> None:
    from controller.telemetry.uplink import HEALTHY_LINK_S, Backoff

    backoff = Backoff(8.0)
    steps = []
    for _ in range(6):
        steps.append(backoff.current)
        delay = backoff.next_delay()
        assert steps[-1] * 0.5 <= delay <= steps[-1]
    assert steps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.link_lost(HEALTHY_LINK_S - 1)  # kicked soon after connecting: keeps its step
    assert backoff.current == 8.0
    backoff.link_lost(None)  # never connected
    assert backoff.current == 8.0
    backoff.link_lost(HEALTHY_LINK_S)
    assert backoff.current == 1.0
    assert Backoff(0.5).current == 0.5  # a maximum below 1 s is the first step too

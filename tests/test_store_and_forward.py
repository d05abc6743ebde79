"""Issue 12 over a real broker: live telemetry with the disk refusing writes, alarm events
stored and forwarded like samples, the boot counter, the Last Will's meaning."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.config.schema import UplinkConfig
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.uplink import Uplink
from tests.support.broker import Broker, free_port
from tests.support.disk_full import limit_pages
from tests.support.waiting import wait_until
from tests.test_uplink import SITE, Subscriber, writer


def _uplink(buf: SampleBuffer, port: int, prefix: str) -> Uplink:
    cfg = UplinkConfig(host="127.0.0.1", port=port, topic_prefix=prefix, reconnect_max_s=0.5)
    return Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)


async def _until(condition: Callable[[], object], what: str) -> None:
    """Poll a condition of another process (a subscriber's file) for up to 15 s."""
    try:
        async with asyncio.timeout(15.0):
            while not condition():  # noqa: ASYNC110  (no event to wait on across processes)
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.asyncio
async def test_live_telemetry_and_alarms_flow_while_the_disk_refuses_writes(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE, commit_interval_s=0.05)
    await buf.open()
    uplink = _uplink(buf, broker.port, topic_root)
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "t.txt")
    alarms = Subscriber(broker.port, f"{topic_root}/{SITE}/alarm", tmp_path / "a.txt")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(buf.run(stop)), asyncio.create_task(uplink.run(stop))]
    try:
        first = buf.append({"n": 0, "pad": "x" * 500})
        await _until(lambda: first in sub.seqs(), "the first sample")
        await limit_pages(buf, None)  # the disk is full from here on
        seqs = []
        errors = set()
        for i in range(1, 81):
            seqs.append(buf.append({"n": i, "pad": "x" * 500}))
            await asyncio.sleep(0.01)  # a station ticking: samples arrive over time
            errors.add(buf.write_error)
        # Looked at while it lasts: live delivery empties the memory queue so fast that
        # the one-row probe may fit in the pages freed by the delivered first sample.
        assert any(e is not None and "full" in e for e in errors), errors
        uplink.publish_alarm({"id": "buffer_write_failed", "event": "raise"})
        # Every live sample went out from memory, in order, while nothing reached the file.
        await _until(lambda: seqs[-1] in sub.seqs(), "the last live sample")
        assert sub.seqs() == [first, *seqs]
        await _until(alarms.messages, "the alarm from memory")
        assert alarms.messages()[0]["id"] == "buffer_write_failed"
        assert buf.stats()["pending"] == 0  # delivered ones are never written
        assert buf.evicted == 0
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sub.close()
        alarms.close()
    await buf.close()


@pytest.mark.asyncio
async def test_alarm_events_are_forwarded_in_order_after_an_outage_and_a_restart(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    path = tmp_path / "b.sqlite3"
    alarms = Subscriber(broker.port, f"{topic_root}/{SITE}/alarm", tmp_path / "a.txt")
    # The link is down (nothing listens on this port) while the alarms happen...
    buf = SampleBuffer(path, site=SITE, commit_interval_s=0.05)
    await buf.open()
    down = _uplink(buf, free_port(), topic_root)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(buf.run(stop)), asyncio.create_task(down.run(stop))]
    events = [("dry_run", "raise"), ("high_pressure", "raise"), ("dry_run", "clear")]
    for alarm_id, event in events:
        down.publish_alarm({"id": alarm_id, "event": event})
    await _until(lambda: buf.stats()["alarms_pending"] == 0, "the alarms committed")
    stop.set()
    await asyncio.gather(*tasks)
    first_boot = buf.boot
    await buf.close()
    # ... and the controller restarts before the link comes back.
    buf = SampleBuffer(path, site=SITE, commit_interval_s=0.05)
    await buf.open()
    up = _uplink(buf, broker.port, topic_root)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(buf.run(stop)), asyncio.create_task(up.run(stop))]
    try:
        await _until(lambda: len(alarms.messages()) >= 3, "the stored alarms")
        got = alarms.messages()
        assert [(m["id"], m["event"]) for m in got] == events
        assert [m["seq"] for m in got] == [1, 2, 3]
        assert {m["boot"] for m in got} == {first_boot}  # stamped by the boot that raised them
        # An alarm raised just before an orderly stop still goes out with the stop.
        up.publish_alarm({"id": "dry_run", "event": "raise"})
        stop.set()
        await asyncio.gather(*tasks)
        await _until(lambda: 4 in [m["seq"] for m in alarms.messages()], "the alarm at stop")
        # QoS 1 may repeat what was in flight at the stop; SCADA drops repeats by seq.
        firsts = list(dict.fromkeys(m["seq"] for m in alarms.messages()))
        assert firsts == [1, 2, 3, 4]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        alarms.close()
        await buf.close()


def test_the_last_will_says_offline_without_a_stale_ts(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    status = Subscriber(broker.port, f"{topic_root}/{SITE}/status", tmp_path / "s.txt")
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "t.txt")
    proc = writer(tmp_path, broker.port, topic_root, total=10_000, rate=20)
    try:
        wait_until(lambda: len(sub.seqs()) >= 5, timeout=20, what="first telemetry")
        assert all("boot" in m for m in sub.messages())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: status.messages()[-1].get("online") is False, timeout=20,
                   what="the Last Will")  # fmt: skip
        will = status.messages()[-1]
        assert will["will"] is True
        assert "ts" not in will  # composed at connect: its time would be a lie
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        status.close()
        sub.close()

"""Issue 12 over a real broker: live telemetry with the disk refusing writes, alarm events
stored and forwarded like samples, the boot counter, the Last Will's meaning."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.config.schema import UplinkConfig
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.encoding import TelemetrySchema, decode_sample
from controller.telemetry.uplink import Uplink
from tests.support.broker import Broker, free_port
from tests.support.telemetry_writer import SAMPLE
from tests.support.waiting import wait_until
from tests.test_uplink import SITE, Subscriber, writer


def _uplink(buf: SampleBuffer, port: int, prefix: str) -> Uplink:
    cfg = UplinkConfig(host="127.0.0.1", port=port, topic_prefix=prefix, reconnect_max_s=0.5)
    return Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)


async def _read_only(buf: SampleBuffer) -> None:
    """The card refuses every write from here on (a failing SD card turns read-only).
    A merely full file is not enough here: the uplink delivers within milliseconds of a
    commit, and the delivered rows' pages are reused by the next commit."""
    await buf._call(buf._conn().execute, "PRAGMA query_only = ON")


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
        await _read_only(buf)  # the disk refuses writes from here on
        seqs = []
        for i in range(1, 81):
            seqs.append(buf.append({"n": i, "pad": "x" * 500}))
            await asyncio.sleep(0.01)  # a station ticking: samples arrive over time
        await _until(lambda: buf.write_error is not None, "the disk error")
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
    await buf._call(buf._conn().execute, "PRAGMA query_only = OFF")  # the card is replaced
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


@pytest.mark.asyncio
async def test_live_samples_overtake_a_backlog_and_both_runs_stay_in_order(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE, commit_interval_s=0.05,
                       max_pending=10_000)  # fmt: skip
    await buf.open()
    backlog = [buf.append({"n": i, "pad": "x" * 150}) for i in range(4000)]
    await buf.flush()
    cfg = UplinkConfig(
        host="127.0.0.1", port=broker.port, topic_prefix=topic_root, batch_size=50, max_inflight=20
    )  # a narrow window: a long replay
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "t.txt")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(buf.run(stop)), asyncio.create_task(uplink.run(stop))]
    try:
        await _until(lambda: uplink.published >= 100, "the replay under way")
        live = buf.append({"n": "live"})
        await _until(lambda: live in sub.seqs(), "the live sample")
        arrived = sub.seqs()
        assert backlog[-1] not in arrived  # it went ahead of the backlog's tail
        await _until(lambda: backlog[-1] in sub.seqs(), "the end of the backlog")
        seqs = list(dict.fromkeys(sub.seqs()))
        assert sorted(seqs) == [*backlog, live]  # each once (as first arrivals), none lost
        assert [s for s in seqs if s != live] == backlog  # the backlog in order
        # Every row acknowledged is deleted, the live one too once the backlog joins it.
        await _until(lambda: buf.stats()["backlog"] == 0, "an empty buffer")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sub.close()
    await buf.close()


@pytest.mark.asyncio
async def test_an_idle_uplink_waits_for_the_buffer_rather_than_polling_it(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE, commit_interval_s=0.05)
    await buf.open()
    uplink = _uplink(buf, broker.port, topic_root)
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "t.txt")
    fetches = [0]
    fetch = buf.fetch

    async def counted(*, after_seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        fetches[0] += 1
        return await fetch(after_seq=after_seq, limit=limit)

    buf.fetch = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(buf.run(stop)), asyncio.create_task(uplink.run(stop))]
    try:
        first = buf.append({"n": 0})
        await _until(lambda: first in sub.seqs(), "the first sample")
        before = fetches[0]
        idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):  # two idle seconds: 8 looks when it polled
                await idle.wait()
        assert fetches[0] - before <= 1
        # ... and a new sample still goes out at once: the commit wakes the replay.
        nxt = buf.append({"n": 1})
        await _until(lambda: nxt in sub.seqs(), "the next sample")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sub.close()
    await buf.close()


@pytest.mark.asyncio
async def test_scada_decodes_a_sample_with_the_retained_schema_it_names(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE, commit_interval_s=0.05)
    await buf.open()
    uplink = _uplink(buf, broker.port, topic_root)
    sub = Subscriber(broker.port, f"{topic_root}/{SITE}/telemetry", tmp_path / "t.txt")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(buf.run(stop)), asyncio.create_task(uplink.run(stop))]
    try:
        seq = buf.append(SAMPLE)
        await _until(lambda: seq in sub.seqs(), "the sample")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sub.close()
    await buf.close()
    msg = sub.messages()[-1]
    # A client subscribing afterwards gets the schema (retained) and decodes the sample.
    schemas = Subscriber(broker.port, f"{topic_root}/{SITE}/schema/+", tmp_path / "s.txt")
    try:
        await _until(schemas.messages, "the retained schema")
        by_id = {str(m["id"]): TelemetrySchema.from_dict(m) for m in schemas.messages()}
    finally:
        schemas.close()
    long = decode_sample(msg, by_id[str(msg["sch"])])
    assert long["values"] == {"discharge_pressure": {"v": 3.01, "unit": "bar", "q": "good"}}
    assert long["pumps"]["P1"]["state"] == "running"
    assert long["seq"] == seq

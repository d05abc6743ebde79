"""The SQLite store-and-forward buffer: seq across restarts, batching, caps, damaged files."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from controller.control.core import ControlOutputs, PumpInputs
from controller.runtime.loop import make_sample
from controller.telemetry.buffer import CEILING_BLOCK, SampleBuffer
from controller.telemetry.encoding import decode_sample, loads
from controller.telemetry.highwater import HighWaterFile
from controller.values import BadReason, Reading
from tests.support.disk_full import limit_pages


@pytest.mark.asyncio
async def test_seq_keeps_rising_across_restarts_even_after_delivery(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    seqs = [buf.append({"n": i}) for i in range(5)]
    await buf.flush()
    await buf.delete_upto(seqs[-1])  # all delivered: the table is empty
    await buf.close()
    again = SampleBuffer(path, site="s1")
    await again.open()
    assert again.append({"n": 5}) == seqs[-1] + 1
    await again.close()


@pytest.mark.asyncio
async def test_appends_are_committed_in_one_transaction_per_flush(tmp_path: Path) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1")
    await buf.open()
    for i in range(500):
        buf.append({"n": i})
    assert buf.stats()["pending"] == 500
    assert await buf.flush() == 500
    assert buf.commits == 1
    rows = await buf.fetch(after_seq=0, limit=1000)
    assert [loads(r[2])["n"] for r in rows] == list(range(500))
    assert rows[0][1].endswith("Z")
    await buf.close()


@pytest.mark.asyncio
async def test_uncommitted_samples_are_not_on_disk_committed_ones_are(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    buf.append({"n": 1})
    await buf.flush()
    buf.append({"n": 2})  # not flushed: a power cut now loses exactly this
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1
    await buf.close()


@pytest.mark.asyncio
async def test_age_cap_evicts_oldest_and_counts(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", max_age_days=1, clock=lambda: now[0])
    await buf.open()
    for i in range(10):
        buf.append({"n": i})
    await buf.flush()
    now[0] += 2 * 86400
    buf.append({"n": 10})
    await buf.flush()
    rows = await buf.fetch(after_seq=0, limit=100)
    assert [loads(r[2])["n"] for r in rows] == [10]
    assert buf.stats()["evicted"] == 10
    await buf.close()


@pytest.mark.asyncio
async def test_size_cap_evicts_oldest_first(tmp_path: Path) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", max_mb=0.25)
    await buf.open()
    for _ in range(20):
        for i in range(200):
            buf.append({"n": i, "pad": "x" * 200})
        await buf.flush()
    stats = buf.stats()
    assert stats["evicted"] > 0
    rows = await buf.fetch(after_seq=0, limit=1)
    assert rows[0][0] > 1  # the oldest went first
    assert (tmp_path / "b.sqlite3").stat().st_size < 1.5 * 1024 * 1024
    await buf.close()


@pytest.mark.asyncio
async def test_a_damaged_file_is_quarantined_and_a_fresh_buffer_works(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    last = 0
    for i in range(100):
        last = buf.append({"n": i})
    await buf.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the header page
    path.write_bytes(bytes(data))
    fresh = SampleBuffer(path, site="s1")
    await fresh.open()
    assert fresh.stats()["corrupt_recovered"] == 1
    assert list(tmp_path.glob("b.sqlite3.corrupt-*"))
    assert fresh.append({"n": "after"}) > last  # seq still rises
    await fresh.flush()
    assert len(await fresh.fetch(after_seq=0, limit=10)) == 1
    await fresh.close()


@pytest.mark.asyncio
async def test_the_event_loop_stays_responsive_during_a_big_flush(tmp_path: Path) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", max_pending=100_000)
    await buf.open()
    for i in range(50_000):
        buf.append({"n": i, "values": {"p": {"v": 3.0, "unit": "bar", "q": "good"}}})
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await buf.flush()
    flush_s = time.perf_counter() - started
    task.cancel()
    # The flush took many ticker periods, and the ticker kept running through it.
    assert len(gaps) >= 3
    assert max(gaps) < max(0.25, flush_s / 3)
    await buf.close()


@pytest.mark.asyncio
async def test_a_disk_refusing_writes_keeps_samples_in_memory_up_to_a_cap(
    tmp_path: Path,
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", commit_interval_s=0.01, max_pending=200)
    await buf.open()
    buf.append({"n": 0, "pad": "x" * 500})
    await buf.flush()
    await limit_pages(buf, None)  # the disk is full from here on
    stop = asyncio.Event()
    flusher = asyncio.create_task(buf.run(stop))
    try:
        seqs = []
        for i in range(1, 1001):
            seqs.append(buf.append({"n": i, "pad": "x" * 500}))
            if i % 50 == 0:
                await asyncio.sleep(0.02)  # let the flusher try (and fail) in between
        async with asyncio.timeout(5):
            while buf.write_error is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert "full" in buf.write_error
        stats = buf.stats()
        assert stats["pending"] <= 200
        assert stats["write_error"] == buf.write_error
        assert buf.evicted == 1000 - stats["pending"]  # every dropped sample is counted
        # The card is replaced / space freed: the newest waiting samples reach the disk.
        await limit_pages(buf, 1_000_000)
        async with asyncio.timeout(5):
            while buf.stats()["write_error"] is not None or buf.stats()["pending"]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await flusher
    rows = await buf.fetch(after_seq=0, limit=2000)
    on_disk = [r[0] for r in rows]
    assert on_disk[0] == 1  # the one committed before the disk filled
    assert on_disk[1:] == seqs[-len(on_disk) + 1 :]  # then the newest, in order, no gap
    assert len(on_disk) - 1 == 1000 - buf.evicted
    await buf.close()


# -- power cuts, damaged files, wrong clocks, disks refusing writes (issue 12) ------------


@pytest.mark.asyncio
async def test_a_fresh_buffer_has_its_meta_and_boot_on_disk_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    with sqlite3.connect(path) as db:  # another reader sees what open() committed
        assert dict(db.execute("SELECT key, value FROM meta"))["boot"] == 1
    await buf.close()
    for expected in (2, 3):
        again = SampleBuffer(path, site="s1")
        await again.open()
        assert again.boot == expected
        await again.close()


@pytest.mark.asyncio
async def test_after_a_damaged_file_seq_continues_just_above_what_was_handed_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    last = 0
    for i in range(300):
        last = buf.append({"n": i})
    await buf.flush()
    boot = buf.boot
    await buf.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    fresh = SampleBuffer(path, site="s1")
    await fresh.open()
    seq = fresh.append({"n": "after"})
    # Above everything before, by at most one reservation block: never Unix milliseconds.
    assert last < seq <= last + CEILING_BLOCK + 1
    assert fresh.boot == boot + 1  # the boot counter lives beside the damaged file too
    await fresh.close()


@pytest.mark.asyncio
async def test_a_torn_high_water_slot_falls_back_to_the_other(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    buf.append({"n": 1})
    await buf.flush()  # the first commit reserves a ceiling: a second record generation
    await buf.close()
    restarted = SampleBuffer(path, site="s1")
    await restarted.open()  # the boot counter: a third, the one torn below
    await restarted.close()
    record = HighWaterFile(Path(f"{path}.seq"))
    newest = record.load()
    raw = bytearray(record.path.read_bytes())
    slot = newest.gen % 2
    raw[slot * 512 + 20 : slot * 512 + 40] = b"#" * 20  # a power cut mid-write
    record.path.write_bytes(bytes(raw))
    older = HighWaterFile(record.path).load()
    assert older.gen == newest.gen - 1
    path.unlink()  # and the buffer file is gone too: the older ceiling still holds
    again = SampleBuffer(path, site="s1")
    await again.open()
    assert again.append({"n": 2}) > 1
    await again.close()


@pytest.mark.asyncio
async def test_samples_stamped_before_the_clock_is_set_are_flagged_and_never_aged_out(
    tmp_path: Path,
) -> None:
    now = [86_400.0]  # 1970-01-02: a Pi without RTC or network
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", max_age_days=1, clock=lambda: now[0])
    await buf.open()
    before = [buf.append({"n": i}) for i in range(5)]
    await buf.flush()
    now[0] = 1_800_000_000.0  # network time arrives: 2027
    after = [buf.append({"n": i}) for i in range(5, 8)]
    await buf.flush()
    now[0] += 3600.0  # and a +1 h step later
    await buf.flush()
    rows = await buf.fetch(after_seq=0, limit=100)
    assert [r[0] for r in rows] == before + after  # nothing evicted, order by seq
    assert buf.evicted == 0
    assert [loads(r[2]).get("ts_unsynced", False) for r in rows] == [True] * 5 + [False] * 3
    await buf.close()


@pytest.mark.asyncio
async def test_the_age_cap_waits_while_the_clock_is_not_synchronised(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    synced = [True]
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", max_age_days=1,
                       clock=lambda: now[0], clock_synced=lambda: synced[0])  # fmt: skip
    await buf.open()
    buf.append({"n": 0})
    await buf.flush()
    synced[0] = False
    now[0] += 5 * 86400.0  # a wrong step of the clock, not (yet) confirmed by sync
    buf.append({"n": 1})
    await buf.flush()
    assert buf.evicted == 0
    synced[0] = True  # confirmed: now the first sample really is five days old
    buf.append({"n": 2})
    await buf.flush()
    assert buf.evicted == 1
    await buf.close()


@pytest.mark.asyncio
async def test_a_disk_refusing_writes_still_hands_out_live_rows_in_order(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1", commit_interval_s=0.01)
    await buf.open()
    committed = [buf.append({"n": i, "pad": "x" * 500}) for i in range(3)]
    await buf.flush()
    await limit_pages(buf, None)
    live = [buf.append({"n": i, "pad": "x" * 500}) for i in range(3, 40)]
    await buf.flush_or_keep()
    assert buf.write_error is not None
    rows = await buf.fetch(after_seq=0, limit=100)
    assert [r[0] for r in rows] == committed + live
    await buf.delete_upto(live[-1])  # the broker has them all: nothing left to write
    assert buf.stats()["pending"] == 0
    alarm = buf.append_alarm({"id": "buffer_write_failed", "event": "raise"})
    assert [r[0] for r in await buf.fetch_alarms(after_seq=0, limit=10)] == [alarm]
    await buf.close()
    # A restart (the disk still full) never numbers those published samples again.
    again = SampleBuffer(path, site="s1")
    await again.open()
    assert again.append({"n": "next"}) > live[-1]
    assert again.append_alarm({"id": "x", "event": "raise"}) > alarm
    await again.close()


@pytest.mark.asyncio
async def test_alarm_events_are_stored_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1")
    await buf.open()
    seqs = [buf.append_alarm({"id": f"a{i}", "event": "raise", "v": float("nan")})
            for i in range(5)]  # fmt: skip
    await buf.close()  # an orderly stop flushes them
    again = SampleBuffer(path, site="s1")
    await again.open()
    rows = await again.fetch_alarms(after_seq=0, limit=10)
    assert [r[0] for r in rows] == seqs
    assert [loads(r[2])["id"] for r in rows] == [f"a{i}" for i in range(5)]
    assert loads(rows[0][2])["v"] is None  # encoded by dumps(): never a NaN token on disk
    await again.delete_alarms_upto(seqs[2])
    assert [r[0] for r in await again.fetch_alarms(after_seq=0, limit=10)] == seqs[3:]
    assert again.append_alarm({"id": "b", "event": "clear"}) == seqs[-1] + 1
    await again.close()


# -- issue 14: compact samples, flat commit cost -------------------------------------------


def _station_sample(bad: bool) -> dict[str, object]:
    readings = {
        "suction_pressure": Reading.ok("suction_pressure", 0.9975, "bar"),
        "discharge_pressure": Reading.ok("discharge_pressure", 2.564, "bar"),
        "volume_total": Reading.ok("volume_total", 987654.3, "m3"),
    }
    if bad:
        readings["discharge_pressure"] = Reading.bad(
            "discharge_pressure", "bar", BadReason.WIRE_BREAK, "0.00 mA"
        )
    out = ControlOutputs(
        relays={"P1": False, "P2": True},
        mode="auto",
        setpoint_bar=3.0,
        demand=1.41274,
        state="auto",
        speeds={"P2": 0.8125},
        pump_states={"P1": "locked out", "P2": "running"},
        lockouts={"P1": "motor protection tripped"},
    )
    pumps = {"P1": PumpInputs(feedback=None, fault=True), "P2": PumpInputs(True, False)}
    return make_sample(readings, out, pumps)


@pytest.mark.asyncio
async def test_a_sample_is_stored_as_published_and_decodes_to_the_long_form(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite3"
    buf = SampleBuffer(path, site="s1", clock=lambda: 1_800_000_000.25)
    await buf.open()
    seqs = [buf.append(_station_sample(bad)) for bad in (False, True)]
    await buf.flush()
    rows = await buf.fetch(after_seq=0, limit=10)
    await buf.close()
    payload = rows[1][2]
    with sqlite3.connect(path) as db:  # the stored bytes are the bytes fetched to publish
        stored = db.execute("SELECT data FROM samples WHERE seq = ?", (seqs[1],)).fetchone()[0]
    assert stored == payload
    msg = loads(payload)
    assert msg["v"] == 2
    assert msg["seq"] == seqs[1]
    assert msg["ts"] == 1_800_000_000_250
    assert "unit" not in payload.decode()
    assert "site" not in msg
    # The schema survives a restart: a backlog decodes after it.
    again = SampleBuffer(path, site="s1", clock=lambda: 1_800_000_000.25)
    await again.open()
    schema = again.schemas[msg["sch"]]
    await again.close()
    long = decode_sample(payload, schema)
    assert long["values"] == {
        "suction_pressure": {"v": 0.9975, "unit": "bar", "q": "good"},
        "discharge_pressure": {"v": None, "unit": "bar", "q": "bad", "reason": "wire_break",
                               "detail": "0.00 mA"},
        "volume_total": {"v": 987654.3, "unit": "m3", "q": "good"},
    }  # fmt: skip
    assert long["pumps"] == {
        "P1": {"on": False, "feedback": None, "fault": True, "state": "locked out",
               "lockout": "motor protection tripped"},
        "P2": {"on": True, "feedback": True, "fault": False, "state": "running",
               "speed_pct": 81.25},
    }  # fmt: skip
    assert (long["mode"], long["state"], long["setpoint_bar"], long["demand"]) == (
        "auto", "auto", 3.0, 1.4127,
    )  # fmt: skip
    assert "bad" not in loads(rows[0][2])  # quality only when bad


@pytest.mark.asyncio
async def test_a_row_of_the_previous_release_is_sent_in_its_own_format(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    with sqlite3.connect(path) as db:  # a buffer as format 1 left it: body text, ISO ts
        db.execute("CREATE TABLE samples (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, "
                   "data TEXT NOT NULL, synced INTEGER NOT NULL DEFAULT 1)")  # fmt: skip
        db.execute("INSERT INTO samples VALUES (7, '2027-01-01T00:00:00.000Z', '{\"n\": 1}', 1)")
    buf = SampleBuffer(path, site="s1", clock=lambda: 1_800_000_000.0)
    await buf.open()
    rows = await buf.fetch(after_seq=0, limit=10)
    assert loads(rows[0][2]) == {"seq": 7, "boot": buf.boot, "ts": "2027-01-01T00:00:00.000Z",
                                 "site": "s1", "n": 1}  # fmt: skip
    assert buf.append({"n": 2}) == 8
    await buf.close()


@pytest.mark.asyncio
async def test_age_cap_evicts_the_old_head_by_seq_and_keeps_unsynced_and_young_rows(
    tmp_path: Path,
) -> None:
    now = [1_800_000_000.0]
    synced = [False]
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", max_age_days=1,
                       clock=lambda: now[0], clock_synced=lambda: synced[0])  # fmt: skip
    await buf.open()
    buf.append({"n": "unsynced"})  # stamped before sync: never old
    synced[0] = True
    for i in range(3):
        buf.append({"n": i})
    await buf.flush()
    now[0] += 2 * 86400
    buf.append({"n": "young"})
    now[0] -= 3600  # the clock stepped back an hour: a row stamped older behind a young one
    buf.append({"n": "behind"})
    await buf.flush()
    rows = await buf.fetch(after_seq=0, limit=100)
    assert [loads(r[2])["n"] for r in rows] == ["unsynced", "young", "behind"]
    assert buf.evicted == 3
    await buf.close()


@pytest.mark.asyncio
async def test_a_commit_costs_the_same_with_1k_and_20k_rows_waiting(tmp_path: Path) -> None:
    """SQLite's own instruction count (not a timer): a commit, the age cap's run due in
    it, does the same work whatever the backlog; it used to scan every row."""

    async def steps_per_commit(rows: int) -> int:
        now = [1_800_000_000.0 - rows]
        buf = SampleBuffer(tmp_path / f"b{rows}.sqlite3", site="s1", max_pending=rows + 1,
                           clock=lambda: now[0])  # fmt: skip
        await buf.open()
        for i in range(rows):
            buf.append(_station_sample(i % 50 == 0))
            now[0] += 1.0
        await buf.flush()
        counted = [0]

        def count() -> int:
            counted[0] += 1
            return 0

        await buf._call(buf._conn().set_progress_handler, count, 100)
        now[0] += 120  # the age cap is due at the measured commit
        for _ in range(3):
            buf.append(_station_sample(False))
        await buf.flush()
        await buf.close()
        return counted[0]

    small, large = await steps_per_commit(1_000), await steps_per_commit(20_000)
    assert large <= 1.5 * small + 10, (small, large)


@pytest.mark.asyncio
async def test_the_age_cap_runs_once_a_minute_not_at_every_commit(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", clock=lambda: now[0])
    await buf.open()
    statements: list[str] = []
    await buf._call(buf._conn().set_trace_callback, statements.append)
    for _ in range(150):  # 150 commits, one a second
        buf.append({"n": 1})
        await buf.flush()
        now[0] += 1.0
    walks = [
        s for s in statements if s.startswith("SELECT seq FROM samples WHERE synced = 1 AND NOT")
    ]
    assert 2 <= len(walks) <= 3
    await buf.close()

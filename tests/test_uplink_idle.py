"""The replay goes idle only when nothing is left to send (issue 13, F4): a full window
at fetch time is not "no rows", even when every publish in it is acknowledged before
the round ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import controller.telemetry.uplink as uplink_module
from controller.config.schema import UplinkConfig
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.uplink import Uplink
from tests.support.broker import Broker

SITE = "test-site"


@pytest.mark.asyncio
async def test_rows_committed_while_nothing_else_happens_are_sent_without_an_idle_wait(
    broker: Broker, tmp_path: Path, topic_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle wait would now last the whole test: any wait with rows left shows.
    monkeypatch.setattr(uplink_module, "IDLE_WAIT_S", 3600.0)
    buf = SampleBuffer(tmp_path / "b.sqlite3", site=SITE)
    await buf.open()
    cfg = UplinkConfig(host="127.0.0.1", port=broker.port, topic_prefix=topic_root)
    uplink = Uplink(cfg, site=SITE, buffer=buf, status=dict, commands=None)
    stop = asyncio.Event()
    task = asyncio.create_task(uplink.run(stop))
    total = 3000  # 30 batches, 150 windows: above the split, all on the live flight
    try:
        async with asyncio.timeout(10):
            while not uplink.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        # The plant stands still: one commit, then none (nothing sets samples_ready).
        for i in range(total):
            buf.append({"n": i})
        await buf.flush()
        async with asyncio.timeout(20):
            while uplink.published < total:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert buf.stats()["rows"] == 0
    finally:
        stop.set()
        await task
        await buf.close()

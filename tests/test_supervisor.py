"""The daemon's supervisor: a subsystem's restart back-off starts afresh after a healthy run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from controller.config import load_config
from harness.demo import DemoOptions, demo_config, demo_daemon
from tests.conftest import EXAMPLE_CONFIG


@pytest.mark.asyncio
async def test_the_back_off_doubles_on_quick_failures_and_resets_after_a_healthy_run(
    tmp_path: Path,
) -> None:
    options = DemoOptions(speed=1.0, state_dir=tmp_path, live=False)
    daemon = demo_daemon(demo_config(load_config(EXAMPLE_CONFIG), options), options)
    # Seen: seven poison messages left the uplink's restart delay at 60 s for good.
    healthy_run = [False, False, True]  # which runs last past healthy_s
    runs = 0

    async def subsystem(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs > len(healthy_run):
            stop.set()
            return
        if healthy_run[runs - 1]:
            await asyncio.sleep(0.3)
        raise RuntimeError(f"failure {runs}")

    with capture_logs() as logs:
        async with asyncio.timeout(20):
            await daemon._supervise("uplink", subsystem, healthy_s=0.2)
    retries = [e["retry_s"] for e in logs if e["event"] == "uplink failed; restarting"]
    assert retries == [1.0, 2.0, 1.0]

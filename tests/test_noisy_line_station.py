"""The whole station through a noisy RS-485 line: pressure held, no extra pump starts.

The simulated station is read through the fault relay by the real acquisition and run
by the real control core, in simulated time (tests/support/noisy_station.py). The same
run on a clean line is the reference. Longer runs: bench/noisy_line.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.noisy_station import STOP_STATES, Run, modbus_thread, run_station
from tests.support.serial_relay import LineFaults

RUN_S = 600.0  # simulated seconds per run
NOISY = LineFaults(reply_flip_rate=0.01, request_flip_rate=0.01)


@pytest.fixture(scope="module")
def aio_thread() -> Iterator[asyncio.AbstractEventLoop]:
    with modbus_thread() as loop:
        yield loop


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, aio_thread: asyncio.AbstractEventLoop) -> Run:
    """The reference: the same station on a clean line."""
    return run_station(
        tmp_path_factory.mktemp("clean"), aio_thread, LineFaults(), seed=1, run_s=RUN_S
    )


def test_one_percent_corrupted_frames_keep_the_pressure_and_add_no_starts(
    tmp_path: Path, aio_thread: asyncio.AbstractEventLoop, clean: Run
) -> None:
    noisy = run_station(tmp_path, aio_thread, NOISY, seed=7, run_s=RUN_S)
    # The line really was noisy, and acquisition saw it.
    assert noisy.relay.stats.replies_flipped >= 5, noisy.relay.stats
    assert noisy.relay.stats.requests_flipped >= 5, noisy.relay.stats
    line_errors = sum(sum(s["line_errors"].values()) for s in noisy.acq_stats.values())
    assert line_errors >= 10, noisy.acq_stats
    assert clean.relay.stats.replies_flipped == 0
    # The station never stopped for it...
    states = {state for _, _, state in noisy.settled()}
    assert not states & STOP_STATES, states
    assert not any(s["backing_off"] for s in noisy.acq_stats.values())
    # ...kept its pressure as on a clean line...
    clean_min = min(p for _, p, _ in clean.settled())
    noisy_min = min(p for _, p, _ in noisy.settled())
    assert noisy_min >= clean_min - 0.1, (noisy_min, clean_min)
    # ...and started no pump more often.
    assert clean.starts >= 1
    assert noisy.starts <= clean.starts, (noisy.starts, clean.starts)


def test_the_same_line_without_repeats_or_hold_stops_the_station(
    tmp_path: Path, aio_thread: asyncio.AbstractEventLoop, clean: Run
) -> None:
    """The line above is noisy enough to matter: with neither repeats nor a hold, every
    corrupted suction reading stops all pumps (the behaviour issue 12 reported)."""
    bare = run_station(tmp_path, aio_thread, NOISY, seed=7, run_s=RUN_S, retries=0, hold_s=0.0)
    assert bare.stop_episodes() >= 1
    assert bare.starts > clean.starts
    assert min(p for _, p, _ in bare.settled()) < min(p for _, p, _ in clean.settled()) - 1.0

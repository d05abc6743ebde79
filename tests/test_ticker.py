"""The control ticker keeps a fixed rate on the monotonic clock and never piles up."""

from __future__ import annotations

import pytest

from controller.ticker import FixedRateTicker, Tick


class FakeTime:
    """A monotonic clock that only moves when the code sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def _collect(
    ticker: FixedRateTicker, n: int, t: FakeTime, work: list[float] | None = None
) -> list[Tick]:
    """Run ``n`` ticks; after tick i the work takes ``work[i % len(work)]`` seconds."""
    ticks: list[Tick] = []
    async for tick in ticker:
        ticks.append(tick)
        if len(ticks) == n:
            break
        if work:
            t.now += work[(len(ticks) - 1) % len(work)]
    return ticks


@pytest.mark.asyncio
async def test_deadlines_do_not_drift_with_work_jitter() -> None:
    t = FakeTime()
    ticker = FixedRateTicker(period_s=0.1, clock=t.clock, sleep=t.sleep)
    ticks = await _collect(ticker, 1001, t, work=[0.013, 0.071, 0.0, 0.05])
    # Deadline k is exactly start + k * period, however long each tick's work took.
    assert ticks[-1].scheduled == pytest.approx(1000.0 + 1000 * 0.1, abs=1e-9)
    assert all(tk.missed == 0 for tk in ticks)
    assert ticker.stats.overruns == 0
    assert [tk.index for tk in ticks] == list(range(1001))


@pytest.mark.asyncio
async def test_overrun_skips_missed_ticks_instead_of_bursting() -> None:
    t = FakeTime()
    ticker = FixedRateTicker(period_s=0.5, clock=t.clock, sleep=t.sleep)
    overruns: list[Tick] = []
    ticker.on_overrun = overruns.append
    # The second tick's work stalls for 1.7 s: deadlines 2, 3 and 4 (1.0, 1.5, 2.0 s) pass.
    ticks = await _collect(ticker, 5, t, work=[0.0, 1.7, 0.0, 0.0])
    assert [tk.index for tk in ticks] == [0, 1, 4, 5, 6]
    assert ticks[2].missed == 2
    assert ticker.stats.missed == 2
    assert ticker.stats.overruns == 1
    assert overruns == [ticks[2]]
    # After the overrun the schedule is back on the original grid.
    assert ticks[3].scheduled == pytest.approx(1000.0 + 5 * 0.5)
    # measured dt reflects the real gap, so the PID integrates the real time
    assert ticks[2].dt == pytest.approx(1.7)


@pytest.mark.asyncio
async def test_measured_dt_is_the_real_gap() -> None:
    t = FakeTime()
    ticker = FixedRateTicker(period_s=0.2, clock=t.clock, sleep=t.sleep)
    ticks = await _collect(ticker, 4, t)
    assert ticks[0].dt == pytest.approx(0.2)
    assert all(tk.dt == pytest.approx(0.2) for tk in ticks[1:])


@pytest.mark.asyncio
async def test_wall_clock_is_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    def forbidden() -> float:
        raise AssertionError("the ticker must not read the wall clock")

    monkeypatch.setattr(time_module, "time", forbidden)
    t = FakeTime()
    ticks = await _collect(FixedRateTicker(period_s=0.1, clock=t.clock, sleep=t.sleep), 3, t)
    assert len(ticks) == 3


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FixedRateTicker(period_s=0)

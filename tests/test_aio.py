"""Timed waits that never swallow a cancellation (the Python 3.11 wait_for race)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from controller.aio import cancel_and_wait, raise_if_cancelling, wait_any, wait_event


async def _cancel_as_the_event_fires(
    wait: Callable[[asyncio.Event], Awaitable[object]], spins: int
) -> None:
    """A task loops on ``wait``; the event is set and the task cancelled in the same
    breath, as when a stop event and a task-group cancel arrive together. On 3.11,
    ``asyncio.wait_for`` returns normally here and the loop runs forever."""
    event = asyncio.Event()

    async def forever() -> None:
        while True:
            await wait(event)
            event.clear()

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    event.set()
    for _ in range(spins):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2.0)
    if not done:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pytest.fail(f"the cancellation was swallowed (spins={spins})")
    assert task.cancelled()


@pytest.mark.asyncio
@pytest.mark.parametrize("spins", range(5))
async def test_wait_event_passes_on_a_cancellation_racing_the_event(spins: int) -> None:
    await _cancel_as_the_event_fires(lambda e: wait_event(e, 30.0), spins)


@pytest.mark.asyncio
@pytest.mark.parametrize("spins", range(5))
async def test_wait_any_passes_on_a_cancellation_racing_the_event(spins: int) -> None:
    other = asyncio.Event()
    await _cancel_as_the_event_fires(lambda e: wait_any((other, e), 30.0), spins)


@pytest.mark.asyncio
async def test_wait_event_reports_set_or_timed_out() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(event, 0.0) is True  # already set: no wait at all


@pytest.mark.asyncio
async def test_wait_any_reports_which_way_it_ended_and_leaves_no_waiters() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    before = len(asyncio.all_tasks())
    assert await wait_any((a, b), 0.01) is False
    asyncio.get_running_loop().call_soon(b.set)
    assert await wait_any((a, b), 5.0) is True
    await asyncio.sleep(0)  # let the cancelled waiters finish
    assert len(asyncio.all_tasks()) == before


async def _swallows_one_cancel(rounds: list[int]) -> None:
    """A loop around a library call that loses one cancellation, as aiomqtt's publish
    can on 3.11 when the PUBACK and the cancel arrive together."""
    swallowed = False
    while True:
        raise_if_cancelling()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True  # lost: the loop goes on
        rounds.append(1)


@pytest.mark.asyncio
async def test_a_loop_ends_on_the_round_after_a_lost_cancellation() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_swallows_one_cancel(rounds))
    await asyncio.sleep(0.03)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2.0)
    assert task in done
    assert task.cancelled()
    assert len(rounds) <= 5  # ended at once, not after the wait ran out


@pytest.mark.asyncio
async def test_cancel_and_wait_finishes_tasks_that_slip_a_cancellation() -> None:
    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)  # the cancellation is lost, and nothing checks
        await asyncio.sleep(30)

    tasks = [asyncio.create_task(stubborn()) for _ in range(3)]
    tasks.append(asyncio.create_task(asyncio.sleep(0)))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(tasks, retry_s=0.05)
    assert all(t.done() for t in tasks)

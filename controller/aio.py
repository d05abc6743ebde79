"""Waiting on events with a timeout, without losing a cancellation.

On Python 3.11 (Raspberry Pi OS Bookworm), ``asyncio.wait_for`` swallows a
cancellation that arrives in the same loop iteration as the awaited future completes:
it returns the result instead of raising ``CancelledError`` (CPython gh-86296, fixed
only in 3.12). A loop such as ``while True: await wait_for(event.wait(), t)`` then
survives its one cancellation and runs forever, and whoever awaits it (a task group
shutting down, ``asyncio.gather`` after ``cancel()``) hangs with it. That is a daemon
that never finishes SIGTERM, or a control failure that never reaches systemd.

``asyncio.timeout`` tells its own expiry from an outside cancellation, so the helpers
here are built on it. Use them instead of ``wait_for`` for every timed wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def wait_event(event: asyncio.Event, within_s: float) -> bool:
    """Wait up to ``within_s`` seconds for ``event``; True if it is set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(within_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def wait_any(events: tuple[asyncio.Event, ...], within_s: float | None) -> bool:
    """Wait up to ``within_s`` seconds (None: as long as it takes) for any of
    ``events``; True if one is set."""
    if any(e.is_set() for e in events):
        return True
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        async with asyncio.timeout(within_s):
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        return False
    finally:
        for w in waiters:
            w.cancel()
    return True


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` when this task has been asked to cancel.

    Our own waits never lose a cancellation, but libraries still use ``wait_for``
    inside (aiomqtt's publish and connect, pymodbus's request timeout). The task's
    cancel count stays raised even when the exception was swallowed, so a loop that
    calls this once per round ends on the round after a lost cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, retry_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has finished, cancelling again any
    that let a cancellation slip by, so that shutting a group down never hangs."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)

"""Checking a station file in a child process, for the running daemon's SIGHUP reload.

The daemon must not miss a control tick while it re-reads its station file, whatever a
technician (or an attacker) saved there: a 7-level alias bomb once parsed for 18 s
inside the daemon, reached 1.27 GB RSS and cost 4 ticks. The parser is bounded now,
but the reload still runs it in a child process first, with an address-space limit
(RLIMIT_AS) and a deadline after which the child is killed: whatever the file does to
the parser, it does it to the child, and the daemon's memory and event loop never see
it. (Under the unit, where setrlimit is filtered out, the child watches its own
resident memory instead.) Only a file the child accepted is parsed again, in a thread,
by the daemon: the same bytes, known by then to parse quickly.

Run as ``python -m controller.config.isolated --memory-mb N --time-budget-s S NAME``
with the station text on stdin; exit 0 when valid, 2 with the issues as JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import threading
import time
from dataclasses import asdict, replace

from controller.config import (
    DEFAULT_LIMITS,
    ConfigError,
    Limits,
    StationConfig,
    parse_config,
    read_config_text,
)
from controller.errors import ConfigIssue

#: Memory the child may use on top of what the interpreter and its imports took (~45 MB).
#: The child runs in the unit's cgroup beside the daemon (~50 MB): both must stay inside
#: its MemoryMax=256M. The bounded parser never needs more than ~10 MB for a 1 MiB file.
RELOAD_MEMORY_MB = 128
#: The child's own deadline for the parse (it reports a located time-limit issue) ...
RELOAD_LIMITS = replace(DEFAULT_LIMITS, time_budget_s=5.0)
#: ... and ours for the whole child, interpreter start included (slow on a Pi 3).
RELOAD_TIMEOUT_S = 30.0

#: How often the child looks at its resident memory when RLIMIT_AS is not available.
RSS_CHECK_S = 0.01

EXIT_VALID = 0
EXIT_INVALID = 2
EXIT_OUT_OF_MEMORY = 3


async def load_config_isolated(
    path: str,
    *,
    limits: Limits = RELOAD_LIMITS,
    memory_mb: int = RELOAD_MEMORY_MB,
    timeout_s: float = RELOAD_TIMEOUT_S,
) -> StationConfig:
    """The station in ``path``, checked in a child process first; ConfigError if the file
    is invalid, too costly to read, or the check could not be run."""
    text = await asyncio.to_thread(read_config_text, path, limits)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.config.isolated",
        "--memory-mb", str(memory_mb), "--time-budget-s", str(limits.time_budget_s), "--", path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate(text.encode("utf-8"))
    except TimeoutError:
        raise _refused(path, f"checking the file took longer than {timeout_s:g} s; "
                             "it was stopped and the file refused") from None  # fmt: skip
    finally:
        if proc.returncode is None:  # timed out, or the reload was cancelled
            proc.kill()
            await proc.wait()
    if proc.returncode == EXIT_INVALID:
        raise ConfigError(path, _issues(out, path))
    if proc.returncode == EXIT_OUT_OF_MEMORY:
        raise _refused(path, f"reading the file needs more than {memory_mb} MB of memory "
                             "(the limit); the file is refused")  # fmt: skip
    if proc.returncode != EXIT_VALID:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise _refused(path, f"the check of the file failed (exit {proc.returncode}: "
                             f"{why[0][:200]}); the file is refused")  # fmt: skip
    return await asyncio.to_thread(parse_config, text, path, limits=limits)


def _refused(path: str, message: str) -> ConfigError:
    return ConfigError(path, [ConfigIssue(path, None, None, "", message)])


def _issues(out: bytes, path: str) -> list[ConfigIssue]:
    try:
        return [ConfigIssue(**item) for item in json.loads(out)]
    except (ValueError, TypeError) as exc:
        return [ConfigIssue(path, None, None, "", f"the file is invalid ({exc})")]


# -- the child --------------------------------------------------------------------------


def _statm_bytes() -> tuple[int, int]:
    """(address space, resident set) of this process, in bytes."""
    with open("/proc/self/statm") as f:
        size, resident = (int(v) for v in f.read().split()[:2])
    return size * resource.getpagesize(), resident * resource.getpagesize()


def limit_memory(extra_mb: int) -> None:
    """Allow this process ``extra_mb`` of memory beyond what it uses already.

    RLIMIT_AS makes an allocation past the budget fail at once. Under the unit's
    ``SystemCallFilter=~@resources`` setrlimit is refused (EPERM), so a watcher thread
    also ends the process when its resident memory passes the budget.
    """
    extra = extra_mb * 1024 * 1024
    resident = _statm_bytes()[1]
    # The watcher first: its stack is address space the limit would not leave it.
    threading.Thread(target=_watch_resident, args=(resident + extra,), daemon=True).start()
    size = _statm_bytes()[0]
    with contextlib.suppress(OSError):
        resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def _watch_resident(limit: int) -> None:
    while True:
        if _statm_bytes()[1] > limit:
            os._exit(EXIT_OUT_OF_MEMORY)
        time.sleep(RSS_CHECK_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="check station YAML given on stdin")
    p.add_argument("--memory-mb", type=int, required=True)
    p.add_argument("--time-budget-s", type=float, required=True)
    p.add_argument("name", help="the file name the issues are reported under")
    args = p.parse_args(argv)
    limit_memory(args.memory_mb)
    limits = replace(DEFAULT_LIMITS, time_budget_s=args.time_budget_s)
    try:
        text = sys.stdin.buffer.read(limits.max_bytes + 1).decode("utf-8")
        parse_config(text, args.name, limits=limits)
    except ConfigError as exc:
        json.dump([asdict(i) for i in exc.issues], sys.stdout)
        return EXIT_INVALID
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    return EXIT_VALID


if __name__ == "__main__":
    sys.exit(main())

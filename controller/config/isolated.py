"""Checking a station file in a child process, for the running daemon's SIGHUP reload.

The daemon must not miss a control tick while it re-reads its station file, whatever a
technician (or an attacker) saved there: a 7-level alias bomb once parsed for 18 s
inside the daemon, reached 1.27 GB RSS and cost 4 ticks. The parser is bounded now,
but the reload still runs it in a child process first, with an address-space limit
(RLIMIT_AS) and a deadline after which the child is killed: whatever the file does to
the parser, it does it to the child, and the daemon's memory and event loop never see
it. Only a file the child accepted is parsed again, in a thread, by the daemon: the
same bytes, known by then to parse quickly.

Run as ``python -m controller.config.isolated --memory-mb N --time-budget-s S NAME``
with the station text on stdin; exit 0 when valid, 2 with the issues as JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
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

#: Memory the child may use on top of what the interpreter and its imports took.
RELOAD_MEMORY_MB = 256
#: The child's own deadline for the parse (it reports a located time-limit issue) ...
RELOAD_LIMITS = replace(DEFAULT_LIMITS, time_budget_s=5.0)
#: ... and ours for the whole child, interpreter start included (slow on a Pi 3).
RELOAD_TIMEOUT_S = 30.0

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
        "--memory-mb", str(memory_mb), "--time-budget-s", str(limits.time_budget_s), path,
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


def _limit_memory(extra_mb: int) -> None:
    """Allow ``extra_mb`` of address space beyond what this process maps already."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    limit = pages * resource.getpagesize() + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="check station YAML given on stdin")
    p.add_argument("--memory-mb", type=int, required=True)
    p.add_argument("--time-budget-s", type=float, required=True)
    p.add_argument("name", help="the file name the issues are reported under")
    args = p.parse_args(argv)
    _limit_memory(args.memory_mb)
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

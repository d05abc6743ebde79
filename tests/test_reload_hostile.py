"""A SIGHUP reload of a hostile station file: checked in a child process with a memory
and time budget, so the running daemon misses no tick, keeps its memory and its
configuration; and the budgets themselves, on the real child process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from controller.config import ConfigError, load_config
from controller.config.isolated import load_config_isolated
from tests.conftest import EXAMPLE_CONFIG
from tests.support.hostile import EXAMPLE_TEXT, HOSTILE
from tests.support.waiting import wait_until
from tests.test_daemon import Station, station  # noqa: F401 - the running daemon's fixture

RELOADED = ("alias bomb, 7 levels wide", "merge-key bomb", "deep flow sequences",
            "5000-digit integer", "70 MB", "binary garbage")  # fmt: skip


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_hostile_file_on_sighup_costs_the_daemon_no_tick_no_memory_and_no_setting(
    station: Station,  # noqa: F811
) -> None:
    proc = station.start()
    station.wait_for("READY=1")
    wait_until(lambda: any(v is False for v in station.relays().values()), timeout=30,
               what="a relay energised")  # fmt: skip
    good = station.config.read_text()
    before = station.status()
    rss_before = _rss_kb(proc.pid)
    cases = [c for c in HOSTILE if c.name in RELOADED]
    for n, case in enumerate(cases, start=1):
        station.config.unlink()
        case.make(station.config)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda n=n: station.log().count("reload rejected") == n,  # type: ignore[misc]
                   timeout=30, what=f"reload of {case.name} rejected")  # fmt: skip
        rejection = [ln for ln in station.log().splitlines() if "reload rejected" in ln][-1]
        assert case.words in rejection
    after = station.status()
    loop_before, loop_after = before["loop"], after["loop"]
    assert isinstance(loop_before, dict)
    assert isinstance(loop_after, dict)
    assert loop_after["ticks"] > loop_before["ticks"]
    assert loop_after["missed"] == loop_before["missed"], (loop_before, loop_after)
    assert after["setpoint_bar"] == before["setpoint_bar"]
    assert proc.poll() is None
    # The parse ran in the child: the daemon did not grow (the old loader took 1.27 GB).
    assert _rss_kb(proc.pid) - rss_before < 20_000
    # And a good file is still applied through the same path.
    station.config.write_text(good.replace("setpoint_bar: 3.0", "setpoint_bar: 3.4"))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: station.status()["setpoint_bar"] == 3.4, timeout=15, what="new setpoint")


@pytest.mark.asyncio
async def test_the_child_accepts_what_load_config_accepts() -> None:
    assert await load_config_isolated(str(EXAMPLE_CONFIG)) == load_config(EXAMPLE_CONFIG)


@pytest.mark.asyncio
async def test_the_child_reports_located_issues(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_TEXT.replace("    baudrate: 9600", "    baudrat: 9600"))
    with pytest.raises(ConfigError) as info:
        await load_config_isolated(str(bad))
    (issue,) = info.value.issues
    assert issue.path == "buses.rs485.baudrat"
    assert issue.line is not None
    assert "did you mean 'baudrate'" in issue.message


@pytest.mark.asyncio
async def test_the_child_has_a_memory_budget(tmp_path: Path) -> None:
    # Valid and within the parser's limits, but it takes memory to build: 3000 entries.
    entries = "".join(f"      - {{at: '{i % 24:02d}:{i % 60:02d}', setpoint_bar: 3.0}}\n"
                      for i in range(3000))  # fmt: skip
    big = tmp_path / "big.yaml"
    big.write_text(EXAMPLE_TEXT.replace(
        "  staging:\n", "  pressure_management:\n    schedule:\n" + entries + "  staging:\n", 1
    ))  # fmt: skip
    assert (await load_config_isolated(str(big))).control.pressure_management is not None
    with pytest.raises(ConfigError) as info:
        await load_config_isolated(str(big), memory_mb=4)
    assert "needs more than 4 MB of memory (the limit)" in str(info.value)
    assert await load_config_isolated(str(EXAMPLE_CONFIG), memory_mb=4)


@pytest.mark.asyncio
async def test_the_child_has_a_deadline() -> None:
    with pytest.raises(ConfigError) as info:
        await load_config_isolated(str(EXAMPLE_CONFIG), timeout_s=0.01)
    assert "took longer than 0.01 s" in str(info.value)


def test_without_rlimit_the_child_still_ends_past_its_memory_budget() -> None:
    """The unit's SystemCallFilter=~@resources refuses setrlimit: the resident-memory
    watcher alone must then end a child that grows past its budget."""
    import subprocess
    import sys
    import time

    code = (
        "import resource, time\n"
        "from controller.config import isolated\n"
        "def refused(*args): raise PermissionError(1, 'Operation not permitted')\n"
        "resource.setrlimit = refused  # as under seccomp's EPERM\n"
        "isolated.limit_memory(20)\n"
        "grown = [b'x' * (1 << 20) for _ in range(200)]\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, check=False)
    assert proc.returncode == 3  # EXIT_OUT_OF_MEMORY
    assert time.monotonic() - started < 20

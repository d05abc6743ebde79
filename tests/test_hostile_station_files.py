"""Hostile station files are refused with a clear, located message, quickly and in bounded
memory, by ``load_config``, by ``boosterd check`` and by ``boosterd outputs-off`` (which
then switches the relays off from the last good copy), each a real process under an
address-space limit and a clock."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from controller.config import ConfigError, load_config
from drivers.gpio.shared import SharedGpioPeer
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.hostile import HOSTILE, Hostile

#: The old loader reached 1.27 GB on an alias bomb; a station file needs a few MB.
MEMORY_LIMIT = 768 * 1024 * 1024
#: systemd's stop timeout for the unit; ExecStopPost must finish well inside it.
UNIT_STOP_TIMEOUT_S = 10.0
RELAYS_OFF = {"GPIO17": True, "GPIO27": True, "GPIO24": True}  # active low: off is high
#: what outputs-off must absolutely survive (issue 11), as real processes
OUTPUTS_OFF_CASES = (
    "alias bomb, 286 bytes",
    "alias bomb, 7 levels wide",
    "merge-key bomb",
    "deep flow sequences",
    "deep block nesting",
    "5000-digit integer",
    "70 MB",
    "binary garbage",
    "a directory",
    "a FIFO",
    "permission denied",
)

ROOT = os.geteuid() == 0


def _ids(cases: list[Hostile]) -> list[str]:
    return [c.name for c in cases]


def _make(case: Hostile, tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    case.make(path)
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``boosterd ARGS`` under an address-space limit; its result and wall time. As root,
    without the capabilities that let root read any file (so 0000 means unreadable)."""
    prefix: list[str] = []
    if ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop DAC override")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    started = time.monotonic()
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "controller.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        preexec_fn=_limit_memory,
    )  # fmt: skip
    return result, time.monotonic() - started


@pytest.mark.parametrize("case", HOSTILE, ids=_ids(HOSTILE))
def test_load_config_refuses_it_with_a_clear_message_quickly(case: Hostile, tmp_path: Path) -> None:
    if case.name == "permission denied" and ROOT:
        pytest.skip("root reads any file in-process (the process tests drop the capability)")
    path = _make(case, tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    elapsed = time.monotonic() - started
    messages = [str(i) for i in info.value.issues]
    assert any(case.words in m for m in messages), messages
    assert all(m.startswith(str(path)) for m in messages), messages
    assert elapsed < 3.0, elapsed


@pytest.mark.parametrize("case", HOSTILE, ids=_ids(HOSTILE))
def test_boosterd_check_refuses_it_in_bounded_time_and_memory(
    case: Hostile, tmp_path: Path
) -> None:
    path = _make(case, tmp_path)
    result, elapsed = run_limited("check", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert case.words in result.stderr, result.stderr[-2000:]
    assert f"{path}" in result.stderr
    assert elapsed < 8.0, elapsed


def test_a_limit_names_itself_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("site:\n  id: x\ndeep: " + "[" * 60 + "]" * 60 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert "nested more than 50 levels deep (the limit)" in issue.message
    # The top-level mapping is level 1: the 50th bracket, in column 7 + 49, is level 51.
    assert (issue.line, issue.column) == (3, 7 + 49)


@pytest.fixture
def last_good(tmp_path: Path) -> Path:
    """The copy the daemon keeps: the example station on simulated relays in tmp_path."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["gpio"] = {"backend": "sim", "sim_dir": str(tmp_path / "gpio")}
    path = tmp_path / "station.last-good.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "case", [c for c in HOSTILE if c.name in OUTPUTS_OFF_CASES], ids=list(OUTPUTS_OFF_CASES)
)
def test_outputs_off_falls_back_to_the_last_good_copy_well_inside_the_stop_timeout(
    case: Hostile, tmp_path: Path, last_good: Path
) -> None:
    path = _make(case, tmp_path)
    peer = SharedGpioPeer(tmp_path / "gpio", idle_levels=RELAYS_OFF)
    assert peer.outputs() == {}  # nothing has driven the relays yet
    result, elapsed = run_limited("outputs-off", "--config", str(path), "--last-good",
                                  str(last_good))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 relays off" in result.stdout
    assert "last file the daemon ran with" in result.stderr
    assert "Traceback" not in result.stderr
    assert case.words in result.stderr, result.stderr[-2000:]
    assert peer.outputs() == RELAYS_OFF
    assert elapsed < UNIT_STOP_TIMEOUT_S / 2, elapsed


def test_outputs_off_without_a_good_copy_says_the_relays_are_not_off(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("a: &a [*a]\n")
    result, _ = run_limited("outputs-off", "--config", str(path), "--last-good",
                            str(tmp_path / "none.yaml"))  # fmt: skip
    assert result.returncode == 2
    assert "relays NOT switched off" in result.stderr
    assert "Traceback" not in result.stderr

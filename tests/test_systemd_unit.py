"""The shipped unit verifies and keeps its hardening (exposure 2.5 or lower)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "boosterd.service"
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def _unit_copy(tmp_path: Path) -> Path:
    # verify insists that ExecStart exists; the venv is only there on an installed Pi.
    text = UNIT.read_text().replace("/opt/boosterd/venv/bin/boosterd", "/bin/true")
    copy = tmp_path / "boosterd.service"
    copy.write_text(text)
    return copy


def test_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "boosterd.service" not in result.stderr, result.stderr


def test_unit_security_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for boosterd\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.5


def test_unit_keeps_the_devices_and_state_it_needs() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "DevicePolicy=closed",
        "DeviceAllow=char-gpiochip rw",
        "DeviceAllow=char-ttyUSB rw",
        "StateDirectory=boosterd",
        "ConfigurationDirectory=boosterd",
        "LoadCredential=mqtt:",
        "SupplementaryGroups=dialout gpio",
        "Restart=on-failure",
        # Relays off after every stop: a killed daemon's outputs keep their level.
        "ExecStopPost=/opt/boosterd/venv/bin/boosterd outputs-off --config",
    ):
        assert line in text
    assert "PrivateDevices=yes" not in text  # it would hide /dev/ttyUSB* and /dev/gpiochip*


def _size(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_unit_bounds_the_daemons_memory_and_tasks() -> None:
    # An oversize MQTT message once took the daemon to 460 MB: the unit must stop a
    # runaway long before a 1 GB Pi runs out, with room above the measured 48-52 MB.
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and line[0] != "#"
    )
    high, limit = _size(settings["MemoryHigh"]), _size(settings["MemoryMax"])
    assert 3 * 52 * 2**20 <= high < limit <= 384 * 2**20
    assert 16 <= int(settings["TasksMax"]) <= 256

"""Running the ``boosterd`` command as a technician or systemd would: a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def boosterd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``boosterd ARGS`` with this interpreter; its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

"""A virtual RS-485 line: two pseudo-terminals joined by socat.

``boosterd sim`` serves its Modbus slaves on one end and prints the other end's path,
which goes into the station file as the bus ``port``; the controller then talks to the
simulator through a real tty with real termios settings, as it would to a USB adapter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import BoosterError


class PtyError(BoosterError):
    """The virtual serial line could not be created."""


@dataclass
class PtyPair:
    """``device`` is the controller's end; ``slave_end`` is where the simulator serves."""

    device: str
    slave_end: str
    _proc: subprocess.Popen[bytes] = field(repr=False)

    @classmethod
    def start(cls, device: str | Path, *, timeout_s: float = 5.0) -> PtyPair:
        socat = shutil.which("socat")
        if socat is None:
            raise PtyError("socat is not installed (sudo apt-get install socat)")
        device = Path(device)
        device.parent.mkdir(parents=True, exist_ok=True)
        slave_end = device.with_name(device.name + ".sim")
        for stale in (device, slave_end):
            if stale.is_symlink():
                stale.unlink()
        proc = subprocess.Popen(
            [
                socat,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={slave_end}",
                f"pty,raw,echo=0,link={device}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        log: list[str] = []
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            log.append(line)
            if "starting data transfer loop" in line:
                break
        else:
            proc.wait(timeout=timeout_s)
            raise PtyError("socat exited before the line was up:\n" + "".join(log))
        proc.stderr.close()
        deadline = time.monotonic() + timeout_s
        while not (device.exists() and slave_end.exists()):
            if time.monotonic() > deadline:
                proc.kill()
                raise PtyError(f"socat did not create {device} within {timeout_s} s")
            time.sleep(0.01)
        return cls(str(device), str(slave_end), proc)

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for link in (self.device, self.slave_end):
            if os.path.islink(link):
                os.unlink(link)

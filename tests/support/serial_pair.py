"""A real serial line: two pseudo-terminals joined by socat, with real termios settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_until


@dataclass
class SerialPair:
    """Two ends of one line: bytes written to ``a`` come out of ``b`` and back."""

    a: str
    b: str
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _dir: str = field(repr=False)

    @classmethod
    def start(cls) -> SerialPair:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed (apt-get install socat)")
        tmp = tempfile.mkdtemp(prefix="boosterd-pty-")
        a, b = str(Path(tmp, "a")), str(Path(tmp, "b"))
        proc = subprocess.Popen(
            [
                socat,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={a}",
                f"pty,raw,echo=0,link={b}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # socat logs "starting data transfer loop" once both ptys exist.
        assert proc.stderr is not None
        log = []
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            log.append(line)
            if "starting data transfer loop" in line:
                break
        else:
            proc.wait(timeout=5)
            raise RuntimeError("socat exited before the line was up:\n" + "".join(log))
        wait_until(lambda: os.path.exists(a) and os.path.exists(b), timeout=5, what="pty links")
        proc.stderr.close()
        return cls(a, b, proc, tmp)

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
        shutil.rmtree(self._dir, ignore_errors=True)

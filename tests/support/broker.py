"""A real Mosquitto broker on a free loopback port, stoppable and restartable by a test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_until


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A mosquitto process; ``extra_config`` lines are appended to its config file."""

    port: int = field(default_factory=free_port)
    extra_config: str = ""
    host: str = "127.0.0.1"
    _dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="boosterd-mqtt-"))
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The mosquitto process's id (0 when stopped), for its CPU and memory figures."""
        return self._proc.pid if self._proc is not None else 0

    @property
    def log_path(self) -> Path:
        return Path(self._dir, "mosquitto.log")

    def start(self) -> None:
        if self.running:
            return
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        conf = Path(self._dir, "mosquitto.conf")
        base = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
        ]
        conf.write_text("\n".join(base) + "\n" + self.extra_config + "\n", encoding="utf-8")
        self._proc = subprocess.Popen(
            [exe, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self._proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {proc.returncode}: "
                    + (self.log_path.read_text() if self.log_path.exists() else "")
                )
            return _accepting(self.port)

        wait_until(up, timeout=10, what=f"mosquitto on port {self.port}")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

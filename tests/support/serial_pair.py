"""A real serial line for tests: the simulator's socat pty pair, in a throwaway directory."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from simulator.ptypair import PtyPair


@dataclass
class SerialPair:
    """Two ends of one line: bytes written to ``a`` come out of ``b`` and back."""

    a: str
    b: str
    _pty: PtyPair = field(repr=False)
    _dir: str = field(repr=False)

    @classmethod
    def start(cls) -> SerialPair:
        tmp = tempfile.mkdtemp(prefix="boosterd-pty-")
        pty = PtyPair.start(Path(tmp, "b"))
        return cls(pty.slave_end, pty.device, pty, tmp)

    def is_alive(self) -> bool:
        return self._pty.is_alive()

    def close(self) -> None:
        self._pty.close()
        shutil.rmtree(self._dir, ignore_errors=True)

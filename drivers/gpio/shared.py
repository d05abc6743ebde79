"""Simulated GPIO shared between two processes through two small JSON files.

``boosterd run`` with ``gpio.backend: sim`` and ``gpio.sim_dir`` set writes its relay
outputs to ``<sim_dir>/outputs.json`` and reads pump inputs from
``<sim_dir>/inputs.json``; ``boosterd sim`` (the other process) reads the first and
writes the second through ``SharedGpioPeer``. Levels are electrical, as on a header
pin, so active-low relays behave as on real hardware. Each file has one writer and is
replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from drivers.gpio.errors import GpioError

OUTPUTS = "outputs.json"
INPUTS = "inputs.json"


class SharedGpioError(GpioError):
    """A line was claimed twice or the shared directory is unusable."""


def _write(path: Path, levels: dict[str, bool]) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(levels, sort_keys=True))
    os.replace(tmp, path)


class _JsonFile:
    """Reads a levels file again only when it changed on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._levels: dict[str, bool] = {}

    def levels(self) -> dict[str, bool]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(self.path.read_text())
                if isinstance(data, dict):
                    self._levels = {str(k): bool(v) for k, v in data.items()}
                    self._stamp = stamp
        return self._levels


class _Output:
    def __init__(self, owner: SharedGpio, name: str, active_low: bool, safe_value: bool) -> None:
        self.name = name
        self._owner = owner
        self._active_low = active_low
        self._safe = safe_value
        self._value = safe_value

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        if value != self._value:
            previous, self._value = self._value, value
            try:
                self._owner._publish()
            except SharedGpioError:
                self._value = previous  # not written: the peer still sees the old level
                raise

    def to_safe_state(self) -> None:
        self.set(self._safe)

    def level(self) -> bool:
        return self._value != self._active_low


class _Input:
    def __init__(self, owner: SharedGpio, name: str, active_low: bool) -> None:
        self.name = name
        self._owner = owner
        self._active_low = active_low

    def read(self) -> bool:
        # An unwired input floats to inactive, as with a pull resistor on the real board.
        level = self._owner._inputs.levels().get(self.name, self._active_low)
        return level != self._active_low


class SharedGpio:
    """The controller's side: a GpioBackend over ``outputs.json`` / ``inputs.json``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SharedGpioError(f"cannot use gpio.sim_dir {self.directory}: {exc}") from exc
        self._outputs: dict[str, _Output] = {}
        self._inputs = _JsonFile(self.directory / INPUTS)
        self._claimed: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self._claimed:
            raise SharedGpioError(f"line {name} is claimed twice", line=name)
        self._claimed.add(name)

    def _publish(self) -> None:
        try:
            _write(self.directory / OUTPUTS, {n: o.level() for n, o in self._outputs.items()})
        except OSError as exc:
            raise SharedGpioError(f"cannot write {self.directory / OUTPUTS}: {exc}") from exc

    def output(self, name: str, *, active_low: bool = False, safe_value: bool = False) -> _Output:
        self._claim(name)
        line = _Output(self, name, active_low, safe_value)
        self._outputs[name] = line
        self._publish()
        return line

    def input(self, name: str, *, active_low: bool = False) -> _Input:
        self._claim(name)
        return _Input(self, name, active_low)

    def release(self, name: str) -> None:
        """Give a line back (a reload that rewired a pump): an output goes safe first, then
        leaves the file, so the peer sees its board's idle level."""
        self._claimed.discard(name)
        line = self._outputs.get(name)
        if line is None:
            return
        try:
            line.to_safe_state()
        finally:
            del self._outputs[name]
            self._publish()

    def all_safe(self) -> None:
        for line in self._outputs.values():
            line._value = line._safe
        self._publish()

    def close(self) -> None:
        try:
            self.all_safe()
        finally:
            self._outputs.clear()
            self._claimed.clear()


class SharedGpioPeer:
    """The simulator's side: reads relay levels, drives input levels."""

    def __init__(
        self, directory: str | Path, *, idle_levels: dict[str, bool] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._outputs = _JsonFile(self.directory / OUTPUTS)
        #: Level of a line nobody drives (an active-low relay board pulls its inputs high).
        self._idle = dict(idle_levels or {})
        self._inputs: dict[str, bool] = {}

    def level(self, line: str) -> bool:
        """Electrical level of an output; its idle level while the controller has not claimed it."""
        return self._outputs.levels().get(line, self._idle.get(line, False))

    def outputs(self) -> dict[str, bool]:
        return dict(self._outputs.levels())

    def set_input_level(self, line: str, level: bool) -> None:
        if self._inputs.get(line) != level:
            self._inputs[line] = level
            _write(self.directory / INPUTS, self._inputs)

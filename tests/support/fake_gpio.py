"""Fakes of the GPIO libraries and a file-recording backend, for the GPIO tests.

There is no GPIO chip here, so the fakes stand behind the same interface as the real
libraries (the libgpiod v2 Python surface ``GpiodBackend`` uses; the RPi.GPIO
functions) and keep the *electrical* level of every line with a log of every request,
level change and release. ``FileGpio`` is a whole backend that appends every level it
drives to a file, so a parent process can read what a child did to the relays up to its
death.
"""

from __future__ import annotations

import enum
import errno
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# -- a fake of the libgpiod v2 Python bindings ---------------------------------------------


class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


class Bias(enum.Enum):
    AS_IS = 1
    PULL_UP = 3
    PULL_DOWN = 4


@dataclass
class LineSettings:
    direction: Direction = Direction.AS_IS
    bias: Bias = Bias.AS_IS
    active_low: bool = False
    output_value: Value = Value.INACTIVE


@dataclass(frozen=True)
class ChipInfo:
    name: str
    label: str
    num_lines: int


@dataclass(frozen=True)
class LineInfo:
    offset: int
    used: bool
    consumer: str


@dataclass
class FakeChipSpec:
    label: str
    lines: dict[str, int]
    denied: bool = False


@dataclass
class FakeGpiod:
    """The world behind /dev/gpiochip*: chips, electrical levels, who holds what."""

    chips: dict[str, FakeChipSpec]
    levels: dict[tuple[str, int], int] = field(default_factory=dict)
    held: dict[tuple[str, int], str] = field(default_factory=dict)
    log: list[tuple[str, str, Any]] = field(default_factory=list)  # (event, line, detail)
    broken: set[str] = field(default_factory=set)  # lines whose writes fail (EIO)

    def where(self, name: str) -> tuple[str, int]:
        for path, spec in self.chips.items():
            if name in spec.lines:
                return path, spec.lines[name]
        raise KeyError(name)

    def name_of(self, path: str, offset: int) -> str:
        return next(n for n, o in self.chips[path].lines.items() if o == offset)

    def level(self, name: str) -> int:
        return self.levels.get(self.where(name), 0)

    def drive(self, name: str, level: bool) -> None:
        """The outside world sets an input's level (a contact closing)."""
        self.levels[self.where(name)] = int(level)

    def events(self, name: str, kind: str | None = None) -> list[tuple[str, Any]]:
        return [(e, d) for e, n, d in self.log if n == name and (kind is None or e == kind)]

    def module(self) -> types.ModuleType:
        fake = self

        class Chip:
            def __init__(self, path: str) -> None:
                spec = fake.chips.get(path)
                if spec is None:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
                if spec.denied:
                    raise PermissionError(errno.EACCES, "Permission denied", path)
                self.path, self.spec = path, spec

            def __enter__(self) -> Chip:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def get_info(self) -> ChipInfo:
                return ChipInfo(self.path.rsplit("/", 1)[-1], self.spec.label, 54)

            def line_offset_from_id(self, name: str) -> int:
                if name not in self.spec.lines:  # what libgpiod v2 raises for a name
                    raise OSError(errno.ENOENT, "No such file or directory")
                return self.spec.lines[name]

            def get_line_info(self, offset: int) -> LineInfo:
                consumer = fake.held.get((self.path, offset), "")
                return LineInfo(offset, bool(consumer), consumer)

        class LineRequest:
            def __init__(self, path: str, consumer: str, config: dict[int, LineSettings]) -> None:
                self.path, self.config, self.released = path, config, False
                for off in config:
                    if (path, off) in fake.held:
                        raise OSError(errno.EBUSY, "Device or resource busy")
                for off, s in config.items():
                    fake.held[(path, off)] = consumer
                    fake.log.append(("request", fake.name_of(path, off), s))
                    if s.direction is Direction.OUTPUT:
                        self._drive(off, s.output_value)

            def _drive(self, off: int, value: Value) -> None:
                name = fake.name_of(self.path, off)
                if name in fake.broken:
                    raise OSError(errno.EIO, "Input/output error")
                level = int((value is Value.ACTIVE) != self.config[off].active_low)
                fake.levels[(self.path, off)] = level
                fake.log.append(("level", name, level))

            def set_value(self, off: int, value: Value) -> None:
                assert not self.released, "write on a released request"
                assert self.config[off].direction is Direction.OUTPUT, "write to an input"
                self._drive(off, value)

            def get_value(self, off: int) -> Value:
                assert not self.released
                level = fake.levels.get((self.path, off), 0)
                active = bool(level) != self.config[off].active_low
                return Value.ACTIVE if active else Value.INACTIVE

            def release(self) -> None:
                assert not self.released, "released twice"
                self.released = True
                for off in self.config:
                    del fake.held[(self.path, off)]
                    fake.log.append(("release", fake.name_of(self.path, off), None))

        def request_lines(
            path: str, config: dict[int, LineSettings], consumer: str | None = None
        ) -> LineRequest:
            with Chip(path):
                return LineRequest(path, consumer or "?", config)

        line = types.ModuleType("gpiod.line")
        line.__dict__.update(Direction=Direction, Value=Value, Bias=Bias)
        mod = types.ModuleType("gpiod")
        mod.__dict__.update(
            Chip=Chip, LineSettings=LineSettings, request_lines=request_lines, line=line
        )
        return mod


HEADER = {f"GPIO{n}": n for n in range(28)}
#: Pi 5, early Bookworm kernels: the header (RP1) is gpiochip4; gpiochip0 is the SoC's.
PI5_EARLY = {
    "/dev/gpiochip0": FakeChipSpec("gpio-brcmstb@107d508500", {"BRCMSTB_GPIO0": 0}),
    "/dev/gpiochip4": FakeChipSpec("pinctrl-rp1", HEADER),
    "/dev/gpiochip10": FakeChipSpec("gpio-brcmstb@107d517c00", {"RP1_SDA": 0}),
}
#: Pi 5, current kernels: the header is gpiochip0, the SoC's chips come later.
PI5_NOW = {
    "/dev/gpiochip0": FakeChipSpec("pinctrl-rp1", HEADER),
    "/dev/gpiochip10": FakeChipSpec("gpio-brcmstb@107d508500", {"BRCMSTB_GPIO0": 0}),
}


def install_fake_gpiod(
    monkeypatch: pytest.MonkeyPatch, chips: dict[str, FakeChipSpec]
) -> FakeGpiod:
    fake = FakeGpiod(chips)
    monkeypatch.setitem(sys.modules, "gpiod", fake.module())
    monkeypatch.setattr("drivers.gpio.gpiod_backend.glob.glob", lambda _: list(fake.chips))
    return fake


# -- a fake of the RPi.GPIO API -------------------------------------------------------------


class FakeRpiGpio(types.ModuleType):
    """RPi.GPIO's functions over electrical levels by BCM number, with a call log."""

    BCM, OUT, IN, HIGH, LOW, PUD_UP, PUD_DOWN = "BCM", "OUT", "IN", 1, 0, "UP", "DOWN"

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.calls: list[tuple[Any, ...]] = []
        self.levels: dict[int, int] = {}
        self.modes: dict[int, str] = {}
        self.busy: set[int] = set()
        self.broken: set[int] = set()  # pins whose writes fail, as RPi.GPIO reports it

    def setwarnings(self, flag: bool) -> None:
        pass

    def setmode(self, mode: str) -> None:
        self.calls.append(("mode", mode))

    def setup(self, pin: int, direction: str, **kw: Any) -> None:
        if pin in self.busy:
            raise RuntimeError("GPIO busy")
        self.calls.append(("setup", pin, direction, kw))
        self.modes[pin] = direction
        if direction == self.OUT:
            self.levels[pin] = kw["initial"]

    def output(self, pin: int, level: int) -> None:
        assert self.modes.get(pin) == self.OUT, "output() on a pin not set up as an output"
        if pin in self.broken:
            raise RuntimeError("write failed")
        self.calls.append(("out", pin, level))
        self.levels[pin] = level

    def input(self, pin: int) -> int:
        return self.levels.get(pin, 0)

    def cleanup(self, pins: list[int]) -> None:
        self.calls.append(("cleanup", tuple(pins)))
        for pin in pins:
            self.modes[pin] = self.IN


def install_fake_rpi_gpio(monkeypatch: pytest.MonkeyPatch) -> FakeRpiGpio:
    """Put a fresh ``FakeRpiGpio`` where ``import RPi.GPIO`` finds it (for this test)."""
    fake = FakeRpiGpio()
    pkg = types.ModuleType("RPi")
    pkg.GPIO = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", pkg)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    return fake


# -- a backend that records to a file ---------------------------------------------------


class _FileOutput:
    def __init__(self, gpio: FileGpio, name: str, active_low: bool, safe: bool) -> None:
        self.name, self._gpio, self._active_low, self._safe = name, gpio, active_low, safe
        self._value = safe
        gpio.record(name, safe != active_low)

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        self._gpio.record(self.name, value != self._active_low)
        self._value = value

    def to_safe_state(self) -> None:
        self.set(self._safe)


class _FileInput:
    def __init__(self, name: str) -> None:
        self.name = name

    def read(self) -> bool:
        return False


class FileGpio:
    """A GpioBackend whose outputs append ``<line> <level>`` to a file at every write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._outputs: dict[str, _FileOutput] = {}

    def record(self, name: str, level: bool) -> None:
        with self.path.open("a") as f:  # reopened per write: nothing buffered at a SIGKILL
            f.write(f"{name} {int(level)}\n")

    def output(
        self, name: str, *, active_low: bool = False, safe_value: bool = False
    ) -> _FileOutput:
        line = _FileOutput(self, name, active_low, safe_value)
        self._outputs[name] = line
        return line

    def input(self, name: str, *, active_low: bool = False) -> _FileInput:
        return _FileInput(name)

    def release(self, name: str) -> None:
        line = self._outputs.pop(name, None)
        if line is not None:
            line.to_safe_state()

    def all_safe(self) -> None:
        for line in self._outputs.values():
            line.to_safe_state()

    def close(self) -> None:
        self.all_safe()
        self._outputs.clear()

"""The simulated GPIO backend: what the simulator, the demo and the tests use.

It behaves like the real backends where it matters: it stores the *electrical* level
of every line, handles ``active_low`` itself, claims outputs at their safe value before
anything else can be written, refuses to claim a line twice, and fails like them (a
``GpioError``; ``break_line`` makes a line's writes fail as a dead driver would). The
simulator reads relay levels with ``level`` and drives pump inputs with
``set_input_level``. Every level driven on an output is kept in ``history`` with the
time it was driven, for tests to assert on (``assert_levels``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from drivers.gpio.errors import GpioError, all_safe_each

__all__ = ["LineChange", "SimGpio", "SimGpioError", "SimInput", "SimOutput"]


class SimGpioError(GpioError):
    """A line was claimed twice, used after close, or broken on purpose."""


class LineChange(NamedTuple):
    """One level driven on an output: when (the backend's clock), which line, what level."""

    t: float
    line: str
    level: bool


@dataclass
class SimOutput:
    name: str
    active_low: bool
    safe_value: bool
    _gpio: SimGpio = field(repr=False)
    _value: bool = False

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        if value != self._value:
            self._gpio._drive(self.name, value != self.active_low)
            self._value = value

    def to_safe_state(self) -> None:
        self.set(self.safe_value)


@dataclass
class SimInput:
    name: str
    active_low: bool
    _gpio: SimGpio = field(repr=False)

    def read(self) -> bool:
        return self._gpio.level(self.name) != self.active_low


class SimGpio:
    """In-process GPIO: a dict of electrical levels and a timestamped log of output writes.

    ``clock`` stamps the history (the monotonic clock by default; the simulator passes
    its own, so the history is in simulated seconds).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._levels: dict[str, bool] = {}
        self._outputs: dict[str, SimOutput] = {}
        self._claimed: set[str] = set()
        self._broken: set[str] = set()
        #: Every level driven on an output, claims included, oldest first.
        self.history: list[LineChange] = []
        self.closed = False

    def _claim(self, name: str) -> None:
        if self.closed:
            raise SimGpioError("the GPIO backend is closed", line=name)
        if name in self._claimed:
            raise SimGpioError(f"line {name} is already claimed", line=name)
        self._claimed.add(name)

    def _drive(self, name: str, level: bool) -> None:
        if name in self._broken:
            raise SimGpioError(f"cannot drive {name}: line broken (simulated)", line=name)
        self._levels[name] = level
        self.history.append(LineChange(self.clock(), name, level))

    def output(self, name: str, *, active_low: bool = False, safe_value: bool = False) -> SimOutput:
        self._claim(name)
        line = SimOutput(name, active_low, safe_value, self, safe_value)
        self._drive(name, safe_value != active_low)
        self._outputs[name] = line
        return line

    def input(self, name: str, *, active_low: bool = False) -> SimInput:
        self._claim(name)
        # An unwired input idles inactive (the pull resistor the real backend configures).
        self._levels.setdefault(name, active_low)
        return SimInput(name, active_low, self)

    def release(self, name: str) -> None:
        """Give a line back (a config reload that drops a pump)."""
        self._claimed.discard(name)
        line = self._outputs.pop(name, None)
        if line is not None:
            line.to_safe_state()

    def all_safe(self) -> None:
        all_safe_each(self._outputs.values())

    def close(self) -> None:
        try:
            self.all_safe()
        finally:
            self._outputs.clear()
            self._claimed.clear()
            self.closed = True

    # -- the simulator's (and the tests') side -------------------------------------------

    def level(self, name: str) -> bool:
        """Electrical level of a line (False for a line nobody has touched)."""
        return self._levels.get(name, False)

    def set_input_level(self, name: str, level: bool) -> None:
        self._levels[name] = level

    def outputs(self) -> dict[str, bool]:
        return {name: self._levels[name] for name in self._outputs}

    def break_line(self, name: str, broken: bool = True) -> None:
        """Make every write to ``name`` fail (a dead driver or a shorted pin), or heal it."""
        if broken:
            self._broken.add(name)
        else:
            self._broken.discard(name)

    def levels(self, line: str, *, since: float | None = None) -> list[bool]:
        """The levels driven on ``line``, oldest first (only those at ``since`` or later)."""
        return [c.level for c in self.history if c.line == line and (since is None or c.t >= since)]

    def assert_levels(
        self, line: str, expected: Sequence[bool], *, since: float | None = None
    ) -> None:
        """Assert that exactly ``expected`` levels were driven on ``line`` (since ``since``).

        The failure message lists the line's whole history with times, so a blip shows
        where it happened.
        """
        got = self.levels(line, since=since)
        if got != list(expected):
            changes = [(round(c.t, 3), c.level) for c in self.history if c.line == line]
            raise AssertionError(
                f"{line}: levels {got} driven (since {since}), expected {list(expected)}; "
                f"history (t, level): {changes}"
            )

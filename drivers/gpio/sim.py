"""The simulated GPIO backend: what the simulator, the demo and the tests use.

It behaves like the real backends where it matters: it stores the *electrical* level
of every line, handles ``active_low`` itself, claims outputs at their safe value before
anything else can be written, and refuses to claim a line twice. The simulator reads
relay levels with ``level`` and drives pump inputs with ``set_input_level``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.errors import BoosterError


class SimGpioError(BoosterError):
    """A line was claimed twice or used after close."""


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
            self._value = value
            self._gpio._drive(self.name, value != self.active_low)

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
    """In-process GPIO: a dict of electrical levels and a log of every output write."""

    def __init__(self) -> None:
        self._levels: dict[str, bool] = {}
        self._outputs: dict[str, SimOutput] = {}
        self._claimed: set[str] = set()
        #: (write number, line, electrical level) of every output change, for glitch checks.
        self.history: list[tuple[int, str, bool]] = []
        self.closed = False

    def _claim(self, name: str) -> None:
        if self.closed:
            raise SimGpioError("the GPIO backend is closed")
        if name in self._claimed:
            raise SimGpioError(f"line {name} is already claimed")
        self._claimed.add(name)

    def _drive(self, name: str, level: bool) -> None:
        self._levels[name] = level
        self.history.append((len(self.history), name, level))

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
        for line in self._outputs.values():
            line.to_safe_state()

    def close(self) -> None:
        self.all_safe()
        self._outputs.clear()
        self._claimed.clear()
        self.closed = True

    # -- the simulator's side --------------------------------------------------------------

    def level(self, name: str) -> bool:
        """Electrical level of a line (False for a line nobody has touched)."""
        return self._levels.get(name, False)

    def set_input_level(self, name: str, level: bool) -> None:
        self._levels[name] = level

    def outputs(self) -> dict[str, bool]:
        return {name: self._levels[name] for name in self._outputs}

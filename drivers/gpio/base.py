"""The GPIO contract every backend (gpiod, rpigpio, sim, shared) implements.

Lines are named as on the Pi header (``GPIO17``). ``active_low`` is handled by the
backend, so callers always speak logical values: ``True`` means relay energised /
contact closed. Outputs declare a safe state that is applied when they are claimed
(before any other write, so an active-low relay never blips on), when they are
released, and at process exit. Every failure is a ``drivers.gpio.errors.GpioError``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class OutputLine(Protocol):
    name: str

    @property
    def value(self) -> bool:
        """The logical state last written."""
        ...

    def set(self, value: bool) -> None: ...

    def to_safe_state(self) -> None: ...


@runtime_checkable
class InputLine(Protocol):
    name: str

    def read(self) -> bool:
        """The logical state now (True = contact closed, after active_low)."""
        ...


@runtime_checkable
class GpioBackend(Protocol):
    """A set of claimed lines; ``close`` puts every output in its safe state and frees them."""

    def output(
        self, name: str, *, active_low: bool = False, safe_value: bool = False
    ) -> OutputLine: ...

    def input(self, name: str, *, active_low: bool = False) -> InputLine: ...

    def release(self, name: str) -> None:
        """Give one line back (a reload that rewired a pump); an output goes safe first."""
        ...

    def all_safe(self) -> None: ...

    def close(self) -> None: ...

"""The one GPIO error every backend raises, and the helper that relies on it.

Every backend's failures (a line not found, claimed twice, refused by the kernel, a
write that fails, the shared directory unusable) derive from ``GpioError``, so code
above the backends (``PumpIO.apply``, ``all_safe_each``) can carry on past one failing
line whichever backend is underneath.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from controller.errors import BoosterError

if TYPE_CHECKING:
    from drivers.gpio.base import OutputLine

__all__ = ["GpioError", "all_safe_each"]


class GpioError(BoosterError):
    """A GPIO line could not be found, claimed or driven; ``line`` names it when known."""

    def __init__(self, message: str, *, line: str | None = None) -> None:
        super().__init__(message)
        self.line = line


def all_safe_each(outputs: Iterable[OutputLine]) -> None:
    """Put every output in its safe state; one failing line does not stop the others."""
    failed: list[GpioError] = []
    for line in list(outputs):
        try:
            line.to_safe_state()
        except GpioError as exc:
            failed.append(exc)
    if failed:
        raise GpioError("; ".join(str(e) for e in failed), line=failed[0].line) from failed[0]

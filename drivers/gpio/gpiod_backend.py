"""Relays and inputs through libgpiod v2 (the ``gpiod`` package, >= 2.1): every Pi, the Pi 5 too.

Lines are found by name (``GPIO17``) on every ``/dev/gpiochip*``, because the Pi 5
moved the 40-pin header to another chip (``pinctrl-rp1``: gpiochip4 on early kernels,
gpiochip0 on newer ones); ``gpio.chip`` pins the search to one chip, by path, by
``gpiochipN`` or by label (``pinctrl-rp1``, which does not move). Polarity is the
kernel's job (``active_low`` in the line settings), so the values handed to ``gpiod``
are logical; every output is requested with its safe value as ``output_value``, so the
kernel drives the safe level from the request itself and an active-low relay never
blips on. Each line is its own request, so one line can be released (a reload that
rewires a pump) without touching the others. What happens to a line after its request
is released (``close``, or the kernel cleaning up a killed process) is in docs/gpio.md.

The real ``gpiod`` module is imported lazily and typed ``Any``: it is only installed on
a Pi (``pip install 'boosterd[rpi]'``), and the tests put a fake with the same surface
in ``sys.modules``.
"""

from __future__ import annotations

import errno
import glob
from typing import Any

from drivers.gpio.errors import GpioError, all_safe_each

__all__ = ["GpioError", "GpiodBackend", "GpiodInput", "GpiodOutput", "all_safe_each"]

CONSUMER = "boosterd"
_DENIED = (errno.EACCES, errno.EPERM)
_GROUP_HINT = "add the service user to the gpio group (sudo usermod -aG gpio boosterd)"


def _gpiod() -> Any:
    try:
        import gpiod  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise GpioError(
            "the gpiod package is not installed: pip install 'boosterd[rpi]' "
            "(or set gpio.backend: rpigpio / sim)"
        ) from exc
    return gpiod


class _Line:
    """One line held by one kernel request."""

    def __init__(self, gpiod: Any, path: str, offset: int, name: str, settings: Any) -> None:
        self.name = name
        self.path = path
        self._offset = offset
        try:
            self._request = gpiod.request_lines(path, consumer=CONSUMER, config={offset: settings})
        except OSError as exc:
            raise GpioError(_claim_failure(gpiod, path, offset, name, exc), line=name) from exc
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._request.release()


def _claim_failure(gpiod: Any, path: str, offset: int, name: str, exc: OSError) -> str:
    where = f"{name} ({path} line {offset})"
    if exc.errno == errno.EBUSY:
        consumer = "another process or a kernel driver"
        try:
            with gpiod.Chip(path) as chip:
                used_by = chip.get_line_info(offset).consumer
            if used_by:
                consumer = repr(used_by)
        except OSError:
            pass
        return (
            f"cannot claim {where}: busy, used by {consumer} "
            "(a second boosterd, a leftover gpioset, or an overlay that owns the pin; "
            "see 'gpioinfo')"
        )
    if exc.errno in _DENIED:
        return f"cannot claim {where}: permission denied; {_GROUP_HINT}"
    return f"cannot claim {where}: {exc.strerror or exc}"


class GpiodOutput(_Line):
    """A relay output; ``value`` is the logical state last written."""

    def __init__(
        self, gpiod: Any, path: str, offset: int, name: str, *, active_low: bool, safe: bool
    ) -> None:
        value = gpiod.line.Value
        self._values = (value.INACTIVE, value.ACTIVE)
        settings = gpiod.LineSettings(
            direction=gpiod.line.Direction.OUTPUT,
            output_value=self._values[safe],
            active_low=active_low,
        )
        super().__init__(gpiod, path, offset, name, settings)
        self.safe_value = safe
        self._value = safe

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        if self._released:
            raise GpioError(f"{self.name} was released and cannot be driven", line=self.name)
        try:
            self._request.set_value(self._offset, self._values[value])
        except OSError as exc:
            raise GpioError(
                f"cannot drive {self.name}: {exc.strerror or exc}", line=self.name
            ) from exc
        self._value = value

    def to_safe_state(self) -> None:
        self.set(self.safe_value)


class GpiodInput(_Line):
    """A contact input; ``read`` is logical (True = closed) after ``active_low``."""

    def __init__(self, gpiod: Any, path: str, offset: int, name: str, *, active_low: bool) -> None:
        line = gpiod.line
        self._active = line.Value.ACTIVE
        # A contact to ground (active low) needs the pull-up, one to 3.3 V the pull-down,
        # so an open contact reads inactive instead of floating.
        bias = line.Bias.PULL_UP if active_low else line.Bias.PULL_DOWN
        settings = gpiod.LineSettings(
            direction=line.Direction.INPUT, bias=bias, active_low=active_low
        )
        super().__init__(gpiod, path, offset, name, settings)

    def read(self) -> bool:
        try:
            return bool(self._request.get_value(self._offset) == self._active)
        except OSError as exc:
            raise GpioError(
                f"cannot read {self.name}: {exc.strerror or exc}", line=self.name
            ) from exc


class GpiodBackend:
    """Lines claimed through libgpiod v2; ``chip`` restricts the search to one chip."""

    def __init__(self, *, chip: str | None = None) -> None:
        self._gpiod = _gpiod()
        self._chip = chip
        self._outputs: dict[str, GpiodOutput] = {}
        self._lines: dict[str, _Line] = {}

    def _chips(self) -> list[str]:
        paths = sorted(glob.glob("/dev/gpiochip*"), key=_chip_number)
        if not self._chip:
            return paths
        if self._chip.startswith("/dev/"):
            return [self._chip]
        if self._chip.startswith("gpiochip"):
            return [f"/dev/{self._chip}"]
        # A label (pinctrl-rp1, pinctrl-bcm2835): the chip whose label matches.
        labels = {p: self._label(p) for p in paths}
        match = [p for p, label in labels.items() if label == self._chip]
        if not match:
            found = ", ".join(f"{p} [{label}]" for p, label in labels.items()) or "none"
            raise GpioError(
                f"gpio.chip {self._chip!r}: no gpiochip has that label (found: {found})"
            )
        return match

    def _label(self, path: str) -> str | None:
        try:
            with self._gpiod.Chip(path) as chip:
                return str(chip.get_info().label)
        except OSError:
            return None

    def _find(self, name: str) -> tuple[str, int]:
        searched: list[str] = []
        denied: list[str] = []
        for path in self._chips():
            try:
                with self._gpiod.Chip(path) as chip:
                    label = chip.get_info().label
                    searched.append(f"{path} [{label}]")
                    try:
                        return path, int(chip.line_offset_from_id(name))
                    except (OSError, ValueError):
                        continue  # not on this chip (gpiod raises OSError ENOENT)
            except OSError as exc:
                (denied if exc.errno in _DENIED else searched).append(path)
        where = ", ".join(searched) or "no readable gpiochip"
        message = f"no GPIO line named {name} (searched {where})"
        if denied:
            message += f"; permission denied on {', '.join(denied)}: {_GROUP_HINT}"
        elif self._chip:
            message += f"; gpio.chip is {self._chip!r}: remove it to search every chip"
        raise GpioError(message, line=name)

    def _check_free(self, name: str) -> None:
        if name in self._lines:
            raise GpioError(f"line {name} is configured twice", line=name)

    def output(
        self, name: str, *, active_low: bool = False, safe_value: bool = False
    ) -> GpiodOutput:
        """Claim ``name`` as an output, driven at ``safe_value`` from the request itself."""
        self._check_free(name)
        path, offset = self._find(name)
        line = GpiodOutput(self._gpiod, path, offset, name, active_low=active_low, safe=safe_value)
        self._outputs[name] = line
        self._lines[name] = line
        return line

    def input(self, name: str, *, active_low: bool = False) -> GpiodInput:
        """Claim ``name`` as an input with the pull that makes an open contact inactive."""
        self._check_free(name)
        path, offset = self._find(name)
        line = GpiodInput(self._gpiod, path, offset, name, active_low=active_low)
        self._lines[name] = line
        return line

    def release(self, name: str) -> None:
        """Give one line back: an output is put in its safe state first."""
        line = self._lines.pop(name, None)
        output = self._outputs.pop(name, None)
        try:
            if output is not None:
                output.to_safe_state()
        finally:
            if line is not None:
                line.release()

    def all_safe(self) -> None:
        """Every output to its safe state; tries them all, then reports the ones that failed."""
        all_safe_each(self._outputs.values())

    def close(self) -> None:
        """Safe state, then release every request. Idempotent."""
        try:
            self.all_safe()
        finally:
            for line in self._lines.values():
                line.release()
            self._lines.clear()
            self._outputs.clear()


def _chip_number(path: str) -> tuple[int, str]:
    digits = path.rsplit("gpiochip", 1)[-1]
    return (int(digits) if digits.isdigit() else 1 << 30, path)

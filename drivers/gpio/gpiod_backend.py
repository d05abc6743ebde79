"""Relays and inputs through libgpiod v2 (the ``gpiod`` package, >= 2.1): every Pi, the Pi 5 too.

Lines are found by name (``GPIO17``) on every ``/dev/gpiochip*``, because the Pi 5
moved the 40-pin header to another chip (``pinctrl-rp1``, gpiochip4 on early kernels,
gpiochip0 on newer ones); ``gpio.chip`` pins the search to one chip. Polarity is the
kernel's job (``active_low`` in the line settings), and every output is requested with
its safe value as the initial value, so an active-low relay never blips on at start-up.
When the process ends, however it ends, the kernel releases the requests; a restart
requests the lines again at their safe value before anything else is written.
"""

from __future__ import annotations

import glob
from typing import Any

from controller.errors import BoosterError

CONSUMER = "boosterd"


class GpioError(BoosterError):
    """A GPIO line could not be found or claimed."""


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
    def __init__(self, gpiod: Any, path: str, offset: int, name: str, settings: Any) -> None:
        self.name = name
        self._gpiod = gpiod
        self._offset = offset
        try:
            self._request = gpiod.request_lines(path, consumer=CONSUMER, config={offset: settings})
        except OSError as exc:
            hint = " (is the user in the gpio group?)" if exc.errno == 13 else ""
            raise GpioError(f"cannot claim {name} on {path}: {exc.strerror}{hint}") from exc

    def release(self) -> None:
        self._request.release()


class GpiodOutput(_Line):
    def __init__(
        self, gpiod: Any, path: str, offset: int, name: str, *, active_low: bool, safe: bool
    ) -> None:
        from gpiod.line import Direction, Value  # type: ignore[import-not-found,unused-ignore]

        self._values = (Value.INACTIVE, Value.ACTIVE)
        settings = gpiod.LineSettings(
            direction=Direction.OUTPUT, output_value=self._values[safe], active_low=active_low
        )
        super().__init__(gpiod, path, offset, name, settings)
        self._safe = safe
        self._value = safe

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        self._request.set_value(self._offset, self._values[value])
        self._value = value

    def to_safe_state(self) -> None:
        self.set(self._safe)


class GpiodInput(_Line):
    def __init__(self, gpiod: Any, path: str, offset: int, name: str, *, active_low: bool) -> None:
        from gpiod.line import Bias, Direction, Value  # type: ignore[import-not-found,unused-ignore]

        self._active = Value.ACTIVE
        # Contacts to ground (active low) get the pull-up; contacts to 3.3 V a pull-down.
        bias = Bias.PULL_UP if active_low else Bias.PULL_DOWN
        settings = gpiod.LineSettings(direction=Direction.INPUT, bias=bias, active_low=active_low)
        super().__init__(gpiod, path, offset, name, settings)

    def read(self) -> bool:
        return bool(self._request.get_value(self._offset) == self._active)


class GpiodBackend:
    def __init__(self, *, chip: str | None = None) -> None:
        self._gpiod = _gpiod()
        if chip:
            self.chips = [chip if chip.startswith("/dev/") else f"/dev/{chip}"]
        else:
            self.chips = sorted(glob.glob("/dev/gpiochip*"))
        self._outputs: dict[str, GpiodOutput] = {}
        self._lines: dict[str, _Line] = {}

    def _find(self, name: str) -> tuple[str, int]:
        for path in self.chips:
            try:
                with self._gpiod.Chip(path) as chip:
                    return path, int(chip.line_offset_from_id(name))
            except (OSError, ValueError):
                continue
        searched = ", ".join(self.chips) or "no /dev/gpiochip* devices"
        raise GpioError(f"no GPIO line named {name} (searched {searched})")

    def _claim(self, name: str) -> None:
        if name in self._lines:
            raise GpioError(f"line {name} is configured twice")

    def output(
        self, name: str, *, active_low: bool = False, safe_value: bool = False
    ) -> GpiodOutput:
        self._claim(name)
        path, offset = self._find(name)
        line = GpiodOutput(self._gpiod, path, offset, name, active_low=active_low, safe=safe_value)
        self._outputs[name] = line
        self._lines[name] = line
        return line

    def input(self, name: str, *, active_low: bool = False) -> GpiodInput:
        self._claim(name)
        path, offset = self._find(name)
        line = GpiodInput(self._gpiod, path, offset, name, active_low=active_low)
        self._lines[name] = line
        return line

    def release(self, name: str) -> None:
        line = self._lines.pop(name, None)
        self._outputs.pop(name, None)
        if line is not None:
            line.release()

    def all_safe(self) -> None:
        for line in self._outputs.values():
            line.to_safe_state()

    def close(self) -> None:
        self.all_safe()
        for line in self._lines.values():
            line.release()
        self._lines.clear()
        self._outputs.clear()

"""Relays and inputs through the RPi.GPIO API (RPi.GPIO itself, or the rpi-lgpio shim on
Bookworm and the Pi 5), for installations that already use it. BCM numbering from the
``GPIOnn`` name; outputs set up with their safe level as ``initial``; inputs get the
pull-up when the contact is active low (switching to ground), a pull-down otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from drivers.gpio.gpiod_backend import GpioError

_NAME = re.compile(r"^GPIO(\d{1,2})$")


def _bcm(name: str) -> int:
    m = _NAME.match(name)
    if m is None or int(m.group(1)) > 27:
        raise GpioError(f"{name}: the rpigpio backend needs a header name GPIO0..GPIO27")
    return int(m.group(1))


class RpiOutput:
    def __init__(self, gpio: Any, name: str, *, active_low: bool, safe: bool) -> None:
        self.name = name
        self._gpio = gpio
        self._pin = _bcm(name)
        self._active_low = active_low
        self._safe = safe
        self._value = safe
        gpio.setup(self._pin, gpio.OUT, initial=self._level(safe))

    def _level(self, value: bool) -> int:
        return int(self._gpio.HIGH if value != self._active_low else self._gpio.LOW)

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        self._gpio.output(self._pin, self._level(value))
        self._value = value

    def to_safe_state(self) -> None:
        self.set(self._safe)


class RpiInput:
    def __init__(self, gpio: Any, name: str, *, active_low: bool) -> None:
        self.name = name
        self._gpio = gpio
        self._pin = _bcm(name)
        self._active_low = active_low
        pull = gpio.PUD_UP if active_low else gpio.PUD_DOWN
        gpio.setup(self._pin, gpio.IN, pull_up_down=pull)

    def read(self) -> bool:
        return bool(self._gpio.input(self._pin)) != self._active_low


class RpiGpioBackend:
    def __init__(self) -> None:
        try:
            import RPi.GPIO as gpio  # type: ignore[import-not-found,unused-ignore]
        except (ImportError, RuntimeError) as exc:
            raise GpioError(
                "RPi.GPIO is not available: pip install 'boosterd[rpi]' (rpi-lgpio) "
                "or set gpio.backend: gpiod"
            ) from exc
        self._gpio: Any = gpio
        gpio.setwarnings(False)
        gpio.setmode(gpio.BCM)
        self._outputs: dict[str, RpiOutput] = {}
        self._claimed: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self._claimed:
            raise GpioError(f"line {name} is configured twice")
        self._claimed.add(name)

    def output(self, name: str, *, active_low: bool = False, safe_value: bool = False) -> RpiOutput:
        self._claim(name)
        line = RpiOutput(self._gpio, name, active_low=active_low, safe=safe_value)
        self._outputs[name] = line
        return line

    def input(self, name: str, *, active_low: bool = False) -> RpiInput:
        self._claim(name)
        return RpiInput(self._gpio, name, active_low=active_low)

    def release(self, name: str) -> None:
        """Give a line back (a reload that rewired a pump): safe first, then an input again."""
        line = self._outputs.pop(name, None)
        if line is not None:
            line.to_safe_state()
        if name in self._claimed:
            self._claimed.discard(name)
            self._gpio.cleanup([_bcm(name)])

    def all_safe(self) -> None:
        for line in self._outputs.values():
            line.to_safe_state()

    def close(self) -> None:
        self.all_safe()
        pins = [_bcm(n) for n in self._claimed]
        if pins:
            self._gpio.cleanup(pins)
        self._claimed.clear()
        self._outputs.clear()

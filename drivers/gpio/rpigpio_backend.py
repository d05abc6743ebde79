"""Relays and inputs through the RPi.GPIO API, for installations that already use it.

Works with RPi.GPIO itself (Pi 0-4, direct register access) and with the ``rpi-lgpio``
shim (same API over the kernel's gpiochip device; Bookworm and the Pi 5). BCM numbering
from the ``GPIOnn`` name. Polarity is handled here, not by the library: RPi.GPIO has no
active-low setting, so logical values are turned into levels before every write.
Outputs are set up with their safe *level* as ``initial``, so an active-low relay is
driven high (off) from the first instant. Inputs get the internal pull-up when the
contact is active low (it switches to ground), the pull-down otherwise, so an open
contact reads inactive. ``close`` puts the outputs safe, then ``cleanup`` returns the
pins to inputs without pulls.

The module is imported lazily and typed ``Any``: it is only installed on a Pi.
"""

from __future__ import annotations

import re
from typing import Any

from drivers.gpio.errors import GpioError, all_safe_each

_NAME = re.compile(r"^GPIO(\d{1,2})$")


def bcm_number(name: str) -> int:
    """The BCM number of a header line name: ``GPIO17`` -> 17."""
    m = _NAME.match(name)
    if m is None or int(m.group(1)) > 27:
        raise GpioError(f"{name}: the rpigpio backend needs a header name GPIO0..GPIO27", line=name)
    return int(m.group(1))


def _failed(action: str, name: str, exc: Exception) -> GpioError:
    # RPi.GPIO and rpi-lgpio report everything as RuntimeError with a short text
    # ('GPIO busy', 'can not open gpiochip'): keep it, add what a technician can do.
    text = str(exc) or type(exc).__name__
    hint = ""
    if "busy" in text.lower():
        hint = " (another process holds the pin: a second boosterd, or gpioset; see 'gpioinfo')"
    elif "permission" in text.lower() or "open" in text.lower():
        hint = " (add the service user to the gpio group)"
    return GpioError(f"cannot {action} {name}: {text}{hint}", line=name)


class RpiOutput:
    """A relay output; ``value`` is the logical state last written."""

    def __init__(self, gpio: Any, name: str, *, active_low: bool, safe: bool) -> None:
        self.name = name
        self.safe_value = safe
        self._gpio = gpio
        self._pin = bcm_number(name)
        self._active_low = active_low
        self._value = safe
        try:
            gpio.setup(self._pin, gpio.OUT, initial=self._level(safe))
        except (RuntimeError, ValueError) as exc:
            raise _failed("claim", name, exc) from exc

    def _level(self, value: bool) -> int:
        return int(self._gpio.HIGH if value != self._active_low else self._gpio.LOW)

    @property
    def value(self) -> bool:
        return self._value

    def set(self, value: bool) -> None:
        try:
            self._gpio.output(self._pin, self._level(value))
        except (RuntimeError, ValueError) as exc:
            raise _failed("drive", self.name, exc) from exc
        self._value = value

    def to_safe_state(self) -> None:
        self.set(self.safe_value)


class RpiInput:
    """A contact input; ``read`` is logical (True = closed) after ``active_low``."""

    def __init__(self, gpio: Any, name: str, *, active_low: bool) -> None:
        self.name = name
        self._gpio = gpio
        self._pin = bcm_number(name)
        self._active_low = active_low
        pull = gpio.PUD_UP if active_low else gpio.PUD_DOWN
        try:
            gpio.setup(self._pin, gpio.IN, pull_up_down=pull)
        except (RuntimeError, ValueError) as exc:
            raise _failed("claim", name, exc) from exc

    def read(self) -> bool:
        try:
            return bool(self._gpio.input(self._pin)) != self._active_low
        except (RuntimeError, ValueError) as exc:
            raise _failed("read", self.name, exc) from exc


def _import_rpi_gpio() -> Any:
    try:
        import RPi.GPIO as gpio  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, RuntimeError) as exc:
        # RuntimeError: the original RPi.GPIO refuses to import off a Pi.
        raise GpioError(
            f"RPi.GPIO is not available ({exc}): pip install 'boosterd[rpi]' (rpi-lgpio) "
            "or set gpio.backend: gpiod"
        ) from exc
    return gpio


class RpiGpioBackend:
    """Lines claimed through the RPi.GPIO API (BCM numbering)."""

    def __init__(self) -> None:
        gpio = _import_rpi_gpio()
        self._gpio: Any = gpio
        try:
            gpio.setwarnings(False)
            gpio.setmode(gpio.BCM)  # rpi-lgpio opens the gpiochip here
        except (RuntimeError, ValueError) as exc:
            raise _failed("open", "the GPIO chip", exc) from exc
        self._outputs: dict[str, RpiOutput] = {}
        self._claimed: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self._claimed:
            raise GpioError(f"line {name} is configured twice", line=name)

    def output(self, name: str, *, active_low: bool = False, safe_value: bool = False) -> RpiOutput:
        """Claim ``name`` as an output, set up at its safe level."""
        self._claim(name)
        line = RpiOutput(self._gpio, name, active_low=active_low, safe=safe_value)
        self._claimed.add(name)
        self._outputs[name] = line
        return line

    def input(self, name: str, *, active_low: bool = False) -> RpiInput:
        """Claim ``name`` as an input with the pull that makes an open contact inactive."""
        self._claim(name)
        line = RpiInput(self._gpio, name, active_low=active_low)
        self._claimed.add(name)
        return line

    def release(self, name: str) -> None:
        """Give a line back (a reload that rewired a pump): safe first, then an input again."""
        line = self._outputs.pop(name, None)
        try:
            if line is not None:
                line.to_safe_state()
        finally:
            if name in self._claimed:
                self._claimed.discard(name)
                self._gpio.cleanup([bcm_number(name)])

    def all_safe(self) -> None:
        """Every output to its safe state; tries them all, then reports the ones that failed."""
        all_safe_each(self._outputs.values())

    def close(self) -> None:
        """Safe state, then ``cleanup`` of the pins this backend set up. Idempotent."""
        try:
            self.all_safe()
        finally:
            pins = sorted(bcm_number(n) for n in self._claimed)
            if pins:
                self._gpio.cleanup(pins)
            self._claimed.clear()
            self._outputs.clear()

"""The gpiod and RPi.GPIO backends against fakes of those libraries (no GPIO chip here).

The fakes implement only the library surface the backends use, and record every
request and write, so the tests can check line lookup by name across chips (the Pi 5
layout), that an active-low relay is requested at its safe (off) level, and polarity.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

import pytest

from drivers.gpio.base import GpioBackend


class Direction(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


class Bias(enum.Enum):
    PULL_UP = 1
    PULL_DOWN = 2


class LineSettings:
    def __init__(
        self,
        *,
        direction: Direction,
        output_value: Value = Value.INACTIVE,
        active_low: bool = False,
        bias: Bias | None = None,
    ) -> None:
        self.direction = direction
        self.output_value = output_value
        self.active_low = active_low
        self.bias = bias


class FakeGpiod(types.ModuleType):
    """Chips by path, each a dict of line name -> offset; electrical levels per line."""

    def __init__(self, chips: dict[str, dict[str, int]]) -> None:
        super().__init__("gpiod")
        self.chips = chips
        self.levels: dict[tuple[str, int], int] = {}
        self.log: list[tuple[str, str, int, Any]] = []
        self.LineSettings = LineSettings
        fake = self

        class Chip:
            def __init__(self, path: str) -> None:
                if path not in fake.chips:
                    raise OSError(2, "No such file")
                self.path = path

            def __enter__(self) -> Chip:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def line_offset_from_id(self, name: str) -> int:
                if name not in fake.chips[self.path]:
                    raise ValueError(name)
                return fake.chips[self.path][name]

        class Request:
            def __init__(self, path: str, config: dict[int, LineSettings]) -> None:
                self.path, self.config = path, config
                for off, s in config.items():
                    fake.log.append(("request", path, off, s))
                    if s.direction is Direction.OUTPUT:
                        self._drive(off, s.output_value)

            def _drive(self, off: int, value: Value) -> None:
                active = value is Value.ACTIVE
                level = int(active != self.config[off].active_low)
                fake.levels[(self.path, off)] = level
                fake.log.append(("level", self.path, off, level))

            def set_value(self, off: int, value: Value) -> None:
                self._drive(off, value)

            def get_value(self, off: int) -> Value:
                level = fake.levels.get((self.path, off), 0)
                active = bool(level) != self.config[off].active_low
                return Value.ACTIVE if active else Value.INACTIVE

            def release(self) -> None:
                fake.log.append(("release", self.path, 0, None))

        self.Chip = Chip
        self.request_lines = lambda path, consumer, config: Request(path, config)


@pytest.fixture
def pi5(monkeypatch: pytest.MonkeyPatch) -> FakeGpiod:
    """A Pi 5: the header lines live on gpiochip4 (pinctrl-rp1), gpiochip0 has others."""
    fake = FakeGpiod({
        "/dev/gpiochip0": {"ID_SD": 0},
        "/dev/gpiochip4": {"GPIO17": 17, "GPIO22": 22, "GPIO27": 27},
    })  # fmt: skip
    line = types.ModuleType("gpiod.line")
    line.Direction, line.Value, line.Bias = Direction, Value, Bias  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiod", fake)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    monkeypatch.setattr("drivers.gpio.gpiod_backend.glob.glob", lambda _: list(fake.chips))
    return fake


def test_lines_are_found_by_name_on_whichever_chip_has_them(pi5: FakeGpiod) -> None:
    from drivers.gpio.gpiod_backend import GpiodBackend

    gpio = GpiodBackend()
    assert isinstance(gpio, GpioBackend)
    gpio.output("GPIO17", active_low=True)
    assert ("/dev/gpiochip4", 17) in pi5.levels


def test_an_active_low_relay_is_requested_off_and_never_blips(pi5: FakeGpiod) -> None:
    from drivers.gpio.gpiod_backend import GpiodBackend

    relay = GpiodBackend().output("GPIO17", active_low=True, safe_value=False)
    levels = [entry[3] for entry in pi5.log if entry[0] == "level"]
    assert levels == [1]  # high = off on an active-low board, from the very request
    relay.set(True)
    assert pi5.levels[("/dev/gpiochip4", 17)] == 0
    relay.to_safe_state()
    assert pi5.levels[("/dev/gpiochip4", 17)] == 1


def test_inputs_apply_polarity_and_get_the_matching_pull(pi5: FakeGpiod) -> None:
    from drivers.gpio.gpiod_backend import GpiodBackend

    gpio = GpiodBackend()
    contact = gpio.input("GPIO22", active_low=True)
    settings = next(e[3] for e in pi5.log if e[0] == "request" and e[2] == 22)
    assert settings.bias is Bias.PULL_UP
    pi5.levels[("/dev/gpiochip4", 22)] = 0
    assert contact.read() is True
    pi5.levels[("/dev/gpiochip4", 22)] = 1
    assert contact.read() is False


def test_missing_line_and_named_chip_errors_say_where_they_looked(pi5: FakeGpiod) -> None:
    from drivers.gpio.gpiod_backend import GpiodBackend, GpioError

    with pytest.raises(GpioError, match=r"no GPIO line named GPIO99 \(searched /dev/gpiochip0"):
        GpiodBackend().output("GPIO99")
    with pytest.raises(GpioError, match="searched /dev/gpiochip0"):
        GpiodBackend(chip="gpiochip0").output("GPIO17")


def test_close_puts_every_relay_off_and_releases(pi5: FakeGpiod) -> None:
    from drivers.gpio.gpiod_backend import GpiodBackend

    gpio = GpiodBackend()
    a = gpio.output("GPIO17", active_low=True)
    b = gpio.output("GPIO27")
    a.set(True)
    b.set(True)
    gpio.close()
    assert pi5.levels[("/dev/gpiochip4", 17)] == 1
    assert pi5.levels[("/dev/gpiochip4", 27)] == 0
    assert sum(1 for e in pi5.log if e[0] == "release") == 2


def test_rpigpio_backend_uses_bcm_numbers_and_safe_initial_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("RPi.GPIO")
    fake.__dict__.update(
        BCM="BCM", OUT="OUT", IN="IN", HIGH=1, LOW=0, PUD_UP="UP", PUD_DOWN="DOWN",
        setwarnings=lambda flag: None, setmode=lambda mode: calls.append(("mode", mode)),
        setup=lambda pin, d, **kw: calls.append(("setup", pin, d, kw)),
        output=lambda pin, level: calls.append(("out", pin, level)),
        input=lambda pin: 0, cleanup=lambda pins: calls.append(("cleanup", tuple(pins))),
    )  # fmt: skip
    pkg = types.ModuleType("RPi")
    pkg.GPIO = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", pkg)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    from drivers.gpio.rpigpio_backend import RpiGpioBackend

    gpio = RpiGpioBackend()
    relay = gpio.output("GPIO17", active_low=True)
    contact = gpio.input("GPIO22", active_low=True)
    assert ("setup", 17, "OUT", {"initial": 1}) in calls  # off on an active-low board
    assert ("setup", 22, "IN", {"pull_up_down": "UP"}) in calls
    assert contact.read() is True  # pulled low = contact closed
    relay.set(True)
    energised = calls[-1]
    gpio.close()
    assert energised == ("out", 17, 0)
    assert ("out", 17, 1) in calls
    assert calls[-1][0] == "cleanup"

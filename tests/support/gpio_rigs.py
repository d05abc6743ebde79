"""One test rig per entry of ``drivers.gpio.factory.BACKENDS``: the contract suite's world.

A rig is a backend opened through the registry, plus the outside world around it: the
electrical level of a line, driving an input, and breaking a line so that its writes
fail. ``RIGS`` must name every registry entry: ``open_rig`` fails on a backend that has
none, so a new backend cannot skip the contract suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.config.schema import GpioConfig
from drivers.gpio.base import GpioBackend
from drivers.gpio.factory import BACKENDS
from tests.support.fake_gpio import PI5_NOW, install_fake_gpiod, install_fake_rpi_gpio


@dataclass
class Rig:
    """A backend plus the outside world around its lines."""

    backend: GpioBackend
    level: Callable[[str], bool]
    drive: Callable[[str, bool], None]
    #: make every later write to that line fail, as a dead driver would
    break_line: Callable[[str], None]
    #: False when breaking one line breaks them all (the shared files: one file, all lines)
    breaks_one_line: bool = True


def _gpiod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rig:
    fake = install_fake_gpiod(monkeypatch, PI5_NOW)
    backend = BACKENDS["gpiod"](GpioConfig(backend="gpiod"))
    return Rig(backend, lambda n: bool(fake.level(n)), fake.drive, fake.broken.add)


def _rpigpio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rig:
    from drivers.gpio.rpigpio_backend import bcm_number

    rpi = install_fake_rpi_gpio(monkeypatch)

    def drive(name: str, level: bool) -> None:
        rpi.levels[bcm_number(name)] = int(level)

    return Rig(
        BACKENDS["rpigpio"](GpioConfig(backend="rpigpio")),
        lambda n: bool(rpi.levels[bcm_number(n)]),
        drive,
        lambda n: rpi.broken.add(bcm_number(n)),
    )


def _shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rig:
    from drivers.gpio.shared import OUTPUTS, SharedGpioPeer

    directory = tmp_path / "gpio"
    backend = BACKENDS["shared"](GpioConfig(backend="sim", sim_dir=str(directory)))
    # An active-low relay board on every header pin: a line nobody drives idles high.
    peer = SharedGpioPeer(directory, idle_levels={f"GPIO{n}": True for n in range(28)})

    def break_all(name: str) -> None:
        # A directory where the outputs file goes: the atomic replace fails (EISDIR).
        path = directory / OUTPUTS
        path.unlink(missing_ok=True)
        path.mkdir()

    return Rig(backend, peer.level, peer.set_input_level, break_all, breaks_one_line=False)


def _sim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rig:
    from drivers.gpio.sim import SimGpio

    backend = BACKENDS["sim"](GpioConfig(backend="sim"))
    assert isinstance(backend, SimGpio)
    return Rig(backend, backend.level, backend.set_input_level, backend.break_line)


RIGS: dict[str, Callable[[pytest.MonkeyPatch, Path], Rig]] = {
    "gpiod": _gpiod,
    "rpigpio": _rpigpio,
    "shared": _shared,
    "sim": _sim,
}


def open_rig(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rig:
    """The rig for registry entry ``name``; a test failure if it has none."""
    make = RIGS.get(name)
    if make is None:
        pytest.fail(f"GPIO backend {name!r} is in BACKENDS but has no rig in {__name__}")
    return make(monkeypatch, tmp_path)

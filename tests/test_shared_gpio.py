"""Simulated GPIO shared between 'boosterd run' and 'boosterd sim' through files."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.gpio.base import GpioBackend
from drivers.gpio.shared import SharedGpio, SharedGpioError, SharedGpioPeer


def test_active_low_relay_is_claimed_off_and_seen_by_the_peer(tmp_path: Path) -> None:
    gpio = SharedGpio(tmp_path)
    assert isinstance(gpio, GpioBackend)
    peer = SharedGpioPeer(tmp_path, idle_levels={"GPIO17": True})
    assert peer.level("GPIO17") is True  # nobody drives it yet: the board's pull-up
    relay = gpio.output("GPIO17", active_low=True)
    assert peer.level("GPIO17") is True  # claimed at its safe value: still off
    relay.set(True)
    assert peer.level("GPIO17") is False  # energised = pulled low
    gpio.close()
    assert peer.level("GPIO17") is True


def test_inputs_written_by_the_peer_are_read_with_polarity(tmp_path: Path) -> None:
    gpio = SharedGpio(tmp_path)
    peer = SharedGpioPeer(tmp_path)
    feedback = gpio.input("GPIO22", active_low=True)
    assert feedback.read() is False  # unwired input reads inactive
    peer.set_input_level("GPIO22", False)
    assert feedback.read() is True
    peer.set_input_level("GPIO22", True)
    assert feedback.read() is False


def test_all_safe_and_double_claim(tmp_path: Path) -> None:
    gpio = SharedGpio(tmp_path)
    peer = SharedGpioPeer(tmp_path)
    a = gpio.output("GPIO5")
    b = gpio.output("GPIO6", safe_value=False)
    a.set(True)
    b.set(True)
    assert peer.outputs() == {"GPIO5": True, "GPIO6": True}
    gpio.all_safe()
    assert peer.outputs() == {"GPIO5": False, "GPIO6": False}
    with pytest.raises(SharedGpioError, match="GPIO5"):
        gpio.output("GPIO5")


def test_a_released_line_can_be_claimed_again(tmp_path: Path) -> None:
    gpio = SharedGpio(tmp_path)
    peer = SharedGpioPeer(tmp_path)
    gpio.output("GPIO5").set(True)
    gpio.release("GPIO5")
    assert "GPIO5" not in peer.outputs()
    again = gpio.output("GPIO5")
    assert again.value is False
    assert peer.outputs() == {"GPIO5": False}

"""Pump lines on the simulated GPIO: safe claims, writes only on change, glitch-free reload."""

from __future__ import annotations

from controller.config import load_config
from drivers.gpio.factory import PumpIO
from drivers.gpio.sim import SimGpio
from tests.conftest import EXAMPLE_CONFIG

CFG = load_config(EXAMPLE_CONFIG)


def test_active_low_relays_are_claimed_off_and_never_blip() -> None:
    gpio = SimGpio()
    PumpIO(gpio, CFG.pumps)
    # Every relay line was first driven high (off for an active-low board), nothing else.
    relay_writes = [(line, level) for _, line, level in gpio.history]
    assert relay_writes == [("GPIO17", True), ("GPIO27", True), ("GPIO24", True)]


def test_apply_writes_only_the_lines_that_change() -> None:
    gpio = SimGpio()
    io = PumpIO(gpio, CFG.pumps)
    io.apply({"P1": True, "P2": False, "P3": False})
    n = len(gpio.history)
    io.apply({"P1": True, "P2": False, "P3": False})
    assert len(gpio.history) == n
    assert gpio.level("GPIO17") is False  # energised, active low


def test_reload_keeps_unchanged_pumps_untouched_and_rewires_changed_ones() -> None:
    gpio = SimGpio()
    io = PumpIO(gpio, CFG.pumps)
    io.apply({"P1": True, "P2": True, "P3": False})
    n = len(gpio.history)
    pumps = dict(CFG.pumps)
    pumps["P3"] = pumps["P3"].model_copy(update={"relay": "GPIO25"})
    io.reclaim(pumps)
    new_writes = gpio.history[n:]
    # The running pumps' relays were not written at all; P3 moved to its new line (off).
    assert {line for _, line, _ in new_writes} == {"GPIO25"}
    assert gpio.level("GPIO25") is True
    assert io.states() == {"P1": True, "P2": True, "P3": False}


def test_feedback_and_fault_inputs_follow_polarity() -> None:
    gpio = SimGpio()
    io = PumpIO(gpio, CFG.pumps)
    assert io.feedback("P1") is False
    gpio.set_input_level("GPIO22", True)  # contact closed (inputs are active high here)
    assert io.feedback("P1") is True
    gpio.set_input_level("GPIO23", True)
    assert io.fault("P1") is True
    io.close()
    assert gpio.outputs() == {}
    assert gpio.level("GPIO17") is True

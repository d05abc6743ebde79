"""Pump lines on the simulated GPIO: safe claims, writes only on change, glitch-free reload."""

from __future__ import annotations

import pytest

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
    for relay in ("GPIO17", "GPIO27", "GPIO24"):
        gpio.assert_levels(relay, [True])


def test_history_is_stamped_by_the_backends_clock_and_asserts_per_line() -> None:
    now = [100.0]
    gpio = SimGpio(clock=lambda: now[0])
    io = PumpIO(gpio, CFG.pumps)
    now[0] = 160.0
    io.set("P1", True)
    now[0] = 220.0
    io.set("P1", False)
    assert [(c.t, c.level) for c in gpio.history if c.line == "GPIO17"] == [
        (100.0, True),
        (160.0, False),
        (220.0, True),
    ]
    gpio.assert_levels("GPIO17", [False, True], since=150.0)
    gpio.assert_levels("GPIO27", [True])
    with pytest.raises(AssertionError, match=r"GPIO17: levels \[True, False, True\].*160\.0"):
        gpio.assert_levels("GPIO17", [True])


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
    assert {change.line for change in new_writes} == {"GPIO25"}
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

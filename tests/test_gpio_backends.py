"""Every GPIO backend against one contract, then gpiod, RPi.GPIO and PumpIO in detail.

There is no GPIO chip here: the gpiod and rpigpio backends run against fakes of their
libraries (tests/support/fake_gpio.py) that keep the *electrical* level of every line
with a log of every request, level change and release. The contract suite runs once per
entry of the registry that selects backends (``drivers.gpio.factory.BACKENDS``), each
through its rig in tests/support/gpio_rigs.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from controller.config import load_config
from controller.config.schema import GpioConfig
from controller.values import PumpInputs
from drivers.gpio.base import GpioBackend
from drivers.gpio.errors import GpioError
from drivers.gpio.factory import BACKENDS, PumpIO, backend_key, open_backend
from drivers.gpio.gpiod_backend import GpiodBackend
from drivers.gpio.sim import SimGpio
from tests.conftest import EXAMPLE_CONFIG
from tests.support.fake_gpio import (
    HEADER,
    PI5_EARLY,
    PI5_NOW,
    Bias,
    Direction,
    FakeChipSpec,
    FakeGpiod,
    FakeRpiGpio,
    Value,
    install_fake_gpiod,
    install_fake_rpi_gpio,
)
from tests.support.gpio_rigs import RIGS, Rig, open_rig

CFG = load_config(EXAMPLE_CONFIG)


@pytest.fixture
def pi5(monkeypatch: pytest.MonkeyPatch) -> FakeGpiod:
    return install_fake_gpiod(monkeypatch, PI5_EARLY)


@pytest.fixture
def rpi(monkeypatch: pytest.MonkeyPatch) -> FakeRpiGpio:
    return install_fake_rpi_gpio(monkeypatch)


# -- one contract, every backend in the registry --------------------------------------------


@pytest.fixture(params=sorted(BACKENDS))
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rig:
    return open_rig(request.param, monkeypatch, tmp_path)


def test_every_backend_in_the_registry_has_a_contract_rig() -> None:
    assert set(RIGS) == set(BACKENDS)


@pytest.mark.parametrize(
    ("active_low", "safe", "level_at_claim"),
    [(True, False, True), (False, False, False), (True, True, False), (False, True, True)],
)
def test_contract_outputs_start_at_their_safe_level(
    rig: Rig, active_low: bool, safe: bool, level_at_claim: bool
) -> None:
    assert isinstance(rig.backend, GpioBackend)
    line = rig.backend.output("GPIO17", active_low=active_low, safe_value=safe)
    assert rig.level("GPIO17") is level_at_claim
    assert line.value is safe


def test_contract_logical_values_follow_polarity(rig: Rig) -> None:
    relay = rig.backend.output("GPIO17", active_low=True)
    relay.set(True)
    assert rig.level("GPIO17") is False  # energised: an active-low board pulls low
    relay.to_safe_state()
    assert rig.level("GPIO17") is True
    contact = rig.backend.input("GPIO22", active_low=True)
    rig.drive("GPIO22", False)  # a contact to ground closes
    assert contact.read() is True
    rig.drive("GPIO22", True)
    assert contact.read() is False


def test_contract_a_line_cannot_be_claimed_twice(rig: Rig) -> None:
    rig.backend.output("GPIO17")
    with pytest.raises(GpioError, match="GPIO17"):
        rig.backend.input("GPIO17")


def test_contract_release_puts_an_output_safe_and_frees_the_line(rig: Rig) -> None:
    rig.backend.output("GPIO17", active_low=True).set(True)
    assert rig.level("GPIO17") is False
    rig.backend.release("GPIO17")
    assert rig.level("GPIO17") is True
    again = rig.backend.output("GPIO17", active_low=True)  # free again
    assert again.value is False


def test_contract_a_failing_write_is_a_gpio_error_and_changes_nothing(rig: Rig) -> None:
    relay = rig.backend.output("GPIO17", active_low=True)
    rig.break_line("GPIO17")
    with pytest.raises(GpioError):
        relay.set(True)
    assert relay.value is False  # not written: still the state the outside world sees


def test_contract_pump_io_applies_the_other_relays_past_a_failing_one(rig: Rig) -> None:
    io = PumpIO(rig.backend, CFG.pumps)
    rig.break_line(CFG.pumps["P1"].relay)
    with pytest.raises(GpioError):
        io.apply({"P1": True, "P2": True})
    if rig.breaks_one_line:
        assert io.states() == {"P1": False, "P2": True, "P3": False}
        assert rig.level(CFG.pumps["P2"].relay) is False  # energised (active low)


def test_contract_close_puts_every_output_safe(rig: Rig) -> None:
    a = rig.backend.output("GPIO17", active_low=True)
    b = rig.backend.output("GPIO27")
    a.set(True)
    b.set(True)
    rig.backend.close()
    assert rig.level("GPIO17") is True
    assert rig.level("GPIO27") is False


# -- gpiod: finding lines -------------------------------------------------------------------


@pytest.mark.parametrize("chips", [PI5_EARLY, PI5_NOW], ids=["gpiochip4", "gpiochip0"])
def test_lines_are_found_by_name_whichever_chip_holds_the_header(
    monkeypatch: pytest.MonkeyPatch, chips: dict[str, FakeChipSpec]
) -> None:
    fake = install_fake_gpiod(monkeypatch, chips)
    relay = GpiodBackend().output("GPIO17", active_low=True)
    header = next(p for p, s in chips.items() if s.label == "pinctrl-rp1")
    assert relay.path == header
    assert fake.held == {(header, 17): "boosterd"}


@pytest.mark.parametrize("chip", ["/dev/gpiochip4", "gpiochip4", "pinctrl-rp1"])
def test_gpio_chip_setting_takes_a_path_a_name_or_a_label(pi5: FakeGpiod, chip: str) -> None:
    assert GpiodBackend(chip=chip).output("GPIO17").path == "/dev/gpiochip4"


def test_a_named_chip_without_the_line_says_so(pi5: FakeGpiod) -> None:
    with pytest.raises(GpioError, match=r"searched /dev/gpiochip0 \[gpio-brcmstb.*gpio\.chip"):
        GpiodBackend(chip="gpiochip0").output("GPIO17")


def test_an_unknown_chip_label_lists_the_labels_found(pi5: FakeGpiod) -> None:
    with pytest.raises(GpioError, match=r"no gpiochip has that label.*gpiochip4 \[pinctrl-rp1\]"):
        GpiodBackend(chip="pinctrl-bcm2835").output("GPIO17")


def test_a_missing_line_lists_every_chip_searched(pi5: FakeGpiod) -> None:
    with pytest.raises(GpioError) as info:
        GpiodBackend().output("GPIO99")
    assert str(info.value) == (
        "no GPIO line named GPIO99 (searched /dev/gpiochip0 [gpio-brcmstb@107d508500], "
        "/dev/gpiochip4 [pinctrl-rp1], /dev/gpiochip10 [gpio-brcmstb@107d517c00])"
    )
    assert info.value.line == "GPIO99"


def test_a_chip_without_permission_points_to_the_gpio_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chips = {"/dev/gpiochip0": FakeChipSpec("pinctrl-rp1", HEADER, denied=True)}
    install_fake_gpiod(monkeypatch, chips)
    with pytest.raises(GpioError, match=r"permission denied on /dev/gpiochip0: add .* gpio group"):
        GpiodBackend().output("GPIO17")


def test_a_busy_line_names_who_holds_it(pi5: FakeGpiod) -> None:
    pi5.held[("/dev/gpiochip4", 17)] = "gpioset"
    with pytest.raises(
        GpioError, match=r"GPIO17 \(/dev/gpiochip4 line 17\): busy, used by 'gpioset'"
    ):
        GpiodBackend().output("GPIO17")


def test_without_the_gpiod_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod -> ImportError
    with pytest.raises(GpioError, match=r"pip install 'boosterd\[rpi\]'"):
        GpiodBackend()


# -- gpiod: requests ------------------------------------------------------------------------


def test_an_active_low_relay_is_driven_high_by_the_request_itself(pi5: FakeGpiod) -> None:
    relay = GpiodBackend().output("GPIO17", active_low=True, safe_value=False)
    request = pi5.events("GPIO17", "request")
    assert request[0][1].direction is Direction.OUTPUT
    assert request[0][1].active_low is True  # polarity is the kernel's job
    assert request[0][1].output_value is Value.INACTIVE
    assert pi5.events("GPIO17", "level") == [("level", 1)]  # never low before the first set
    relay.set(True)
    assert pi5.events("GPIO17", "level") == [("level", 1), ("level", 0)]


def test_inputs_get_the_pull_that_makes_an_open_contact_inactive(pi5: FakeGpiod) -> None:
    gpio = GpiodBackend()
    gpio.input("GPIO22", active_low=True)
    gpio.input("GPIO23", active_low=False)
    assert pi5.events("GPIO22", "request")[0][1].bias is Bias.PULL_UP
    assert pi5.events("GPIO23", "request")[0][1].bias is Bias.PULL_DOWN


def test_release_puts_an_output_safe_then_frees_the_line(pi5: FakeGpiod) -> None:
    gpio = GpiodBackend()
    gpio.output("GPIO17", active_low=True).set(True)
    gpio.release("GPIO17")
    assert [e for e, _ in pi5.events("GPIO17")][-2:] == ["level", "release"]
    assert pi5.level("GPIO17") == 1
    gpio.output("GPIO17", active_low=True)  # free again: no EBUSY


def test_all_safe_tries_every_line_and_reports_the_ones_that_failed(pi5: FakeGpiod) -> None:
    gpio = GpiodBackend()
    a = gpio.output("GPIO17", active_low=True)
    b = gpio.output("GPIO27", active_low=True)
    a.set(True)
    b.set(True)
    pi5.broken.add("GPIO17")
    with pytest.raises(GpioError, match="cannot drive GPIO17"):
        gpio.all_safe()
    assert pi5.level("GPIO27") == 1  # the failure on GPIO17 did not stop GPIO27


def test_close_releases_every_request_once_and_refuses_later_writes(pi5: FakeGpiod) -> None:
    gpio = GpiodBackend()
    relay = gpio.output("GPIO17", active_low=True)
    gpio.input("GPIO22")
    relay.set(True)
    gpio.close()
    gpio.close()
    assert pi5.held == {}
    assert len([e for e in pi5.log if e[0] == "release"]) == 2
    with pytest.raises(GpioError, match="released"):
        relay.set(True)


# -- RPi.GPIO -------------------------------------------------------------------------------


def test_rpigpio_uses_bcm_numbers_and_sets_up_at_the_safe_level(rpi: FakeRpiGpio) -> None:
    from drivers.gpio.rpigpio_backend import RpiGpioBackend

    gpio = RpiGpioBackend()
    gpio.output("GPIO17", active_low=True)
    gpio.input("GPIO22", active_low=True)
    assert ("mode", "BCM") in rpi.calls
    assert ("setup", 17, "OUT", {"initial": 1}) in rpi.calls  # off on an active-low board
    assert ("setup", 22, "IN", {"pull_up_down": "UP"}) in rpi.calls
    assert not [c for c in rpi.calls if c[0] == "out"]  # no write before the first set
    gpio.close()
    assert rpi.calls[-1] == ("cleanup", (17, 22))


@pytest.mark.parametrize("name", ["GPIO28", "17", "BCM17", "gpio17"])
def test_rpigpio_accepts_only_header_names(rpi: FakeRpiGpio, name: str) -> None:
    from drivers.gpio.rpigpio_backend import RpiGpioBackend

    with pytest.raises(GpioError, match=r"GPIO0\.\.GPIO27"):
        RpiGpioBackend().output(name)


def test_rpigpio_busy_pin_is_a_gpio_error_with_a_hint(rpi: FakeRpiGpio) -> None:
    from drivers.gpio.rpigpio_backend import RpiGpioBackend

    rpi.busy.add(17)
    gpio = RpiGpioBackend()
    with pytest.raises(GpioError, match=r"cannot claim GPIO17: GPIO busy \(another process"):
        gpio.output("GPIO17")
    gpio.output("GPIO27")  # the failed claim left nothing half-claimed behind
    gpio.close()
    assert rpi.calls[-1] == ("cleanup", (27,))


def test_without_rpi_gpio_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.gpio.rpigpio_backend import RpiGpioBackend

    monkeypatch.setitem(sys.modules, "RPi", None)
    with pytest.raises(GpioError, match=r"pip install 'boosterd\[rpi\]' \(rpi-lgpio\)"):
        RpiGpioBackend()


# -- open_backend ---------------------------------------------------------------------------


def test_open_backend_follows_the_station_file(
    pi5: FakeGpiod, rpi: FakeRpiGpio, tmp_path: Any
) -> None:
    from drivers.gpio.rpigpio_backend import RpiGpioBackend
    from drivers.gpio.shared import SharedGpio

    assert isinstance(open_backend(GpioConfig(backend="gpiod", chip="pinctrl-rp1")), GpiodBackend)
    assert isinstance(open_backend(GpioConfig(backend="rpigpio")), RpiGpioBackend)
    sim = SimGpio()
    assert open_backend(GpioConfig(backend="sim"), sim=sim) is sim
    assert isinstance(open_backend(GpioConfig(backend="sim")), SimGpio)
    shared_cfg = GpioConfig(backend="sim", sim_dir=str(tmp_path))
    assert isinstance(open_backend(shared_cfg), SharedGpio)
    assert backend_key(shared_cfg) == "shared"
    assert backend_key(GpioConfig(backend="sim")) == "sim"


# -- PumpIO on the gpiod backend ------------------------------------------------------------


def relay_levels(fake: FakeGpiod) -> list[tuple[str, int]]:
    return [(n, d) for e, n, d in fake.log if e == "level"]


def test_pump_io_claims_every_relay_off_and_reads_the_inputs(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    assert relay_levels(pi5) == [("GPIO17", 1), ("GPIO27", 1), ("GPIO24", 1)]
    pi5.drive("GPIO22", True)  # P1's contactor closed (inputs are active high here)
    assert io.inputs()["P1"] == PumpInputs(feedback=True, fault=False)
    assert io.states() == {"P1": False, "P2": False, "P3": False}


def test_apply_writes_only_the_relays_that_change(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    pi5.log.clear()
    io.apply({"P1": True, "P2": False, "P3": False})
    io.apply({"P1": True, "P2": False, "P3": False})
    io.set("P1", True)
    assert relay_levels(pi5) == [("GPIO17", 0)]
    io.apply({"P1": False, "P3": True, "P9": True})  # P9: removed by a reload, ignored
    assert relay_levels(pi5) == [("GPIO17", 0), ("GPIO17", 1), ("GPIO24", 0)]
    assert io.writes == 3


def test_set_on_an_unknown_pump_names_the_pumps(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    with pytest.raises(GpioError, match="no pump named 'P4' \\(pumps: P1, P2, P3\\)"):
        io.set("P4", True)


def test_reclaim_touches_only_the_lines_that_changed(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    io.apply({"P1": True, "P2": True})
    pi5.log.clear()
    pumps = dict(CFG.pumps)
    # P1 keeps its relay but its fault input moves; P3's relay moves to another line.
    pumps["P1"] = pumps["P1"].model_copy(update={"fault_input": "GPIO16"})
    pumps["P3"] = pumps["P3"].model_copy(update={"relay": "GPIO25"})
    io.reclaim(pumps)
    touched = {n for _, n, _ in pi5.log}
    assert touched == {"GPIO23", "GPIO16", "GPIO24", "GPIO25"}  # never GPIO17 nor GPIO27
    assert pi5.level("GPIO17") == 0  # P1 still running
    assert pi5.level("GPIO25") == 1  # P3's new relay claimed off
    assert ("GPIO24", None) in [(n, d) for e, n, d in pi5.log if e == "release"]
    assert io.states() == {"P1": True, "P2": True, "P3": False}


def test_reclaim_with_a_new_polarity_goes_off_and_stays_off(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    io.set("P1", True)
    pi5.log.clear()
    pumps = dict(CFG.pumps)
    pumps["P1"] = pumps["P1"].model_copy(update={"relay_active_low": False})
    io.reclaim(pumps)
    # Off with the old polarity (high), released, claimed off with the new one (low).
    assert [(e, d) for e, d in pi5.events("GPIO17") if e != "request"] == [
        ("level", 1),
        ("release", None),
        ("level", 0),
    ]
    assert io.states()["P1"] is False


def test_a_reclaim_that_cannot_claim_keeps_the_old_wiring(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    io.set("P1", True)
    pumps = dict(CFG.pumps)
    pumps["P1"] = pumps["P1"].model_copy(update={"fault_input": "GPIO16"})
    pumps["P2"] = pumps["P2"].model_copy(update={"relay": "GPIO99"})
    pi5.log.clear()
    with pytest.raises(GpioError, match="no GPIO line named GPIO99"):
        io.reclaim(pumps)
    # GPIO16 was claimed, then given back; nothing of the running wiring was touched.
    assert [e for e, _, _ in pi5.log] == ["request", "release"]
    assert io.states() == {"P1": True, "P2": False, "P3": False}
    pi5.drive("GPIO23", True)
    assert io.fault("P1") is True  # still the old fault input


def test_close_puts_every_pump_off_and_frees_every_line(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    io.apply({"P1": True, "P2": True, "P3": True})
    io.close()
    assert [pi5.level(n) for n in ("GPIO17", "GPIO27", "GPIO24")] == [1, 1, 1]
    assert pi5.held == {}

"""The gpiod and RPi.GPIO backends, and PumpIO on them, against fakes of those libraries.

There is no GPIO chip here, so the fakes stand behind the same interface as the real
libraries (the libgpiod v2 Python surface the backend uses; the RPi.GPIO functions) and
keep the *electrical* level of every line with a log of every request, level change
and release. One contract suite runs against every backend (gpiod, rpigpio, sim).
"""

from __future__ import annotations

import enum
import errno
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.config import load_config
from controller.config.schema import GpioConfig
from controller.errors import BoosterError
from drivers.gpio.base import GpioBackend
from drivers.gpio.factory import PumpIO, PumpReading, open_backend
from drivers.gpio.gpiod_backend import GpiodBackend, GpioError
from drivers.gpio.sim import SimGpio
from tests.conftest import EXAMPLE_CONFIG

CFG = load_config(EXAMPLE_CONFIG)

# -- a fake of the libgpiod v2 Python bindings ---------------------------------------------


class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


class Bias(enum.Enum):
    AS_IS = 1
    PULL_UP = 3
    PULL_DOWN = 4


@dataclass
class LineSettings:
    direction: Direction = Direction.AS_IS
    bias: Bias = Bias.AS_IS
    active_low: bool = False
    output_value: Value = Value.INACTIVE


@dataclass(frozen=True)
class ChipInfo:
    name: str
    label: str
    num_lines: int


@dataclass(frozen=True)
class LineInfo:
    offset: int
    used: bool
    consumer: str


@dataclass
class FakeChipSpec:
    label: str
    lines: dict[str, int]
    denied: bool = False


@dataclass
class FakeGpiod:
    """The world behind /dev/gpiochip*: chips, electrical levels, who holds what."""

    chips: dict[str, FakeChipSpec]
    levels: dict[tuple[str, int], int] = field(default_factory=dict)
    held: dict[tuple[str, int], str] = field(default_factory=dict)
    log: list[tuple[str, str, Any]] = field(default_factory=list)  # (event, line, detail)
    broken: set[str] = field(default_factory=set)  # lines whose writes fail (EIO)

    def where(self, name: str) -> tuple[str, int]:
        for path, spec in self.chips.items():
            if name in spec.lines:
                return path, spec.lines[name]
        raise KeyError(name)

    def name_of(self, path: str, offset: int) -> str:
        return next(n for n, o in self.chips[path].lines.items() if o == offset)

    def level(self, name: str) -> int:
        return self.levels.get(self.where(name), 0)

    def drive(self, name: str, level: bool) -> None:
        """The outside world sets an input's level (a contact closing)."""
        self.levels[self.where(name)] = int(level)

    def events(self, name: str, kind: str | None = None) -> list[tuple[str, Any]]:
        return [(e, d) for e, n, d in self.log if n == name and (kind is None or e == kind)]

    def module(self) -> types.ModuleType:
        fake = self

        class Chip:
            def __init__(self, path: str) -> None:
                spec = fake.chips.get(path)
                if spec is None:
                    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
                if spec.denied:
                    raise PermissionError(errno.EACCES, "Permission denied", path)
                self.path, self.spec = path, spec

            def __enter__(self) -> Chip:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def get_info(self) -> ChipInfo:
                return ChipInfo(self.path.rsplit("/", 1)[-1], self.spec.label, 54)

            def line_offset_from_id(self, name: str) -> int:
                if name not in self.spec.lines:  # what libgpiod v2 raises for a name
                    raise OSError(errno.ENOENT, "No such file or directory")
                return self.spec.lines[name]

            def get_line_info(self, offset: int) -> LineInfo:
                consumer = fake.held.get((self.path, offset), "")
                return LineInfo(offset, bool(consumer), consumer)

        class LineRequest:
            def __init__(self, path: str, consumer: str, config: dict[int, LineSettings]) -> None:
                self.path, self.config, self.released = path, config, False
                for off in config:
                    if (path, off) in fake.held:
                        raise OSError(errno.EBUSY, "Device or resource busy")
                for off, s in config.items():
                    fake.held[(path, off)] = consumer
                    fake.log.append(("request", fake.name_of(path, off), s))
                    if s.direction is Direction.OUTPUT:
                        self._drive(off, s.output_value)

            def _drive(self, off: int, value: Value) -> None:
                name = fake.name_of(self.path, off)
                if name in fake.broken:
                    raise OSError(errno.EIO, "Input/output error")
                level = int((value is Value.ACTIVE) != self.config[off].active_low)
                fake.levels[(self.path, off)] = level
                fake.log.append(("level", name, level))

            def set_value(self, off: int, value: Value) -> None:
                assert not self.released, "write on a released request"
                assert self.config[off].direction is Direction.OUTPUT, "write to an input"
                self._drive(off, value)

            def get_value(self, off: int) -> Value:
                assert not self.released
                level = fake.levels.get((self.path, off), 0)
                active = bool(level) != self.config[off].active_low
                return Value.ACTIVE if active else Value.INACTIVE

            def release(self) -> None:
                assert not self.released, "released twice"
                self.released = True
                for off in self.config:
                    del fake.held[(self.path, off)]
                    fake.log.append(("release", fake.name_of(self.path, off), None))

        def request_lines(
            path: str, config: dict[int, LineSettings], consumer: str | None = None
        ) -> LineRequest:
            with Chip(path):
                return LineRequest(path, consumer or "?", config)

        line = types.ModuleType("gpiod.line")
        line.__dict__.update(Direction=Direction, Value=Value, Bias=Bias)
        mod = types.ModuleType("gpiod")
        mod.__dict__.update(
            Chip=Chip, LineSettings=LineSettings, request_lines=request_lines, line=line
        )
        return mod


HEADER = {f"GPIO{n}": n for n in range(28)}
#: Pi 5, early Bookworm kernels: the header (RP1) is gpiochip4; gpiochip0 is the SoC's.
PI5_EARLY = {
    "/dev/gpiochip0": FakeChipSpec("gpio-brcmstb@107d508500", {"BRCMSTB_GPIO0": 0}),
    "/dev/gpiochip4": FakeChipSpec("pinctrl-rp1", HEADER),
    "/dev/gpiochip10": FakeChipSpec("gpio-brcmstb@107d517c00", {"RP1_SDA": 0}),
}
#: Pi 5, current kernels: the header is gpiochip0, the SoC's chips come later.
PI5_NOW = {
    "/dev/gpiochip0": FakeChipSpec("pinctrl-rp1", HEADER),
    "/dev/gpiochip10": FakeChipSpec("gpio-brcmstb@107d508500", {"BRCMSTB_GPIO0": 0}),
}


def install_fake_gpiod(
    monkeypatch: pytest.MonkeyPatch, chips: dict[str, FakeChipSpec]
) -> FakeGpiod:
    fake = FakeGpiod(chips)
    monkeypatch.setitem(sys.modules, "gpiod", fake.module())
    monkeypatch.setattr("drivers.gpio.gpiod_backend.glob.glob", lambda _: list(fake.chips))
    return fake


@pytest.fixture
def pi5(monkeypatch: pytest.MonkeyPatch) -> FakeGpiod:
    return install_fake_gpiod(monkeypatch, PI5_EARLY)


# -- a fake of the RPi.GPIO API -------------------------------------------------------------


class FakeRpiGpio(types.ModuleType):
    """RPi.GPIO's functions over electrical levels by BCM number, with a call log."""

    BCM, OUT, IN, HIGH, LOW, PUD_UP, PUD_DOWN = "BCM", "OUT", "IN", 1, 0, "UP", "DOWN"

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.calls: list[tuple[Any, ...]] = []
        self.levels: dict[int, int] = {}
        self.modes: dict[int, str] = {}
        self.busy: set[int] = set()

    def setwarnings(self, flag: bool) -> None:
        pass

    def setmode(self, mode: str) -> None:
        self.calls.append(("mode", mode))

    def setup(self, pin: int, direction: str, **kw: Any) -> None:
        if pin in self.busy:
            raise RuntimeError("GPIO busy")
        self.calls.append(("setup", pin, direction, kw))
        self.modes[pin] = direction
        if direction == self.OUT:
            self.levels[pin] = kw["initial"]

    def output(self, pin: int, level: int) -> None:
        assert self.modes.get(pin) == self.OUT, "output() on a pin not set up as an output"
        self.calls.append(("out", pin, level))
        self.levels[pin] = level

    def input(self, pin: int) -> int:
        return self.levels.get(pin, 0)

    def cleanup(self, pins: list[int]) -> None:
        self.calls.append(("cleanup", tuple(pins)))
        for pin in pins:
            self.modes[pin] = self.IN


@pytest.fixture
def rpi(monkeypatch: pytest.MonkeyPatch) -> FakeRpiGpio:
    fake = FakeRpiGpio()
    pkg = types.ModuleType("RPi")
    pkg.GPIO = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", pkg)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    return fake


# -- one contract, every backend ------------------------------------------------------------


@dataclass
class Rig:
    """A backend plus the outside world: a line's electrical level, and driving an input."""

    backend: GpioBackend
    level: Callable[[str], bool]
    drive: Callable[[str, bool], None]


@pytest.fixture(params=["gpiod", "rpigpio", "sim"])
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    if request.param == "gpiod":
        fake = install_fake_gpiod(monkeypatch, PI5_NOW)
        yield Rig(GpiodBackend(), lambda n: bool(fake.level(n)), fake.drive)
    elif request.param == "rpigpio":
        rpi = request.getfixturevalue("rpi")
        from drivers.gpio.rpigpio_backend import RpiGpioBackend, bcm_number

        def drive(name: str, level: bool) -> None:
            rpi.levels[bcm_number(name)] = int(level)

        yield Rig(RpiGpioBackend(), lambda n: bool(rpi.levels[bcm_number(n)]), drive)
    else:
        sim = SimGpio()
        yield Rig(sim, sim.level, sim.set_input_level)


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
    with pytest.raises(BoosterError, match="GPIO17"):
        rig.backend.input("GPIO17")


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
    shared = open_backend(GpioConfig(backend="sim", sim_dir=str(tmp_path)))
    assert isinstance(shared, SharedGpio)


# -- PumpIO on the gpiod backend ------------------------------------------------------------


def relay_levels(fake: FakeGpiod) -> list[tuple[str, int]]:
    return [(n, d) for e, n, d in fake.log if e == "level"]


def test_pump_io_claims_every_relay_off_and_reads_the_inputs(pi5: FakeGpiod) -> None:
    io = PumpIO(GpiodBackend(), CFG.pumps)
    assert relay_levels(pi5) == [("GPIO17", 1), ("GPIO27", 1), ("GPIO24", 1)]
    pi5.drive("GPIO22", True)  # P1's contactor closed (inputs are active high here)
    assert io.read_all()["P1"] == PumpReading(relay=False, feedback=True, fault=False)
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

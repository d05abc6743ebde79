"""Choosing a GPIO backend, and the pump lines claimed on it.

``open_backend`` is the one place that turns ``gpio.backend`` into a backend, through the
``BACKENDS`` registry.
``PumpIO`` claims, for every pump, its relay output (at the safe value: off) and its
optional run-feedback and fault inputs. It writes a relay only when its state changes,
and a reload keeps every line whose name, direction and polarity did not change claimed
and untouched, so neither a repeated command nor a reload glitches a running pump.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from controller.config.schema import GpioConfig, PumpConfig
from controller.values import PumpInputs
from drivers.gpio.base import GpioBackend, InputLine, OutputLine
from drivers.gpio.errors import GpioError, all_safe_each

__all__ = ["BACKENDS", "GpioError", "PumpIO", "backend_key", "open_backend"]


def _open_gpiod(cfg: GpioConfig) -> GpioBackend:
    from drivers.gpio.gpiod_backend import GpiodBackend

    return GpiodBackend(chip=cfg.chip)


def _open_rpigpio(cfg: GpioConfig) -> GpioBackend:
    from drivers.gpio.rpigpio_backend import RpiGpioBackend

    return RpiGpioBackend()


def _open_shared(cfg: GpioConfig) -> GpioBackend:
    from drivers.gpio.shared import SharedGpio

    assert cfg.sim_dir is not None
    return SharedGpio(cfg.sim_dir)


def _open_sim(cfg: GpioConfig) -> GpioBackend:
    from drivers.gpio.sim import SimGpio

    return SimGpio()


#: Every backend, by the name ``backend_key`` gives a station file's ``gpio`` section.
#: The contract test suite (tests/test_gpio_backends.py) runs once per entry: a backend
#: added here without a test rig fails that suite.
BACKENDS: dict[str, Callable[[GpioConfig], GpioBackend]] = {
    "gpiod": _open_gpiod,
    "rpigpio": _open_rpigpio,
    "shared": _open_shared,
    "sim": _open_sim,
}


def backend_key(cfg: GpioConfig) -> str:
    """The ``BACKENDS`` entry a ``gpio`` section selects (``sim`` with ``sim_dir``: shared)."""
    if cfg.backend == "sim" and cfg.sim_dir:
        return "shared"
    return cfg.backend


def open_backend(cfg: GpioConfig, *, sim: GpioBackend | None = None) -> GpioBackend:
    """The backend the station file asks for; a ``GpioError`` if it cannot be opened.

    For ``sim``: the backend passed in (the simulator's, physically linked to its
    pumps), else the file-shared one when ``gpio.sim_dir`` is set, else an in-process one.
    """
    if cfg.backend == "sim" and sim is not None:
        return sim
    return BACKENDS[backend_key(cfg)](cfg)


# What identifies a claimed line across a reload: direction and polarity.
_Key = tuple[Literal["out", "in"], bool]


@dataclass(frozen=True, slots=True)
class _Wiring:
    relay: str
    feedback: str | None
    fault: str | None


def _wanted(pumps: Mapping[str, PumpConfig]) -> dict[str, _Key]:
    lines: dict[str, _Key] = {}
    for p in pumps.values():
        lines[p.relay] = ("out", p.relay_active_low)
        for name in (p.run_feedback, p.fault_input):
            if name:
                lines[name] = ("in", p.inputs_active_low)
    return lines


class PumpIO:
    """The relay, feedback and fault lines of every pump, by pump name."""

    def __init__(self, backend: GpioBackend, pumps: Mapping[str, PumpConfig]) -> None:
        self.backend = backend
        self._outputs: dict[str, OutputLine] = {}  # by line name
        self._inputs: dict[str, InputLine] = {}
        self._keys: dict[str, _Key] = {}
        self._wiring: dict[str, _Wiring] = {}
        #: Relay writes made by ``set``/``apply`` (not counting safe-state writes).
        self.writes = 0
        self.reclaim(pumps)

    # -- claiming --------------------------------------------------------------------

    def _claim(self, name: str, key: _Key) -> None:
        direction, active_low = key
        if direction == "out":
            self._outputs[name] = self.backend.output(name, active_low=active_low, safe_value=False)
        else:
            self._inputs[name] = self.backend.input(name, active_low=active_low)
        self._keys[name] = key

    def _release(self, name: str) -> None:
        self._outputs.pop(name, None)
        self._inputs.pop(name, None)
        self._keys.pop(name, None)
        self.backend.release(name)  # every backend puts an output safe before letting it go

    def reclaim(self, pumps: Mapping[str, PumpConfig]) -> None:
        """Apply a new pump list; lines whose name, direction and polarity stay are untouched.

        New lines are claimed first: if one cannot be claimed, those just claimed are
        given back and the old wiring stays in force (the error is raised). Then lines no
        longer used are released (outputs off first), and lines whose direction or
        polarity changed are claimed again with the new settings, off.
        """
        wanted = _wanted(pumps)
        new = [n for n in wanted if n not in self._keys]
        claimed: list[str] = []
        try:
            for name in new:
                self._claim(name, wanted[name])
                claimed.append(name)
        except Exception:
            for name in claimed:
                self._release(name)
            raise
        for name in [n for n in self._keys if n not in wanted]:
            self._release(name)
        for name in [n for n, key in self._keys.items() if key != wanted[n]]:
            self._release(name)
            self._claim(name, wanted[name])
        self._wiring = {
            pump: _Wiring(p.relay, p.run_feedback, p.fault_input) for pump, p in pumps.items()
        }

    # -- outputs ---------------------------------------------------------------------

    def _relay(self, pump: str) -> OutputLine:
        wiring = self._wiring.get(pump)
        if wiring is None:
            raise GpioError(f"no pump named {pump!r} (pumps: {', '.join(self._wiring)})")
        return self._outputs[wiring.relay]

    @property
    def relays(self) -> dict[str, OutputLine]:
        """Each pump's relay line."""
        return {pump: self._outputs[w.relay] for pump, w in self._wiring.items()}

    def set(self, pump: str, on: bool) -> None:
        """Switch one pump's relay; no write when it is already in that state."""
        line = self._relay(pump)
        if line.value != on:
            line.set(on)
            self.writes += 1

    def apply(self, relays: Mapping[str, bool]) -> None:
        """Switch several relays, writing only those that change; unknown pumps are ignored.

        A line that fails does not keep the others from being written; the first
        failure is raised afterwards.
        """
        failed: list[GpioError] = []
        for pump, on in relays.items():
            if pump not in self._wiring:
                continue  # a pump the last reload removed
            try:
                self.set(pump, on)
            except GpioError as exc:
                failed.append(exc)
        if failed:
            raise failed[0]

    def states(self) -> dict[str, bool]:
        """Each pump's relay state as last written (True = energised)."""
        return {pump: line.value for pump, line in self.relays.items()}

    def all_safe(self) -> None:
        """Every pump relay off, whatever state the control law left it in."""
        all_safe_each(self._outputs.values())

    def close(self) -> None:
        """Relays off, then the backend closed (every line released). Idempotent."""
        try:
            self.all_safe()
        finally:
            self._outputs.clear()
            self._inputs.clear()
            self._keys.clear()
            self._wiring.clear()
            self.backend.close()

    # -- inputs ----------------------------------------------------------------------

    def feedback(self, pump: str) -> bool | None:
        """Run feedback (True = contactor closed); None when the pump has no such input."""
        wiring = self._wiring.get(pump)
        if wiring is None or wiring.feedback is None:
            return None
        return self._inputs[wiring.feedback].read()

    def fault(self, pump: str) -> bool:
        """Motor protection tripped; False when the pump has no fault input."""
        wiring = self._wiring.get(pump)
        if wiring is None or wiring.fault is None:
            return False
        return self._inputs[wiring.fault].read()

    def inputs(self) -> dict[str, PumpInputs]:
        """Every pump's inputs, as the control core receives them (relays: ``states``)."""
        return {
            pump: PumpInputs(feedback=self.feedback(pump), fault=self.fault(pump))
            for pump in self._wiring
        }

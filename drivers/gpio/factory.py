"""Choosing a GPIO backend, and the pump lines claimed on it.

``PumpIO`` claims, for every pump, its relay output (at the safe value: off) and its
optional run-feedback and fault inputs, and writes a relay only when its state
changes, so a reload or a repeated command never glitches a running pump.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.config.schema import GpioConfig, PumpConfig
from drivers.gpio.base import GpioBackend, InputLine, OutputLine


def open_backend(cfg: GpioConfig) -> GpioBackend:
    """The backend the station file asks for; a clear error if it cannot be opened."""
    if cfg.backend == "gpiod":
        from drivers.gpio.gpiod_backend import GpiodBackend

        return GpiodBackend(chip=cfg.chip)
    if cfg.backend == "rpigpio":
        from drivers.gpio.rpigpio_backend import RpiGpioBackend

        return RpiGpioBackend()
    from drivers.gpio.sim import SimGpio

    return SimGpio()


class PumpIO:
    """The relay, feedback and fault lines of every pump."""

    def __init__(self, backend: GpioBackend, pumps: Mapping[str, PumpConfig]) -> None:
        self.backend = backend
        self.relays: dict[str, OutputLine] = {}
        self.feedbacks: dict[str, InputLine] = {}
        self.faults: dict[str, InputLine] = {}
        self._cfg: dict[str, PumpConfig] = {}
        self.writes = 0
        self.reclaim(pumps)

    def _claim(self, name: str, p: PumpConfig) -> None:
        self.relays[name] = self.backend.output(
            p.relay, active_low=p.relay_active_low, safe_value=False
        )
        if p.run_feedback:
            self.feedbacks[name] = self.backend.input(
                p.run_feedback, active_low=p.inputs_active_low
            )
        if p.fault_input:
            self.faults[name] = self.backend.input(p.fault_input, active_low=p.inputs_active_low)
        self._cfg[name] = p

    def _release(self, name: str) -> None:
        p = self._cfg.pop(name, None)
        relay = self.relays.pop(name, None)
        if relay is not None:
            relay.to_safe_state()
        self.feedbacks.pop(name, None)
        self.faults.pop(name, None)
        release = getattr(self.backend, "release", None)
        if release is not None and p is not None:
            for line in (p.relay, p.run_feedback, p.fault_input):
                if line:
                    release(line)

    def reclaim(self, pumps: Mapping[str, PumpConfig]) -> None:
        """Apply a new pump list: unchanged pumps keep their claimed lines untouched."""
        wiring = ("relay", "relay_active_low", "run_feedback", "fault_input", "inputs_active_low")
        for name in list(self._cfg):
            old = self._cfg[name]
            new = pumps.get(name)
            if new is None or any(getattr(old, k) != getattr(new, k) for k in wiring):
                self._release(name)
        for name, p in pumps.items():
            if name not in self._cfg:
                self._claim(name, p)
            else:
                self._cfg[name] = p

    def apply(self, relays: Mapping[str, bool]) -> None:
        for name, on in relays.items():
            line = self.relays.get(name)
            if line is not None and line.value != on:
                line.set(on)
                self.writes += 1

    def feedback(self, name: str) -> bool | None:
        line = self.feedbacks.get(name)
        return line.read() if line is not None else None

    def fault(self, name: str) -> bool:
        line = self.faults.get(name)
        return line.read() if line is not None else False

    def states(self) -> dict[str, bool]:
        return {name: line.value for name, line in self.relays.items()}

    def all_safe(self) -> None:
        for line in self.relays.values():
            line.to_safe_state()

    def close(self) -> None:
        self.all_safe()
        self.backend.close()

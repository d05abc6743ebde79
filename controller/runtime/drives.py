"""Speed references from the control core to the drives' registers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.config.schema import StationConfig

#: A change smaller than this (fraction of rated speed) is not worth a bus transaction.
MIN_CHANGE = 0.0005


class SpeedWriter:
    """``writer(speeds)`` after each tick: converts and writes the references that changed.

    ``write(point, value)`` is the source's: a Modbus write on the bus
    (``Acquisition.write``) or the register image in the simulator.
    """

    def __init__(self, cfg: StationConfig, write: Callable[[str, float], None]) -> None:
        self.write = write
        self.targets = {
            name: (p.vfd.speed_point, 100.0 if p.vfd.speed_unit == "percent" else p.vfd.rated_hz)
            for name, p in cfg.pumps.items()
            if p.vfd is not None
        }
        self.last: dict[str, float] = {}

    def __call__(self, speeds: Mapping[str, float]) -> None:
        for pump, fraction in speeds.items():
            target = self.targets.get(pump)
            if target is None:
                continue
            previous = self.last.get(pump)
            if previous is not None and abs(previous - fraction) < MIN_CHANGE:
                continue
            point, full_scale = target
            self.write(point, fraction * full_scale)
            self.last[pump] = fraction

"""Speed references from the control core to the drives' registers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller.config.schema import StationConfig

#: A change smaller than this (fraction of rated speed) is not worth a bus transaction.
MIN_CHANGE = 0.0005


class SpeedWriter:
    """``writer(speeds)`` after each tick: converts and writes the references that changed,
    and the run command of drives that take it over Modbus.

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
        self.run_points = {
            name: p.vfd.run_point
            for name, p in cfg.pumps.items()
            if p.vfd is not None and p.vfd.run_point is not None
        }
        self.last: dict[str, float] = {}
        self.last_run: dict[str, bool] = {}

    def __call__(self, speeds: Mapping[str, float]) -> None:
        for pump, point in self.run_points.items():
            run = speeds.get(pump, 0.0) > 0.0  # a drive given a speed is running
            if self.last_run.get(pump) != run:
                self.write(point, 1.0 if run else 0.0)
                self.last_run[pump] = run
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

"""The simulated plant in one piece: station physics, scripted faults, register image.

``build_plant`` is how every user of the simulator gets one (the closed loop, the demo,
``boosterd sim``): a ``SimStation`` linked to a GPIO backend's simulator side (a relay
on makes a pump run), its faults parsed from their specs, and the ``SimSource`` that
puts its values in the register image exactly as the station file declares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.config.schema import StationConfig
from simulator.faults import Fault, FaultSchedule, parse_fault
from simulator.source import SimSource
from simulator.station import GpioLines, SimStation

__all__ = ["Plant", "build_plant"]


@dataclass
class Plant:
    """A simulated station and the source that reads it through the register map."""

    station: SimStation
    source: SimSource

    def now(self) -> float:
        """The plant's clock: simulated seconds since the start."""
        return float(self.station.t)


def build_plant(
    cfg: StationConfig,
    *,
    gpio: GpioLines,
    faults: Iterable[str | Fault] = (),
    seed: int = 0,
    start_hour: float = 6.0,
    start_weekday: int = 0,
) -> Plant:
    """The plant of ``cfg``, its relays and inputs on ``gpio``, with ``faults`` scripted."""
    schedule = FaultSchedule([parse_fault(f) if isinstance(f, str) else f for f in faults])
    station = SimStation(
        cfg,
        gpio=gpio,
        seed=seed,
        faults=schedule,
        start_hour=start_hour,
        start_weekday=start_weekday,
    )
    return Plant(station=station, source=SimSource(cfg, station))

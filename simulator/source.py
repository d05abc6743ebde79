"""Readings straight from the simulated station, through the real register map and codec.

The closed-loop tests, the control benchmark and the demo run the controller in
accelerated time, faster than any serial line; this source skips the wire but not the
encoding: every value is written into the station's register image exactly as the
YAML declares it and decoded back by the acquisition's codec, so scaling, word order,
4-20 mA wire breaks and ranges behave as they would on the bus. Slave-level faults
(silent, bad CRC, exception) become the same bad qualities acquisition would report
(one table, ``drivers/modbus/faults.py``),
and the same ``PointGuard``s judge plausibility and hold the last good value.
"""

from __future__ import annotations

from controller.config.schema import StationConfig
from controller.values import Reading
from drivers.modbus.codec import to_engineering
from drivers.modbus.faults import FAULT_QUALITY, WireFault, fault_detail
from drivers.modbus.quality import point_guards
from simulator.registers import RegisterImage
from simulator.station import SimStation


class SimSource:
    """``read_all()`` like ``drivers.modbus.acquisition.Acquisition``, from a SimStation."""

    def __init__(self, cfg: StationConfig, station: SimStation) -> None:
        self.cfg = cfg
        self.station = station
        self.image = RegisterImage.from_config(cfg)
        self._points = [
            (name, dev.bus, dev.slave_id, point)
            for dev in cfg.devices.values()
            for name, point in dev.points.items()
        ]
        self.guards = point_guards(cfg)
        self._progress = 0
        self._bad = 0
        self._speed_points = {
            name: (pcfg.vfd, cfg.points()[pcfg.vfd.speed_point][1])
            for name, pcfg in cfg.pumps.items()
            if pcfg.vfd is not None
        }
        station.speed_ref = self._speed_ref

    @property
    def progress(self) -> int:
        return self._progress

    def stats(self) -> dict[str, object]:
        return {"source": "simulator", "snapshots": self._progress, "bad_readings": self._bad}

    def _speed_ref(self, pump: str) -> float | None:
        """What the drive reads from its speed register, as a fraction of rated speed
        (0 while its Modbus run command, if it takes one, says stop)."""
        vfd, point = self._speed_points[pump]
        if vfd.run_point is not None and not self.image.words_of(vfd.run_point)[0]:
            return 0.0
        r = to_engineering(vfd.speed_point, point, self.image.words_of(vfd.speed_point))
        if r.value is None:
            return None
        return r.value / 100.0 if vfd.speed_unit == "percent" else r.value / vfd.rated_hz

    def write(self, point: str, value: float) -> None:
        """What acquisition's write does on the bus: the drive's register takes the value."""
        self.image.set_value(point, value)

    def publish(self) -> None:
        """Write the station's current values into the register image (what slaves serve)."""
        station = self.station
        values = station.point_values()
        broken = station.wire_broken()
        image = self.image
        for name, _bus, _slave, point in self._points:
            if name not in values:
                continue  # written by the controller (a drive's speed reference)
            if name in broken and point.span_4_20ma is not None:
                image.set_current_ma(name, 0.0)
            elif point.type == "bool":
                image.set_bit(name, bool(values.get(name, 0.0)))
            else:
                image.set_value(name, values.get(name, 0.0))

    def _failed(
        self, name: str, unit: str, *, bus: str, slave_id: int, fault: str, t: float
    ) -> Reading:
        """The bad reading acquisition would store for this slave failure."""
        kind = WireFault(fault)
        code = self.station.slave_exception_code(bus, slave_id)
        detail = f"{fault_detail(kind, exception_code=code)} (simulated)"
        return Reading.bad(name, unit, FAULT_QUALITY[kind], detail, t_mono=t)

    def read_all(self) -> dict[str, Reading]:
        """Every point as acquisition would have read it just now."""
        self.publish()
        station = self.station
        t = station.t
        image = self.image
        faults: dict[tuple[str, int], str | None] = {}  # per slave, once per read
        out: dict[str, Reading] = {}
        for name, bus, slave_id, point in self._points:
            key = (bus, slave_id)
            if key in faults:
                fault = faults[key]
            else:
                fault = faults[key] = station.slave_fault(bus, slave_id)
            if fault is not None:
                reading = self._failed(
                    name, point.unit, bus=bus, slave_id=slave_id, fault=fault, t=t
                )
            else:
                reading = to_engineering(name, point, image.words_of(name), t_mono=t)
            guard = self.guards[name]
            guard.update(reading)
            out[name] = judged = guard.view(t)
            if not judged.good:
                self._bad += 1
        self._progress += 1
        return out

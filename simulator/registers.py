"""The register tables of every simulated slave, laid out exactly as the station file says.

Because the layout comes from the same YAML the controller reads, the simulator serves
any station: any addresses, data types, word orders and scalings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.config.schema import PointConfig, StationConfig
from drivers.modbus.codec import current_to_raw, from_engineering, to_engineering

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2


class ModbusException(Exception):
    """A request the slave answers with an exception response."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"exception code {code}")
        self.code = code


#: Register kinds grouped by the table they live in (coils and discretes hold bits).
TABLES = ("coil", "discrete", "holding", "input")


@dataclass
class SlaveTables:
    """One slave's four tables; only mapped addresses exist."""

    tables: dict[str, dict[int, int]] = field(default_factory=lambda: {kind: {} for kind in TABLES})

    def read(self, kind: str, address: int, count: int) -> list[int]:
        table = self.tables[kind]
        try:
            return [table[a] for a in range(address, address + count)]
        except KeyError as exc:
            raise ModbusException(ILLEGAL_ADDRESS, f"{kind} {exc.args[0]} is not mapped") from None

    def write(self, kind: str, address: int, values: list[int]) -> None:
        table = self.tables[kind]
        for i in range(len(values)):
            if address + i not in table:
                raise ModbusException(ILLEGAL_ADDRESS, f"{kind} {address + i} is not mapped")
        for i, v in enumerate(values):
            table[address + i] = v & 0xFFFF


class RegisterImage:
    """Every slave of a station, keyed by (bus, slave id)."""

    def __init__(self) -> None:
        self.slaves: dict[tuple[str, int], SlaveTables] = {}
        self._points: dict[str, tuple[tuple[str, int], PointConfig]] = {}
        #: Where each point's registers live: its slave's table and first address.
        self._where: dict[str, tuple[dict[int, int], int, int]] = {}
        #: The last value ``set_value`` encoded per point and its words: the simulator
        #: serves the same value tick after tick for most points.
        self._encoded: dict[str, tuple[float, list[int]]] = {}

    @classmethod
    def from_config(cls, cfg: StationConfig) -> RegisterImage:
        image = cls()
        for dev in cfg.devices.values():
            key = (dev.bus, dev.slave_id)
            slave = image.slaves.setdefault(key, SlaveTables())
            for name, point in dev.points.items():
                image._points[name] = (key, point)
                table = slave.tables[point.kind]
                image._where[name] = (table, point.address, point.register_count)
                for a in range(point.address, point.address + point.register_count):
                    table.setdefault(a, 0)
        return image

    def slave(self, bus: str, slave_id: int) -> SlaveTables | None:
        return self.slaves.get((bus, slave_id))

    def _store(self, name: str, words: list[int]) -> None:
        table, address, _ = self._where[name]
        for i, w in enumerate(words):
            table[address + i] = w

    def set_value(self, name: str, value: float) -> None:
        """Serve ``value`` (engineering units) for point ``name``."""
        last = self._encoded.get(name)
        # 0.0 and -0.0 are equal but encode apart (a float32's sign bit): not reused.
        if last is not None and last[0] == value and value != 0.0:
            words = last[1]
        else:
            words = from_engineering(self._points[name][1], value)
            self._encoded[name] = (value, words)
        self._store(name, words)

    def set_current_ma(self, name: str, ma: float) -> None:
        """Serve the raw counts of a 4-20 mA loop current (0 mA = a broken wire)."""
        _, point = self._points[name]
        self._store(name, current_to_raw(point, max(ma, 0.0)))

    def set_bit(self, name: str, on: bool) -> None:
        self._store(name, [1 if on else 0])

    def set_words(self, name: str, words: list[int]) -> None:
        self._store(name, list(words))

    def value_of(self, name: str) -> float | None:
        """What point ``name`` holds now, in engineering units (as a master would read it)."""
        return to_engineering(name, self._points[name][1], self.words_of(name)).value

    def words_of(self, name: str) -> list[int]:
        """Point ``name``'s registers as they stand (a configured point is always mapped)."""
        table, address, count = self._where[name]
        if count == 1:
            return [table[address]]
        return [table[a] for a in range(address, address + count)]

    def read(self, bus: str, slave_id: int, kind: str, address: int, count: int) -> list[int]:
        slave = self.slaves.get((bus, slave_id))
        if slave is None:
            raise ModbusException(ILLEGAL_ADDRESS, f"no slave {slave_id} on {bus}")
        return slave.read(kind, address, count)

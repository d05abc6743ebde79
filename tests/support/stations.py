"""Station files for tests: the example station pointed at a test's serial line."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import EXAMPLE_CONFIG

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


def example_station(port: str, **overrides: object) -> dict[str, object]:
    """The example station as a dict, its RS-485 bus on ``port``, with fast timeouts."""
    data: dict[str, object] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    bus = data["buses"]["rs485"]  # type: ignore[index]
    bus.update({"port": port, "timeout_s": 0.1, "backoff_s": 1.0})
    data.update(overrides)
    return data


def three_slave_station(port: str) -> dict[str, object]:
    """Three slaves on one line covering every data type and word order."""
    data = example_station(port)
    devices = data["devices"]
    assert isinstance(devices, dict)
    numbers: dict[str, object] = {}
    address = 100
    for dtype in ("int32", "uint32", "float32"):
        for order in ORDERS:
            numbers[f"{dtype}_{order}"] = {
                "kind": "holding", "address": address, "type": dtype, "byte_order": order,
            }  # fmt: skip
            address += 2
    for dtype in ("int16", "uint16"):
        for order in ("ABCD", "BADC"):
            numbers[f"{dtype}_{order}"] = {
                "kind": "input", "address": address, "type": dtype, "byte_order": order,
                "scale": 0.5, "offset": 1.0,
            }  # fmt: skip
            address += 1
    numbers["pump_contactor"] = {"kind": "coil", "address": 7, "type": "bool"}
    numbers["door_switch"] = {"kind": "discrete", "address": 3, "type": "bool"}
    devices["io_module"] = {"bus": "rs485", "slave_id": 3, "points": numbers}
    return data


def write_station(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path

"""Acquisition and the simulated source give a failing slave the same quality.

For every way a slave can fail (``drivers.modbus.faults.WireFault``), the real stack
(acquisition polling our RTU slave over a socat pty pair, the slave failing that way)
and the simulated source (which skips the wire) both report the reason the shared
table gives: the closed-loop tests see what the field sees.
"""

from __future__ import annotations

import pytest

from controller.config import load_config
from controller.config.schema import StationConfig
from controller.values import Reading
from drivers.gpio.sim import SimGpio
from drivers.modbus.acquisition import read_once
from drivers.modbus.faults import FAULT_QUALITY, WireFault, fault_detail
from simulator.faults import FaultSchedule, parse_fault
from simulator.modbus_slave import RtuSlave, SlaveFault
from simulator.source import SimSource
from simulator.station import SLAVE_FAULTS, SimStation
from tests.conftest import EXAMPLE_CONFIG
from tests.support.serial_pair import SerialPair

DEVICE = "flow_meter"
CODE = 6  # slave device busy: not the default, so the code is carried through


def _station(cfg: StationConfig, fault: WireFault) -> SimStation:
    spec = f"slave_{fault.value}:{DEVICE}@0"
    if fault is WireFault.EXCEPTION:
        spec += f",code={CODE}"
    station = SimStation(cfg, gpio=SimGpio(), seed=1, faults=FaultSchedule([parse_fault(spec)]))
    station.step(cfg.control.tick_s)
    return station


def _point(cfg: StationConfig) -> str:
    return next(iter(cfg.devices[DEVICE].points))


def test_every_simulated_slave_fault_is_a_wire_fault_in_the_table() -> None:
    assert set(SLAVE_FAULTS.values()) == {f.value for f in WireFault}
    assert set(FAULT_QUALITY) == set(WireFault)


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", list(WireFault))
async def test_acquisition_and_the_simulated_source_agree(
    serial_pair: SerialPair, fault: WireFault
) -> None:
    example = load_config(EXAMPLE_CONFIG)
    bus_name = example.devices[DEVICE].bus
    bus = example.buses[bus_name].model_copy(update={"port": serial_pair.b})
    cfg = example.model_copy(update={"buses": {**example.buses, bus_name: bus}})
    point = _point(cfg)

    station = _station(cfg, fault)
    source = SimSource(cfg, station)
    simulated: Reading = source.read_all()[point]

    def faults(slave_id: int) -> SlaveFault | None:
        mode = station.slave_fault(bus_name, slave_id)
        if mode is None:
            return None
        return SlaveFault(mode, station.slave_exception_code(bus_name, slave_id))

    slave = RtuSlave(source.image, bus=bus_name, port=serial_pair.a, faults=faults)
    await slave.start()
    try:
        field = (await read_once(cfg))[point]
    finally:
        await slave.close()

    assert simulated.reason is field.reason is FAULT_QUALITY[fault]
    if fault is WireFault.EXCEPTION:
        # The refusal's code and name are the field's own words in both.
        assert fault_detail(fault, exception_code=CODE) in field.detail
        assert fault_detail(fault, exception_code=CODE) in simulated.detail
    # The other slaves answer in both.
    other = next(n for n, (dev, _) in cfg.points().items() if dev != DEVICE)
    assert source.read_all()[other].good

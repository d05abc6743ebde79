"""A simulated booster station: hydraulics, Modbus RTU slaves, relays and faults."""

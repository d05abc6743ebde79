"""Hardware drivers: Modbus acquisition and GPIO relays/inputs, one module per backend."""

"""Modbus acquisition: wire timing, poll planning, register decoding, bus polling."""

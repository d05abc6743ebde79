"""Telemetry that survives outages: the SQLite store-and-forward buffer and the MQTT uplink."""

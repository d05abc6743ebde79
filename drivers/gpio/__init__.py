"""Relay outputs and digital inputs: one protocol, one module per backend."""

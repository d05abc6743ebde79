"""Loading the station file for a subcommand: errors printed as the technician needs them."""

from __future__ import annotations

import sys

from controller.config import ConfigError, StationConfig, load_config

EXIT_CONFIG = 2


def load_or_report(path: str) -> StationConfig | None:
    """The station, or None after printing every error (the caller exits with EXIT_CONFIG)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None

"""The last station file the daemon ran with, kept for when the file on disk is broken.

A technician may save a broken ``/etc/boosterd/station.yaml`` and not reload. If the
daemon is then killed, ``boosterd outputs-off`` (the unit's ``ExecStopPost``) cannot
read the relay lines from that file, yet it must still switch the pumps off. So the
daemon copies the text it validated and runs with, at start and after each accepted
reload, to ``station.last-good.yaml`` in its state directory (``$STATE_DIRECTORY``
under systemd, else the buffer's directory). Only a file that parses to exactly the
running configuration is copied.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller.config import ConfigError, StationConfig, parse_config
from controller.config.loader import LimitExceeded, read_station_text
from controller.logs import get_logger

log = get_logger(__name__)

LAST_GOOD_NAME = "station.last-good.yaml"


def default_path(buffer_path: str | None = None) -> Path | None:
    """Where the copy lives: ``$STATE_DIRECTORY`` (systemd), else next to the buffer."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_dir:
        return Path(state_dir, LAST_GOOD_NAME)
    if buffer_path is not None:
        return Path(buffer_path).parent / LAST_GOOD_NAME
    return None


def remember(config_path: str, running: StationConfig) -> Path | None:
    """Copy the station file if it still holds ``running``; the copy's path, or None."""
    target = default_path(running.buffer.path)
    if target is None:
        return None
    try:
        text = read_station_text(config_path)
        if parse_config(text, config_path) != running:
            return None  # edited since it was loaded: not the configuration that runs
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except (OSError, UnicodeDecodeError, LimitExceeded, ConfigError) as exc:
        log.warning("last good station file not kept", file=str(target), error=str(exc))
        return None
    return target

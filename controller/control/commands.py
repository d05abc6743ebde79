"""Command values checked against the station: what the control core may be told to do.

The command processor (``controller.telemetry.commands``) checks the envelope of a
command (JSON, id, age, field types); what depends on the station file is checked here,
against the configuration in force: the setpoint range, the modes, a new pressure
management table (validated with the station file's own pydantic models). The core
calls these and receives values that are valid; a refusal raises ``CommandRejected``
with a message for the operator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from controller.config.schema import ControlConfig, PressureManagementConfig
from controller.errors import BoosterError

MODES = ("auto", "manual", "off")


class CommandRejected(BoosterError):
    """A command that was not carried out; the message says why."""


def valid_setpoint(bar: object, control: ControlConfig) -> float:
    """``bar`` as a base setpoint: a finite number inside the configured range."""
    if not isinstance(bar, (int, float)) or isinstance(bar, bool) or not math.isfinite(bar):
        raise CommandRejected("setpoint must be a finite number of bar")
    if not control.setpoint_min_bar <= bar <= control.setpoint_max_bar:
        raise CommandRejected(
            f"setpoint {bar} bar is outside the allowed "
            f"{control.setpoint_min_bar}-{control.setpoint_max_bar} bar"
        )
    return float(bar)


def valid_mode(mode: object) -> str:
    """``mode`` if it is one of ``MODES``."""
    if mode not in MODES:
        raise CommandRejected(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return str(mode)


def valid_pressure_management(
    data: Mapping[str, Any] | None, control: ControlConfig
) -> PressureManagementConfig | None:
    """SCADA's schedule / flow compensation, validated like the station file; None stays
    None (back to the fixed setpoint)."""
    if data is None:
        return None
    try:
        pm = PressureManagementConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "pressure_management"
        raise CommandRejected(f"{where}: {first['msg']}") from None
    for entry in pm.schedule:
        if not control.setpoint_min_bar <= entry.setpoint_bar <= control.setpoint_max_bar:
            raise CommandRejected(
                f"schedule setpoint {entry.setpoint_bar} bar at {entry.at} is outside "
                f"the allowed {control.setpoint_min_bar}-{control.setpoint_max_bar} bar"
            )
    if pm.flow_compensation is not None and control.flow_point is None:
        raise CommandRejected("flow compensation needs a flow point in the station file")
    return pm

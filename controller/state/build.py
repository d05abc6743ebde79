"""The models, from what the controller's parts report today.

The control core reports its status as a dict (``ControlCore.status``) and its alarm
events as its own small dataclass; acquisition hands over ``Reading``s. These functions
are the one place that turns them into the typed contract, without validation (they
run at every status publish, alarm and socket request; the tests validate what they
build). A word an enum does not know passes through as text (``coerce``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Protocol

from controller.config.schema import PressureManagementConfig
from controller.state.enums import (
    AlarmEventKind,
    BadReason,
    ControlState,
    Mode,
    PumpState,
    Quality,
    Severity,
    coerce,
)
from controller.state.models import (
    ActiveAlarm,
    AlarmEvent,
    CommandReply,
    PointValue,
    PumpStatus,
    StationStatus,
)
from controller.values import Reading


class ControlAlarmEvent(Protocol):
    """What the control core's alarm registry emits (``controller.control.alarms``)."""

    @property
    def id(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def t(self) -> float: ...
    @property
    def latched(self) -> bool: ...


def alarm_event(event: ControlAlarmEvent) -> AlarmEvent:
    """An alarm event as SCADA receives it (the buffer adds seq, boot, ts; the uplink
    the site)."""
    return AlarmEvent(
        id=event.id,
        event=coerce(AlarmEventKind, event.event),
        severity=coerce(Severity, event.severity),
        message=event.message,
        t_mono=round(event.t, 3),
        latched=event.latched,
    )


def station_status(core: Mapping[str, Any]) -> StationStatus:
    """The control core's status dict (``ControlCore.status``) as the typed body."""
    pm = core.get("pressure_management")
    return StationStatus(
        mode=coerce(Mode, core["mode"]),
        setpoint_bar=core["setpoint_bar"],
        base_setpoint_bar=core["base_setpoint_bar"],
        state=coerce(ControlState, core["state"]),
        demand=core["demand"],
        pumps={name: pump_status(p) for name, p in core["pumps"].items()},
        alarms=[active_alarm(a) for a in core["alarms"]],
        pressure_management=pm
        if pm is None or isinstance(pm, PressureManagementConfig)
        # Was validated as part of the station file or of the command that set it.
        else PressureManagementConfig.model_validate(pm),
        pid=core.get("pid"),
    )


def pump_status(pump: Mapping[str, Any]) -> PumpStatus:
    return PumpStatus(
        running=pump["running"],
        run_hours=pump["run_hours"],
        starts_last_hour=pump["starts_last_hour"],
        starts_total=pump["starts_total"],
        locked_out=pump["locked_out"],
        out_of_service=bool(pump.get("out_of_service", False)),
        state=coerce(PumpState, pump["state"]),
        speed_pct=pump.get("speed_pct"),
        energy_kwh=pump.get("energy_kwh"),
    )


def active_alarm(alarm: Mapping[str, Any]) -> ActiveAlarm:
    return ActiveAlarm(
        id=alarm["id"],
        severity=coerce(Severity, alarm["severity"]),
        message=alarm["message"],
        since=alarm["since"],
        latched=alarm["latched"],
        condition=alarm["condition"],
        acked=alarm["acked"],
    )


def point_value(reading: Reading) -> PointValue:
    """A reading as the status shows it (``Reading.as_dict``'s digits and keys)."""
    d = reading.as_dict()
    return PointValue(
        v=d["v"],  # type: ignore[arg-type]  # a float or None
        unit=reading.unit,
        q=Quality(reading.quality),
        held=True if reading.held else None,
        reason=BadReason(reading.reason) if reading.reason is not None else None,
        detail=reading.detail or None if reading.reason is not None else None,
    )


_REPLY_KEYS = frozenset(f.name for f in fields(CommandReply))


def command_reply(
    cid: str | None, *, ok: bool, error: str | None = None, **extra: Any
) -> CommandReply:
    """A command's reply; ``extra`` holds the fields only some replies carry."""
    unknown = extra.keys() - _REPLY_KEYS
    if unknown:
        raise TypeError(f"not a field of a command reply: {', '.join(sorted(unknown))}")
    return CommandReply(id=cid, ok=ok, error=error, **extra)

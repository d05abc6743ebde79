"""The words the station publishes: mode, control state, alarm severity, pump state, quality.

``StrEnum`` members are their text (``Mode.AUTO == "auto"``), so JSON carries the same
words as before these types existed. ``Quality`` and ``BadReason`` live with ``Reading``
(``controller.values``), where acquisition makes them; they are re-exported here so the
whole vocabulary of the contract is in one place.
"""

from __future__ import annotations

import enum
import functools
from typing import TypeVar

from controller.values import BadReason, Quality

__all__ = [
    "AlarmEventKind",
    "BadReason",
    "ControlState",
    "Mode",
    "PumpState",
    "Quality",
    "Severity",
    "coerce",
]


class Mode(enum.StrEnum):
    """What the operator or SCADA chose (``mode`` command)."""

    AUTO = "auto"
    MANUAL = "manual"
    OFF = "off"


class PumpMode(enum.StrEnum):
    """A pump's own mode (``pump_mode`` command): Auto, or Off (out of service)."""

    AUTO = "auto"
    OFF = "off"


class ControlState(enum.StrEnum):
    """What the control is doing this tick: the mode, or the protection that overrides it."""

    STARTING = "starting"  # before the first tick (a status published at connect)
    AUTO = "auto"
    MANUAL = "manual"
    OFF = "off"
    POWER_ON_DELAY = "power_on_delay"
    DRY_RUN = "dry_run"
    SUCTION_SENSOR_FAILURE = "suction_sensor_failure"
    HIGH_PRESSURE = "high_pressure"
    HIGH_PRESSURE_REPEATED = "high_pressure_repeated"
    SENSOR_FAILURE = "sensor_failure"
    LOW_FLOW = "low_flow"
    FILLING = "filling"
    FILLING_FAILED = "filling_failed"
    POWER_LOST = "power_lost"


class Severity(enum.StrEnum):
    """How urgent an alarm is."""

    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"


class AlarmEventKind(enum.StrEnum):
    """What happened to an alarm (the ``event`` of an alarm message)."""

    RAISE = "raise"
    CLEAR = "clear"
    ACK = "ack"


class PumpState(enum.StrEnum):
    """A pump as SCADA and the HMI show it."""

    RUNNING = "running"
    READY = "ready"
    EXERCISING = "exercising"
    LOCKED_OUT = "locked out"
    OUT_OF_SERVICE = "out of service"


E = TypeVar("E", bound=enum.StrEnum)


def coerce(kind: type[E], value: str) -> E:
    """``value`` as a member of ``kind``; a word the enum does not know passes through as
    text (typed as the enum) rather than stopping telemetry or the status. The schema
    test (tests/test_state_broker.py) is what catches such a word."""
    member = _members(kind).get(value)
    return member if member is not None else value  # type: ignore[return-value]


@functools.cache
def _members(kind: type[E]) -> dict[str, E]:
    return {m.value: m for m in kind}

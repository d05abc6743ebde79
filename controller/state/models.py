"""The station's published state as types: the one contract every outward view renders.

Each model is a frozen stdlib dataclass. The JSON a model stands for is ``to_json(model)``
(``controller.state.dump``): its fields in the order declared here, a field typed
``... | Absent`` left out while it is None (a field typed ``... | None`` is sent as
``null``). pydantic reads the same classes (``TypeAdapter``) for the JSON Schema files
in docs/schema/ (``python -m controller.state.schema``) and for validation in the
tests; nothing validates at run time. That is deliberate: the telemetry sample is built
on every control tick, and constructing its dataclass took 2.5 us where a validated
pydantic model took 6 us and ``model_construct`` 11.5 us (same fields, this machine);
``bench.state`` measures the whole typed sample at about 5 us more than the plain dict
it replaced, under 3 % of a bare control tick. What the station builds is checked
against the schemas in the tests instead (tests/test_state_*.py), down to messages
taken from a real broker.

What is here, by topic (docs/mqtt.md):

* ``telemetry``: ``TelemetryMessage``, i.e. ``SampleStamp`` (added by the buffer) and
  ``TelemetrySample`` (built by the control loop each tick, ``make_sample``);
* ``schema/<id>``: ``SchemaMessage``;
* ``status``: ``StatusMessage``, one of ``OnlineStatus`` (``StationStatus`` plus a
  head), ``OfflineStatus`` and ``LastWill``;
* ``alarm``: ``AlarmMessage``, i.e. ``EventStamp``, ``AlarmEvent`` and the site;
* ``cmd/<name>``: ``SetpointCommand`` ... ``PressureManagementCommand``;
  ``cmd/<name>/result``: ``CommandReply``;
* the local status socket (not MQTT): ``LocalStatus``, a ``StationStatus`` with the
  live values and the health of each subsystem; ``BriefStatus`` is its cheap part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, with_config
from pydantic.json_schema import SkipJsonSchema

from controller.config.schema import PressureManagementConfig
from controller.state.enums import (
    AlarmEventKind,
    BadReason,
    ControlState,
    Mode,
    PumpMode,
    PumpState,
    Quality,
    Severity,
)

#: ``x: T | Absent = None``: the key is left out of the message while x is None (the
#: schema then lists x as optional of type T, never null).
Absent = SkipJsonSchema[None]

#: Every model: unknown keys are an error (the schemas say ``additionalProperties:
#: false``), and a field's docstring is its description in the schema.
CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True)

#: ``[reason]`` or ``[reason, detail]``: why a value is bad, or why a held one was held.
Why = tuple[BadReason] | tuple[BadReason, str]
#: A pump flag word (bits 1, 2, 4, 8, 16, 32: see ``PumpFlag`` in docs/mqtt.md).
FlagWord = Annotated[int, Field(ge=0, le=63)]
CommandId = Annotated[str, Field(min_length=1, max_length=128)]
#: A telemetry schema's id: 6 hex digits of a hash of its content.
SchemaId = Annotated[str, Field(pattern=r"^[0-9a-f]{6}$")]
#: UTC, ISO 8601 with milliseconds and a Z, e.g. 2026-11-24T06:07:12.120Z.
IsoTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


# -- telemetry ------------------------------------------------------------------------------


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class SchemaPoint:
    """One measured point of a telemetry schema."""

    name: str
    """The point's name in the station file."""
    unit: str
    """The unit its values are in."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class SchemaMessage:
    """Point names, units and pump names, in the order a format-2 sample lists their
    values; published retained on ``<prefix>/<site>/schema/<id>`` before the first
    sample that refers to it."""

    v: Literal[2] = 2
    """The telemetry format."""
    id: SchemaId
    """A short hash of the content (6 hex digits): the samples' ``sch``."""
    points: list[SchemaPoint]
    """The points, in the order of a sample's ``val``."""
    pumps: list[str]
    """The pump names, in the order of a sample's ``pmp`` and ``spd``."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class SampleStamp:
    """What the station's buffer adds to each sample when it is taken."""

    seq: int
    """The sample's number: rises by one per sample, across restarts, never reused."""
    boot: int
    """The start counter of the controller run that took the sample."""
    ts: int
    """When the sample was taken: UTC, Unix milliseconds, by the station's clock."""
    ts_unsynced: Literal[True] | Absent = None
    """Present when the station's clock was not synchronised: order by seq, not ts."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class TelemetrySample:
    """One control tick in telemetry format 2, as the control loop builds it (the
    buffer adds the stamp): values and pump flags in the order of the schema ``sch``."""

    v: Literal[2] = 2
    """The format: 2. A message without v is format 1 (releases before format 2)."""
    sch: SchemaId
    """The id of the schema that names this sample's values and pumps."""
    m: Mode
    """The mode."""
    st: ControlState
    """What the control is doing."""
    sp: float
    """The setpoint controlled to, bar."""
    dem: float
    """The PID's capacity demand in pumps (1.4: one pump and a good part of a second)."""
    val: list[float | None]
    """One value per schema point, in the schema's unit; null when bad."""
    pmp: list[FlagWord]
    """One flag word per schema pump."""
    bad: dict[str, Why] | Absent = None
    """Each bad point by name: [reason] or [reason, detail]."""
    held: dict[str, Why] | Absent = None
    """Each good point whose fresh read failed and whose last good value is held: why."""
    lock: dict[str, str] | Absent = None
    """Each locked-out pump by name: why, until a technician acknowledges."""
    spd: list[float | None] | Absent = None
    """With drive pumps: per schema pump the speed reference, % of rated speed; null
    for a pump without a drive."""

    def body(self) -> dict[str, Any]:
        """``to_json(self)``, written out: this runs on every control tick."""
        out: dict[str, Any] = {
            "v": self.v,
            "sch": self.sch,
            "m": self.m,
            "st": self.st,
            "sp": self.sp,
            "dem": self.dem,
            "val": self.val,
            "pmp": self.pmp,
        }
        if self.bad is not None:
            out["bad"] = self.bad
        if self.held is not None:
            out["held"] = self.held
        if self.lock is not None:
            out["lock"] = self.lock
        if self.spd is not None:
            out["spd"] = self.spd
        return out


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class TelemetryMessage(TelemetrySample, SampleStamp):
    """A message on ``<prefix>/<site>/telemetry``: one sample, format 2."""


# -- alarms ---------------------------------------------------------------------------------


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class EventStamp:
    """What the station's buffer adds to each alarm event."""

    seq: int
    """The alarm events' own number (not the telemetry's), same promises."""
    boot: int
    """The start counter of the controller run the event happened in."""
    ts: IsoTime
    """When it happened: UTC, ISO 8601 with milliseconds and a Z."""
    ts_unsynced: Literal[True] | Absent = None
    """Present when the station's clock was not synchronised."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class AlarmEvent:
    """An alarm raised, cleared or acknowledged, as the controller reports it."""

    id: str
    """The alarm's id, e.g. dry_run, pump_lockout_P1."""
    event: AlarmEventKind
    """raise, clear or ack."""
    severity: Severity
    """How urgent."""
    message: str
    """What a person reads."""
    t_mono: float
    """The controller's monotonic time, s: meaningful only within one boot."""
    latched: bool
    """A latched alarm stays active after its cause is gone until acknowledged."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class AlarmMessage(AlarmEvent, EventStamp):
    """A message on ``<prefix>/<site>/alarm``."""

    site: str
    """The station's site id."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class CommandEvent:
    """A write by a person at the station's web HMI, reported to SCADA on the alarm topic
    beside the alarm events: who sent which command, and whether it was carried out. Not
    an alarm (nothing to acknowledge or clear); SCADA's own commands are answered on
    their reply topic instead."""

    id: Literal["hmi_command"]
    """Always ``hmi_command``."""
    event: Literal["hmi_command"]
    """Always ``hmi_command``: tells this message from an alarm event."""
    severity: Literal["info"]
    """Always ``info``."""
    message: str
    """What a person reads: the user, the command, its fields and the verdict."""
    user: str
    """The HMI account that sent it."""
    command: str
    """The command's name, as on ``cmd/<name>`` (setpoint, mode, pump, pump_mode, ack)."""
    ok: bool
    """It was carried out (false: refused, the message says why)."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class CommandEventMessage(CommandEvent, EventStamp):
    """An HMI write on ``<prefix>/<site>/alarm``."""

    site: str
    """The station's site id."""


#: A message on ``<prefix>/<site>/alarm``: an alarm event, or an HMI write.
AlarmTopicMessage = AlarmMessage | CommandEventMessage


# -- status ---------------------------------------------------------------------------------


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class PumpStatus:
    """One pump in the status."""

    running: bool
    """The relay is commanded on."""
    run_hours: float
    """Total hours run."""
    starts_last_hour: int
    """Starts in the last hour (the start limit counts these)."""
    starts_total: int
    """Starts since commissioning."""
    locked_out: str | None
    """Why the pump is locked out (until a technician acknowledges); null if it is not."""
    out_of_service: bool = False
    """Switched Off (``pump_mode`` off): stopped, and nothing starts it until Auto."""
    state: PumpState
    """What the pump is doing."""
    speed_pct: float | Absent = None
    """With a drive: the speed reference, % of rated speed."""
    energy_kwh: float | Absent = None
    """Energy used, kWh: only where it is measured (the simulator)."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class ActiveAlarm:
    """An alarm that is active now."""

    id: str
    """The alarm's id."""
    severity: Severity
    """How urgent."""
    message: str
    """What a person reads."""
    since: float
    """Monotonic time it was raised, s (within one boot)."""
    latched: bool
    """Stays until acknowledged."""
    condition: bool
    """Its cause is still present."""
    acked: bool
    """It has been acknowledged."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class StationStatus:
    """What the control is doing: the body of the retained status."""

    mode: Mode
    """The mode."""
    setpoint_bar: float
    """The setpoint controlled to now (managed by schedule, flow compensation or
    filling when configured), bar."""
    base_setpoint_bar: float
    """The operator's setpoint, before pressure management, bar."""
    state: ControlState
    """What the control is doing."""
    demand: float
    """The PID's capacity demand in pumps."""
    pumps: dict[str, PumpStatus]
    """Every pump by name."""
    alarms: list[ActiveAlarm]
    """The active alarms."""
    pressure_management: PressureManagementConfig | None
    """The schedule and flow compensation in force; null for the fixed setpoint."""
    pid: dict[str, float | None] | Absent = None
    """The PID's terms, for tuning, when the controller reports them."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class OnlineHead:
    online: Literal[True]
    """The station is up."""
    site: str
    """The station's site id."""
    version: str
    """The controller's version."""
    ts: IsoTime
    """When this status was published: UTC, ISO 8601."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class OnlineStatus(StationStatus, OnlineHead):
    """The retained status while the station is up: published on connect, after every
    alarm event and command, and every 60 s."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class OfflineStatus:
    """The retained status after an orderly stop."""

    online: Literal[False]
    """The station stopped."""
    site: str
    """The station's site id."""
    version: str
    """The controller's version."""
    ts: IsoTime
    """When it stopped: UTC, ISO 8601."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class LastWill:
    """The retained status the broker publishes when the station falls silent (no
    ``ts``: composed at connect, possibly days earlier; take its arrival time)."""

    online: Literal[False]
    """The station is gone."""
    site: str
    """The station's site id."""
    version: str
    """The controller's version."""
    will: Literal[True]
    """Sent by the broker, not by the station."""


#: A message on ``<prefix>/<site>/status`` (retained).
StatusMessage = OnlineStatus | OfflineStatus | LastWill


# -- commands -------------------------------------------------------------------------------


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class CommandReply:
    """The reply on ``<prefix>/<site>/cmd/<name>/result``."""

    id: CommandId | None
    """The command's id; null when the payload could not be read."""
    ok: bool
    """Carried out."""
    error: str | None
    """Why not (null when ok)."""
    acknowledged: list[str] | Absent = None
    """ack only: the ids acknowledged."""
    repeated: Literal[True] | Absent = None
    """The command was carried out before (same command, same id): not executed again."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class CommandHead:
    id: CommandId
    """Any printable text, 1-128 characters: a command carried out is remembered by it."""
    ts: str | float
    """When it was sent: ISO 8601 with a zone, or Unix seconds."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class SetpointCommand(CommandHead):
    """``cmd/setpoint``: a new pressure setpoint."""

    value: float
    """bar, within the station's setpoint_min_bar..setpoint_max_bar."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class ModeCommand(CommandHead):
    """``cmd/mode``."""

    mode: Mode
    """auto, manual or off."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class PumpCommand(CommandHead):
    """``cmd/pump``: manual mode only, and still subject to every protection."""

    pump: str
    """The pump's name."""
    on: bool
    """Start (true) or stop (false)."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class PumpModeCommand(CommandHead):
    """``cmd/pump_mode``: a pump's Auto or Off (out of service), in any station mode."""

    pump: str
    """The pump's name."""
    mode: PumpMode
    """auto (the station's control runs it) or off (stopped now, never started)."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class AckCommand(CommandHead):
    """``cmd/ack``: acknowledges latched alarms (one, or all)."""

    alarm: str | Absent = None
    """The alarm's id; leave it out to acknowledge every latched alarm."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class PressureManagementCommand(CommandHead):
    """``cmd/pressure_management``: replaces the schedule and flow compensation."""

    pressure_management: PressureManagementConfig | None
    """As in the station file; null returns to the fixed setpoint."""


#: The command payloads by command name (the last part of ``cmd/<name>``).
COMMANDS: dict[str, type[CommandHead]] = {
    "setpoint": SetpointCommand,
    "mode": ModeCommand,
    "pump": PumpCommand,
    "pump_mode": PumpModeCommand,
    "ack": AckCommand,
    "pressure_management": PressureManagementCommand,
}


# -- the local status socket (boosterd status, the dashboard) ------------------------------


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class PointValue:
    """One point's latest value, named (``Reading.as_dict``)."""

    v: float | None
    """The value; null when bad."""
    unit: str
    """Its unit."""
    q: Quality
    """good or bad."""
    held: Literal[True] | Absent = None
    """A good value held through a failed read."""
    reason: BadReason | Absent = None
    """Why it is bad (or why the fresh read of a held value failed)."""
    detail: str | Absent = None
    """More on the reason, e.g. 0.00 mA."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class SiteInfo:
    id: str
    name: str
    language: str


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class LoopView:
    """The control loop's counters (``LoopStats.as_dict``)."""

    ticks: int
    overruns: int
    missed: int
    max_tick_ms: float
    jitter_ms_p50: float | None
    jitter_ms_p99: float | None
    jitter_ms_max: float | None


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class SimInfo:
    """The simulated plant, when the station is the demo."""

    time: str
    speed: float
    demand_m3h: float
    leakage_m3h: float


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class BriefStatus(StationStatus):
    """The status and the live values: what the one-line headline needs, cheap."""

    pressure_point: str
    """The controlled point's name."""
    values: dict[str, PointValue]
    """Every point's latest value."""


@with_config(CONFIG)
@dataclass(frozen=True, kw_only=True)
class LocalStatus(BriefStatus):
    """The status socket's answer: everything ``boosterd status`` and the dashboard show."""

    site: SiteInfo
    version: str
    loop: LoopView
    acquisition: dict[str, Any]
    """The value source's counters (their shape is the source's)."""
    buffer: dict[str, Any]
    """The buffer's counters (``SampleBuffer.stats``)."""
    uplink: dict[str, Any]
    """The uplink's counters (``stats()`` of the JSON or the Sparkplug uplink)."""
    ready: bool
    """Control runs on real data (systemd READY was sent)."""
    sim: SimInfo | Absent = None
    """The simulated plant, in the demo."""

"""The station file's schema: one YAML file describes a whole booster station.

Units stand in the key names (``_bar``, ``_s``, ``_m3h``, ``_kw``) so a technician
never has to guess. Every model forbids unknown keys, so a typo is an error with a
did-you-mean, never a silently ignored setting. Cross-field checks that need the
whole station (dangling point names, duplicate relay lines) live in ``checks.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from controller.config.datatypes import REGISTER_COUNT  # one table with the codec's formats

# -- numbers ------------------------------------------------------------------------------
# Every number in a station file or a SCADA command is finite (``allow_inf_nan=False`` on
# every model) and lies in a physically sensible range stated once, here, by the quantity
# it is. A protection can only be as good as its limits: an infinite delay or margin would
# switch it off silently, so no field takes a bare ``float``.

#: A gauge pressure a booster station works with (setpoints, limits): 0 to 25 bar.
Bar = Annotated[float, Field(ge=0, le=25)]
#: A pressure difference (margins, bands, hysteresis): above 0, at most 10 bar.
BarDelta = Annotated[float, Field(gt=0, le=10)]
#: A delay or time span in the control and protections: 0 s to one hour.
Seconds = Annotated[float, Field(ge=0, le=3600)]
#: A positive time span in the control and protections: up to one hour.
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
#: A flow a booster station can carry: 0.01 to 100 000 m3/h.
FlowM3h = Annotated[float, Field(ge=0.01, le=100_000)]
#: How fast a setpoint may move: 0.001 bar/min (1 bar in 17 h) to 60 bar/min.
BarPerMin = Annotated[float, Field(ge=0.001, le=60)]
#: A register value or a scale factor: any finite number a 32-bit register can mean.
RegisterNumber = Annotated[float, Field(ge=-1e12, le=1e12)]
#: A pump's head: above 0, at most 2000 m.
HeadM = Annotated[float, Field(gt=0, le=2000)]
#: A motor's power: above 0, at most 10 MW.
PowerKw = Annotated[float, Field(gt=0, le=10_000)]
#: A PID gain (per bar, per bar-second, ...): 0 to 1000.
Gain = Annotated[float, Field(ge=0, le=1000)]

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"),
]
SiteId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

RegisterKind = Literal["input", "holding", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]


class _Model(BaseModel):
    # strict: a YAML string "9600" is not silently a number; frozen: config is a value;
    # no NaN or infinity anywhere (see the number types above).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class SiteConfig(_Model):
    """Who and where the station is."""

    id: SiteId = Field(description="Short id used in MQTT topics, e.g. 'bs01-sukamaju'.")
    name: str = Field(min_length=1)
    timezone: str = "Asia/Jakarta"
    language: Literal["id", "en"] = Field(
        default="id", description="Default language of the HMI and status texts (id or en)."
    )

    @model_validator(mode="after")
    def _known_timezone(self) -> SiteConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            # OSError: a name such as 'Asia' is a directory of the zone database.
            raise ValueError(
                f"unknown time zone {self.timezone!r} (use an IANA name such as 'Asia/Jakarta')"
            ) from exc
        return self


class BusConfig(_Model):
    """One Modbus bus: an RS-485 port, or a TCP gateway."""

    type: Literal["rtu", "tcp", "rtu_over_tcp"] = "rtu"
    port: str | None = Field(default=None, description="Serial device, e.g. /dev/ttyUSB0.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    host: str | None = Field(default=None, description="Gateway host for tcp / rtu_over_tcp.")
    tcp_port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=0.3, gt=0, le=10)
    retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Repeats of a failed request (no answer or a corrupted one) before the "
        "poll counts as failed.",
    )
    backoff_s: float = Field(
        default=10.0, gt=0, le=3600, description="How long a dead slave is left alone."
    )
    silent_before_backoff: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Requests in a row a slave must leave entirely unanswered (retries "
        "included) before it is left alone for backoff_s; a corrupted answer is not silence.",
    )
    echo: bool = Field(
        default=False,
        description="The RS-485 adapter echoes what it sends: read back and drop the "
        "request's own bytes before the answer.",
    )
    hold_s: float | None = Field(
        default=None,
        ge=0,
        le=60,
        description="How long a point keeps its last good value after failed polls before "
        "it turns bad (default: three poll periods plus one timeout).",
    )
    max_gap_registers: int = Field(
        default=8,
        ge=0,
        le=100,
        description="Unused registers a block read may bridge when that is cheaper on the wire.",
    )

    @model_validator(mode="after")
    def _endpoint(self) -> BusConfig:
        if self.type == "rtu" and not self.port:
            raise ValueError("an rtu bus needs 'port' (e.g. /dev/ttyUSB0)")
        if self.type != "rtu" and not self.host:
            raise ValueError(f"a {self.type} bus needs 'host'")
        if self.echo and self.type == "tcp":
            raise ValueError("'echo' is for RS-485 lines (rtu, rtu_over_tcp), not Modbus TCP")
        return self


class Span4To20mA(_Model):
    """A 4-20 mA transmitter read through an analog input module as raw counts."""

    raw_at_4ma: RegisterNumber = Field(description="Register value the module reports at 4 mA.")
    raw_at_20ma: RegisterNumber = Field(description="Register value the module reports at 20 mA.")
    eng_at_4ma: RegisterNumber = Field(description="Engineering value at 4 mA, e.g. 0.0 bar.")
    eng_at_20ma: RegisterNumber = Field(description="Engineering value at 20 mA, e.g. 10.0 bar.")

    @model_validator(mode="after")
    def _distinct(self) -> Span4To20mA:
        if self.raw_at_4ma == self.raw_at_20ma:
            raise ValueError("raw_at_4ma and raw_at_20ma must differ")
        return self


class PointConfig(_Model):
    """One value read from a Modbus device."""

    kind: RegisterKind = "holding"
    address: int = Field(ge=0, le=65535, description="Zero-based register or bit address.")
    type: DataType = "uint16"
    byte_order: ByteOrder = Field(
        default="ABCD", description="Word/byte order of 32-bit values: ABCD, CDAB, BADC, DCBA."
    )
    scale: RegisterNumber = 1.0
    offset: RegisterNumber = 0.0
    span_4_20ma: Span4To20mA | None = None
    unit: str = ""
    poll: Name = Field(default="fast", description="Poll class name (see poll_classes).")
    valid_min: RegisterNumber | None = Field(
        default=None, description="Below this the value is bad."
    )
    valid_max: RegisterNumber | None = Field(
        default=None, description="Above this the value is bad."
    )
    max_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        le=1e9,
        description="Largest plausible change per second (units/s); a faster jump from the "
        "last good value is bad (implausible).",
    )
    monotonic: bool = Field(
        default=False, description="A totaliser: a value below the last good one is bad."
    )
    hold_s: float | None = Field(
        default=None,
        ge=0,
        le=60,
        description="Overrides the bus's hold_s for this point.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PointConfig:
        bit_kind = self.kind in ("coil", "discrete")
        if bit_kind and self.type != "bool":
            raise ValueError(f"a {self.kind} point has type 'bool', not {self.type!r}")
        if not bit_kind and self.type == "bool":
            raise ValueError(f"type 'bool' is for coil/discrete points, not {self.kind!r}")
        if self.span_4_20ma is not None and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError("give either scale/offset or span_4_20ma, not both")
        if self.address + REGISTER_COUNT[self.type] - 1 > 65535:
            raise ValueError(
                f"a {self.type} at address {self.address} runs past the last register 65535"
            )
        if (
            self.valid_min is not None
            and self.valid_max is not None
            and self.valid_min >= self.valid_max
        ):
            raise ValueError("valid_min must be below valid_max")
        if self.type == "bool" and (self.max_rate_per_s is not None or self.monotonic):
            raise ValueError("max_rate_per_s and monotonic are for numbers, not bool points")
        return self

    @property
    def register_count(self) -> int:
        return REGISTER_COUNT[self.type]


class DeviceConfig(_Model):
    """One Modbus slave on a bus."""

    bus: Name
    slave_id: int = Field(ge=1, le=247)
    points: dict[Name, PointConfig] = Field(min_length=1)


class PollClassConfig(_Model):
    period_s: float = Field(gt=0, le=86400)


class VfdConfig(_Model):
    """A variable-frequency drive on a pump, controlled over Modbus.

    The drive's register profile is described as points of its Modbus device (under
    ``devices:``), so any drive can be described: its speed reference (written), and
    optionally its output frequency and fault word (read). The pump's relay is the
    drive's run command.
    """

    speed_point: Name = Field(description="Holding-register point the speed reference goes to.")
    speed_unit: Literal["percent", "hz"] = Field(
        default="percent", description="What the speed point holds: % of rated speed, or Hz."
    )
    rated_hz: float = Field(default=50.0, gt=0, le=400)
    frequency_point: Name | None = Field(
        default=None, description="Output frequency read back, in Hz (the point's unit)."
    )
    fault_point: Name | None = Field(default=None, description="Non-zero means the drive tripped.")
    run_point: Name | None = Field(
        default=None,
        description="Run command over Modbus (written 1/0), for drives without a run "
        "contact; the pump's relay switches as well.",
    )
    min_speed_pct: float = Field(default=30.0, ge=0, le=100)
    max_speed_pct: float = Field(default=100.0, gt=0, le=120)
    ramp_s: Seconds = Field(
        default=5.0,
        description="The drive's acceleration time 0 to 100 %, as set in the drive: a "
        "destaged fixed pump runs on this long while the drive takes over its flow; the "
        "simulator ramps the drive with it.",
    )

    @model_validator(mode="after")
    def _speeds(self) -> VfdConfig:
        if self.min_speed_pct >= self.max_speed_pct:
            raise ValueError("min_speed_pct must be below max_speed_pct")
        return self


class PumpConfig(_Model):
    """A booster pump switched by a relay, with optional feedback and fault inputs."""

    relay: str = Field(min_length=1, description="Output line name, e.g. GPIO17.")
    relay_active_low: bool = False
    run_feedback: str | None = Field(default=None, description="Input line, e.g. GPIO22.")
    fault_input: str | None = Field(default=None, description="Input line, e.g. GPIO23.")
    inputs_active_low: bool = False
    rated_flow_m3h: FlowM3h
    rated_head_m: HeadM
    shutoff_head_m: HeadM
    rated_power_kw: PowerKw
    max_starts_per_hour: int = Field(default=6, ge=1, le=60)
    min_run_s: Seconds = 60.0
    min_off_s: Seconds = 60.0
    feedback_timeout_s: float = Field(default=5.0, gt=0, le=600)
    vfd: VfdConfig | None = Field(default=None, description="The drive, on a VFD pump.")

    @model_validator(mode="after")
    def _curve(self) -> PumpConfig:
        if self.shutoff_head_m <= self.rated_head_m:
            raise ValueError(
                "shutoff_head_m must be above rated_head_m (the curve falls with flow)"
            )
        return self


class GpioConfig(_Model):
    backend: Literal["gpiod", "rpigpio", "sim"] = "gpiod"
    chip: str | None = Field(default=None, description="gpiochip to use; default: find by name.")
    sim_dir: str | None = Field(
        default=None,
        description="backend sim only: directory shared with 'boosterd sim' (relays out, "
        "pump inputs in); without it the simulated lines live in this process only.",
    )


class PidConfig(_Model):
    kp: Gain = 0.6
    ki: Gain = 0.15
    kd: Gain = 0.0
    derivative_filter_s: Seconds = 1.0
    deadband_bar: float = Field(
        ge=0,
        le=5,
        default=0.0,
        description="Pressure error ignored by the PID. With fixed-speed pumps only, each "
        "stage lands somewhere in a band around the setpoint; a deadband of about half that "
        "band stops the integral from staging pumps on and off forever.",
    )
    setpoint_ramp_bar_per_s: float = Field(
        default=0.0, ge=0, le=10, description="Setpoint rate limit; 0 means step changes."
    )


class StagingConfig(_Model):
    stage_up_delay_s: Seconds = 10.0
    stage_down_delay_s: Seconds = 30.0
    stage_up_demand: float = Field(default=0.95, gt=0, le=1.0)
    stage_down_demand: float = Field(default=0.4, ge=0, lt=1.0)
    max_running: int | None = Field(
        default=None, ge=1, description="Cap on pumps running at once; the rest are standby."
    )
    alternation_h: float = Field(default=24.0, ge=0, le=168)
    station_max_starts_per_hour: int = Field(default=20, ge=1, le=200)
    exercise_interval_h: float = Field(
        default=24.0, ge=0, le=720, description="Run a pump idle this long briefly; 0: never."
    )
    exercise_s: float = Field(default=10.0, gt=0, le=300, description="Length of an exercise run.")
    last_pump_stops_on_demand: bool = Field(
        default=False,
        description="false: the last running pump stops only for low flow, a protection or "
        "the operator, never because the PID's demand dipped (the zone is never left at "
        "bare supply pressure, and the last pump does not cycle).",
    )


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class ScheduleEntry(_Model):
    """From ``at`` (HH:MM, station time zone) on, the base setpoint is ``setpoint_bar``."""

    at: str
    setpoint_bar: Bar
    days: list[Weekday] | None = Field(
        default=None,
        min_length=1,
        description="Only on these days (leave the key out for every day; an empty list is "
        "an error, not 'every day').",
    )

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not _TIME_OF_DAY.match(value):
            raise ValueError(f"a time of day HH:MM from 00:00 to 23:59, not {value!r}")
        return value


class FlowCompensationConfig(_Model):
    """setpoint = base + k_bar * (Q / flow_design_m3h) ^ exponent (proportional pressure)."""

    flow_design_m3h: FlowM3h
    k_bar: float = Field(ge=0, le=10, description="Pressure added at the design flow.")
    exponent: float = Field(default=2.0, ge=1.0, le=2.0, description="1 linear .. 2 quadratic")


class PressureManagementConfig(_Model):
    """Lower pressure when demand is low: a time-of-day schedule and flow compensation."""

    schedule: list[ScheduleEntry] = Field(default_factory=list)
    flow_compensation: FlowCompensationConfig | None = None
    ramp_bar_per_min: BarPerMin = Field(
        default=0.1, description="How fast the managed setpoint may move."
    )


class FillingConfig(_Model):
    """Refilling an emptied network gently (after a supply or power outage)."""

    empty_below_bar: BarDelta = Field(
        default=0.5, description="Automatic starting below this pressure fills the network first."
    )
    ramp_bar_per_min: BarPerMin = Field(default=0.5, description="Pressure ramp while filling.")
    max_pumps: int = Field(default=1, ge=1, le=64)
    max_s: float = Field(
        gt=0,
        le=86400,
        default=900.0,
        description="Still below empty_below_bar by then (a burst main never fills): alarm, stop.",
    )
    filled_below_bar: BarDelta = Field(
        default=1.0, description="'Filled' means within this of the setpoint."
    )


class ControlConfig(_Model):
    pressure_point: Name = Field(description="Point that is controlled (discharge pressure).")
    suction_point: Name | None = None
    flow_point: Name | None = None
    far_end_point: Name | None = Field(
        default=None,
        description="Pressure at the zone's far end (a remote logger), if one is read: shown "
        "on the HMI; the control law does not use it.",
    )
    setpoint_bar: Bar
    setpoint_min_bar: Bar
    setpoint_max_bar: Bar
    tick_s: float = Field(default=0.5, ge=0.05, le=10)
    pid: PidConfig = PidConfig()
    staging: StagingConfig = StagingConfig()
    pressure_management: PressureManagementConfig | None = None
    filling: FillingConfig | None = FillingConfig()

    @model_validator(mode="after")
    def _setpoint_range(self) -> ControlConfig:
        if not self.setpoint_min_bar <= self.setpoint_bar <= self.setpoint_max_bar:
            raise ValueError(
                f"setpoint_bar {self.setpoint_bar} must lie between setpoint_min_bar "
                f"{self.setpoint_min_bar} and setpoint_max_bar {self.setpoint_max_bar}"
            )
        return self


class DryRunConfig(_Model):
    suction_min_bar: Bar = 0.2
    delay_s: Seconds = 5.0
    restart_delay_s: Seconds = 30.0


class HighPressureConfig(_Model):
    margin_bar: BarDelta = 1.5
    delay_s: Seconds = 5.0


class LowFlowConfig(_Model):
    flow_min_m3h: float = Field(
        default=0.0, ge=0, le=100_000, description="0 disables the low-flow stop."
    )
    band_bar: BarDelta = 0.4
    delay_s: Seconds = 10.0


class LowPressureConfig(_Model):
    """No silent loss of service: an alarm when the pressure stays low and no pump can start."""

    margin_bar: BarDelta = Field(
        default=0.5, description="How far below the setpoint counts as low pressure."
    )
    delay_s: PositiveSeconds = Field(
        default=120.0, description="How long it may last before the alarm says why."
    )


class SensorFailureConfig(_Model):
    mode: Literal["fixed_pumps", "stop"] = "fixed_pumps"
    pumps: int = Field(default=1, ge=0, le=64)


class ProtectionsConfig(_Model):
    dry_run: DryRunConfig = DryRunConfig()
    high_pressure: HighPressureConfig = HighPressureConfig()
    low_flow: LowFlowConfig = LowFlowConfig()
    low_pressure: LowPressureConfig = LowPressureConfig()
    sensor_failure: SensorFailureConfig = SensorFailureConfig()
    power_on_delay_s: Seconds = 10.0


class TlsConfig(_Model):
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def files(self) -> list[tuple[str, str, str]]:
        """(field, what, path) of each configured file; ``what`` as a technician says it."""
        named = (
            ("ca_file", "TLS CA file", self.ca_file),
            ("cert_file", "TLS client certificate", self.cert_file),
            ("key_file", "TLS client key", self.key_file),
        )
        return [(field, what, path) for field, what, path in named if path is not None]


class SparkplugConfig(_Model):
    """The Sparkplug B 3.0 edge node (``uplink.scheme: sparkplug``); see docs/sparkplug.md."""

    group_id: str = Field(
        default="pdam",
        pattern=r"^[^#+/\s]{1,64}$",
        description="Sparkplug group: spBv1.0/<group_id>/... (e.g. the utility or the zone).",
    )
    edge_node_id: str | None = Field(
        default=None,
        pattern=r"^[^#+/\s]{1,64}$",
        description="This station's node id; default: site.id.",
    )
    primary_host_id: str | None = Field(
        default=None,
        pattern=r"^[^#+/\s]{1,64}$",
        description="Wait for spBv1.0/STATE/<id> online before NBIRTH; data waits in the "
        "buffer while that host is offline.",
    )
    deadband_pct: float = Field(
        default=0.5,
        ge=0,
        le=100,
        description="Report by exception: an analog value is sent when it moved by more "
        "than this % of its engineering range (or of its value, without a range).",
    )
    deadbands: dict[str, float] = Field(
        default_factory=dict,
        description="Absolute deadband per metric name, e.g. {'Values/discharge_pressure': "
        "0.02}; overrides deadband_pct.",
    )
    max_interval_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Every metric is sent at least this often, changed or not.",
    )
    history_batch: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Buffered samples per historical NDATA when a backlog is replayed.",
    )

    @field_validator("deadbands")
    @classmethod
    def _finite_deadbands(cls, value: dict[str, float]) -> dict[str, float]:
        for name, band in value.items():
            if not 0 <= band <= 1e6:
                raise ValueError(f"deadband of {name!r} must be between 0 and 1e6, not {band}")
        return value


class UplinkConfig(_Model):
    enabled: bool = True
    scheme: Literal["json", "sparkplug"] = Field(
        default="json",
        description="json: boosterd's own topics (docs/mqtt.md); sparkplug: a Sparkplug B "
        "3.0 edge node (docs/sparkplug.md).",
    )
    sparkplug: SparkplugConfig = SparkplugConfig()
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "5"
    tls: TlsConfig | None = None
    credentials_file: str | None = Field(
        default=None, description="File with 'username:password' (e.g. a systemd credential)."
    )
    topic_prefix: str = Field(default="pdam", pattern=r"^[^#+\s]+$")
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=600)
    batch_size: int = Field(default=100, ge=1, le=5000)
    max_inflight: int = Field(
        default=20,
        ge=1,
        le=65535,
        description="Telemetry publishes awaiting the broker's PUBACK at once during replay: "
        "raise it for a link with a long round trip (rate ~ max_inflight / round trip); "
        "each must be acknowledged within timeout_s.",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Longest wait for the broker's CONNACK/SUBACK/PUBACK before the link "
        "is treated as down.",
    )
    reconnect_max_s: float = Field(
        default=60.0, ge=0.1, le=3600, description="Longest wait between reconnect attempts."
    )
    command_max_age_s: float = Field(
        default=300.0, gt=0, le=86400, description="Older SCADA commands are rejected."
    )


class BufferConfig(_Model):
    path: str = "/var/lib/boosterd/buffer.sqlite3"
    max_mb: float = Field(default=512.0, ge=1, le=1_000_000)
    max_age_days: float = Field(default=60.0, gt=0, le=3650)
    commit_interval_s: float = Field(default=1.0, gt=0, le=60)
    max_pending: int = Field(
        default=20_000,
        ge=100,
        le=10_000_000,
        description="Samples kept in memory while the disk refuses writes; older ones drop.",
    )


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class StatusConfig(_Model):
    """The local status socket that ``boosterd status`` talks to."""

    socket: str = "/run/boosterd/status.sock"
    allow_commands: bool = Field(
        default=False, description="Accept ack/mode commands on the socket (read-only if false)."
    )


class HmiConfig(_Model):
    """The local web HMI (``hmi:``); absent means no HMI. Station LAN or VPN only."""

    bind: str = Field(
        default="127.0.0.1", description="Address to listen on; the station LAN address."
    )
    port: int = Field(default=8080, ge=0, le=65535, description="0: any free port (tests).")
    cert_file: str | None = Field(default=None, description="TLS certificate (PEM).")
    key_file: str | None = Field(default=None, description="TLS private key (PEM).")
    users_file: str = Field(
        default="/etc/boosterd/hmi-users.json",
        description="Accounts made with 'boosterd hmi-user add'; there is no default account.",
    )
    session_idle_s: float = Field(
        default=900.0, ge=60, le=86400, description="An idle session is logged out after this."
    )
    history_path: str | None = Field(
        default=None,
        description="Trend history (SQLite); default: hmi-history.sqlite3 next to the buffer.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> HmiConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("hmi cert_file and key_file go together")
        return self

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


SimSignal = Literal[
    "far_end_bar",
    "discharge_bar",
    "suction_bar",
    "flow_m3h",
    "volume_m3",
    "temperature_c",
    "power_kw",
    "energy_kwh",
    "constant",
]


class SimulationConfig(_Model):
    """Parameters of the simulated station (used only by the simulator)."""

    suction_bar: float = Field(default=1.0, ge=0, le=10)
    suction_variation_bar: float = Field(default=0.2, ge=0, le=10)
    demand_peak_m3h: float = Field(default=60.0, ge=0, le=100_000)
    demand_night_fraction: float = Field(default=0.25, ge=0, le=1)
    leakage_m3h_at_3bar: float = Field(default=6.0, ge=0, le=100_000)
    leakage_exponent: float = Field(default=1.15, ge=0.5, le=2.5)
    compliance_m3_per_bar: float = Field(default=0.05, gt=0, le=1000)
    zone_headloss_bar: float = Field(
        ge=0,
        le=25,
        default=0.8,
        description="Friction loss to the zone's far end at demand_peak_m3h.",
    )
    zone_elevation_m: float = Field(
        default=0.0, ge=-1000, le=1000, description="Far end above the station."
    )
    reference_pressure_bar: float = Field(default=3.0, gt=0, le=25)
    signals: dict[Name, SimSignal] = Field(
        default_factory=dict,
        description="Which simulated quantity a point reads, when its name or unit does "
        "not say (control points and units m3, m3/h, degC, kW, kWh are found by themselves).",
    )
    constant_value: RegisterNumber = Field(
        default=0.0, description="Value of points with no signal."
    )


class StationConfig(_Model):
    """A whole booster station."""

    site: SiteConfig
    buses: dict[Name, BusConfig] = Field(min_length=1)
    devices: dict[Name, DeviceConfig] = Field(min_length=1)
    poll_classes: dict[Name, PollClassConfig] = Field(default_factory=dict)
    gpio: GpioConfig = GpioConfig()
    pumps: dict[Name, PumpConfig] = Field(min_length=1)
    control: ControlConfig
    protections: ProtectionsConfig = ProtectionsConfig()
    uplink: UplinkConfig = UplinkConfig()
    buffer: BufferConfig = BufferConfig()
    logging: LoggingConfig = LoggingConfig()
    status: StatusConfig = StatusConfig()
    hmi: HmiConfig | None = None
    simulation: SimulationConfig = SimulationConfig()

    def points(self) -> dict[str, tuple[str, PointConfig]]:
        """Every point by name, with the device it belongs to."""
        return {
            name: (dev_name, point)
            for dev_name, dev in self.devices.items()
            for name, point in dev.points.items()
        }

    def poll_period_s(self, poll_class: str) -> float:
        """The period of a poll class; 'fast' defaults to the control tick."""
        if poll_class in self.poll_classes:
            return self.poll_classes[poll_class].period_s
        return self.control.tick_s

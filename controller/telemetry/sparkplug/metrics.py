"""The station's Sparkplug metrics: catalogue, values from a sample, report by exception.

Pure code, no I/O. The whole station is one edge node and every metric is a node metric
(docs/sparkplug.md says why): ``Values/<point>``, ``Control/...``, ``Pumps/<P>/...``,
``Alarms/...``, ``Node Control/...``. Each metric has a fixed alias (its place in the
catalogue, from 1), a Sparkplug datatype, and in the birth certificate its properties:
``engUnit``, ``engLow``/``engHigh`` (engineering range) and ``readOnly``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.config.schema import SparkplugConfig, StationConfig
from controller.control.core import MODES
from controller.state.build import station_status
from controller.state.dump import read, to_json
from controller.state.models import StationStatus, TelemetrySample
from controller.telemetry.encoding import (
    PUMP_FAULT,
    PUMP_FEEDBACK,
    PUMP_NO_FEEDBACK,
    PUMP_ON,
    TelemetrySchema,
    dumps,
    pump_state,
)
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb

#: A metric's value: None is sent as ``is_null`` (a bad reading, an unknown state).
Value = float | int | bool | str | None

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
COMMAND_RESULT = "Node Control/Command Result"
SAMPLE = "Telemetry/Sample"
SETPOINT = "Control/Setpoint"
MODE = "Control/Mode"
PRESSURE_MANAGEMENT = "Control/Pressure Management"
ACKNOWLEDGE = "Alarms/Acknowledge"
ALARM_EVENT = "Alarms/Last Event"
MANUAL_SUFFIX = "/Manual On"
#: A pump's Auto / Off (out of service): the ``pump_mode`` command.
PUMP_MODE_SUFFIX = "/Mode"

_U64 = (1 << 64) - 1
#: ``Buffer/Backlog`` is news when it moved by more than this many rows, or fell to 0: its
#: sawtooth between two live confirmations (0 to ~15 rows) would make every tick news.
BACKLOG_DEADBAND = 100.0
#: Sparkplug quality codes (the ``Quality`` property, Int32): 0 BAD, 192 GOOD, 500 STALE.
#: Only BAD is ever sent: without the property a value is GOOD.
QUALITY_BAD = 0


@dataclass(frozen=True)
class MetricDef:
    """One metric of the catalogue."""

    name: str
    alias: int
    datatype: int
    unit: str = ""
    low: float | None = None
    high: float | None = None
    writable: bool = False
    deadband: float = 0.0  # analog only: smaller moves are not reported
    #: A measured value: sent null with the Sparkplug ``Quality`` property BAD (0) when the
    #: reading is bad (the spec's property, which hosts such as Ignition read).
    measured: bool = False

    @property
    def analog(self) -> bool:
        return self.datatype in (pb.Float, pb.Double)


def _range(point: Any) -> tuple[float | None, float | None]:
    span = point.span_4_20ma
    if span is not None:
        lo, hi = sorted((float(span.eng_at_4ma), float(span.eng_at_20ma)))
        return lo, hi
    return point.valid_min, point.valid_max


@dataclass
class Catalogue:
    """Every metric of the station, by name and by alias."""

    defs: list[MetricDef] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_name = {d.name: d for d in self.defs}
        self.by_alias = {d.alias: d for d in self.defs}

    @classmethod
    def for_station(cls, cfg: StationConfig, spb: SparkplugConfig) -> Catalogue:
        rows: list[tuple[str, int, dict[str, Any]]] = [
            (BDSEQ, pb.Int64, {}),
            (REBIRTH, pb.Boolean, {"writable": True}),
            (COMMAND_RESULT, pb.String, {}),
            (SAMPLE, pb.UInt64, {}),
            ("Node Info/Site Name", pb.String, {}),
            ("Node Info/Version", pb.String, {}),
            (MODE, pb.String, {"writable": True}),
            ("Control/State", pb.String, {}),
            (
                SETPOINT,
                pb.Float,
                {
                    "unit": "bar",
                    "writable": True,
                    "low": cfg.control.setpoint_min_bar,
                    "high": cfg.control.setpoint_max_bar,
                },
            ),
            (
                "Control/Active Setpoint",
                pb.Float,
                {"unit": "bar", "low": 0.0, "high": cfg.control.setpoint_max_bar},
            ),
            ("Control/Demand", pb.Float, {"unit": "1", "low": 0.0, "high": 1.0}),
            (PRESSURE_MANAGEMENT, pb.String, {"writable": True}),
            ("Alarms/Active", pb.String, {}),
            ("Alarms/Count", pb.Int32, {}),
            (ACKNOWLEDGE, pb.String, {"writable": True}),
            (ALARM_EVENT, pb.String, {}),
            ("Buffer/Backlog", pb.Int64, {"deadband": BACKLOG_DEADBAND}),
        ]
        for name, (_, point) in cfg.points().items():
            low, high = _range(point)
            rows.append(
                (
                    f"Values/{name}",
                    pb.Float,
                    {"unit": point.unit, "low": low, "high": high, "measured": True},
                )
            )
            rows.append((f"Values/{name}/Quality", pb.String, {}))
        for name, pump in cfg.pumps.items():
            base = f"Pumps/{name}"
            rows += [
                (f"{base}/Running", pb.Boolean, {}),
                (f"{base}/Feedback", pb.Boolean, {}),
                (f"{base}/Fault", pb.Boolean, {}),
                (f"{base}/State", pb.String, {}),
                (f"{base}/Lockout", pb.String, {}),
                (f"{base}{MANUAL_SUFFIX}", pb.Boolean, {"writable": True}),
                (f"{base}{PUMP_MODE_SUFFIX}", pb.String, {"writable": True}),
            ]
            if pump.vfd is not None:
                rows.append((f"{base}/Speed", pb.Float, {"unit": "%", "low": 0.0, "high": 100.0}))
        defs = []
        for alias, (name, datatype, extra) in enumerate(rows, start=1):
            d = MetricDef(name=name, alias=alias, datatype=datatype, **extra)
            defs.append(_with_deadband(d, spb))
        return cls(defs)


def _with_deadband(d: MetricDef, spb: SparkplugConfig) -> MetricDef:
    if not d.analog:
        return d
    if d.name in spb.deadbands:
        band = spb.deadbands[d.name]
    elif d.low is not None and d.high is not None:
        band = (d.high - d.low) * spb.deadband_pct / 100.0
    else:
        band = -1.0  # relative to the value itself: see ReportByException
    return MetricDef(**{**d.__dict__, "deadband": band})


# -- values ---------------------------------------------------------------------------------


def iso_to_ms(ts: str) -> int:
    """The buffer's UTC ISO time as Unix milliseconds."""
    return round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def sample_values(seq: int, sample: TelemetrySample, schema: TelemetrySchema) -> dict[str, Value]:
    """The metric values one control tick holds (a buffered format-2 sample, named by the
    schema it was taken with), in the order of its values and pumps."""
    out: dict[str, Value] = {
        SAMPLE: seq,
        MODE: _text(sample.m),
        "Control/State": _text(sample.st),
        "Control/Active Setpoint": _number(sample.sp),
        "Control/Demand": _number(sample.dem),
    }
    bad = sample.bad or {}
    held = sample.held or {}
    for (name, _), v in zip(schema.points, sample.val, strict=True):
        if name in bad:
            out[f"Values/{name}"] = None
            out[f"Values/{name}/Quality"] = _text(bad[name][0] or "bad")
        else:
            why = held.get(name)
            out[f"Values/{name}"] = _number(v)
            # A held value is good; its quality names why the fresh read failed.
            out[f"Values/{name}/Quality"] = _text(why[0] or "good") if why else "good"
    lockouts = sample.lock or {}
    speeds = sample.spd if sample.spd is not None else [None] * len(schema.pumps)
    for name, flags, speed in zip(schema.pumps, sample.pmp, speeds, strict=True):
        base = f"Pumps/{name}"
        out[f"{base}/Running"] = bool(flags & PUMP_ON)
        out[f"{base}/Feedback"] = None if flags & PUMP_NO_FEEDBACK else bool(flags & PUMP_FEEDBACK)
        out[f"{base}/Fault"] = bool(flags & PUMP_FAULT)
        out[f"{base}/State"] = pump_state(flags)
        out[f"{base}/Lockout"] = _text(lockouts.get(name)) or ""
        if speed is not None:
            out[f"{base}/Speed"] = _number(speed)
    return out


def long_form_values(seq: int, sample: Mapping[str, Any]) -> dict[str, Value]:
    """``sample_values`` of a sample in the long form (``values.<point>``,
    ``pumps.<name>``): a row a release before telemetry format 2 left in the buffer."""
    out: dict[str, Value] = {SAMPLE: seq}
    out[MODE] = _text(sample.get("mode"))
    out["Control/State"] = _text(sample.get("state"))
    out["Control/Active Setpoint"] = _number(sample.get("setpoint_bar"))
    out["Control/Demand"] = _number(sample.get("demand"))
    for name, reading in (sample.get("values") or {}).items():
        if isinstance(reading, Mapping):
            out[f"Values/{name}"] = _number(reading.get("v"))
            out[f"Values/{name}/Quality"] = _text(reading.get("reason") or reading.get("q"))
    for name, row in (sample.get("pumps") or {}).items():
        if not isinstance(row, Mapping):
            continue
        base = f"Pumps/{name}"
        out[f"{base}/Running"] = _flag(row.get("on"))
        out[f"{base}/Feedback"] = _flag(row.get("feedback"))
        out[f"{base}/Fault"] = _flag(row.get("fault"))
        out[f"{base}/State"] = _text(row.get("state"))
        out[f"{base}/Lockout"] = _text(row.get("lockout")) or ""
        if "speed_pct" in row:
            out[f"{base}/Speed"] = _number(row.get("speed_pct"))
    return out


def status_values(
    status: StationStatus | Mapping[str, Any], manual: Mapping[str, bool]
) -> dict[str, Value]:
    """Metric values from the station's status (what samples do not carry): the daemon's
    ``StationStatus``, or a dict (``typed_status``)."""
    status = typed_status(status)
    pm = status.pressure_management
    out: dict[str, Value] = {
        SETPOINT: _number(status.base_setpoint_bar),
        MODE: _text(status.mode),
        PRESSURE_MANAGEMENT: dumps(to_json(pm)) if pm is not None else "",
        "Alarms/Active": ",".join(str(a.id) for a in status.alarms),
        "Alarms/Count": len(status.alarms),
    }
    for name, on in manual.items():
        out[f"Pumps/{name}{MANUAL_SUFFIX}"] = bool(on)
    for name, pump in status.pumps.items():
        out[f"Pumps/{name}{PUMP_MODE_SUFFIX}"] = "off" if pump.out_of_service else "auto"
    return out


def typed_status(status: StationStatus | Mapping[str, Any]) -> StationStatus:
    """``status`` as the model: a control core's status dict is built into one (what the
    daemon does); a partial dict (a tool's or a test's) is read leniently, what it lacks
    is null (``read`` is the slow path, some 0.6 ms: not for every sample)."""
    if isinstance(status, StationStatus):
        return status
    try:
        return station_status(status)
    except (KeyError, TypeError, ValueError):
        return read(StationStatus, status)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _flag(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


# -- report by exception --------------------------------------------------------------------


class ReportByException:
    """Decides which values to send: changed beyond the deadband, or due by max interval."""

    def __init__(self, catalogue: Catalogue, max_interval_s: float) -> None:
        self.catalogue = catalogue
        self.max_interval_ms = int(max_interval_s * 1000)
        self._sent: dict[str, tuple[Value, int]] = {}

    def reset(self, values: Mapping[str, Value], ts_ms: int) -> None:
        """After a birth: what it carried is what the host has."""
        self._sent = {name: (v, ts_ms) for name, v in values.items()}

    def changes(self, values: Mapping[str, Value], ts_ms: int) -> dict[str, Value]:
        """The values to send now; they are taken as sent."""
        out: dict[str, Value] = {}
        for name, value in values.items():
            d = self.catalogue.by_name.get(name)
            if d is None:
                continue
            last = self._sent.get(name)
            if (
                last is None
                or self._differs(d, last[0], value)
                or (ts_ms - last[1] >= self.max_interval_ms)
            ):
                out[name] = value
                self._sent[name] = (value, ts_ms)
        return out

    @staticmethod
    def _differs(d: MetricDef, old: Value, new: Value) -> bool:
        if not d.analog and d.deadband > 0 and type(old) is int and type(new) is int:
            return abs(new - old) > d.deadband or (new == 0 and old != 0)
        if not d.analog or not isinstance(old, float) or not isinstance(new, float):
            return old != new
        band = d.deadband if d.deadband >= 0 else abs(old) * 0.005
        return abs(new - old) > band


# -- encoding -------------------------------------------------------------------------------


def set_value(m: pb.Payload.Metric, datatype: int, value: Value) -> None:
    """Put ``value`` in the field its datatype uses (signed ints as two's complement)."""
    if value is None:
        m.is_null = True
    elif datatype == pb.Boolean:
        m.boolean_value = bool(value)
    elif datatype in (pb.String, pb.Text):
        m.string_value = str(value)
    elif datatype == pb.Float:
        m.float_value = float(value)
    elif datatype == pb.Double:
        m.double_value = float(value)
    elif datatype in (pb.Int64, pb.UInt64, pb.DateTime):
        m.long_value = int(value) & _U64
    else:
        m.int_value = int(value) & 0xFFFFFFFF


def add_metric(
    payload: pb.Payload,
    d: MetricDef,
    value: Value,
    ts_ms: int,
    *,
    birth: bool = False,
    historical: bool = False,
) -> None:
    """Append one metric: name, type and properties in a birth; alias only after."""
    m = payload.metrics.add()
    if birth:
        m.name = d.name
        m.datatype = d.datatype
    m.alias = d.alias
    m.timestamp = ts_ms
    if historical:
        m.is_historical = True
    set_value(m, d.datatype, value)
    props = _properties(d) if birth else []
    if value is None and d.measured:
        props.append(("Quality", pb.Int32, QUALITY_BAD))
    for key, datatype, pvalue in props:
        m.properties.keys.append(key)
        pv = m.properties.values.add(type=datatype)
        if isinstance(pvalue, bool):
            pv.boolean_value = pvalue
        elif isinstance(pvalue, str):
            pv.string_value = pvalue
        elif isinstance(pvalue, int):
            pv.int_value = pvalue
        elif pvalue is not None:
            pv.double_value = float(pvalue)


def _properties(d: MetricDef) -> list[tuple[str, int, Value]]:
    """A birth's properties of ``d``: engineering unit and range, read-only."""
    props: list[tuple[str, int, Value]] = []
    if d.unit:
        props.append(("engUnit", pb.String, d.unit))
    if d.low is not None:
        props.append(("engLow", pb.Double, d.low))
    if d.high is not None:
        props.append(("engHigh", pb.Double, d.high))
    props.append(("readOnly", pb.Boolean, not d.writable))
    return props


def encode(
    catalogue: Catalogue,
    values: Iterable[tuple[str, Value, int]],
    *,
    seq: int | None,
    ts_ms: int,
    birth: bool = False,
    historical: bool = False,
) -> bytes:
    """A payload of ``(name, value, ts_ms)`` metrics (unknown names skipped)."""
    payload = pb.Payload(timestamp=ts_ms)
    if seq is not None:
        payload.seq = seq
    for name, value, mts in values:
        d = catalogue.by_name.get(name)
        if d is not None:
            add_metric(payload, d, value, mts, birth=birth, historical=historical)
    return payload.SerializeToString()


def writable_modes() -> tuple[str, ...]:
    """What ``Control/Mode`` accepts (for docs and messages)."""
    return MODES

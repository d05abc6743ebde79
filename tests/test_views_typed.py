"""The Sparkplug metrics and the web HMI render from the typed station state (issue 15).

Each view reads the models by attribute: the Sparkplug node a ``StationStatus`` and each
buffered sample as its ``TelemetryMessage`` with the schema that names its values; the
HMI an ``HmiStatus`` (the daemon's ``LocalStatus`` plus what only the HMI adds). What they
show must not change with that: a typed sample gives the metrics its long form gives
(the form an older release left in the buffer), and a view handed a dict of a status
(tools, tests) shows what it shows for the model itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.audit import AuditLog
from controller.config import load_config
from controller.config.schema import PressureManagementConfig, StationConfig
from controller.control.core import ControlCore, ControlOutputs, PumpInputs
from controller.hmi import pages
from controller.hmi.history import History
from controller.hmi.live import live_view, trend_values
from controller.hmi.server import HmiServer
from controller.hmi.status import HmiStatus
from controller.runtime.loop import make_sample
from controller.state.build import station_status
from controller.state.dump import fields_of, to_json
from controller.state.enums import AlarmEventKind, BadReason, ControlState, Mode, Quality, Severity
from controller.state.models import (
    AlarmEvent,
    LocalStatus,
    LoopView,
    PointValue,
    SiteInfo,
    TelemetryMessage,
)
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.encoding import TelemetrySchema, decode_sample, dumpb, loads
from controller.telemetry.sparkplug.backlog import Backlog, telemetry_message
from controller.telemetry.sparkplug.metrics import long_form_values, sample_values, status_values
from controller.telemetry.sparkplug.node import SparkplugNode, row_values
from controller.values import Reading
from tests.conftest import EXAMPLE_CONFIG, VFD_CONFIG
from tests.test_pump_mode import command

# -- Sparkplug: samples -----------------------------------------------------------------------

REASONS = [r.value for r in BadReason]


@st.composite
def format2(draw: st.DrawFn) -> tuple[dict[str, Any], TelemetrySchema]:
    """A stored format-2 sample (as ``loads`` gives it back) and its schema."""
    names = draw(st.lists(st.sampled_from(["p", "q", "flow", "t<1>", "x"]), unique=True))
    pumps = draw(st.lists(st.sampled_from(["P1", "P2", "P3", "P 4"]), unique=True))
    schema = TelemetrySchema(points=tuple((n, "bar") for n in names), pumps=tuple(pumps))
    why = st.lists(st.sampled_from(REASONS), min_size=1, max_size=1).map(list) | st.tuples(
        st.sampled_from(REASONS), st.sampled_from(["0.00 mA", ""])
    ).map(list)
    value = st.none() | st.integers(-5, 5) | st.floats(-10, 50, allow_nan=False)
    fate = st.sampled_from(["good", "good", "bad", "held"])
    val: list[object] = []
    bad: dict[str, list[str]] = {}
    held: dict[str, list[str]] = {}
    for name in names:
        kind = draw(fate)
        val.append(None if kind == "bad" else draw(value))
        if kind != "good":
            (bad if kind == "bad" else held)[name] = draw(why)
    msg: dict[str, Any] = {
        "seq": draw(st.integers(1, 10**9)), "boot": 2, "ts": 1_795_939_200_123, "v": 2,
        "sch": schema.id, "m": draw(st.sampled_from([m.value for m in Mode])),
        "st": draw(st.sampled_from([s.value for s in ControlState] + ["new_state"])),
        "sp": draw(st.floats(0, 10, allow_nan=False)), "dem": draw(st.floats(0, 4)),
        "val": val, "pmp": [draw(st.integers(0, 127)) for _ in pumps],
    }  # fmt: skip
    if draw(st.booleans()):
        msg["ts_unsynced"] = True
    lock = {p: draw(st.sampled_from(["motor protection tripped", ""])) for p in pumps
            if draw(st.booleans())}  # fmt: skip
    if draw(st.booleans()) and pumps:
        msg["spd"] = [draw(st.none() | st.floats(0, 100)) for _ in pumps]
    for key, part in (("bad", bad), ("held", held), ("lock", lock)):
        if part:
            msg[key] = part
    return loads(dumpb(msg)), schema


@settings(max_examples=300, deadline=None)
@given(stored=format2())
def test_a_typed_sample_gives_the_metrics_its_long_form_gives(
    stored: tuple[dict[str, Any], TelemetrySchema],
) -> None:
    msg, schema = stored
    typed = sample_values(msg["seq"], telemetry_message(msg), schema)
    long = long_form_values(msg["seq"], decode_sample(msg, schema))
    assert list(typed.items()) == list(long.items())  # same values, same order (NDATA order)
    assert [type(v) for v in typed.values()] == [type(v) for v in long.values()]


def _tick() -> tuple[dict[str, Reading], ControlOutputs, dict[str, PumpInputs]]:
    readings = {
        "discharge_pressure": Reading.ok("discharge_pressure", 3.012, "bar"),
        "suction_pressure": Reading.bad("suction_pressure", "bar", BadReason.WIRE_BREAK, "0.00 mA"),
        "flow": Reading.ok("flow", 12.5, "m3/h").hold(
            Reading.bad("flow", "m3/h", BadReason.TIMEOUT)
        ),
    }
    out = ControlOutputs(
        relays={"P1": True, "P2": False, "P3": False},
        mode="auto",
        setpoint_bar=3.0,
        demand=1.25,
        state="auto",
        speeds={"P1": 0.8125},
        pump_states={"P1": "running", "P2": "locked out", "P3": "out of service"},
        lockouts={"P2": "motor protection tripped"},
    )
    pumps = {
        "P1": PumpInputs(feedback=True, fault=False),
        "P2": PumpInputs(feedback=None, fault=True),
        "P3": PumpInputs(feedback=False, fault=False),
    }
    return readings, out, pumps


@pytest.mark.asyncio
async def test_the_node_reads_buffered_samples_as_models_and_old_rows_as_dicts(
    tmp_path: Path,
) -> None:
    buffer = SampleBuffer(tmp_path / "buffer.sqlite3", site="bs01")
    await buffer.open()
    try:
        body = make_sample(*_tick())
        typed_seq = buffer.append(body)
        # the long form an older release stored (and a tool may append)
        schema = body["sch"]
        stored = {**body, "sch": schema.id, "seq": typed_seq, "boot": 1, "ts": 1}
        old_seq = buffer.append(decode_sample(stored, schema))
        await buffer.flush()
        rows = await Backlog(buffer).rows_after(0, 10)
    finally:
        await buffer.close()
    assert [r[0] for r in rows] == [typed_seq, old_seq]
    (_, ts_ms, typed), (_, _, old) = rows
    assert isinstance(typed, tuple)
    message, named_by = typed
    assert isinstance(message, TelemetryMessage)
    assert named_by == schema
    assert message.m is Mode.AUTO
    assert message.st is ControlState.AUTO
    assert ts_ms == message.ts  # the sample's own millisecond stamp, not the row's second
    assert isinstance(old, dict)
    values = row_values(typed_seq, typed)
    assert values["Values/discharge_pressure"] == pytest.approx(3.012)
    assert values["Values/discharge_pressure/Quality"] == "good"
    assert values["Values/suction_pressure"] is None
    assert values["Values/suction_pressure/Quality"] == "wire_break"
    assert values["Values/flow"] == pytest.approx(12.5)  # held: good, and why it is held
    assert values["Values/flow/Quality"] == "timeout"
    assert values["Pumps/P1/Speed"] == pytest.approx(81.25)
    assert "Pumps/P2/Speed" not in values  # no drive: no speed
    assert (values["Pumps/P2/State"], values["Pumps/P2/Lockout"]) == (
        "locked out",
        "motor protection tripped",
    )
    assert values["Pumps/P2/Feedback"] is None  # no contact wired
    assert values["Pumps/P3/State"] == "out of service"
    again = row_values(typed_seq, old)
    assert list(again.items()) == list(values.items())


# -- Sparkplug: status ------------------------------------------------------------------------


def test_status_metrics_come_from_the_typed_status_and_a_dict_of_it_reads_the_same() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    core = ControlCore(cfg, now=0.0)
    assert command(core, "pump_mode", pump="P3", mode="off")["ok"] is True
    assert command(core, "mode", mode="manual")["ok"] is True
    assert command(core, "pump", pump="P1", on=True)["ok"] is True
    pm = {"flow_compensation": {"flow_design_m3h": 60, "k_bar": 0.5, "exponent": 1.5}}
    core.set_pressure_management(PressureManagementConfig.model_validate(pm))
    status = station_status(core.status())
    values = status_values(status, core.manual)
    assert values["Pumps/P3/Mode"] == "off"
    assert values["Pumps/P1/Mode"] == "auto"
    assert values["Pumps/P1/Manual On"] is True
    assert values["Control/Mode"] == "manual"
    assert values["Control/Setpoint"] == status.base_setpoint_bar
    assert status.pressure_management is not None
    assert json.loads(str(values["Control/Pressure Management"])) == to_json(
        status.pressure_management
    )
    # the JSON status body (what the node was handed before), the core's own dict
    assert status_values({**to_json(status), "site": "bs01"}, core.manual) == values
    assert status_values(core.status(), core.manual) == values
    # a tool's partial dict: what it lacks is null, never an error
    partial = status_values({"mode": "auto", "alarms": []}, {})
    assert partial["Control/Mode"] == "auto"
    assert partial["Control/Setpoint"] is None
    assert partial["Alarms/Count"] == 0


# -- the HMI ----------------------------------------------------------------------------------


def _local(cfg: StationConfig, core: ControlCore) -> LocalStatus:
    """The daemon's ``local_status`` for a core (no loop, no buses)."""
    values = {
        "discharge_pressure": PointValue(v=3.05, unit="bar", q=Quality.GOOD),
        "suction_pressure": PointValue(
            v=None, unit="bar", q=Quality.BAD, reason=BadReason.WIRE_BREAK, detail="0.00 mA"
        ),
        "p1_output_hz": PointValue(v=41.2, unit="Hz", q=Quality.GOOD),
    }
    return LocalStatus(
        **fields_of(station_status(core.status())),
        pressure_point=cfg.control.pressure_point,
        values=values,
        site=SiteInfo(id=cfg.site.id, name=cfg.site.name, language=cfg.site.language),
        version="9.9.9",
        loop=LoopView(
            ticks=10,
            overruns=0,
            missed=0,
            max_tick_ms=1.5,
            jitter_ms_p50=0.1,
            jitter_ms_p99=0.9,
            jitter_ms_max=None,
        ),
        acquisition={"buses": {"rtu0": {"polls": 5, "errors": 1}}},
        buffer={"backlog": 12},
        uplink={"connected": True},
        ready=True,
    )


def _server(tmp_path: Path, cfg: StationConfig, core: ControlCore) -> HmiServer:
    history = History(tmp_path / "history.sqlite3")
    history.open()
    assert cfg.hmi is not None
    return HmiServer(
        cfg.hmi,
        station=lambda: cfg,
        snapshot=lambda: _local(cfg, core),
        manual=lambda: core.manual,
        commands=CommandProcessor(core),
        audit=AuditLog(tmp_path / "audit.jsonl"),
        history=history,
    )


def _station(tmp_path: Path) -> StationConfig:
    cfg = load_config(VFD_CONFIG)
    hmi = {"port": 0, "users_file": str(tmp_path / "users.json")}
    return StationConfig.model_validate({**cfg.model_dump(), "hmi": hmi})


def test_the_hmi_status_is_the_typed_status_with_what_only_the_hmi_adds(tmp_path: Path) -> None:
    cfg = _station(tmp_path)
    core = ControlCore(cfg, now=0.0)
    assert command(core, "mode", mode="manual")["ok"] is True
    assert command(core, "pump", pump="P1", on=True)["ok"] is True
    server = _server(tmp_path, cfg, core)
    snap = server.snapshot(7)
    assert isinstance(snap, HmiStatus)
    assert isinstance(snap.status, LocalStatus)
    assert snap.seq == 7
    assert dict(snap.roles.items()) == {"discharge": "discharge_pressure",
                                        "suction": "suction_pressure", "flow": "flow",
                                        "far_end": None}  # fmt: skip
    assert snap.frequency_points == {"P1": "p1_output_hz"}
    assert snap.starts_today == dict.fromkeys(cfg.pumps, 0)
    assert snap.manual == {"P1": True, "P2": False, "P3": False}
    assert command(core, "pump", pump="P1", on=False)["ok"] is True
    assert core.manual["P1"] is False
    assert snap.manual["P1"] is True  # a frame does not change under the pages showing it
    view = live_view(snap, "en")
    assert view["seq"] == 7
    assert view["fields"]["p.P1.hoa"] == "Hand (manual, on)"  # the frame's ask, not the new one
    assert view["fields"]["p.P1.hz"] == "41.2"
    assert view["fields"]["v.suction"] == "BAD"
    assert view["classes"]["v.suction"] == "bad"
    assert view["fields"]["backlog"] == "12"
    assert trend_values(snap)["discharge"] == 3.05


@pytest.mark.parametrize("lang", ["en", "id"])
def test_pages_show_the_typed_status_as_they_show_a_dict_of_it(tmp_path: Path, lang: str) -> None:
    cfg = _station(tmp_path)
    core = ControlCore(cfg, now=0.0)
    assert command(core, "pump_mode", pump="P3", mode="off")["ok"] is True
    assert command(core, "mode", mode="manual")["ok"] is True
    assert command(core, "pump", pump="P1", on=True)["ok"] is True
    core.alarms.set("dry_run", True, 1.0, severity="critical", message="suction < 0.2 bar")
    snap = _server(tmp_path, cfg, core).snapshot(3)
    # the dict the HMI was built from before it read the model
    old: dict[str, Any] = to_json(snap.status)
    old.update(manual=dict(snap.manual), frequency_points=dict(snap.frequency_points),
               starts_today=dict(snap.starts_today), seq=3,
               control_points={"suction": "suction_pressure", "flow": "flow"})  # fmt: skip
    view = live_view(snap, lang)
    assert json.dumps(live_view(old, lang)) == json.dumps(view)
    assert trend_values(old) == trend_values(snap)
    for writable in (True, False):
        kw: dict[str, Any] = {"csrf": "token", "writable": writable}
        has = {"discharge": True, "suction": True, "flow": True}
        limits = (cfg.control.setpoint_min_bar, cfg.control.setpoint_max_bar)
        assert pages.overview_body(lang, snap, view, limits=limits, has=has, **kw) == (
            pages.overview_body(lang, old, view, limits=limits, has=has, **kw)
        )
        assert pages.pumps_body(lang, snap, view, **kw) == pages.pumps_body(lang, old, view, **kw)
    diagnostics = pages.diagnostics_body(lang, snap, "summary")
    assert diagnostics == pages.diagnostics_body(lang, old, "summary")
    assert "<th>buses.rtu0.polls</th><td>5</td>" in diagnostics
    assert "<th>max_tick_ms</th><td>1.5</td>" in diagnostics
    assert "wire_break" in diagnostics
    body = pages.pumps_body(lang, snap, view, csrf="token", writable=True)
    assert 'id="pump-P3-off" aria-pressed="true"' in body  # out of service
    assert 'id="pump-P1-off" aria-pressed="false"' in body
    assert 'id="pump-P3-toggle"' not in body  # no Hand for a pump switched Off
    assert 'id="pump-P1-toggle"' in body
    assert view["fields"]["p.P3.state"] != view["fields"]["p.P1.state"]
    assert [a["id"] for a in view["alarms"]] == ["dry_run"]
    assert view["alarms"][0]["cls"] == "alarm-crit"


@pytest.mark.asyncio
async def test_the_node_stores_a_typed_alarm_event_as_the_json_of_a_dict_one(
    tmp_path: Path,
) -> None:

    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {"scheme": "sparkplug"}
    data["buffer"] = {"path": str(tmp_path / "b.sqlite3")}
    cfg = StationConfig.model_validate(data)
    buffer = SampleBuffer(tmp_path / "b.sqlite3", site="bs01")
    await buffer.open()
    try:
        node = SparkplugNode(cfg, buffer=buffer, status=dict, commands=None)
        event = AlarmEvent(id="dry_run", event=AlarmEventKind.RAISE, severity=Severity.CRITICAL,
                           message="suction < 0.2 bar", t_mono=12.5, latched=True)  # fmt: skip
        node.publish_alarm(event)
        node.publish_alarm(to_json(event))
        rows = await node.backlog.alarms_after(0, 10)
    finally:
        await buffer.close()
    typed, plain = (json.loads(text) for _, _, text in rows)
    # the same body; the stamp is each append's own (ts may cross a millisecond)
    assert typed == {**plain, "seq": typed["seq"], "ts": typed["ts"]}
    assert typed["event"] == "raise"
    assert typed["severity"] == "critical"

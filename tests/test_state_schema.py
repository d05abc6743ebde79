"""The typed station state (controller/state) and its JSON Schemas (docs/schema/): the
committed files are current, what the station renders validates and reads back equal,
the bytes on the wire are those of the release before the models, and the examples in
docs/mqtt.md are valid messages (issue 15)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from controller.config import load_config
from controller.config.schema import PressureManagementConfig
from controller.control.alarms import AlarmEvent as ControlAlarmEvent
from controller.control.core import ControlCore, ControlOutputs, PumpInputs
from controller.dashboard import headline, render
from controller.errors import BoosterError
from controller.runtime.loop import make_sample, telemetry_sample
from controller.state import schema as gen
from controller.state.build import alarm_event, station_status
from controller.state.dump import read, to_json, validate
from controller.state.enums import ControlState, Mode, coerce
from controller.state.models import (
    COMMANDS,
    AlarmEvent,
    AlarmMessage,
    LocalStatus,
    StatusMessage,
    TelemetryMessage,
)
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.encoding import dumpb, loads
from controller.telemetry.uplink import Uplink
from controller.values import BadReason, Reading
from tests.conftest import EXAMPLE_CONFIG, REPO, VFD_CONFIG

SCHEMAS = REPO / "docs" / "schema"


def check(name: str, message: Any) -> None:
    """``message`` is valid against the committed schema ``name`` (raises otherwise)."""
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator(schema).validate(message)


def test_the_committed_schemas_are_what_the_models_generate() -> None:
    assert gen.stale() == [], "run scripts/gen-schema"
    for path in SCHEMAS.glob("*.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_a_stale_schema_file_is_reported(tmp_path: Path) -> None:
    assert gen.main(["--out", str(tmp_path)]) == 0
    assert gen.stale(tmp_path) == []
    (tmp_path / "alarm.json").write_text("{}")
    (tmp_path / "gone.json").write_text("{}")
    assert gen.stale(tmp_path) == ["alarm.json", "gone.json"]
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1


# -- telemetry ------------------------------------------------------------------------------

READINGS = {
    "suction_pressure": Reading.ok("suction_pressure", 0.98, "bar"),
    "discharge_pressure": Reading.ok("discharge_pressure", 3.0123456, "bar", digits=5),
    "panel_temperature": Reading.bad("panel_temperature", "degC", BadReason.WIRE_BREAK, "0.00 mA"),
    "flow": Reading.ok("flow", 61.5, "m3/h").hold(Reading.bad("flow", "m3/h", BadReason.TIMEOUT)),
    "volume_total": Reading.bad("volume_total", "m3", BadReason.STALE),
}
OUTPUTS = ControlOutputs(
    relays={"P1": False, "P2": True, "P3": True}, mode="auto", setpoint_bar=3.123456,
    demand=1.400449, state="auto", speeds={"P2": 0.87654},
    pump_states={"P1": "locked out", "P2": "running", "P3": "exercising"},
    lockouts={"P1": "motor protection tripped"},
)  # fmt: skip
PUMPS = {
    "P1": PumpInputs(feedback=None, fault=True),
    "P2": PumpInputs(feedback=True, fault=False),
    "P3": PumpInputs(feedback=False, fault=False),
}
#: What the release before the typed models published for READINGS/OUTPUTS/PUMPS.
WIRE_BEFORE = (
    b'{"seq":7,"boot":2,"ts":1795996800500,"v":2,"sch":"de8461","m":"auto","st":"auto",'
    b'"sp":3.1235,"dem":1.4004,"val":[0.98,3.0123,null,61.5,null],"pmp":[44,3,17],'
    b'"bad":{"panel_temperature":["wire_break","0.00 mA"],"volume_total":["stale"]},'
    b'"held":{"flow":["timeout"]},"lock":{"P1":"motor protection tripped"},'
    b'"spd":[null,87.65,null]}'
)


def test_a_sample_is_published_byte_for_byte_as_before_the_models() -> None:
    body = make_sample(READINGS, OUTPUTS, PUMPS)
    wire = dumpb({"seq": 7, "boot": 2, "ts": 1795996800500, **body, "sch": body["sch"].id})
    assert wire == WIRE_BEFORE


@pytest.mark.asyncio
async def test_samples_from_the_buffer_validate_and_read_back_as_the_model(
    tmp_path: Path,
) -> None:
    buf = SampleBuffer(tmp_path / "b.sqlite3", site="s1", clock_synced=lambda: False)
    await buf.open()
    try:
        sample, schema = telemetry_sample(READINGS, OUTPUTS, PUMPS)
        buf.append(make_sample(READINGS, OUTPUTS, PUMPS))
        bare = ControlOutputs(relays={}, mode="off", setpoint_bar=3.0, demand=0.0, state="off")
        buf.append(make_sample({}, bare, {}))  # nothing optional, nothing at all
        await buf.flush()
        rows = await buf.fetch(after_seq=0, limit=10)
    finally:
        await buf.close()
    messages = [loads(payload) for _, _, payload in rows]
    for message in messages:
        check("telemetry.json", message)
        assert to_json(validate(TelemetryMessage, message)) == message
    assert messages[0]["ts_unsynced"] is True
    assert validate(TelemetryMessage, messages[0]).st is ControlState.AUTO
    assert to_json(sample) == {k: v for k, v in messages[0].items()
                               if k not in ("seq", "boot", "ts", "ts_unsynced")}  # fmt: skip
    check("telemetry-schema.json", to_json(schema.message()))
    assert schema.message().id == messages[0]["sch"]


def test_the_body_written_out_for_speed_is_the_models_json() -> None:
    sample, _ = telemetry_sample(READINGS, OUTPUTS, PUMPS)
    assert json.dumps(sample.body()) == json.dumps(to_json(sample))


def test_a_word_an_enum_does_not_know_passes_through_and_the_schema_catches_it() -> None:
    assert coerce(Mode, "manual") is Mode.MANUAL
    assert coerce(ControlState, "levitating") == "levitating"
    out = ControlOutputs(relays={}, mode="auto", setpoint_bar=3.0, demand=0.0, state="levitating")
    message = {"seq": 1, "boot": 1, "ts": 1, **make_sample({}, out, {})}
    message["sch"] = message["sch"].id
    with pytest.raises(Exception, match="levitating"):
        check("telemetry.json", message)


# -- status, alarms, replies ----------------------------------------------------------------


def _uplink(core: ControlCore, buf: SampleBuffer) -> Uplink:
    cfg = load_config(EXAMPLE_CONFIG).uplink
    return Uplink(cfg, site="bs01", buffer=buf, status=lambda: station_status(core.status()),
                  commands=None)  # fmt: skip


@pytest.mark.parametrize("config", [EXAMPLE_CONFIG, VFD_CONFIG], ids=["example", "vfd"])
def test_the_status_validates_and_carries_what_the_core_reports(
    config: Path, tmp_path: Path
) -> None:
    core = ControlCore(load_config(config), now=0.0)
    readings = {name: Reading.ok(name, 3.0, "bar") for name in ("discharge_pressure",)}
    for t in range(20):
        core.step(float(t), readings, {})
    core.set_pressure_management(
        PressureManagementConfig.model_validate(
            {"schedule": [{"at": "23:00", "setpoint_bar": 2.2, "days": ["sat"]}]}
        )
    )
    uplink = _uplink(core, SampleBuffer(tmp_path / "b.sqlite3", site="bs01"))
    online = json.loads(uplink.status_payload(True))
    check("status.json", online)
    # The same keys, in the same order, as the core's own report under the head.
    snap = json.loads(json.dumps(core.status()))
    assert list(online) == ["online", "site", "version", "ts", *snap]
    assert {k: online[k] for k in snap} == snap
    assert online["pressure_management"]["schedule"][0]["days"] == ["sat"]
    offline = json.loads(uplink.status_payload(False))
    check("status.json", offline)
    assert list(offline) == ["online", "site", "version", "ts"]
    will = json.loads(uplink.will_payload())
    check("status.json", will)
    assert will == {"online": False, "site": "bs01", "version": online["version"], "will": True}
    assert to_json(validate(StatusMessage, online)) == online  # type: ignore[arg-type]


def test_alarm_events_validate_as_published(tmp_path: Path) -> None:
    raw = ControlAlarmEvent("dry_run", "raise", "critical", "suction low", 5312.00049, False)
    event = alarm_event(raw)
    assert to_json(event) == {
        "id": "dry_run", "event": "raise", "severity": "critical",
        "message": "suction low", "t_mono": 5312.0, "latched": False,
    }  # fmt: skip
    message = {"seq": 3, "boot": 1, "ts": "2026-11-24T06:07:12.120Z", **to_json(event), "site": "x"}
    check("alarm.json", message)
    assert validate(AlarmMessage, message).severity == "critical"
    assert isinstance(validate(AlarmEvent, to_json(event)), AlarmEvent)


class _Target:
    def __init__(self) -> None:
        self.mode = "auto"
        self.control = load_config(EXAMPLE_CONFIG).control

    def set_setpoint(self, bar: float) -> None:
        if bar > 4.5:
            raise BoosterError(f"setpoint {bar} bar is outside the allowed 1.5-4.5 bar")

    def set_mode(self, mode: str) -> None:
        raise RuntimeError("a bug")

    def pump(self, name: str, on: bool) -> None:
        pass

    def pump_mode(self, name: str, mode: str) -> None:
        pass

    def ack(self, alarm_id: str | None = None) -> list[str]:
        return ["high_pressure"]

    def set_pressure_management(self, data: Any) -> None:
        pass


def test_every_kind_of_command_reply_validates() -> None:
    commands = CommandProcessor(_Target())
    now = time.time()
    replies = [
        commands.handle("setpoint", json.dumps({"id": "a", "ts": now, "value": 3}).encode()),
        commands.handle("setpoint", json.dumps({"id": "a", "ts": now, "value": 3}).encode()),
        commands.handle("setpoint", json.dumps({"id": "b", "ts": now, "value": 9}).encode()),
        commands.handle("ack", json.dumps({"id": "c", "ts": now}).encode()),
        commands.handle("mode", json.dumps({"id": "d", "ts": now, "mode": "off"}).encode()),
        commands.handle("mode", b"[1"),
        commands.refuse("mode", b'{"id": "e"}', "retained command ignored"),
    ]
    for reply in replies:
        check("cmd-result.json", reply)
    assert replies[0] == {"id": "a", "ok": True, "error": None}
    assert replies[1] == {"id": "a", "ok": True, "error": None, "repeated": True}
    assert replies[2]["ok"] is False
    assert replies[3]["acknowledged"] == ["high_pressure"]
    assert "failed to handle" in replies[4]["error"]
    assert replies[5]["id"] is None
    assert replies[6]["id"] == "e"


# The commands as docs/mqtt.md documents them: the schema and the station agree on each.
GOOD_COMMANDS = {
    "setpoint": {"value": 3.2},
    "mode": {"mode": "manual"},
    "pump": {"pump": "P2", "on": True},
    "pump_mode": {"pump": "P3", "mode": "off"},
    "ack": {},  # every latched alarm ({"alarm": id} for one: below)
    "pressure_management": {
        "pressure_management": {
            "schedule": [{"at": "23:00", "setpoint_bar": 2.2, "days": ["sat"]}],
            "flow_compensation": {"flow_design_m3h": 60, "k_bar": 0.5, "exponent": 1.5},
            "ramp_bar_per_min": 0.1,
        }
    },
}
BAD_COMMANDS = {
    "setpoint": {"value": "3.2"},
    "mode": {"mode": "sideways"},
    "pump": {"pump": "P2", "on": "yes"},
    "pump_mode": {"pump": "P2", "mode": "hand"},
    "ack": {"alarm": 7},
    "pressure_management": {"pressure_management": {"schedule": "nightly"}},
}


def test_the_command_schemas_accept_what_the_station_carries_out_and_refuse_the_rest() -> None:
    assert GOOD_COMMANDS.keys() == COMMANDS.keys()
    core = ControlCore(load_config(EXAMPLE_CONFIG), now=0.0)
    commands = CommandProcessor(core)
    for name, fields in GOOD_COMMANDS.items():
        if name == "pump":
            core.set_mode("manual")
        payload = {"id": f"x-{name}", "ts": "2026-11-24T08:00:00Z", **fields}
        check(f"cmd-{name}.json", payload)
        payload["ts"] = time.time()
        check(f"cmd-{name}.json", payload)
        assert commands.handle(name, json.dumps(payload).encode())["ok"], name
    check("cmd-ack.json", {"id": "z", "ts": 1795939200, "alarm": "high_pressure"})
    for name, fields in BAD_COMMANDS.items():
        payload = {"id": f"y-{name}", "ts": time.time(), **fields}
        with pytest.raises(Exception, match=r"is not|Failed validating"):
            check(f"cmd-{name}.json", payload)
        assert not commands.handle(name, json.dumps(payload).encode())["ok"], name


# -- docs ---------------------------------------------------------------------------------


def _doc_examples() -> list[dict[str, Any]]:
    text = (REPO / "docs" / "mqtt.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    return [json.loads(b) for b in blocks]


def _schema_of_example(body: dict[str, Any]) -> str:
    if "points" in body:
        return "telemetry-schema.json"
    if "sch" in body:
        return "telemetry.json"
    if "online" in body:
        return "status.json"
    if "event" in body:
        return "alarm.json"
    return "cmd-result.json"


def test_the_examples_in_docs_mqtt_md_are_valid_messages() -> None:
    examples = _doc_examples()
    assert len(examples) >= 5
    names = [_schema_of_example(e) for e in examples]
    assert set(names) == {"telemetry.json", "telemetry-schema.json", "status.json",
                          "alarm.json", "cmd-result.json"}  # fmt: skip
    for body, name in zip(examples, names, strict=True):
        check(name, body)


def test_docs_mqtt_md_links_every_schema_file() -> None:
    text = (REPO / "docs" / "mqtt.md").read_text()
    for path in SCHEMAS.glob("*.json"):
        assert f"schema/{path.name})" in text, path.name


# -- the local status, read for display --------------------------------------------------


def test_a_partial_or_older_status_reads_for_display_without_failing() -> None:
    status = read(LocalStatus, {"mode": "auto", "state": "dry_run",
                                "pumps": {"P1": {"running": True, "locked_out": "tripped"}},
                                "alarms": [{"id": "dry_run"}], "unknown": 1})  # fmt: skip
    assert status.pumps["P1"].locked_out == "tripped"
    assert status.values == {}
    assert status.site is None
    assert "pumps P1" in headline(status)
    assert render(status) is not None

"""The Sparkplug node's pure parts: catalogue, report by exception, NCMD decoding, bdSeq."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import StationConfig
from controller.config.schema import SparkplugConfig
from controller.control.core import ControlCore
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from controller.telemetry.sparkplug.metrics import Catalogue, ReportByException, encode
from controller.telemetry.sparkplug.ncmd import MAX_NCMD_BYTES, NcmdHandler
from controller.telemetry.sparkplug.session import BdSeqStore, SeqCounter
from tests.conftest import EXAMPLE_CONFIG, VFD_CONFIG
from tests.support.sparkplug_js import tahu_decode

NOW = 1_795_939_200.0


def station(path: Path = EXAMPLE_CONFIG) -> StationConfig:
    return StationConfig.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", [EXAMPLE_CONFIG, VFD_CONFIG])
def test_every_metric_has_a_unique_alias_and_a_sparkplug_datatype(path: Path) -> None:
    cat = Catalogue.for_station(station(path), SparkplugConfig())
    assert len({d.alias for d in cat.defs}) == len(cat.defs)
    assert len({d.name for d in cat.defs}) == len(cat.defs)
    assert all(pb.DataType.Name(d.datatype) not in ("Unknown",) for d in cat.defs)
    assert cat.by_name["bdSeq"].datatype == pb.Int64
    assert cat.by_name["Node Control/Rebirth"].datatype == pb.Boolean
    assert cat.by_name["Values/discharge_pressure"].unit == "bar"
    assert (cat.by_name["Values/discharge_pressure"].low,
            cat.by_name["Values/discharge_pressure"].high) == (0.0, 16.0)  # fmt: skip
    writable = {d.name for d in cat.defs if d.writable}
    assert {"Control/Setpoint", "Control/Mode", "Alarms/Acknowledge",
            "Control/Pressure Management", "Pumps/P1/Manual On"} <= writable  # fmt: skip


def test_a_birth_decodes_in_tahu_with_types_and_engineering_properties() -> None:
    cat = Catalogue.for_station(station(), SparkplugConfig())
    raw = encode(cat, [(d.name, None, 1000) for d in cat.defs], seq=0, ts_ms=1000, birth=True)
    [out] = tahu_decode([("spBv1.0/g/NBIRTH/n", raw)])
    metrics = out["decoded"]["metrics"]
    assert len(metrics) == len(cat.defs)
    assert all(m["type"] and m["name"] for m in metrics)
    pressure = next(m for m in metrics if m["name"] == "Values/discharge_pressure")
    assert pressure["type"] == "Float"
    assert pressure["properties"]["engUnit"]["value"] == "bar"
    assert pressure["properties"]["engHigh"]["value"] == 16
    assert pressure["properties"]["readOnly"]["value"] is True


def test_report_by_exception_sends_moves_beyond_the_deadband_and_at_the_max_interval() -> None:
    cfg = SparkplugConfig(deadband_pct=1.0, max_interval_s=60)  # 1 % of 0..16 bar = 0.16 bar
    rbe = ReportByException(Catalogue.for_station(station(), cfg), cfg.max_interval_s)
    name = "Values/discharge_pressure"
    rbe.reset({name: 3.0, "Control/State": "auto"}, 0)
    assert rbe.changes({name: 3.1}, 1000) == {}
    assert rbe.changes({name: 3.2}, 2000) == {name: 3.2}  # 0.2 from the last sent 3.0
    assert rbe.changes({name: 3.3}, 3000) == {}  # 0.1 from 3.2
    assert rbe.changes({"Control/State": "auto"}, 4000) == {}
    assert rbe.changes({"Control/State": "filling"}, 5000) == {"Control/State": "filling"}
    assert rbe.changes({name: 3.3}, 62_000) == {name: 3.3}  # due: 60 s since 3.2 was sent
    assert rbe.changes({name: None}, 63_000) == {name: None}  # a value going bad is news
    # The backlog counter: news past 100 rows or back to 0, not its tick-by-tick sawtooth.
    backlog = "Buffer/Backlog"
    rbe.reset({backlog: 0}, 0)
    assert [rbe.changes({backlog: n}, 1000 + n) for n in (1, 15, 0, 12)] == [{}, {}, {}, {}]
    assert rbe.changes({backlog: 150}, 2000) == {backlog: 150}
    assert rbe.changes({backlog: 90}, 3000) == {}
    assert rbe.changes({backlog: 0}, 4000) == {backlog: 0}


def test_bdseq_rises_per_connect_wraps_at_255_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "bdseq"
    first = BdSeqStore(path)
    assert [first.next() for _ in range(3)] == [0, 1, 2]
    assert BdSeqStore(path).next() == 3  # a new process continues after the last used
    path.write_text("255\n")
    assert BdSeqStore(path).next() == 0
    path.write_text("rubbish")
    assert BdSeqStore(path).next() == 0
    seq = SeqCounter()
    assert seq.birth() == 0
    assert [seq.next() for _ in range(256)][-2:] == [255, 0]


def handler() -> tuple[NcmdHandler, ControlCore]:
    cfg = station()
    core = ControlCore(cfg, now=0.0)
    commands = CommandProcessor(core, clock=lambda: NOW)
    return NcmdHandler(
        Catalogue.for_station(cfg, SparkplugConfig()), commands, clock=lambda: NOW
    ), core


def ncmd(*metrics: dict[str, Any], ts_ms: int | None = int(NOW * 1000)) -> bytes:
    p = pb.Payload()
    if ts_ms is not None:
        p.timestamp = ts_ms
    for spec in metrics:
        p.metrics.add(**spec)
    return p.SerializeToString()


def test_writes_take_effect_through_the_command_processor() -> None:
    h, core = handler()
    out = h.handle(ncmd({"name": "Control/Setpoint", "datatype": pb.Float, "float_value": 3.5},
                        {"name": "Control/Mode", "datatype": pb.String, "string_value": "manual"},
                        {"name": "Pumps/P2/Manual On", "datatype": pb.Boolean,
                         "boolean_value": True}), topic="t")  # fmt: skip
    assert [r["ok"] for r in out.results] == [True, True, True], out.results
    assert core.setpoint == 3.5
    assert core.mode == "manual"
    assert core.manual["P2"] is True
    assert not out.rebirth


def test_a_write_by_alias_works_and_rebirth_is_asked_for() -> None:
    h, core = handler()
    alias = h.catalogue.by_name["Control/Setpoint"].alias
    raw = ncmd({"alias": alias, "double_value": 4.0},
               {"name": "Node Control/Rebirth", "boolean_value": True})  # fmt: skip
    out = h.handle(raw, topic="t")
    assert out.results[0]["ok"] is True
    assert core.setpoint == 4.0
    assert out.rebirth


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xff\xff\xff", "not a Sparkplug B payload"),
        (b"\x0a" * (MAX_NCMD_BYTES + 1), "refused"),
        (ncmd(*[{"name": "Control/Mode", "string_value": "auto"}] * 40), "at most 32"),
        (ncmd({"name": "Control/Setpoint", "string_value": "high"}), "must be a number"),
        (ncmd({"name": "Control/Setpoint", "double_value": math.nan}), "finite"),
        (ncmd({"name": "Control/Setpoint", "double_value": math.inf}), "finite"),
        (ncmd({"name": "Control/Setpoint", "float_value": 99.0}), "outside the allowed"),
        (ncmd({"name": "Control/Setpoint", "bytes_value": b"x"}), "takes a Float"),
        (ncmd({"name": "Control/Setpoint", "is_null": True}), "must be a number"),
        (ncmd({"name": "Control/Active Setpoint", "float_value": 3.0}), "not writable"),
        (ncmd({"name": "bdSeq", "long_value": 3}), "not writable"),
        (ncmd({"alias": 99999, "float_value": 3.0}), "not writable"),
        (ncmd({"name": "Control/Mode", "string_value": "turbo"}), "mode must be one of"),
        (ncmd({"name": "Pumps/P1/Manual On", "boolean_value": True}), "manual mode"),
        (ncmd({"name": "Pumps/P1/Manual On", "string_value": "yes"}), "'on' must be"),
        (ncmd({"name": "Control/Pressure Management", "string_value": "{"}), "not JSON"),
        (ncmd({"name": "Control/Pressure Management", "string_value": "[" * 50}), "levels deep"),
        (ncmd({"name": "Node Control/Rebirth", "boolean_value": False}), "Boolean true"),
        (ncmd({"name": "Control/Setpoint", "float_value": 3.0}, ts_ms=1000), "stale"),
        (ncmd({"name": "Control/Setpoint", "float_value": 3.0}, ts_ms=(1 << 64) - 1), "future"),
    ],
)
def test_hostile_ncmds_are_rejected_with_a_reason_and_change_nothing(
    raw: bytes, reason: str
) -> None:
    h, core = handler()
    before = (core.setpoint, core.mode, dict(core.manual))
    out = h.handle(raw, topic="spBv1.0/g/NCMD/n")
    assert out.results, "a rejection must be visible to the host"
    assert all(r["ok"] is False for r in out.results)
    assert any(reason in str(r["error"]) for r in out.results), out.results
    assert (core.setpoint, core.mode, dict(core.manual)) == before
    assert not out.rebirth
    json.dumps(out.results, allow_nan=False)  # the result metric is strict JSON text


def test_pressure_management_and_acknowledge_writes_reach_the_core() -> None:
    h, core = handler()
    pm = json.dumps({"schedule": [{"at": "22:00", "setpoint_bar": 2.2}], "ramp_bar_per_min": 0.2})
    out = h.handle(ncmd({"name": "Control/Pressure Management", "string_value": pm},
                        {"name": "Alarms/Acknowledge", "string_value": ""}), topic="t")  # fmt: skip
    assert [r["ok"] for r in out.results] == [True, True], out.results
    assert out.results[1]["acknowledged"] == []
    managed = core.status()["pressure_management"]
    assert managed is not None
    assert managed["schedule"][0]["setpoint_bar"] == 2.2
    out = h.handle(ncmd({"name": "Control/Pressure Management", "string_value": ""}), topic="t")
    assert out.results[0]["ok"] is True
    assert core.status()["pressure_management"] is None


def test_primary_host_state_follows_the_timestamp_rule_and_survives_garbage(
    tmp_path: Path,
) -> None:
    from controller.telemetry.buffer import SampleBuffer
    from controller.telemetry.sparkplug.node import SparkplugNode

    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {"scheme": "sparkplug", "sparkplug": {"primary_host_id": "scada"}}
    data["buffer"] = {"path": str(tmp_path / "b.sqlite3")}
    cfg = StationConfig.model_validate(data)
    node = SparkplugNode(cfg, buffer=SampleBuffer(tmp_path / "b.sqlite3", site="s"),
                         status=dict, commands=None)  # fmt: skip
    assert node.state_topic == "spBv1.0/STATE/scada"
    garbage_states = [
        b"",
        b"ONLINE",
        b"\xff\xfe",
        b"[" * 5000,
        b'{"online": "yes", "timestamp": 1}',
        b'{"online": true, "timestamp": 1.5}',
        b'{"online": true}',
        b"1e999",
    ]
    for garbage in garbage_states:
        node._on_state(garbage)
        assert not node._host_up.is_set()
    node._on_state(b'{"online": true, "timestamp": 100}')
    assert node._host_up.is_set()
    node._on_state(b'{"online": false, "timestamp": 99}')  # older than the online: stale
    assert node._host_up.is_set()
    assert not node._host_down.is_set()
    node._on_state(b'{"online": false, "timestamp": 100}')  # as new: it counts
    assert node._host_down.is_set()
    assert not node.host_online
    # An online older than the last STATE taken (a stale retained one) is no birth.
    node._on_state(b'{"online": true, "timestamp": 99}')
    assert not node._host_up.is_set()
    assert not node.host_online
    node._on_state(b'{"online": true, "timestamp": 100}')
    assert node._host_up.is_set()
    assert not node._host_down.is_set()


@pytest.mark.parametrize(
    "uplink",
    [
        {"scheme": "mqtt"},
        {"scheme": "sparkplug", "sparkplug": {"group_id": "a/b"}},
        {"scheme": "sparkplug", "sparkplug": {"edge_node_id": "node#1"}},
        {"scheme": "sparkplug", "sparkplug": {"primary_host_id": "+"}},
        {"scheme": "sparkplug", "sparkplug": {"deadbands": {"Values/flow": -1.0}}},
        {"scheme": "sparkplug", "sparkplug": {"max_interval_s": 0}},
        {"scheme": "sparkplug", "sparkplug": {"groupid": "typo"}},
    ],
)
def test_station_file_refuses_bad_sparkplug_settings(uplink: dict[str, Any]) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = uplink
    with pytest.raises(ValueError, match="uplink"):
        StationConfig.model_validate(data)


def test_edge_node_id_defaults_to_the_site_id(tmp_path: Path) -> None:
    from controller.telemetry.buffer import SampleBuffer
    from controller.telemetry.sparkplug.node import SparkplugNode

    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"] = {"scheme": "sparkplug", "sparkplug": {"group_id": "zona3"}}
    cfg = StationConfig.model_validate(data)
    node = SparkplugNode(cfg, buffer=SampleBuffer(tmp_path / "b", site="s"), status=dict,
                         commands=None)  # fmt: skip
    assert node.topics["NBIRTH"] == "spBv1.0/zona3/NBIRTH/bs01-sukamaju"
    assert node.topics["NCMD"] == "spBv1.0/zona3/NCMD/bs01-sukamaju"
    assert node.state_topic is None


def test_a_bad_reading_goes_out_null_with_the_sparkplug_quality_property_bad() -> None:
    cat = Catalogue.for_station(station(), SparkplugConfig())
    good_point = next(d.name for d in cat.defs if d.measured and "discharge" not in d.name)
    raw = encode(cat, [("Values/discharge_pressure", None, 1000), (good_point, 2.5, 1000),
                       ("Control/Mode", None, 1000)], seq=1, ts_ms=1000)  # fmt: skip
    [out] = tahu_decode([("spBv1.0/g/NDATA/n", raw)])
    bad, good, mode = out["decoded"]["metrics"]
    assert bad["value"] is None
    assert bad["properties"]["Quality"] == {"type": "Int32", "value": 0}  # BAD
    assert "properties" not in good  # no Quality property: GOOD
    assert "properties" not in mode  # unknown, not a measurement

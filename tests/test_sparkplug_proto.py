"""The Sparkplug payload module: generated from the committed schema, which matches Tahu's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from tests.conftest import REPO
from tests.support.sparkplug_js import tahu_datatypes, tahu_decode

SPB = REPO / "controller" / "telemetry" / "sparkplug"


def test_committed_module_is_what_protoc_makes_of_the_committed_schema(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={SPB}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", str(SPB / "sparkplug_b.proto")],
        check=True,
    )  # fmt: skip
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_bytes() == (SPB / name).read_bytes(), (
            f"{name} is stale: run scripts/gen-sparkplug"
        )


def test_datatype_enum_matches_tahus_javascript_schema() -> None:
    ours = {v.name: v.number for v in pb.DataType.DESCRIPTOR.values}
    assert ours == tahu_datatypes()


def test_a_payload_we_encode_is_decoded_by_tahu_with_every_field() -> None:
    p = pb.Payload(timestamp=1_795_939_200_123, seq=255)
    m = p.metrics.add(name="Pressure/Discharge", alias=7, datatype=pb.Double, double_value=3.25)
    m.timestamp = 1_795_939_200_000
    m.is_historical = True
    m.properties.keys.append("engUnit")
    m.properties.values.add(type=pb.String, string_value="bar")
    # Signed types travel as two's complement in the unsigned fields, as Tahu reads them.
    p.metrics.add(name="bdSeq", datatype=pb.Int64, long_value=-5 & (2**64 - 1))
    p.metrics.add(name="Node Control/Rebirth", datatype=pb.Boolean, boolean_value=False)
    [out] = tahu_decode([("spBv1.0/g/NBIRTH/n", p.SerializeToString())])
    d = out["decoded"]
    assert d["seq"] == "255"
    assert d["timestamp"] == "1795939200123"
    first, bd, rebirth = d["metrics"]
    assert first["name"] == "Pressure/Discharge"
    assert first["type"] == "Double"
    assert first["value"] == 3.25
    assert first["isHistorical"] is True
    assert first["properties"]["engUnit"] == {"type": "String", "value": "bar"}
    assert bd["type"] == "Int64"
    assert bd["value"] == "-5"
    assert rebirth == {"name": "Node Control/Rebirth", "type": "Boolean", "value": False}


def test_garbage_is_an_error_in_tahu_too() -> None:
    [out] = tahu_decode([("t", b"\xff\xff\xff")])
    assert "error" in out

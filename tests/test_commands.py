"""SCADA commands: validation, idempotence by id, staleness, and fuzzing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import load_config
from controller.control.core import ControlCore
from controller.telemetry.commands import CommandProcessor
from tests.conftest import EXAMPLE_CONFIG

CFG = load_config(EXAMPLE_CONFIG)
NOW = 1_800_000_000.0


def processor() -> tuple[ControlCore, CommandProcessor]:
    core = ControlCore(CFG, now=0.0)
    proc = CommandProcessor(
        core,
        max_age_s=300,
        clock=lambda: NOW,
    )
    return core, proc


def send(proc: CommandProcessor, name: str, **payload: Any) -> dict[str, Any]:
    payload.setdefault("ts", NOW)
    return proc.handle(name, json.dumps(payload).encode())


def test_setpoint_inside_the_range_is_applied_outside_rejected() -> None:
    core, proc = processor()
    assert send(proc, "setpoint", id="a", value=3.4) == {"id": "a", "ok": True, "error": None}
    assert core.setpoint == 3.4
    reply = send(proc, "setpoint", id="b", value=9.0)
    assert reply["ok"] is False
    assert "outside the allowed 1.5-4.5 bar" in reply["error"]
    assert core.setpoint == 3.4


def test_the_range_follows_a_reloaded_station_file() -> None:
    core, proc = processor()
    ctl = CFG.control.model_copy(update={"setpoint_max_bar": 5.5})
    core.reconfigure(CFG.model_copy(update={"control": ctl}), now=1.0)
    assert send(proc, "setpoint", id="r", value=5.0)["ok"] is True
    assert core.setpoint == 5.0


def test_a_repeated_id_is_answered_again_not_executed_twice() -> None:
    core, proc = processor()
    send(proc, "setpoint", id="same", value=3.2)
    core.set_setpoint(2.0)  # changed by someone else since
    reply = send(proc, "setpoint", id="same", value=3.2)
    assert reply["ok"] is True
    assert reply["repeated"] is True
    assert core.setpoint == 2.0


@pytest.mark.parametrize(
    ("ts", "error"),
    [(NOW - 301, "stale"), (NOW + 600, "future"), ("yesterday", "ISO 8601"),
     ("2026-11-24T08:00:00", "time zone"), (None, "required")],
)  # fmt: skip
def test_stale_future_and_unreadable_timestamps_are_rejected(ts: Any, error: str) -> None:
    core, proc = processor()
    reply = proc.handle("setpoint", json.dumps({"id": "t", "ts": ts, "value": 3.3}).encode())
    assert reply["ok"] is False
    assert error in reply["error"]
    assert core.setpoint == CFG.control.setpoint_bar


def test_iso_timestamps_with_zone_are_accepted() -> None:
    _, proc = processor()
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 10))
    assert send(proc, "mode", id="m", ts=iso, mode="manual")["ok"]


def test_mode_pump_and_ack() -> None:
    core, proc = processor()
    assert "manual mode" in send(proc, "pump", id="p0", pump="P1", on=True)["error"]
    assert send(proc, "mode", id="m1", mode="manual")["ok"]
    assert send(proc, "pump", id="p1", pump="P1", on=True)["ok"]
    assert core.manual["P1"] is True
    assert "no pump" in send(proc, "pump", id="p2", pump="P9", on=True)["error"]
    assert "'on' must be" in send(proc, "pump", id="p3", pump="P1", on="yes")["error"]
    assert "mode must be one of" in send(proc, "mode", id="m2", mode="turbo")["error"]
    assert send(proc, "ack", id="a1") == {"id": "a1", "ok": True, "error": None, "acknowledged": []}
    assert "no active alarm" in send(proc, "ack", id="a2", alarm="dry_run")["error"]


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("setpoint", b"not json", "not JSON"),
        ("setpoint", b"[1, 2]", "JSON object"),
        ("setpoint", b'{"ts": 1}', "'id'"),
        ("reboot", json.dumps({"id": "x", "ts": NOW}).encode(), "unknown command"),
        ("setpoint", json.dumps({"id": "x", "ts": NOW, "value": "3"}).encode(), "number"),
        ("setpoint", b'{"id": "x", "ts": 1800000000, "value": NaN}', "finite"),
        ("setpoint", b"x" * 5000, "larger than"),
    ],
)
def test_malformed_commands_get_a_specific_rejection(name: str, payload: bytes, error: str) -> None:
    core, proc = processor()
    reply = proc.handle(name, payload)
    assert reply["ok"] is False
    assert error in reply["error"]
    assert core.setpoint == CFG.control.setpoint_bar
    assert core.mode == "auto"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["setpoint", "mode", "pump", "ack", "pressure_management", "x", ""]),
    body=st.one_of(
        st.binary(max_size=64),
        st.dictionaries(
            st.sampled_from(
                ["id", "ts", "value", "mode", "pump", "on", "alarm", "pressure_management"]
            ),
            json_values,
        ).map(lambda d: json.dumps(d).encode()),
        st.fixed_dictionaries(
            {"id": st.text(min_size=1, max_size=5), "ts": st.just(NOW),
             "value": st.floats(allow_nan=True, allow_infinity=True)}
        ).map(lambda d: json.dumps(d).encode()),
    ),
)  # fmt: skip
def test_fuzzed_commands_never_crash_and_never_accept_an_out_of_range_setpoint(
    name: str, body: bytes
) -> None:
    core, proc = processor()
    reply = proc.handle(name, body)
    assert set(reply) >= {"id", "ok", "error"}
    assert isinstance(reply["ok"], bool)
    assert (reply["error"] is None) == reply["ok"]
    lo, hi = CFG.control.setpoint_min_bar, CFG.control.setpoint_max_bar
    assert lo <= core.setpoint <= hi
    pm = core.cfg.control.pressure_management
    assert all(lo <= e.setpoint_bar <= hi for e in (pm.schedule if pm else []))


def test_credentials_file_formats(tmp_path: Any) -> None:
    from controller.telemetry.uplink import CredentialsError, read_credentials

    f = tmp_path / "mqtt"
    for text, expected in [
        ("station:s3cret\n", ("station", "s3cret")),
        ("station\ns3cret\n", ("station", "s3cret")),
        ("username=station\npassword=s3:cret\n", ("station", "s3:cret")),
        ("", (None, None)),
    ]:
        f.write_text(text)
        assert read_credentials(str(f)) == expected
    f.write_text("a\nb\nc\n")
    with pytest.raises(CredentialsError, match="expected"):
        read_credentials(str(f))
    with pytest.raises(CredentialsError, match="cannot read"):
        read_credentials(str(tmp_path / "missing"))


def test_scada_changes_the_pressure_management_with_the_same_validation() -> None:
    core, proc = processor()
    pm = {
        "schedule": [{"at": "05:00", "setpoint_bar": 3.0}, {"at": "23:00", "setpoint_bar": 2.2}],
        "flow_compensation": {"flow_design_m3h": 60, "k_bar": 0.5, "exponent": 1.5},
    }
    assert send(proc, "pressure_management", id="pm1", pressure_management=pm)["ok"] is True
    snap = core.snapshot()["pressure_management"]
    assert snap["schedule"][1]["setpoint_bar"] == 2.2
    assert core.manager.scheduled(0, 23.5) == 2.2
    bad_time = {"schedule": [{"at": "24:00", "setpoint_bar": 3.0}]}
    reply = send(proc, "pressure_management", id="pm2", pressure_management=bad_time)
    assert "schedule.0.at" in reply["error"]
    low = {"schedule": [{"at": "01:00", "setpoint_bar": 0.5}]}
    reply = send(proc, "pressure_management", id="pm3", pressure_management=low)
    assert "outside the allowed" in reply["error"]
    assert "is required" in send(proc, "pressure_management", id="pm4")["error"]
    assert core.snapshot()["pressure_management"]["schedule"][1]["setpoint_bar"] == 2.2
    assert send(proc, "pressure_management", id="pm5", pressure_management=None)["ok"]
    assert core.snapshot()["pressure_management"] is None

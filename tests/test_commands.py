"""SCADA commands: validation, idempotence by id, staleness, and fuzzing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from controller.config import load_config
from controller.control.core import ControlCore
from controller.telemetry.commands import (
    MAX_ERROR_CHARS,
    REMEMBERED_COMMANDS,
    CommandProcessor,
)
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
    snap = core.status()["pressure_management"]
    assert snap["schedule"][1]["setpoint_bar"] == 2.2
    assert core.manager.scheduled(0, 23.5) == 2.2
    bad_time = {"schedule": [{"at": "24:00", "setpoint_bar": 3.0}]}
    reply = send(proc, "pressure_management", id="pm2", pressure_management=bad_time)
    assert "schedule.0.at" in reply["error"]
    low = {"schedule": [{"at": "01:00", "setpoint_bar": 0.5}]}
    reply = send(proc, "pressure_management", id="pm3", pressure_management=low)
    assert "outside the allowed" in reply["error"]
    assert "is required" in send(proc, "pressure_management", id="pm4")["error"]
    assert core.status()["pressure_management"]["schedule"][1]["setpoint_bar"] == 2.2
    assert send(proc, "pressure_management", id="pm5", pressure_management=None)["ok"]
    assert core.status()["pressure_management"] is None


# -- hostile payloads: refused with a reason, never an exception --------------------------

DEEP_ARRAY = b"[" * 2000 + b"]" * 2000
DEEP_OBJECT = b'{"":[' * 580 + b"]}" * 580  # 1160 levels in 4060 bytes


def _cmd(**fields: Any) -> bytes:
    return json.dumps({"id": "h", "ts": NOW, **fields}).encode()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        # 310+ digits overflowed float() and killed the uplink (OverflowError).
        (b'{"id": "h", "ts": 1800000000, "value": 1' + b"0" * 320 + b"}", "digits"),
        (b'{"id": "h", "ts": 1' + b"0" * 5000 + b"}", "larger than"),
        (b'{"id": "h", "ts": 1' + b"0" * 400 + b', "value": 3}', "digits"),
        (b'{"id": "h", "ts": 1800000000, "value": 1.' + b"5" * 100 + b"}", "characters long"),
        (b'{"id": "h", "ts": 1800000000, "value": 1e400}', "finite"),
        (b'{"id": "h", "ts": 1800000000, "value": -Infinity}', "finite"),
        (b'{"id": "h", "ts": Infinity, "value": 3}', "finite"),
        # ~2000 levels in under 4 KB recursed json.loads out of the stack (RecursionError).
        (DEEP_ARRAY, "levels deep"),
        (DEEP_OBJECT, "levels deep"),
        (b'{"id": "h", "ts": 1800000000, "value": ' + b"[" * 16 + b"]" * 16 + b"}", "17 levels"),
        (b'{"id": "h", "ts": 1800000000, "value": ' + b"[" * 15 + b"]" * 15 + b"}", "a number"),
        ("{}".encode("utf-16"), "not JSON"),
        (b'{"id": "\xff\xfe"}', "not UTF-8"),
        (b'{"id": "\\ud800", "ts": 1800000000, "value": 3}', "'id' must be printable"),
        (b'{"id": "a\\nb", "ts": 1800000000, "value": 3}', "'id' must be printable"),
        (_cmd(value=3.0, ts="0001-01-01T00:00:00+14:00"), "stale"),
        (_cmd(value=3.0, ts=1e300), "future"),
        (_cmd(value=3.0, ts=-1e300), "stale"),
    ],
)
def test_poison_payloads_are_refused_with_a_reason(payload: bytes, error: str) -> None:
    core, proc = processor()
    reply = proc.handle("setpoint", payload)
    assert reply["ok"] is False
    assert error in reply["error"]
    assert core.setpoint == CFG.control.setpoint_bar
    json.dumps(reply, allow_nan=False).encode("utf-8")  # strict JSON, encodable


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    _, proc = processor()
    tricky = "[{" * 1000 + '\\"' + "}]"
    reply = send(proc, "mode", id="s", mode="manual", note=tricky)
    assert reply["ok"] is True


def test_a_realistic_pressure_management_command_is_not_too_deep() -> None:
    _, proc = processor()
    pm = {"schedule": [{"at": "23:00", "setpoint_bar": 2.2, "days": ["sat", "sun"]}]}
    assert send(proc, "pressure_management", id="pm", pressure_management=pm)["ok"] is True


class Exploding:
    """A target with a bug: every command raises something no validation foresaw."""

    control = CFG.control

    def set_setpoint(self, bar: float) -> None:
        raise ZeroDivisionError("float division by zero")

    def set_mode(self, mode: str) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    def pump(self, name: str, on: bool) -> None:
        raise KeyError(name)

    def pump_mode(self, name: str, mode: str) -> None:
        raise IndexError(name)

    def ack(self, alarm_id: str | None = None) -> list[str]:
        raise OverflowError("int too large to convert to float")

    def set_pressure_management(self, data: Any) -> None:
        raise TypeError("unhashable type: 'dict'")


@pytest.mark.parametrize(
    ("name", "fields"),
    [("setpoint", {"value": 3.0}), ("mode", {"mode": "auto"}), ("pump", {"pump": "P1", "on": True}),
     ("ack", {}), ("pressure_management", {"pressure_management": None})],
)  # fmt: skip
def test_a_failure_inside_the_station_is_answered_logged_once_and_not_remembered(
    name: str, fields: dict[str, Any]
) -> None:
    proc = CommandProcessor(Exploding(), clock=lambda: NOW)
    with capture_logs() as logs:
        reply = proc.handle(name, _cmd(**fields), topic=f"pdam/s1/cmd/{name}")
    assert reply["id"] == "h"
    assert reply["ok"] is False
    assert "failed to handle" in reply["error"]
    assert [(e["event"], e["topic"]) for e in logs] == [("command failed", f"pdam/s1/cmd/{name}")]
    assert proc.failed == 1
    # Not carried out, so not remembered: sent again, it is tried again.
    assert proc.handle(name, _cmd(**fields)).get("repeated") is None
    assert proc.failed == 2


def test_rejections_do_not_poison_the_reply_cache() -> None:
    core, proc = processor()
    # Seen: a stale command and one on cmd/nosuch with id c-500 made SCADA's later,
    # valid setpoint c-500 come back "repeated" with the old error, not executed.
    assert "stale" in send(proc, "setpoint", id="c-500", value=3.3, ts=NOW - 3600)["error"]
    assert "unknown command" in send(proc, "nosuch", id="c-500")["error"]
    assert "outside" in send(proc, "setpoint", id="c-500", value=9.0)["error"]
    second = send(proc, "setpoint", id="c-500", value=9.0)
    assert "repeated" not in second  # a rejection is answered afresh each time
    assert send(proc, "setpoint", id="c-500", value=3.3) == {"id": "c-500", "ok": True,
                                                             "error": None}  # fmt: skip
    assert core.setpoint == 3.3
    assert send(proc, "setpoint", id="c-500", value=3.3)["repeated"] is True


def test_the_reply_cache_is_keyed_by_command_and_id() -> None:
    core, proc = processor()
    assert send(proc, "mode", id="x1", mode="manual")["ok"] is True
    assert send(proc, "setpoint", id="x1", value=3.9)["ok"] is True  # not "repeated"
    assert core.setpoint == 3.9
    assert core.mode == "manual"


def test_the_reply_cache_remembers_a_bounded_number_of_commands() -> None:
    core, proc = processor()
    for i in range(REMEMBERED_COMMANDS + 10):
        send(proc, "setpoint", id=f"n{i}", value=3.0)
    core.set_setpoint(2.0)
    assert send(proc, "setpoint", id="n0", value=3.1).get("repeated") is None  # forgotten
    assert core.setpoint == 3.1
    assert send(proc, "setpoint", id=f"n{REMEMBERED_COMMANDS + 9}", value=3.0)["repeated"]


def test_refuse_echoes_the_id_and_executes_nothing() -> None:
    core, proc = processor()
    reply = proc.refuse("setpoint", _cmd(value=3.9), "retained command ignored")
    assert reply == {"id": "h", "ok": False, "error": "retained command ignored"}
    assert core.setpoint == CFG.control.setpoint_bar
    assert proc.refuse("setpoint", DEEP_ARRAY, "no")["id"] is None


def test_a_long_unknown_command_name_is_shortened_in_the_error() -> None:
    _, proc = processor()
    reply = proc.handle("x" * 10_000, _cmd())
    assert "unknown command" in reply["error"]
    assert len(reply["error"]) <= MAX_ERROR_CHARS


def test_any_bytes_like_payload_is_read() -> None:
    core, proc = processor()
    body = json.dumps({"id": "b", "ts": NOW, "value": 3.1}).encode()
    assert proc.handle("setpoint", bytearray(body))["ok"] is True  # type: ignore[arg-type]
    assert core.setpoint == 3.1


def test_a_controller_whose_clock_is_not_set_still_takes_commands_but_never_twice() -> None:
    """A Pi without RTC boots at 1970: every command would look 56 years in the future.
    The age check waits for a plausible clock; the (command, id) cache still refuses
    to carry out a replay."""
    core = ControlCore(CFG, now=0.0)
    proc = CommandProcessor(core, max_age_s=300, clock=lambda: 86_400.0)  # 1970-01-02
    first = proc.handle("setpoint", json.dumps({"id": "s1", "ts": NOW, "value": 3.3}).encode())
    assert first["ok"] is True
    assert core.setpoint == 3.3
    core.set_setpoint(3.0)
    again = proc.handle("setpoint", json.dumps({"id": "s1", "ts": NOW, "value": 3.3}).encode())
    assert again.get("repeated") is True
    assert core.setpoint == 3.0

"""A pump switched Off (out of service) while the station stays in automatic: the Off of
Hand-Off-Auto per pump, from SCADA, Sparkplug and the HMI, through the one command path.

It stops at once, nothing starts it (demand, exercise, alternation, a power retry, a
manual start) until it is switched back to Auto, the rest of the station carries on, and
it stays Off through a restart."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import load_config
from controller.config.schema import SparkplugConfig
from controller.control.core import ControlCore
from controller.control.stager import Demand, Manual, Stager, StopAll
from controller.state.build import pump_status
from controller.state.enums import PumpState
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.encoding import PUMP_OUT_OF_SERVICE, pump_state
from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from controller.telemetry.sparkplug.metrics import Catalogue, status_values
from controller.telemetry.sparkplug.ncmd import NcmdHandler
from harness.closed_loop import ClosedLoop
from tests.conftest import EXAMPLE_CONFIG, VFD_CONFIG
from tests.test_stager import PUMPS, STAGING

CFG = load_config(EXAMPLE_CONFIG)


def command(core: ControlCore, name: str, **fields: object) -> dict[str, object]:
    processor = CommandProcessor(core)
    body = {"id": f"t-{time.monotonic_ns()}", "ts": time.time(), **fields}
    return processor.handle(name, json.dumps(body).encode())


# -- the stager: the rule itself ---------------------------------------------------------


def test_off_stops_a_running_pump_at_once_inside_its_minimum_run_time() -> None:
    stager = Stager(PUMPS, STAGING, now=0.0)
    now = 0.0
    while stager.running() < 2:
        now += 1.0
        stager.update(now, Demand(2.5))
    running = [n for n, r in stager.pumps.items() if r.on]
    stager.set_out_of_service(running[0], True, now + 1.0)
    assert not stager.pumps[running[0]].on  # 60 s min_run_s or not
    assert stager.available() == 2  # three pumps, one Off, cap 2


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(0.5, 400.0),  # to the next tick
            st.floats(-0.5, 3.5),  # demand
            st.sampled_from(["P1", "P2", "P3", None]),  # toggled Off/Auto this tick
            st.sampled_from(["demand", "demand", "demand", "manual", "stop"]),
        ),
        min_size=20,
        max_size=300,
    )
)
def test_a_pump_switched_off_never_runs_whatever_the_control_asks(
    steps: list[tuple[float, float, str | None, str]],
) -> None:
    """Demand, exercise (every 0.5 h), alternation (1 h), manual starts of every pump and
    stop-all in any order, with pumps switched Off and back at random: a pump is never on
    after a tick that saw it Off, and no more pumps run than are usable."""
    stager = Stager(PUMPS, STAGING, now=0.0)
    now = 0.0
    for dt, demand, toggle, kind in steps:
        now += dt
        if toggle is not None:
            rec = stager.pumps[toggle]
            stager.set_out_of_service(toggle, not rec.out_of_service, now)
        directive = {
            "demand": Demand(demand),
            "manual": Manual(dict.fromkeys(PUMPS, True)),
            "stop": StopAll(),
        }[kind]
        relays = stager.update(now, directive)
        off = {n for n, r in stager.pumps.items() if r.out_of_service}
        assert not any(relays[n] for n in off), (off, relays)
        assert sum(relays.values()) <= min(STAGING.max_running or 3, 3 - len(off))


def test_back_to_auto_the_pump_serves_the_demand_again() -> None:
    stager = Stager(PUMPS, STAGING, now=0.0)
    for name in ("P1", "P2"):
        stager.set_out_of_service(name, True, 0.0)
    now = 0.0
    for _ in range(200):
        now += 1.0
        stager.update(now, Demand(2.5))
    assert [n for n, r in stager.pumps.items() if r.on] == ["P3"]
    assert "P1 switched Off (out of service)" in (stager.cannot_start(now) or "")
    stager.set_out_of_service("P1", False, now)
    for _ in range(200):
        now += 1.0
        stager.update(now, Demand(2.5))
    assert sorted(n for n, r in stager.pumps.items() if r.on) == ["P1", "P3"]


# -- the core and the command path -------------------------------------------------------


def test_the_command_path_takes_a_pump_out_of_service_and_back_in_any_station_mode() -> None:
    core = ControlCore(CFG, now=0.0)
    assert command(core, "pump_mode", pump="P2", mode="off")["ok"] is True
    status = core.status()["pumps"]["P2"]
    assert status["out_of_service"] is True
    assert status["state"] == "out of service"
    assert pump_status(status).state is PumpState.OUT_OF_SERVICE
    # refusals name the reason and change nothing
    for fields, reason in (
        ({"pump": "P9", "mode": "off"}, "no pump 'P9'"),
        ({"pump": "P2", "mode": "hand"}, "pump mode must be one of auto, off"),
        ({"pump": "P2"}, "'mode' must be a non-empty string"),
        ({"mode": "off"}, "'pump' must be a non-empty string"),
        ({"pump": "P" * 129, "mode": "off"}, "'pump' is 129 characters long; at most 128"),
    ):
        reply = command(core, "pump_mode", **fields)
        assert reply["ok"] is False
        assert reason in str(reply["error"]), reply
    assert command(core, "mode", mode="manual")["ok"] is True
    reply = command(core, "pump", pump="P2", on=True)
    assert reply["ok"] is False
    assert "switched Off (out of service)" in str(reply["error"])
    assert command(core, "pump_mode", pump="P2", mode="auto")["ok"] is True
    assert command(core, "pump", pump="P2", on=True)["ok"] is True


def test_off_survives_a_restart_and_a_damaged_state_file_does_not_invent_it() -> None:
    core = ControlCore(CFG, now=0.0)
    core.pump_mode("P1", "off")
    saved = core.export_state()
    again = ControlCore(CFG, now=100.0)
    again.restore_state(json.loads(json.dumps(saved)))
    assert again.stager.pumps["P1"].out_of_service
    assert not again.stager.pumps["P2"].out_of_service
    saved["pumps"]["P2"]["out_of_service"] = "yes"  # only true counts
    third = ControlCore(CFG, now=200.0)
    third.restore_state(saved)
    assert not third.stager.pumps["P2"].out_of_service


def test_the_station_holds_its_pressure_on_the_other_pumps_and_says_which_is_off() -> None:
    """The simulator in closed loop: P1 (the pump with the fewest hours, first to start)
    switched Off in automatic an hour into the morning peak."""
    loop = ClosedLoop(CFG, start_hour=6.0, seed=1)
    loop.keep_outputs = True
    loop.run(1800)
    assert loop.core is not None
    loop.core.pump_mode("P1", "off")
    mark = len(loop.outputs)
    loop.run(3600)
    after = loop.outputs[mark:]
    assert not any(out.relays["P1"] for out in after)
    assert all(out.pump_states["P1"] == "out of service" for out in after)
    assert any(out.relays["P2"] or out.relays["P3"] for out in after)
    raised = [e for out in after for e in out.events if e.event == "raise"]
    assert any(e.id == "pump_off_P1" and e.severity == "warning" for e in raised)
    settled = loop.trace.pressure_bar[-int(1800 / CFG.control.tick_s) :]
    assert min(settled) > CFG.control.setpoint_bar - 0.5
    assert {out.mode for out in after} == {"auto"}
    loop.core.pump_mode("P1", "auto")
    loop.keep_outputs = False
    loop.run(60)
    assert not loop.core.alarms.is_active("pump_off_P1")


def test_a_drive_switched_off_leads_no_more_and_the_fixed_pumps_stage_in_steps() -> None:
    """With its only drive's pump Off, a drive station stages like a relay station (the
    fixed-speed deadband, the demand re-centred at each step) and holds its pressure."""
    cfg = load_config(VFD_CONFIG)
    [drive] = [n for n, p in cfg.pumps.items() if p.vfd is not None]
    loop = ClosedLoop(cfg, start_hour=7.0, seed=2)
    loop.run(600)
    assert loop.core is not None
    assert loop.core.stager.lead_vfd
    loop.core.pump_mode(drive, "off")
    loop.keep_outputs = True
    loop.run(2400)
    assert not loop.core.stager.lead_vfd
    assert not any(out.relays[drive] for out in loop.outputs)
    assert any(any(out.relays.values()) for out in loop.outputs)
    settled = loop.trace.pressure_bar[-int(900 / cfg.control.tick_s) :]
    assert min(settled) > cfg.control.setpoint_bar - 0.6
    loop.core.pump_mode(drive, "auto")
    loop.keep_outputs = False
    loop.run(60)
    assert loop.core.stager.lead_vfd


# -- what SCADA sees ------------------------------------------------------------------------


def test_telemetry_flags_and_sparkplug_carry_it_and_a_sparkplug_write_sets_it() -> None:
    assert pump_state(PUMP_OUT_OF_SERVICE) == "out of service"
    core = ControlCore(CFG, now=0.0)
    catalogue = Catalogue.for_station(CFG, SparkplugConfig())
    assert catalogue.by_name["Pumps/P3/Mode"].writable
    handler = NcmdHandler(catalogue, CommandProcessor(core))
    payload = pb.Payload(timestamp=int(time.time() * 1000))
    payload.metrics.add(name="Pumps/P3/Mode", datatype=pb.String, string_value="off")
    outcome = handler.handle(payload.SerializeToString(), topic="spBv1.0/g/NCMD/n")
    assert outcome.results == [{"metric": "Pumps/P3/Mode", "ok": True, "error": None}]
    assert core.stager.pumps["P3"].out_of_service
    assert status_values(core.status(), core.manual)["Pumps/P3/Mode"] == "off"
    bad = pb.Payload(timestamp=int(time.time() * 1000))
    bad.metrics.add(name="Pumps/P3/Mode", datatype=pb.String, string_value="hand")
    [result] = handler.handle(bad.SerializeToString(), topic="spBv1.0/g/NCMD/n").results
    assert result["ok"] is False
    assert "pump mode must be one of auto, off" in str(result["error"])


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_status_model_carries_the_pump_mode(mode: str) -> None:
    core = ControlCore(CFG, now=0.0)
    core.pump_mode("P1", mode)
    assert pump_status(core.status()["pumps"]["P1"]).out_of_service is (mode == "off")

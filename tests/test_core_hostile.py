"""No command and no reading can defeat a protection, proven by search rather than by list.

Hypothesis drives the whole control core (a relay station and a drive station) with
arbitrary sequences of SCADA commands whose numbers come from the whole float range
(NaN, infinities, subnormals, huge and negative values) interleaved with arbitrary
readings, and checks on every tick:

* the controlled setpoint is finite and inside ``setpoint_min_bar..setpoint_max_bar``;
* every output (demand, drive speeds) is finite and every speed within the drive's range;
* a discharge pressure held above ``setpoint_max_bar + margin_bar`` for the cutout's
  delay trips the high-pressure protection, and no relay runs while it is tripped;
* the status snapshot is strict JSON (no NaN or Infinity tokens).

The first two were broken on an earlier main: ``k_bar: Infinity`` with a zero flow
made the setpoint NaN, and an unbounded ramp carried it to 12 bar with the cutout
computed from it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import load_config
from controller.config.schema import PressureManagementConfig, StationConfig
from controller.control.core import CommandRejected, ControlCore, PumpInputs
from controller.control.setpoint import SetpointManager
from controller.telemetry.commands import valid_mode, valid_pressure_management, valid_setpoint
from controller.values import BadReason, Quality, Reading
from tests.conftest import EXAMPLE_CONFIG, VFD_CONFIG

CONFIGS = {"relays": load_config(EXAMPLE_CONFIG), "drive": load_config(VFD_CONFIG)}

#: Any float at all, and the integers JSON can carry that Python turns into floats.
any_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e300, -1e300, 1e308]),
    st.integers(min_value=-(10**30), max_value=10**30),
)

flow_compensation = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"flow_design_m3h": any_number, "k_bar": any_number},
        optional={"exponent": any_number},
    ),
)
schedule = st.lists(
    st.fixed_dictionaries(
        {
            "at": st.sampled_from(["00:00", "06:00", "22:30"]),
            "setpoint_bar": any_number,
        },
        optional={"days": st.lists(st.sampled_from(["mon", "sun", "xyz"]), max_size=3)},
    ),
    max_size=3,
)
pressure_management = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "flow_compensation": flow_compensation,
            "ramp_bar_per_min": any_number,
            "schedule": schedule,
        },
    ),
)

command = st.one_of(
    st.tuples(st.just("setpoint"), any_number),
    st.tuples(st.just("mode"), st.sampled_from(["auto", "manual", "off", "AUTO", ""])),
    st.tuples(st.just("pump"), st.tuples(st.sampled_from(["P1", "P2", "P3", "P9"]), st.booleans())),
    st.tuples(st.just("ack"), st.sampled_from([None, "high_pressure", "nosuch"])),
    st.tuples(st.just("pressure_management"), pressure_management),
)

#: A reading: a good value from the whole float range, or bad.
reading_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-5.0, 20.0),
    st.none(),
)

#: One step: how long the condition lasts, the discharge pressure (None: over the
#: cutout), suction and flow values, and a command (or none) at its start.
step = st.tuples(
    st.floats(0.5, 60.0),
    reading_value,
    reading_value,
    reading_value,
    st.one_of(st.none(), command),
)


def _reading(name: str, unit: str, value: float | None) -> Reading:
    if value is None:
        return Reading.bad(name, unit, BadReason.TIMEOUT)
    # Built directly, not through Reading.ok, so that even a good non-finite value
    # (something no acquisition should ever produce) reaches the core.
    return Reading(name, value, unit, Quality.GOOD)


def _apply(core: ControlCore, cmd: tuple[str, Any]) -> None:
    name, arg = cmd
    try:
        # Validated as the command processor validates every command, then carried out.
        if name == "setpoint":
            core.set_setpoint(valid_setpoint(arg, core.control))
        elif name == "mode":
            core.set_mode(valid_mode(arg))
        elif name == "pump":
            core.pump(*arg)
        elif name == "ack":
            core.ack(arg)
        else:
            core.set_pressure_management(valid_pressure_management(arg, core.control))
    except CommandRejected:
        pass  # refused with a reason: what a hostile command should get


def _run(cfg: StationConfig, steps: list[tuple[float, Any, Any, Any, Any]]) -> None:
    ctl, prot = cfg.control, cfg.protections
    hp = prot.high_pressure
    cutout = ctl.setpoint_max_bar + hp.margin_bar
    core = ControlCore(cfg, now=0.0)
    now = 0.0
    tick = ctl.tick_s
    over_since: float | None = None
    pumps = {name: PumpInputs(feedback=None, fault=False) for name in cfg.pumps}
    for duration, pv, suction, flow, cmd in steps:
        if cmd is not None:
            _apply(core, cmd)
        # A pressure of None in a step means "held above the configured cutout".
        pv_value = cutout + 0.5 if pv is None else pv
        end = now + duration
        while now < end:
            now += tick
            readings = {
                ctl.pressure_point: _reading(ctl.pressure_point, "bar", pv_value),
                "suction_pressure": _reading("suction_pressure", "bar", suction),
                "flow": _reading("flow", "m3/h", flow),
            }
            out = core.step(now, readings, pumps)
            assert math.isfinite(out.setpoint_bar)
            assert ctl.setpoint_min_bar <= out.setpoint_bar <= ctl.setpoint_max_bar
            assert math.isfinite(out.demand)
            for pump, speed in out.speeds.items():
                vfd = cfg.pumps[pump].vfd
                assert vfd is not None
                assert math.isfinite(speed)
                assert 0.0 <= speed <= vfd.max_speed_pct / 100.0
            over = math.isfinite(pv_value) and pv_value > cutout
            over_since = (over_since if over_since is not None else now) if over else None
            if over_since is not None and now - over_since >= hp.delay_s + tick:
                assert core.protections.high, f"{pv_value} bar held above {cutout} bar"
            if core.protections.high:
                assert not any(out.relays.values()), out.relays
            json.dumps(core.status(), allow_nan=False)


@pytest.mark.parametrize("station", list(CONFIGS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_no_command_or_reading_defeats_a_protection(
    station: str, steps: list[tuple[float, Any, Any, Any, Any]]
) -> None:
    _run(CONFIGS[station], steps)


@pytest.mark.parametrize("station", list(CONFIGS))
def test_the_commands_seen_in_the_field_leave_the_cutout_armed(station: str) -> None:
    """The reported attack: k_bar and the ramp infinite, flow at zero, 8 bar held."""
    cfg = CONFIGS[station]
    core = ControlCore(cfg, now=0.0)
    attack = {
        "flow_compensation": {"flow_design_m3h": 60, "k_bar": math.inf, "exponent": 2.0},
        "ramp_bar_per_min": math.inf,
    }
    with pytest.raises(CommandRejected, match="finite"):
        valid_pressure_management(attack, core.control)
    with pytest.raises(CommandRejected):
        valid_pressure_management({"ramp_bar_per_min": 1e-300}, core.control)
    with pytest.raises(CommandRejected):
        valid_pressure_management(
            {"schedule": [{"at": "01:00", "setpoint_bar": 2.0, "days": []}]}, core.control
        )
    # Held at 8 bar with pumps running: the cutout trips after its delay and stays.
    _run(cfg, [(120.0, 2.0, 1.0, 0.0, None), (60.0, 8.0, 1.0, 0.0, None)])


def test_a_managed_setpoint_never_leaves_its_range_even_with_a_corrupted_state() -> None:
    """The manager clamps after the ramp too: a state knocked out of range comes back."""
    cfg = CONFIGS["drive"]
    ctl = cfg.control.model_copy(update={"pressure_management": PressureManagementConfig()})
    manager = SetpointManager(ctl)
    manager.update(0.0, 3.0, weekday=0, hour=1.0, flow_m3h=0.0)
    for corrupted in (math.nan, math.inf, 100.0, -5.0):
        manager._current = corrupted
        sp = manager.update(1.0, 3.0, weekday=0, hour=1.0, flow_m3h=0.0)
        assert ctl.setpoint_min_bar <= sp <= ctl.setpoint_max_bar

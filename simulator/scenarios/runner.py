"""Run a generated station-day on the simulator, check every tick, shrink and print.

``run_day`` drives ``ClosedLoop`` one control tick at a time (the real control core,
register map and codec against ``SimStation``), applies the day's SCADA commands to
whichever ControlCore is running (a power cut without a UPS boots a new one), and
feeds a ``TickState`` per tick to the ``InvariantChecker``. ``shrink`` cuts a failing
day short and drops events while the same kind of violation still shows, and
``reproducer`` prints what a developer needs to see it again: the seed, the station
file (which ``boosterd check`` accepts) and the event script.
"""

from __future__ import annotations

import json
import math
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.control.core import CommandRejected, ControlCore, ControlOutputs
from controller.runtime.loop import make_sample
from controller.telemetry.commands import (
    valid_mode,
    valid_pressure_management,
    valid_pump_mode,
    valid_setpoint,
)
from harness.closed_loop import ClosedLoop, Trace
from simulator.scenarios.days import Command, Day, generate_day
from simulator.scenarios.invariants import (
    AlarmChange,
    AlarmView,
    InvariantChecker,
    Limits,
    TickState,
    Violation,
)
from simulator.scenarios.stations import GeneratedStation, generate_station

#: How often (simulated seconds) the status snapshot and a telemetry sample are encoded
#: as strict JSON: each costs far more than a tick.
JSON_EVERY_S = 300.0
#: Ticks kept in the ClosedLoop's own trace before it is emptied (memory, not checks).
TRACE_KEEP = 4096


@dataclass(frozen=True)
class Case:
    """One station-day, everything drawn from ``seed``."""

    seed: int
    station: GeneratedStation
    day: Day

    @classmethod
    def generate(cls, seed: int, *, hours: float = 24.0) -> Case:
        rng = random.Random(seed)
        station = generate_station(rng, site=f"scn-{seed}")
        return cls(seed, station, generate_day(rng, station, hours=hours))


@dataclass
class RunResult:
    violations: list[Violation] = field(default_factory=list)
    ticks: int = 0
    reboots: int = 0
    wall_s: float = 0.0
    rejected_commands: int = 0


def _tokens(loop: ClosedLoop, t: float) -> frozenset[str]:
    out = set()
    for f in loop.station.faults.active(t):
        out.add(f"{f.kind}:{f.target}" if f.target else f.kind)
    return frozenset(out)


def _json_error(core: ControlCore, loop: ClosedLoop, out: ControlOutputs) -> str | None:
    try:
        json.dumps(core.status(), allow_nan=False)
    except ValueError as exc:
        return f"status snapshot is not strict JSON: {exc}"
    readings = loop.loop.readings
    inputs = {n: loop.pump_io.feedback(n) for n in loop.cfg.pumps}
    try:
        from controller.control.core import PumpInputs

        pins = {n: PumpInputs(feedback=fb, fault=loop.pump_io.fault(n)) for n, fb in inputs.items()}
        sample = make_sample(readings, out, pins)
        sample["sch"] = sample["sch"].id  # the buffer stores the schema once, by its id
        json.dumps(sample, allow_nan=False)
    except ValueError as exc:
        return f"telemetry sample is not strict JSON: {exc}"
    return None


def _apply(core: ControlCore, cmd: Command) -> bool:
    """Apply one command; False when the core refused it (as it may)."""
    args = cmd.args
    try:
        # Values validated as the command processor validates them, then carried out.
        if cmd.name == "setpoint":
            core.set_setpoint(valid_setpoint(args["bar"], core.control))
        elif cmd.name == "mode":
            core.set_mode(valid_mode(args["mode"]))
        elif cmd.name == "pump":
            core.pump(args["name"], args["on"])
        elif cmd.name == "pump_mode":
            core.pump_mode(args["name"], valid_pump_mode(args["mode"]))
        elif cmd.name == "ack":
            core.ack(args.get("alarm"))
        elif cmd.name == "pressure_management":
            core.set_pressure_management(valid_pressure_management(args["data"], core.control))
        else:
            raise ValueError(f"unknown scenario command {cmd.name!r}")
    except CommandRejected:
        return False
    return True


def _tick_state(
    loop: ClosedLoop, out: ControlOutputs, t_before: float, names: tuple[str, ...]
) -> TickState:
    st = loop.station.state
    core = loop.core
    powered = out.state != "unpowered"
    alarms: tuple[AlarmView, ...] = ()
    if core is not None and powered:
        alarms = tuple(
            AlarmView(a.id, a.condition, a.latched, a.acked) for a in core.alarms.active()
        )
    return TickState(
        t=loop.station.t,
        powered=powered,
        state=out.state,
        mode=out.mode,
        setpoint_bar=out.setpoint_bar,
        relays=tuple(out.relays.get(n, False) for n in names),
        running=tuple(st.pumps[n].running for n in names),
        pump_states=tuple(out.pump_states.get(n, "") for n in names),
        pressure_bar=st.discharge_bar,
        suction_bar=st.suction_bar,
        demand=out.demand,
        speeds=tuple(out.speeds.values()),
        faults=_tokens(loop, t_before),
        alarms=alarms,
        events=tuple(AlarmChange(e.id, e.event, e.message) for e in out.events),
        outflow_m3h=st.demand_m3h + st.leakage_m3h,
        reboots=loop.reboots,
    )


def run_day(
    station: GeneratedStation,
    day: Day,
    *,
    stop: Callable[[list[Violation]], bool] | None = None,
) -> RunResult:
    """Run ``day`` on ``station``, checking every tick; ``stop`` ends it early."""
    cfg = station.cfg
    lim = Limits.of(cfg)
    checker = InvariantChecker(lim)
    result = RunResult()
    started = time.perf_counter()
    loop = ClosedLoop(cfg, faults=day.faults, seed=day.sim_seed, start_hour=day.start_hour)
    loop.keep_outputs = True
    tick = cfg.control.tick_s
    names = lim.pumps
    pending = sorted(day.commands, key=lambda c: c.at_s)
    steps = round(day.duration_s / tick)
    next_json = JSON_EVERY_S
    for i in range(steps):
        t_before = loop.station.t
        try:
            while pending and pending[0].at_s <= t_before:
                cmd = pending.pop(0)
                if loop.core is not None and loop.station.controller_powered():
                    result.rejected_commands += not _apply(loop.core, cmd)
            loop.run(tick)
        except Exception as exc:  # any escape from product code is a finding
            where = traceback.format_exception(exc)[-2].strip().splitlines()[0]
            checker.violations.append(
                Violation("crash", loop.station.t, f"{type(exc).__name__}: {exc} ({where})")
            )
            break
        out = loop.outputs.pop()
        loop.outputs.clear()
        s = _tick_state(loop, out, t_before, names)
        if s.powered and loop.core is not None and s.t >= next_json:
            next_json += JSON_EVERY_S
            err = _json_error(loop.core, loop, out)
            if err is not None:
                s = TickState(**{**_fields(s), "json_error": err})
        checker.feed(s)
        if i % TRACE_KEEP == 0:
            loop.trace = Trace()
        if stop is not None and checker.violations and stop(checker.violations):
            break
    result.violations = checker.finish()
    result.ticks = loop.loop.stats.ticks
    result.reboots = loop.reboots
    result.wall_s = time.perf_counter() - started
    return result


def _fields(s: TickState) -> dict[str, Any]:
    return {name: getattr(s, name) for name in TickState.__slots__}


def _first(result: RunResult, kind: str) -> Violation | None:
    return next((v for v in result.violations if v.kind == kind), None)


Runner = Callable[..., RunResult]


def shrink(
    station: GeneratedStation,
    day: Day,
    kind: str,
    *,
    budget_s: float = 120.0,
    run: Runner = run_day,
) -> tuple[Day, Violation | None]:
    """A shorter day with fewer events that still breaks ``kind``, within ``budget_s``
    of wall time; the day as given if it does not fail that way.

    The day is cut a minute after the violation, then each event is dropped in turn
    and left out if the violation still shows (``run`` is ``run_day``; tests pass a
    stand-in)."""
    deadline = time.perf_counter() + budget_s

    def fails(trial: Day) -> Violation | None:
        res = run(station, trial, stop=lambda vs: any(v.kind == kind for v in vs))
        return _first(res, kind)

    found = fails(day)
    if found is None:
        return day, None

    def cut(d: Day, v: Violation) -> Day:
        end = math.ceil((v.t + 60.0) / 60.0) * 60.0
        return d.shortened(end) if end < d.duration_s else d

    best = cut(day, found)
    for event in best.events():
        if time.perf_counter() > deadline:
            break
        trial = best.without(event)
        v = fails(trial)
        if v is not None:
            best, found = cut(trial, v), v
    return best, found


def events_text(day: Day) -> str:
    """The event script: one line per fault (the simulator's syntax) and command."""
    lines = [f"day start_hour={day.start_hour:g} duration_s={day.duration_s:g} "
             f"sim_seed={day.sim_seed}"]  # fmt: skip
    lines += [f"fault {spec}" for spec in day.faults]
    lines += [f"cmd {c.at_s:g} {c.name} {json.dumps(c.args)}" for c in day.commands]
    return "\n".join(lines) + "\n"


def parse_events(text: str) -> Day:
    """A Day from ``events_text`` output (NaN and Infinity in commands allowed)."""
    head: dict[str, float] = {}
    faults: list[str] = []
    commands: list[Command] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "day":
            head = {k: float(v) for k, v in (item.split("=") for item in rest.split())}
        elif word == "fault":
            faults.append(rest)
        elif word == "cmd":
            at, name, args = rest.split(" ", 2)
            commands.append(Command(float(at), name, json.loads(args)))
        else:
            raise ValueError(f"event script: cannot read {line!r} (day, fault or cmd)")
    return Day(
        start_hour=head.get("start_hour", 6.0),
        duration_s=head.get("duration_s", 3600.0),
        sim_seed=int(head.get("sim_seed", 0)),
        faults=tuple(faults),
        commands=tuple(commands),
    )


def reproducer(
    seed: int, station: GeneratedStation, day: Day, v: Violation | None, *, hours: float = 24.0
) -> str:
    """What to paste into an issue: seed, violation, station file and event script.
    ``hours`` is the day length the seed was generated with (the shrunk day is shorter)."""
    what = f"{v.kind} at t={v.t:.0f} s: {v.detail}" if v else "no violation"
    return (
        f"# scenario seed {seed}: {what}\n"
        f"# replay: .venv/bin/python -m bench.scenarios --replay {seed} --hours {hours:g}"
        " (or save the two parts below as DIR/station.yaml and DIR/events.txt and run"
        " --script DIR)\n"
        "# ---- station.yaml ----\n"
        f"{station.yaml_text}"
        "# ---- events.txt ----\n"
        f"{events_text(day)}"
    )


def write_reproducer(directory: Path, station: GeneratedStation, day: Day) -> None:
    """station.yaml and events.txt, for ``bench.scenarios --script DIR``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "station.yaml").write_text(station.yaml_text)
    (directory / "events.txt").write_text(events_text(day))

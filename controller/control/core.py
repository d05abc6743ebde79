"""The control core: the one object the daemon calls every tick.

``step`` takes the freshest readings and pump inputs and returns the relay states.
Commands from SCADA or the local socket go through the methods below; they change
the mode or the setpoint, never a protection: ``step`` applies the protections after
the mode, every tick.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from controller.config.schema import PressureManagementConfig, StationConfig
from controller.control.alarms import AlarmEvent, Alarms
from controller.control.capacity import BAR_TO_M, max_pressure_bar, set_flow_m3h
from controller.control.pid import Pid
from controller.control.protections import Protections, Timer, Verdict, cutout_bar
from controller.control.setpoint import SetpointManager
from controller.control.stager import HOUR_S, PumpRecord, Sizing, Stager, StartCheck
from controller.errors import BoosterError
from controller.values import BadReason, Reading

MODES = ("auto", "manual", "off")


def _wall_clock(timezone: str) -> Callable[[], tuple[int, float]]:
    """Weekday and hour of day now in the station's time zone (schedules use it)."""
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = UTC

    def local() -> tuple[int, float]:
        t = datetime.now(zone)
        return t.weekday(), t.hour + t.minute / 60 + t.second / 3600

    return local


VFD_DESTAGE_MARGIN_BAR = 0.15
#: Without a run-feedback input, a started fixed pump is taken as running after this.
HANDOVER_S = 2.0
#: Longest a destaged fixed pump keeps running while the lead drive ramps up to take
#: over its flow (the drive's own ramp time, capped here).
DESTAGE_HANDOVER_MAX_S = 10.0
#: A start is refused when the curves put the new set's pressure within this of the
#: high-pressure cutout (the bound is already an upper one: see ``capacity``).
START_HEADROOM_BAR = 0.2
#: A set of pumps must carry this much more than the flow the zone needs to count as enough.
SIZING_MARGIN = 1.05


class CommandRejected(BoosterError):
    """A command that was not carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class PumpInputs:
    feedback: bool | None  # None: no run-feedback input configured
    fault: bool


@dataclass(frozen=True, slots=True)
class ControlOutputs:
    relays: dict[str, bool]
    mode: str
    setpoint_bar: float
    demand: float
    state: str
    events: list[AlarmEvent] = field(default_factory=list)
    #: speed reference of every drive-equipped pump, as a fraction of rated speed
    speeds: dict[str, float] = field(default_factory=dict)
    #: what each pump is doing: running, ready, exercising, locked out (see ``pump_state``)
    pump_states: dict[str, str] = field(default_factory=dict)
    #: why each locked-out pump is locked out
    lockouts: dict[str, str] = field(default_factory=dict)


def pump_state(rec: PumpRecord) -> str:
    """``locked out``, ``exercising``, ``running`` or ``ready``: as SCADA and the HMI show it."""
    if rec.locked:
        return "locked out"
    if rec.exercise_until is not None:
        return "exercising"
    return "running" if rec.on else "ready"


def _age(value: Any, *, limit: float = HOUR_S) -> float | None:
    """A saved age in seconds, if it is one (finite, 0 to ``limit``): the state file is
    ours, but a damaged one must not put a NaN into the motor limits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value <= limit else None


def _ages(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [a for a in (_age(v) for v in values[:1000]) if a is not None]


def _good(readings: Mapping[str, Reading], point: str | None) -> float | None:
    """The value of a configured point when it is good; None otherwise."""
    r = readings.get(point) if point else None
    return r.value if r is not None and r.good else None


def _finite_only(readings: Mapping[str, Reading]) -> Mapping[str, Reading]:
    """The readings with any good but non-finite value made bad: ``Reading.ok`` refuses
    them already, so this only guards against a reading built some other way."""
    if all(r.value is None or math.isfinite(r.value) for r in readings.values()):
        return readings
    return {
        name: r
        if r.value is None or math.isfinite(r.value)
        else Reading.bad(r.name, r.unit, BadReason.DECODE, f"not finite: {r.value}")
        for name, r in readings.items()
    }


class ControlCore:
    def __init__(self, cfg: StationConfig, *, now: float) -> None:
        self.cfg = cfg
        self.mode = "auto"
        self.setpoint = cfg.control.setpoint_bar  # the operator's (or SCADA's) base
        self.manager = SetpointManager(cfg.control)
        #: the setpoint actually controlled to: the base, or the managed one
        self.active_setpoint = self.setpoint
        #: (weekday 0=Monday, hour of day) in the station's time zone; the simulator
        #: replaces it with its own clock.
        self.local_time: Callable[[], tuple[int, float]] = _wall_clock(cfg.site.timezone)
        self.alarms = Alarms()
        self.protections = Protections(cfg, now=now)
        self.stager = Stager(cfg.pumps, cfg.control.staging, now=now)
        pid = cfg.control.pid
        self.pid = Pid(
            kp=pid.kp,
            ki=pid.ki,
            kd=pid.kd,
            derivative_filter_s=pid.derivative_filter_s,
            out_min=0.0,
            out_max=float(self.stager.max_running),
            ramp_bar_per_s=pid.setpoint_ramp_bar_per_s,
            deadband=pid.deadband_bar,
        )
        self.manual: dict[str, bool] = {}
        self.state = "starting"
        self._last: float | None = None
        self._pid_live = False  # False when the PID did not drive the last tick
        self.relays: dict[str, bool] = dict.fromkeys(cfg.pumps, False)
        self.speeds: dict[str, float] = {}
        self._filling_since: float | None = None
        self._fill_from = 0.0
        self._fill_capped_since: float | None = None
        #: Destaged fixed pumps still running until the lead drive has ramped up: pump ->
        #: monotonic time its relay really opens.
        self.handover: dict[str, float] = {}
        self._auto_tick = False
        self._power_lost = False
        #: Pumps whose fault (motor protection, drive trip) is reported this tick.
        self._faulted: set[str] = set()
        #: Lockouts acknowledged while their fault persisted: reset once it is gone.
        self._reset_when_clear: set[str] = set()
        self._start_ok: StartCheck | None = None
        self._sizing: Sizing | None = None
        self._no_service = Timer()
        self._dark_pv: float | None = None  # lowest pressure while the power is lost

    # -- the tick -------------------------------------------------------------------------

    def step(
        self,
        now: float,
        readings: Mapping[str, Reading],
        pumps: Mapping[str, PumpInputs],
    ) -> ControlOutputs:
        dt = self.cfg.control.tick_s if self._last is None else now - self._last
        self._last = now
        readings = _finite_only(readings)
        running = self.stager.running()
        self.active_setpoint = self.bounded(self._managed_setpoint(now, readings))
        verdict = self.protections.update(
            now,
            readings,
            setpoint=self.active_setpoint,
            running=running,
            alarms=self.alarms,
            starts_left=self.stager.starts_left(now),
        )
        feedback = {name: p.feedback for name, p in pumps.items()}
        fault = {name: p.fault for name, p in pumps.items()}
        p = readings.get(self.cfg.control.pressure_point)
        pv = p.value if p is not None and p.good else None
        self._faulted = {name for name, p in pumps.items() if p.fault}
        self._check_drives(now, readings)
        self._reset_cleared_lockouts(now)
        # Pumps running for the demand: the end of an exercise run is no destage.
        was_on = {n: rec.on and rec.exercise_until is None for n, rec in self.stager.pumps.items()}
        self._auto_tick = False
        self._start_ok = self._start_check(readings)
        self._sizing = self._size(readings, pv)
        self.state = self._decide(
            now, dt=dt, verdict=verdict, pv=pv, feedback=feedback, fault=fault
        )
        self._guard_exercise(now, pv)
        self._watch_service(now, pv)
        self._hand_over(now, was_on, pv, readings)
        self._watch_power(now, pv)
        speeds = self.speeds = self._speeds(now, feedback)
        for lock in self.stager.new_lockouts:
            self.alarms.set(
                f"pump_lockout_{lock.pump}",
                True,
                now,
                severity="major",
                message=f"{lock.pump} locked out: {lock.reason}",
                latched=True,
            )
        self.stager.new_lockouts.clear()
        for name, rec in self.stager.pumps.items():
            if not rec.locked:
                self.alarms.set(f"pump_lockout_{name}", False, now)
        return ControlOutputs(
            relays=dict(self.relays),
            mode=self.mode,
            setpoint_bar=self.active_setpoint,
            demand=self.pid.output,
            state=self.state,
            events=self.alarms.drain(),
            speeds=speeds,
            pump_states={name: pump_state(rec) for name, rec in self.stager.pumps.items()},
            lockouts={n: rec.locked for n, rec in self.stager.pumps.items() if rec.locked},
        )

    def _decide(
        self,
        now: float,
        *,
        dt: float,
        verdict: Verdict,
        pv: float | None,
        feedback: Mapping[str, bool | None],
        fault: Mapping[str, bool],
    ) -> str:
        stager = self.stager
        common: dict[str, Any] = {"feedback": feedback, "fault": fault}
        if verdict.stop_all or self.mode == "off":
            self.relays = stager.update(now, stop_all=True, **common)
            self._pid_live = False
            return verdict.state if verdict.stop_all else "off"
        if verdict.fixed is not None:
            self.relays = stager.update(now, fixed=verdict.fixed, **common)
            self._pid_live = False
            return verdict.state
        if self.mode == "manual":
            self.relays = stager.update(now, manual=self.manual, **common)
            self._pid_live = False
            return "manual"
        if verdict.hold_off:
            self.relays = stager.update(now, fixed=0, **common)
            self._pid_live = False
            return verdict.state
        assert pv is not None  # a bad control pressure gives verdict.fixed or stop_all
        for latched in ("filling_failed", "high_pressure_repeated"):
            if self.alarms.unacknowledged(latched):
                # A main that would not fill may be burst; restarts that trip again and
                # again mean a fault the control cannot fix: no pumping until someone looked.
                self.relays = stager.update(now, stop_all=True, **common)
                self._pid_live = False
                return latched
        if not self._pid_live:
            # Bumpless return to automatic: continue from what is running now, or from
            # just enough demand for one pump if nothing runs (pressure is low).
            running = stager.running()
            hold = running - 0.3 if running else 0.0
            self.pid.hold(hold, pv, self.active_setpoint)
            self._pid_live = True
            self._start_filling(now, pv)
        if self._filling_since is not None:
            failed = self._fill(now, pv)
            if failed:
                self.relays = stager.update(now, stop_all=True, **common)
                self._pid_live = False
                return "filling_failed"
        before = stager.running()
        demand = self.pid.update(pv, self.active_setpoint, dt)
        # With a drive leading, a fixed pump goes only once the pressure stands above the
        # setpoint with the drive at its minimum: near the point where one pump at full
        # speed just holds the setpoint, destaging on demand alone would start and stop
        # the fixed pump over and over (the drive's flow is far from linear in speed).
        may_destage = not stager.lead_vfd or pv > self.active_setpoint + VFD_DESTAGE_MARGIN_BAR
        self.relays = stager.update(
            now,
            demand=demand,
            may_destage=may_destage,
            start_ok=self._start_ok,
            sizing=self._sizing,
            **common,
        )
        self._auto_tick = True
        after = stager.running()
        if after != before and not stager.lead_vfd:
            # A whole pump more or less: re-centre the demand in the new stage's band so
            # the integral does not immediately ask for the next change.
            self.pid.hold(after - 0.3 if after else 0.0, pv, self.active_setpoint)
        # With a drive leading, the demand is not re-centred: when a fixed pump starts,
        # the drive's share drops by one pump at once (and rises when one stops), which
        # is what keeps the pressure dip of a stage change small.
        return "filling" if self._filling_since is not None else "auto"

    # -- what the hydraulics allow ------------------------------------------------------

    def _start_check(self, readings: Mapping[str, Reading]) -> StartCheck | None:
        """Refuse a start (for the demand, an exercise or an alternation) that the curves
        say would carry the pressure within ``START_HEADROOM_BAR`` of the cutout at the
        present flow: e.g. a fixed pump at night behind a drive holding a low setpoint.
        Without a readable suction pressure there is nothing to predict from (the
        protections stop the pumps then anyway)."""
        ctl = self.cfg.control
        s_bar = _good(readings, ctl.suction_point)
        if s_bar is None:
            return None
        measured = _good(readings, ctl.flow_point)
        # Without a flow reading, no flow: the shut-off head, the safest bound. That bound
        # only decides an exercise: refusing the demand a pump on it could leave a zone
        # without water all day for a trip that may never come (the cutout still guards).
        flow = measured or 0.0
        pv = _good(readings, ctl.pressure_point)
        limit = cutout_bar(self.cfg, self.active_setpoint) - START_HEADROOM_BAR
        lead = self._running_drives()[:1] if self.stager.lead_vfd else []
        running = [
            (rec.cfg, self._speed_after_a_start(rec, lead))
            for rec in self.stager.pumps.values()
            if rec.on
        ]

        def ok(rec: PumpRecord, exercise: bool) -> bool:
            if measured is None and not exercise:
                return True
            vfd = rec.cfg.vfd
            # A drive starts (and is exercised) at its minimum speed and ramps from there.
            speed = vfd.min_speed_pct / 100.0 if vfd is not None else 1.0
            new_set = [*running, (rec.cfg, speed)]
            bound = max_pressure_bar(new_set, suction_bar=s_bar, flow_m3h=flow, measured_at_bar=pv)
            return bound < limit

        return ok

    def _size(self, readings: Mapping[str, Reading], pv: float | None) -> Sizing | None:
        """Pumps as capacity, not as counts: what a set carries at the setpoint's head
        (drives at full speed) against what the zone needs there. The need is today's
        flow moved to the setpoint by the pressure-dependent demand law (flow ~ p^0.5),
        plus 5 %. Without flow, suction or discharge readings, pumps count as equal."""
        ctl = self.cfg.control
        s = _good(readings, ctl.suction_point)
        q = _good(readings, ctl.flow_point)
        if s is None or q is None or pv is None or pv <= 0:
            return None
        head_m = (self.active_setpoint - s) * BAR_TO_M
        needed = max(q, 0.0) * math.sqrt(self.active_setpoint / pv) * SIZING_MARGIN

        def capacity(pumps: Sequence[PumpRecord]) -> float:
            return set_flow_m3h(
                ((r.cfg, r.cfg.vfd.max_speed_pct / 100.0 if r.cfg.vfd else 1.0) for r in pumps),
                head_m,
            )

        return Sizing(capacity=capacity, needed=needed)

    def _speed_after_a_start(self, rec: PumpRecord, lead: list[str]) -> float:
        vfd = rec.cfg.vfd
        if vfd is None:
            return 1.0
        # The lead drive backs off to its minimum for a pump that starts; others run on.
        return (vfd.min_speed_pct if rec.name in lead else vfd.max_speed_pct) / 100.0

    def _guard_exercise(self, now: float, pv: float | None) -> None:
        """An exercise run ends at once when the pressure climbs half-way from the
        setpoint to the cutout (or cannot be read): exercising is never worth a trip."""
        if not any(rec.exercise_until is not None for rec in self.stager.pumps.values()):
            return
        limit = cutout_bar(self.cfg, self.active_setpoint)
        if pv is None or pv >= (self.active_setpoint + limit) / 2:
            for name in self.stager.end_exercise(now):
                self.relays[name] = False

    def _watch_service(self, now: float, pv: float | None) -> None:
        """No silent loss of service: the pressure stands ``low_pressure.margin_bar``
        below the setpoint for ``delay_s`` in automatic, and no pump can start (start
        budget, minimum off time, lockouts, the running cap, the curves): say why."""
        lp = self.cfg.protections.low_pressure
        low = (
            self.mode == "auto"
            and self.state in ("auto", "filling", "low_flow")
            and pv is not None
            and pv < self.active_setpoint - lp.margin_bar
        )
        # The delay counts from when the pressure fell low, not from when starting became
        # impossible: a start that was only pending (a stage-up delay) must not restart it.
        why = self.stager.cannot_start(now, self._start_ok) if low else None
        held = self._no_service.held(low, now, lp.delay_s) and why is not None
        self.alarms.set(
            "no_pump_available",
            held,
            now,
            severity="critical",
            message=f"pressure {pv:.2f} bar, below the setpoint, and no pump can start: {why}"
            if held and pv is not None
            else "",
        )

    # -- station power ----------------------------------------------------------------

    def _watch_power(self, now: float, pv: float | None) -> None:
        """A station power loss (every running pump's feedback gone at once) is an alarm,
        not a pump fault. Its start and its end both send automatic control back through
        its bumpless start; when the power returns to a network that drained meanwhile,
        it is filled first (where configured), as after any outage: judged by the lowest
        pressure seen without power, since the pump that proved the power back has
        already lifted it."""
        lost = self.stager.power_lost_since is not None
        if lost and pv is not None:
            self._dark_pv = pv if self._dark_pv is None else min(self._dark_pv, pv)
        self.alarms.set(
            "power_lost",
            lost,
            now,
            severity="major",
            message="run feedback lost on every running pump at once: grid or contactor "
            "supply failed; pumps restart by themselves when it returns",
        )
        if lost != self._power_lost:
            self._power_lost = lost
            self._pid_live = False
            if not lost and self._dark_pv is not None and self.mode == "auto":
                self._start_filling(now, self._dark_pv)
            self._dark_pv = None
        if lost and self.state in ("auto", "filling"):
            self.state = "power_lost"

    # -- pipe filling ---------------------------------------------------------------------

    def _start_filling(self, now: float, pv: float) -> None:
        fill = self.cfg.control.filling
        if fill is None or pv >= fill.empty_below_bar:
            return
        self._filling_since = now
        self._fill_from = pv
        self._fill_capped_since = None
        self.pid.set_limits(0.0, float(min(fill.max_pumps, self.stager.max_running)))

    def _fill(self, now: float, pv: float) -> bool:
        """Ramp the setpoint up from where the network stood; True when filling failed.

        Filling ends when the ramp has reached the setpoint and either the pressure is
        near it or the pumps allowed for filling are flat out (the network is full; the
        demand needs more pumps, which normal control adds). It fails when, after
        ``max_s``, the network still stands empty: a burst main never fills.
        """
        fill = self.cfg.control.filling
        assert fill is not None
        assert self._filling_since is not None
        elapsed = now - self._filling_since
        ramp = self._fill_from + fill.ramp_bar_per_min / 60.0 * elapsed
        ramping = ramp < self.active_setpoint
        if ramping:
            # From the lowest setpoint allowed, never below: the filling ramp is a stage
            # of the setpoint like any other, and the controlled setpoint always lies
            # in the configured range (a single pump at most still makes filling gentle).
            self.active_setpoint = self.bounded(ramp)
        capped = self.pid.output >= self.pid.out_max - 1e-6
        self._fill_capped_since = (
            (self._fill_capped_since if self._fill_capped_since is not None else now)
            if capped and not ramping
            else None
        )
        near = pv >= self.active_setpoint - fill.filled_below_bar
        full = (
            pv >= fill.empty_below_bar  # it holds pressure: not a burst main
            and self._fill_capped_since is not None
            and now - self._fill_capped_since >= 30.0
        )
        if not ramping and (near or full):
            self._end_filling()
            return False
        if elapsed <= fill.max_s or pv >= fill.empty_below_bar:
            return False
        self._end_filling()
        self.alarms.set(
            "filling_failed",
            True,
            now,
            severity="critical",
            message=f"network still empty after {fill.max_s:.0f} s (burst main?): pumps stopped",
            latched=True,
        )
        return True

    def _end_filling(self) -> None:
        self._filling_since = None
        self.pid.set_limits(0.0, float(self.stager.max_running))

    # -- pressure management --------------------------------------------------------------

    def bounded(self, bar: float) -> float:
        """``bar`` as a setpoint that may be controlled to: finite and inside
        ``setpoint_min_bar``..``setpoint_max_bar``, whatever stage produced it."""
        ctl = self.cfg.control
        if not math.isfinite(bar):
            bar = self.setpoint if math.isfinite(self.setpoint) else ctl.setpoint_bar
        return min(max(bar, ctl.setpoint_min_bar), ctl.setpoint_max_bar)

    def _managed_setpoint(self, now: float, readings: Mapping[str, Reading]) -> float:
        if self.cfg.control.pressure_management is None:
            return self.setpoint
        flow = None
        if self.cfg.control.flow_point:
            r = readings.get(self.cfg.control.flow_point)
            flow = r.value if r is not None and r.good else None
        weekday, hour = self.local_time()
        return self.manager.update(now, self.setpoint, weekday=weekday, hour=hour, flow_m3h=flow)

    # -- drives ---------------------------------------------------------------------------

    def _check_drives(self, now: float, readings: Mapping[str, Reading]) -> None:
        """Drive trips lock their pump out; lost drive communication falls back to relays."""
        live = False
        for name, pcfg in self.cfg.pumps.items():
            vfd = pcfg.vfd
            if vfd is None:
                continue
            tripped = False
            if vfd.fault_point is not None:
                r = readings.get(vfd.fault_point)
                tripped = r is not None and r.good and bool(r.value)
            if tripped:
                self.stager.lock_out(name, "drive tripped", now)
                self._faulted.add(name)
            talking = all(
                (r := readings.get(point)) is not None and r.good
                for point in (vfd.speed_point, vfd.frequency_point, vfd.fault_point)
                if point is not None
            )
            self.alarms.set(
                f"drive_comms_{name}",
                not talking and not self._starting(now),
                now,
                severity="major",
                message=f"drive of {name} not answering: staging fixed-speed",
            )
            live = live or (talking and not self.stager.pumps[name].locked)
        if live != self.stager.lead_vfd:
            self.stager.lead_vfd = live
            # Continuous control with a drive; a deadband only for fixed-speed steps.
            self.pid.deadband = 0.0 if live else self.cfg.control.pid.deadband_bar

    def _starting(self, now: float) -> bool:
        return now - self.protections.started < self.cfg.protections.power_on_delay_s

    def _hand_over(
        self,
        now: float,
        was_on: Mapping[str, bool],
        pv: float | None,
        readings: Mapping[str, Reading],
    ) -> None:
        """Destage behind a drive without a dip: the fixed pump keeps running while the
        lead drive ramps up to carry its flow, then stops.

        A fixed pump is destaged when the pressure stands above the setpoint with the
        drive at its minimum speed, where the PID output has wound down. Stopping it
        there left the zone short of a whole pump's flow for the drive's ramp time and
        the PID's reaction (a 0.9 bar dip on the diurnal day). Now the stager's decision
        stands (its timers and start counts are unchanged) but the relay opens later;
        meanwhile the demand is held where the lead runs at full speed in place of the
        pump, so the drive has ramped up when the pump stops, and the PID trims it down
        from there. With the drive's output frequency read back, the pump stops once
        the drive is within 5 % of full speed (at most ``DESTAGE_HANDOVER_MAX_S``), so a
        drive slower than its ``ramp_s`` says is waited for and a faster one is not;
        without it, after the drive's ``ramp_s``. Anything but automatic control on a live
        drive (a protection, a lockout, manual, off) ends every hand-over at once: the
        relay opens now.
        """
        if not self.handover and not self._auto_tick:
            return
        drives = self._running_drives()
        lead = drives[0] if drives else None
        vfd = self.cfg.pumps[lead].vfd if lead is not None else None
        live = self._auto_tick and self.stager.lead_vfd and pv is not None
        if not live or vfd is None or not vfd.ramp_s:
            self._end_hand_overs(now)
            return
        freq = readings.get(vfd.frequency_point) if vfd.frequency_point else None
        full_speed = vfd.max_speed_pct / 100.0
        if freq is not None and freq.good and freq.value is not None:
            hold_s = DESTAGE_HANDOVER_MAX_S
            up_to_speed = freq.value / vfd.rated_hz >= 0.95 * full_speed
        else:
            hold_s = min(vfd.ramp_s, DESTAGE_HANDOVER_MAX_S)
            up_to_speed = False
        for name, before in was_on.items():
            rec = self.stager.pumps[name]
            if before and not rec.on and rec.cfg.vfd is None and not rec.locked:
                self.handover.setdefault(name, now + hold_s)
        cap = self.stager.max_running
        for name, until in list(self.handover.items()):
            rec = self.stager.pumps[name]
            # Never more pumps at once than the cap (the standby stays standby): a swap
            # that starts another pump as this one stops is no destage to hand over.
            over_cap = sum(self.relays.values()) + 1 > cap
            if rec.on or rec.locked or now >= until or over_cap or up_to_speed:
                self._end_hand_overs(now, name)
            else:
                self.relays[name] = True
        if self.handover and pv is not None:
            others = sum(
                1 for n, on in self.relays.items() if on and n != lead and n not in self.handover
            )
            self.pid.hold(others + full_speed, pv, self.active_setpoint)

    def _end_hand_overs(self, now: float, *names: str) -> None:
        """The relays of these hand-overs (all, without names) open now: a pump's
        minimum off time counts from its real stop, not from the stager's decision."""
        for name in names or list(self.handover):
            del self.handover[name]
            rec = self.stager.pumps.get(name)
            if rec is not None and not rec.on:
                rec.changed_at = now

    def _running_drives(self) -> list[str]:
        """The drives switched on, the lead (the first started) first."""
        return sorted(
            (n for n, p in self.cfg.pumps.items() if p.vfd is not None and self.relays.get(n)),
            key=lambda n: self.stager.pumps[n].started_at,
        )

    def _speeds(self, now: float, feedback: Mapping[str, bool | None]) -> dict[str, float]:
        """Speed of each drive. The lead (the running drive that started first) takes the
        demand left after the other running pumps; a second drive runs flat out like a
        fixed-speed pump, so the cascade is the same with one drive or several.

        A pump counts only once it runs (its feedback closed, or, without a feedback
        input, a few seconds after its start): until then the lead carries its share,
        so a stage change does not dip the pressure while a contactor closes.
        """
        out = {n: 0.0 for n, p in self.cfg.pumps.items() if p.vfd is not None}
        running = self._running_drives()
        if not running:
            return out
        live = self.stager.lead_vfd and self._pid_live
        lead = running[0]
        others = 0
        for n, on in self.relays.items():
            if not on or n == lead or n in self.handover:
                continue
            fb = feedback.get(n)
            started = self.stager.pumps[n].started_at
            others += fb is True or (fb is None and now - started >= HANDOVER_S)
        for n in running:
            vfd = self.cfg.pumps[n].vfd
            assert vfd is not None
            if live and n == lead:
                share = self.pid.output - others
                out[n] = min(max(share, vfd.min_speed_pct / 100.0), vfd.max_speed_pct / 100.0)
            elif self.stager.pumps[n].exercise_until is not None:
                out[n] = vfd.min_speed_pct / 100.0  # an exercise turns it, gently
            else:
                # A second drive, or no live speed control (drive silent, manual,
                # emergency): flat out, as a fixed-speed pump would run.
                out[n] = vfd.max_speed_pct / 100.0
        return out

    # -- commands -------------------------------------------------------------------------

    def set_setpoint(self, bar: float) -> None:
        ctl = self.cfg.control
        if not isinstance(bar, (int, float)) or isinstance(bar, bool) or not math.isfinite(bar):
            raise CommandRejected("setpoint must be a finite number of bar")
        if not ctl.setpoint_min_bar <= bar <= ctl.setpoint_max_bar:
            raise CommandRejected(
                f"setpoint {bar} bar is outside the allowed "
                f"{ctl.setpoint_min_bar}-{ctl.setpoint_max_bar} bar"
            )
        self.setpoint = float(bar)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise CommandRejected(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "manual" and self.mode != "manual":
            # Manual starts from what runs now: switching mode never switches a pump.
            self.manual = {name: rec.on for name, rec in self.stager.pumps.items()}
        self.mode = mode

    def pump(self, name: str, on: bool) -> None:
        if name not in self.stager.pumps:
            raise CommandRejected(f"no pump {name!r}; pumps: {', '.join(self.stager.pumps)}")
        if self.mode != "manual":
            raise CommandRejected(f"pump commands need manual mode (mode is {self.mode})")
        rec = self.stager.pumps[name]
        if on and rec.locked:
            raise CommandRejected(f"{name} is locked out ({rec.locked}); acknowledge first")
        self.manual[name] = bool(on)

    def set_pressure_management(self, data: Mapping[str, Any] | None) -> None:
        """SCADA's new schedule / flow compensation (None: back to the fixed setpoint).

        Validated like the station file; lasts until the file is reloaded.
        """
        ctl = self.cfg.control
        pm = None
        if data is not None:
            try:
                pm = PressureManagementConfig.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"]) or "pressure_management"
                raise CommandRejected(f"{where}: {first['msg']}") from None
            for entry in pm.schedule:
                if not ctl.setpoint_min_bar <= entry.setpoint_bar <= ctl.setpoint_max_bar:
                    raise CommandRejected(
                        f"schedule setpoint {entry.setpoint_bar} bar at {entry.at} is outside "
                        f"the allowed {ctl.setpoint_min_bar}-{ctl.setpoint_max_bar} bar"
                    )
            if pm.flow_compensation is not None and ctl.flow_point is None:
                raise CommandRejected("flow compensation needs a flow point in the station file")
        control = ctl.model_copy(update={"pressure_management": pm})
        self.cfg = self.cfg.model_copy(update={"control": control})
        self.manager = SetpointManager(control)

    def ack(self, alarm_id: str | None = None) -> list[str]:
        """Acknowledge latched alarms. A pump lockout acknowledged is reset now if its
        cause is gone (the motor protection or the drive no longer reports a fault), else
        as soon as it goes: acknowledging never restarts a pump whose fault persists."""
        now = self._last if self._last is not None else 0.0
        if alarm_id is not None and not self.alarms.is_active(alarm_id):
            raise CommandRejected(f"no active alarm {alarm_id!r}")
        for rec in self.stager.pumps.values():
            aid = f"pump_lockout_{rec.name}"
            if rec.locked and (alarm_id is None or alarm_id == aid):
                self._reset_when_clear.add(rec.name)
        self._reset_cleared_lockouts(now)
        return self.alarms.ack(now, alarm_id)

    def _reset_cleared_lockouts(self, now: float) -> None:
        for name in list(self._reset_when_clear):
            rec = self.stager.pumps.get(name)
            if rec is None or not rec.locked:
                self._reset_when_clear.discard(name)
            elif name not in self._faulted:
                self.stager.reset_lockout(name)
                self.alarms.set(f"pump_lockout_{name}", False, now)
                self._reset_when_clear.discard(name)

    # -- reload, status, persistence --------------------------------------------------------

    def reconfigure(self, cfg: StationConfig, *, now: float) -> None:
        """A new station file: keep pump states, run hours and the PID's output.

        The setpoint follows the file when the file's setpoint changed (the technician
        edited it); otherwise a setpoint SCADA set stays, if still inside the new range.
        """
        old_setpoint = self.cfg.control.setpoint_bar
        self.cfg = cfg
        self.manager = SetpointManager(cfg.control)
        self.stager.reconfigure(cfg.pumps, cfg.control.staging)
        self.protections.cfg = cfg
        pid = cfg.control.pid
        self.pid.set_limits(0.0, float(self.stager.max_running))
        self.pid.ramp_bar_per_s = pid.setpoint_ramp_bar_per_s
        self.pid.derivative_filter_s = pid.derivative_filter_s
        self.pid.deadband = pid.deadband_bar
        self.pid.set_gains(pid.kp, pid.ki, pid.kd, self.pid._last_pv)
        ctl = cfg.control
        in_range = ctl.setpoint_min_bar <= self.setpoint <= ctl.setpoint_max_bar
        if ctl.setpoint_bar != old_setpoint or not in_range:
            self.setpoint = ctl.setpoint_bar
        # A destage hand-over in progress ends here (its pump may be gone from the file).
        self._end_hand_overs(now)
        self.relays = {name: rec.on for name, rec in self.stager.pumps.items()}

    def snapshot(self) -> dict[str, Any]:
        now = self._last if self._last is not None else 0.0
        pumps = {}
        for name, rec in self.stager.pumps.items():
            rec.prune(now)
            pumps[name] = {
                "running": rec.on,
                "run_hours": round(rec.run_s / 3600.0, 3),
                "starts_last_hour": len(rec.starts),
                "starts_total": rec.starts_total,
                "locked_out": rec.locked,
                "state": pump_state(rec),
            }
            if name in self.speeds:
                pumps[name]["speed_pct"] = round(100 * self.speeds[name], 1)
        return {
            "mode": self.mode,
            "setpoint_bar": self.active_setpoint,
            "base_setpoint_bar": self.setpoint,
            "state": self.state,
            "demand": round(self.pid.output, 3),
            "pumps": pumps,
            "alarms": [a.as_dict() for a in self.alarms.active()],
            "pressure_management": pm.model_dump()
            if (pm := self.cfg.control.pressure_management)
            else None,
        }

    def export_state(self) -> dict[str, Any]:
        """What survives a restart. Motor history (how long ago each start was, how long
        each stopped pump had been off) is kept as ages, not clock times: a Pi may boot
        without a set clock, and the monotonic clock starts again at every boot."""
        now = self._last if self._last is not None else self.protections.started
        self.stager.station_can_start(now)  # prunes the rolling hour before it is saved
        return {
            "mode": self.mode,
            "setpoint_bar": self.setpoint,
            "manual": dict(self.manual),
            "pumps": {
                name: {
                    "run_s": rec.run_s,
                    "starts_total": rec.starts_total,
                    "starts_age_s": [now - t for t in rec.starts],
                    "off_for_s": None if rec.on else min(now - rec.changed_at, HOUR_S),
                    "locked": rec.locked,
                }
                for name, rec in self.stager.pumps.items()
            },
            "station_starts_age_s": [now - t for t in self.stager.station_starts],
            "alarms": self.alarms.export(),
        }

    def restore_state(self, data: Mapping[str, Any]) -> None:
        """Run hours and totals survive restarts; mode and setpoint only when still valid.

        The motor limits survive too, conservatively: the time the station was down is
        not known, so it is taken as none. Every start of the saved hour counts as that
        much before this boot, a pump that was running counts as stopped at this boot
        (it stopped when the power went, at or after the save), one that was off as off
        since its saved age. So a power cut that reboots the Pi never restarts a pump
        inside its minimum off time, nor past its starts per hour. Lockouts and active
        alarms survive as well: a latched lockout waits for a technician whatever the
        power did, and an alarm SCADA was told of is cleared, never forgotten."""
        boot = self.protections.started
        for name, saved in dict(data.get("pumps", {})).items():
            rec = self.stager.pumps.get(name)
            if rec is None or not isinstance(saved, Mapping):
                continue
            rec.run_s = _age(saved.get("run_s"), limit=math.inf) or 0.0
            total = saved.get("starts_total")
            rec.starts_total = total if isinstance(total, int) and total >= 0 else 0
            rec.starts = deque(sorted(boot - a for a in _ages(saved.get("starts_age_s"))))
            off_for = _age(saved.get("off_for_s"))
            rec.changed_at = boot if off_for is None else boot - off_for
            locked = saved.get("locked")
            if isinstance(locked, str) and locked:
                rec.locked = locked[:200]  # latched until a technician acknowledges
        self.stager.station_starts = deque(
            sorted(boot - a for a in _ages(data.get("station_starts_age_s")))
        )
        self.alarms.restore(data.get("alarms"), boot)
        mode = data.get("mode")
        if mode in MODES:
            self.mode = str(mode)
        manual = data.get("manual")
        if self.mode == "manual" and isinstance(manual, dict):
            # What the operator had switched on by hand: a pump still in the file and
            # not locked out starts again after the restart's power-on delay.
            self.manual = {
                name: on is True
                for name, on in manual.items()
                if name in self.stager.pumps and not self.stager.pumps[name].locked
            }
        setpoint = data.get("setpoint_bar")
        if isinstance(setpoint, (int, float)):
            with contextlib.suppress(CommandRejected):
                self.set_setpoint(float(setpoint))

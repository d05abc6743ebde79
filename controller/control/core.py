"""The control core: the one object the daemon calls every tick.

``step`` takes the freshest readings and pump inputs and returns the relay states,
through these stages, in this order::

    setpoint      the operator's base, managed (schedule, flow), bounded    setpoint.py
    protections   what is allowed: stop all, a fixed count, hold off, normal protections.py
    drives        drive trips and comms; which drive leads                  drives.py
    mode          off / manual / automatic -> one directive for the stager  (here)
      filling     a drained network: the setpoint ramps, few pumps          filling.py
      PID         pressure error -> demand in pumps                         pid.py
    stager        the directive -> relays, within every motor limit         stager.py
    supervision   exercise guard, loss of service                           supervision.py
    drives        destage hand-over, drive speeds                           drives.py
    supervision   station power                                             supervision.py
    alarms        pump lockouts                                             alarms.py

Commands from SCADA, the HMI or the local socket reach the methods below through the
command processor (``controller.telemetry.commands``), their values already validated
against ``control``; they change the mode or the setpoint, never a protection: ``step``
applies the protections after the mode, every tick.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.config.schema import ControlConfig, PressureManagementConfig, StationConfig
from controller.control import hydraulics
from controller.control.alarms import AlarmEvent, Alarms
from controller.control.commands import MODES, PUMP_MODES, CommandRejected
from controller.control.drives import DriveCascade
from controller.control.filling import FillOutcome, PipeFilling
from controller.control.pid import Pid
from controller.control.protections import Protections, Verdict
from controller.control.setpoint import LocalTime, SetpointManager, wall_clock
from controller.control.stager import (
    Demand,
    Directive,
    Fixed,
    Manual,
    PumpRecord,
    Sizing,
    Stager,
    StartCheck,
    StopAll,
)
from controller.control.supervision import PowerWatch, ServiceWatch, guard_exercise
from controller.values import BadReason, PumpInputs, Reading

__all__ = [
    "MODES",
    "PUMP_MODES",
    "CommandRejected",
    "ControlCore",
    "ControlOutputs",
    "PumpInputs",
    "pump_state",
]

VFD_DESTAGE_MARGIN_BAR = 0.15
#: Latched alarms that keep every pump off until acknowledged: a main that would not
#: fill may be burst; restarts that trip again and again mean a fault the control
#: cannot fix.
HOLD_OFF_UNTIL_ACK = ("filling_failed", "high_pressure_repeated")


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
    """``locked out``, ``out of service``, ``exercising``, ``running`` or ``ready``: as
    SCADA and the HMI show it."""
    if rec.locked:
        return "locked out"
    if rec.out_of_service:
        return "out of service"
    if rec.exercise_until is not None:
        return "exercising"
    return "running" if rec.on else "ready"


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


@functools.cache
def _pump_alarm_ids(name: str) -> tuple[str, str]:
    """A pump's lockout and switched-Off alarm ids (built once: this runs every tick)."""
    return f"pump_lockout_{name}", f"pump_off_{name}"


def _term(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


class ControlCore:
    def __init__(
        self, cfg: StationConfig, *, now: float, local_time: LocalTime | None = None
    ) -> None:
        self.cfg = cfg
        self.mode = "auto"
        self.setpoint = cfg.control.setpoint_bar  # the operator's (or SCADA's) base
        self.manager = SetpointManager(cfg.control)
        #: the setpoint actually controlled to: the base, or the managed one
        self.active_setpoint = self.setpoint
        #: (weekday 0=Monday, hour of day) in the station's time zone, for schedules:
        #: the wall clock unless given (the simulator gives its own clock).
        self.local_time: LocalTime = local_time or wall_clock(cfg.site.timezone)
        self.alarms = Alarms()
        self.protections = Protections(cfg, now=now)
        self.stager = Stager(cfg.pumps, cfg.control.staging, now=now)
        self.pid = Pid.from_config(cfg.control.pid, out_max=float(self.stager.max_running))
        self.drives = DriveCascade(cfg, stager=self.stager, pid=self.pid, alarms=self.alarms)
        self.filling = PipeFilling()
        self.service = ServiceWatch()
        self.power = PowerWatch()
        self.manual: dict[str, bool] = {}
        self.state = "starting"
        self._last: float | None = None
        self._pid_live = False  # False when the PID did not drive the last tick
        self.relays: dict[str, bool] = dict.fromkeys(cfg.pumps, False)
        #: Pumps whose fault (motor protection, drive trip) is reported this tick.
        self._faulted: set[str] = set()
        #: Lockouts acknowledged while their fault persisted: reset once it is gone.
        self._reset_when_clear: set[str] = set()

    # -- the tick -------------------------------------------------------------------------

    def step(
        self,
        now: float,
        readings: Mapping[str, Reading],
        pumps: Mapping[str, PumpInputs],
    ) -> ControlOutputs:
        """One tick: the stages of the module docstring, in that order."""
        dt = self.cfg.control.tick_s if self._last is None else now - self._last
        self._last = now
        readings = _finite_only(readings)
        pv = hydraulics.good(readings, self.cfg.control.pressure_point)
        feedback = {name: p.feedback for name, p in pumps.items()}
        fault = {name: p.fault for name, p in pumps.items()}

        # Setpoint and protections; drive health; what the curves allow.
        verdict = self._protect(now, readings)
        self._faulted = {name for name, p in pumps.items() if p.fault}
        self._faulted |= self.drives.check(now, readings, starting=self._starting(now))
        self._reset_cleared_lockouts(now)
        # Pumps running for the demand: the end of an exercise run is no destage.
        was_on = {n: rec.on and rec.exercise_until is None for n, rec in self.stager.pumps.items()}
        start_ok, sizing = self._what_the_hydraulics_allow(readings, pv)

        # Mode (filling, PID) -> one directive -> the stager's relays.
        directive, self.state = self._decide(now, dt, verdict, pv, start_ok=start_ok, sizing=sizing)
        before = self.stager.running()
        no_lift = hydraulics.no_lift(
            self.cfg, readings, pv=pv, pumps=list(self.stager.pumps.values()), now=now
        )
        self.relays = self.stager.update(
            now, directive, feedback=feedback, fault=fault, no_lift=no_lift
        )
        automatic = isinstance(directive, Demand)
        if automatic:
            self._recentre(before, pv)

        # Supervision, the drive cascade, station power, lockout alarms.
        self._supervise(now, pv, start_ok)
        self.relays = self.drives.hand_over(
            now,
            self.relays,
            was_on=was_on,
            pv=pv,
            readings=readings,
            automatic=automatic,
            setpoint=self.active_setpoint,
        )
        self._watch_power(now, pv)
        speeds = self.drives.update_speeds(now, self.relays, feedback, pid_live=self._pid_live)
        self._alarm_pumps(now)
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

    # -- stages -------------------------------------------------------------------------

    def _protect(self, now: float, readings: Mapping[str, Reading]) -> Verdict:
        """The setpoint to control to this tick, then what the protections allow."""
        running = self.stager.running()
        self.active_setpoint = self.bounded(self._managed_setpoint(now, readings))
        return self.protections.update(
            now,
            readings,
            setpoint=self.active_setpoint,
            running=running,
            alarms=self.alarms,
            starts_left=self.stager.starts_left(now),
        )

    def _what_the_hydraulics_allow(
        self, readings: Mapping[str, Reading], pv: float | None
    ) -> tuple[StartCheck | None, Sizing | None]:
        start_ok = hydraulics.start_check(
            self.cfg,
            readings,
            setpoint=self.active_setpoint,
            pumps=list(self.stager.pumps.values()),
            lead=self.drives.lead(self.relays),
        )
        sizing = hydraulics.sizing(self.cfg, readings, pv=pv, setpoint=self.active_setpoint)
        return start_ok, sizing

    def _decide(
        self,
        now: float,
        dt: float,
        verdict: Verdict,
        pv: float | None,
        *,
        start_ok: StartCheck | None,
        sizing: Sizing | None,
    ) -> tuple[Directive, str]:
        """Mode and protections: what the stager is told, and the state to report."""
        if verdict.stop_all or self.mode == "off":
            return self._without_pid(StopAll(), verdict.state if verdict.stop_all else "off")
        if verdict.fixed is not None:
            return self._without_pid(Fixed(verdict.fixed), verdict.state)
        if self.mode == "manual":
            return self._without_pid(Manual(self.manual), "manual")
        if verdict.hold_off:
            return self._without_pid(Fixed(0), verdict.state)
        assert pv is not None  # a bad control pressure gives verdict.fixed or stop_all
        for latched in HOLD_OFF_UNTIL_ACK:
            if self.alarms.unacknowledged(latched):
                return self._without_pid(StopAll(), latched)
        return self._automatic(now, dt, pv, start_ok=start_ok, sizing=sizing)

    def _without_pid(self, directive: Directive, state: str) -> tuple[Directive, str]:
        self._pid_live = False
        return directive, state

    def _automatic(
        self,
        now: float,
        dt: float,
        pv: float,
        *,
        start_ok: StartCheck | None,
        sizing: Sizing | None,
    ) -> tuple[Directive, str]:
        """Filling, then the PID: the demand for the stager."""
        # Leaving the low-flow stop: the pressure is at the band's restart point.
        restart = self.state == "low_flow" and self.stager.running() == 0
        if not self._pid_live:
            # Bumpless return to automatic: continue from what is running now, or from
            # just enough demand for one pump if nothing runs (pressure is low); after
            # the low-flow stop, from the one pump that restarts now.
            running = 1 if restart else self.stager.running()
            self.pid.hold(running - 0.3 if running else 0.0, pv, self.active_setpoint)
            self._pid_live = True
            self._start_filling(now, pv)
        if self.filling.active and self._fill(now, pv) is FillOutcome.FAILED:
            return self._without_pid(StopAll(), "filling_failed")
        demand = self.pid.update(pv, self.active_setpoint, dt)
        # With a drive leading, a fixed pump goes only once the pressure stands above the
        # setpoint with the drive at its minimum: near the point where one pump at full
        # speed just holds the setpoint, destaging on demand alone would start and stop
        # the fixed pump over and over (the drive's flow is far from linear in speed).
        may_destage = not self.stager.lead_vfd or pv > self.active_setpoint + VFD_DESTAGE_MARGIN_BAR
        state = "filling" if self.filling.active else "auto"
        directive = Demand(
            demand, may_destage=may_destage, start_ok=start_ok, sizing=sizing, restart=restart
        )
        return directive, state

    def _recentre(self, before: int, pv: float | None) -> None:
        """A whole pump more or less: re-centre the demand in the new stage's band so the
        integral does not immediately ask for the next change. With a drive leading the
        demand is not re-centred: when a fixed pump starts, the drive's share drops by
        one pump at once (and rises when one stops), which is what keeps the pressure
        dip of a stage change small."""
        after = self.stager.running()
        if after != before and not self.stager.lead_vfd:
            self.pid.hold(after - 0.3 if after else 0.0, pv, self.active_setpoint)

    def _supervise(self, now: float, pv: float | None, start_ok: StartCheck | None) -> None:
        for name in guard_exercise(
            now, pv, cfg=self.cfg, setpoint=self.active_setpoint, stager=self.stager
        ):
            self.relays[name] = False
        self.service.update(
            now,
            pv,
            automatic=self.mode == "auto" and self.state in ("auto", "filling", "low_flow"),
            setpoint=self.active_setpoint,
            cfg=self.cfg.protections.low_pressure,
            stager=self.stager,
            start_ok=start_ok,
            alarms=self.alarms,
        )

    def _watch_power(self, now: float, pv: float | None) -> None:
        """A station power loss is an alarm, not a pump fault. Its start and its end both
        send automatic control back through its bumpless start; when the power returns to
        a network that drained meanwhile, it is filled first (where configured), as after
        any outage: judged by the lowest pressure seen without power, since the pump that
        proved the power back has already lifted it."""
        lost = self.stager.power_lost_since is not None
        change = self.power.update(now, pv, lost=lost, alarms=self.alarms)
        if change is not None:
            self._pid_live = False
            if change.restored and change.dark_pv is not None and self.mode == "auto":
                self._start_filling(now, change.dark_pv)
        if lost and self.state in ("auto", "filling"):
            self.state = "power_lost"

    def _alarm_pumps(self, now: float) -> None:
        """Lockouts (latched, major) and pumps switched Off (a warning while they are)."""
        for lock in self.stager.take_lockouts():
            self.alarms.set(
                f"pump_lockout_{lock.pump}",
                True,
                now,
                severity="major",
                message=f"{lock.pump} locked out: {lock.reason}",
                latched=True,
            )
        for name, rec in self.stager.pumps.items():
            lockout_id, off_id = _pump_alarm_ids(name)
            if not rec.locked:
                self.alarms.set(lockout_id, False, now)
            if rec.out_of_service:
                self.alarms.set(
                    off_id,
                    True,
                    now,
                    severity="warning",
                    message=f"{name} switched Off (out of service): control does not start it",
                )
            else:
                self.alarms.set(off_id, False, now)

    def _starting(self, now: float) -> bool:
        return now - self.protections.started < self.cfg.protections.power_on_delay_s

    # -- pipe filling ---------------------------------------------------------------------

    def _start_filling(self, now: float, pv: float) -> None:
        fill = self.cfg.control.filling
        if fill is not None and self.filling.start(now, pv, fill):
            self.pid.set_limits(0.0, float(min(fill.max_pumps, self.stager.max_running)))

    def _fill(self, now: float, pv: float) -> FillOutcome:
        fill = self.cfg.control.filling
        assert fill is not None
        step = self.filling.update(
            now,
            pv,
            setpoint=self.active_setpoint,
            floor_bar=self.cfg.control.setpoint_min_bar,
            capped=self.pid.output >= self.pid.out_max - 1e-6,
            cfg=fill,
        )
        self.active_setpoint = step.setpoint
        if step.outcome is not FillOutcome.FILLING:
            self.pid.set_limits(0.0, float(self.stager.max_running))
        if step.outcome is FillOutcome.FAILED:
            self.alarms.set(
                "filling_failed",
                True,
                now,
                severity="critical",
                message=f"network still empty after {fill.max_s:.0f} s (burst main?): "
                "pumps stopped",
                latched=True,
            )
        return step.outcome

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
        flow = hydraulics.good(readings, self.cfg.control.flow_point)
        weekday, hour = self.local_time()
        return self.manager.update(now, self.setpoint, weekday=weekday, hour=hour, flow_m3h=flow)

    # -- commands -------------------------------------------------------------------------

    # Values arrive validated by the command processor (controller/telemetry/commands.py)
    # against ``control``; what depends on the core's own state is refused here.

    @property
    def control(self) -> ControlConfig:
        """The control section in force: what the command processor validates against."""
        return self.cfg.control

    def set_setpoint(self, bar: float) -> None:
        """A validated base setpoint (finite, inside the range of ``control``), bar."""
        self.setpoint = float(bar)

    def set_mode(self, mode: str) -> None:
        """A validated mode (one of ``MODES``)."""
        if mode == "manual" and self.mode != "manual":
            # Manual starts from what runs now: switching mode never switches a pump.
            self.manual = {name: rec.on for name, rec in self.stager.pumps.items()}
        self.mode = mode

    def _pump_named(self, name: str) -> PumpRecord:
        rec = self.stager.pumps.get(name)
        if rec is None:
            raise CommandRejected(f"no pump {name!r}; pumps: {', '.join(self.stager.pumps)}")
        return rec

    def pump(self, name: str, on: bool) -> None:
        """The operator's start or stop of one pump, in manual mode (the Hand of its
        Hand-Off-Auto)."""
        rec = self._pump_named(name)
        if self.mode != "manual":
            raise CommandRejected(f"pump commands need manual mode (mode is {self.mode})")
        if on and rec.locked:
            raise CommandRejected(f"{name} is locked out ({rec.locked}); acknowledge first")
        if on and rec.out_of_service:
            raise CommandRejected(
                f"{name} is switched Off (out of service); switch it to Auto first"
            )
        self.manual[name] = bool(on)

    def pump_mode(self, name: str, mode: str) -> None:
        """A validated pump mode (one of ``PUMP_MODES``), in any station mode: ``off``
        takes the pump out of service (it stops now, minimum run time or not, and nothing
        starts it), ``auto`` gives it back to the station's control. A protection is not
        a pump mode: none is defeated by either."""
        rec = self._pump_named(name)
        now = self._last if self._last is not None else self.protections.started
        off = mode == "off"
        self.stager.set_out_of_service(name, off, now)
        if off:
            self.manual[name] = False
            if name in self.drives.handover:
                self.drives.end_hand_overs(now, name)  # its relay opens now too
        self.relays[name] = rec.on

    def set_pressure_management(self, pm: PressureManagementConfig | None) -> None:
        """SCADA's new schedule / flow compensation, validated (None: back to the fixed
        setpoint). Lasts until the file is reloaded."""
        control = self.cfg.control.model_copy(update={"pressure_management": pm})
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
        self.protections.reconfigure(cfg)
        self.pid.set_limits(0.0, float(self.stager.max_running))
        self.pid.retune(cfg.control.pid, deadband=self.drives.deadband_bar(cfg))
        ctl = cfg.control
        in_range = ctl.setpoint_min_bar <= self.setpoint <= ctl.setpoint_max_bar
        if ctl.setpoint_bar != old_setpoint or not in_range:
            self.setpoint = ctl.setpoint_bar
        self.drives.reconfigure(cfg, now)
        self.relays = {name: rec.on for name, rec in self.stager.pumps.items()}

    def status(self) -> dict[str, Any]:
        """The core's status as a dict (``controller.state.build.station_status`` types it)."""
        now = self._last if self._last is not None else 0.0
        speeds = self.drives.speeds
        pumps = {}
        for name, rec in self.stager.pumps.items():
            rec.prune(now)
            pumps[name] = {
                "running": rec.on,
                "run_hours": round(rec.run_s / 3600.0, 3),
                "starts_last_hour": len(rec.starts),
                "starts_total": rec.starts_total,
                "locked_out": rec.locked,
                "out_of_service": rec.out_of_service,
                "state": pump_state(rec),
            }
            if name in speeds:
                pumps[name]["speed_pct"] = round(100 * speeds[name], 1)
        terms = self.pid.terms
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
            # The PID's terms (in pumps) for tuning: their sum is the demand before limits.
            # (None for a term a wild reading drove out of range: the status stays JSON.)
            "pid": {"p": _term(terms.p), "i": _term(terms.i), "d": _term(terms.d)},
        }

    def export_state(self) -> dict[str, Any]:
        """What survives a restart. Motor history (how long ago each start was, how long
        each stopped pump had been off) is kept as ages, not clock times: a Pi may boot
        without a set clock, and the monotonic clock starts again at every boot."""
        now = self._last if self._last is not None else self.protections.started
        return {
            "mode": self.mode,
            "setpoint_bar": self.setpoint,
            "manual": dict(self.manual),
            **self.stager.export_state(now),
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
        self.stager.restore_state(data, boot)
        self.alarms.restore(data.get("alarms"), boot)
        mode = data.get("mode")
        if mode in MODES:
            self.mode = str(mode)
        manual = data.get("manual")
        if self.mode == "manual" and isinstance(manual, dict):
            # What the operator had switched on by hand: a pump still in the file,
            # neither locked out nor switched Off, starts again after the restart's
            # power-on delay.
            self.manual = {
                name: on is True
                for name, on in manual.items()
                if name in self.stager.pumps and self.stager.pumps[name].usable
            }
        setpoint = data.get("setpoint_bar")
        ctl = self.cfg.control
        if (
            isinstance(setpoint, (int, float))
            and math.isfinite(setpoint)
            and ctl.setpoint_min_bar <= setpoint <= ctl.setpoint_max_bar
        ):
            self.setpoint = float(setpoint)

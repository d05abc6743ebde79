"""Which pumps run: capacity demand in, relay states out, within every motor limit.

Rules, in order of precedence:

1. A pump whose fault input is active, or whose run feedback has not arrived
   ``feedback_timeout_s`` after its start, is locked out at once (stopped even inside
   its minimum run time) and stays out until reset; the next pump takes its place.
   So is a pump whose feedback drops while it runs, when others run on. But when the
   feedback drops on *every* running pump at once, the grid or the contactors' supply
   failed, not the pumps: that is a station power loss (``power_lost``), the pumps are
   taken as stopped and none is locked out. Until a pump's feedback arrives again, one
   pump at a time is tried (each within its own motor limits); a try that gets no
   feedback is stopped and its start given back (the motor never ran). A start whose
   feedback never arrives is only proof of a pump fault once the station is shown to
   have power: the pump is stopped and held as suspect while another is tried; another
   contactor pulling in locks the suspect out, a second silent start is a power loss
   (pumps without a feedback input may have been the only ones running when it went).
   With no other pump to try, the suspect's own second silent start locks it out,
   unless the pressures show the pumps switched on are not lifting (``no_lift``: the
   supply failed under pumps that have no feedback contact; seed 100362 of the
   scenario generator locked a sound pump out in a power cut without it).
2. A protection stop (``stop_all``) stops every pump at once, minimum run time or not:
   a dry-running or over-pressured pump is worse than a short run.
3. Otherwise a pump starts only if its minimum off time has passed and the start
   keeps it within ``max_starts_per_hour`` and the station within
   ``station_max_starts_per_hour`` (rolling hour); it stops only after its minimum run
   time. A change that is not allowed yet waits; it is not dropped.
4. Never more than ``max_running`` pumps at once (the rest are standby).
5. Lowest run hours start first, highest stop first; a pump that has run
   ``alternation_h`` without a break hands over to the idle pump with the fewest hours.
6. The caller may veto a start (``start_ok``): the control core refuses a pump whose
   start the curves say would carry the pressure toward the cutout. A vetoed pump is
   passed over for the next in order, and an exercise waits for a better moment.
7. A pump switched Off (out of service: ``set_out_of_service``, the Off of its
   Hand-Off-Auto) stops at once, minimum run time or not, as an Off switch on a
   panel does, and nothing starts it (demand, exercise, alternation, power retries, a
   manual start) until it is switched back to Auto. It counts as not available, like
   a locked-out pump; its motor history is kept.
8. Pumps of different sizes are not equal units (``sizing``): the pump to start is the
   first in order whose set carries the flow needed at the setpoint (else the one that
   comes closest); the pump to stop, the first whose removal leaves a set that still
   carries it (else the one that leaves the most); alternation only swaps in a pump
   that leaves the set no short of that flow. Equal pumps choose as by rule 5 alone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.config.schema import PumpConfig, StagingConfig

HOUR_S = 3600.0
#: ``start_ok(pump, exercise)``: may this pump start now (for the demand, or to exercise)?
StartCheck = Callable[["PumpRecord", bool], bool]


@dataclass(frozen=True, slots=True)
class Sizing:
    """What the control core knows of the hydraulics now: the flow a set of pumps
    carries at the setpoint's head (``capacity``, m3/h) and the flow the zone needs there
    (``needed``, m3/h)."""

    capacity: Callable[[Sequence[PumpRecord]], float]
    needed: float

    def best_start(self, running: list[PumpRecord], candidates: list[PumpRecord]) -> PumpRecord:
        """The first candidate (in start order) whose set carries the need; else the one
        that comes closest (ties keep the start order)."""
        for rec in candidates:
            if self.capacity([*running, rec]) >= self.needed:
                return rec
        return max(candidates, key=lambda r: self.capacity([*running, r]))

    def best_stop(self, running: list[PumpRecord], candidates: list[PumpRecord]) -> PumpRecord:
        """The first candidate (in stop order) whose removal leaves a set that carries the
        need; else the one whose removal leaves the most (ties keep the stop order)."""

        def rest(rec: PumpRecord) -> list[PumpRecord]:
            return [r for r in running if r is not rec]

        for rec in candidates:
            if self.capacity(rest(rec)) >= self.needed:
                return rec
        return max(candidates, key=lambda r: self.capacity(rest(r)))

    def may_swap(self, running: list[PumpRecord], out: PumpRecord, into: PumpRecord) -> bool:
        """An alternation that leaves the set no short of the need (nor shorter than now)."""
        now = self.capacity(running)
        after = self.capacity([*(r for r in running if r is not out), into])
        return after >= min(self.needed, now) - 1e-9


# -- what the stager is told each tick: one directive -------------------------------------


@dataclass(frozen=True, slots=True)
class StopAll:
    """Every pump stops now, minimum run time or not (a protection, or mode off)."""


@dataclass(frozen=True, slots=True)
class Fixed:
    """Run exactly this many pumps (the sensor-failure emergency; 0 holds the last pump
    off on low flow, its minimum run time respected)."""

    pumps: int


@dataclass(frozen=True, slots=True)
class Manual:
    """The operator's pumps (manual mode), still within every motor limit."""

    want: Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class Demand:
    """Automatic control: stage to the PID's demand (in pumps)."""

    demand: float
    #: False: no pump stops for the demand (a drive leads and the pressure does not yet
    #: stand clearly above the setpoint)
    may_destage: bool = True
    start_ok: StartCheck | None = None
    sizing: Sizing | None = None
    #: The pressure fell to the low-flow stop's restart point with no pump running: the
    #: first pump starts now (the band is the stage-up decision; waiting out the stage-up
    #: delay on top let the zone sag a bar below the setpoint).
    restart: bool = False


Directive = StopAll | Fixed | Manual | Demand


#: Without power, the next try waits this long after the loss or the last failed try
#: (a commercial set's restart delay after a power failure).
POWER_RETRY_S = 10.0
#: How long a pump whose feedback never came stays suspect, waiting for another start to
#: tell a pump fault (another contactor pulls in) from the supply (it does not either).
SUSPECT_WINDOW_S = 600.0
#: Demand (in pumps) above which the first pump starts.
FIRST_PUMP_DEMAND = 0.05


@dataclass
class PumpRecord:
    name: str
    cfg: PumpConfig
    on: bool = False
    changed_at: float = -math.inf  # last start or stop
    started_at: float = -math.inf
    starts: deque[float] = field(default_factory=deque)
    starts_total: int = 0
    run_s: float = 0.0
    locked: str | None = None  # why it is locked out
    exercise_until: float | None = None  # running only to be exercised, until then
    #: Its run feedback has closed since its last start (the contactor pulled in).
    confirmed: bool = False
    #: Switched Off by the operator (rule 7): never started until switched back to Auto.
    out_of_service: bool = False

    def prune(self, now: float) -> None:
        while self.starts and self.starts[0] <= now - HOUR_S:
            self.starts.popleft()

    @property
    def usable(self) -> bool:
        """Neither locked out nor switched Off: control may start it."""
        return not self.locked and not self.out_of_service

    def can_start(self, now: float) -> bool:
        if self.on or not self.usable:
            return False
        if now - self.changed_at < self.cfg.min_off_s:
            return False
        self.prune(now)
        return len(self.starts) < self.cfg.max_starts_per_hour

    def can_stop(self, now: float) -> bool:
        return self.on and now - self.started_at >= self.cfg.min_run_s

    def export(self, now: float) -> dict[str, Any]:
        """What survives a restart, as ages (see ``ControlCore.export_state``)."""
        return {
            "run_s": self.run_s,
            "starts_total": self.starts_total,
            "starts_age_s": [now - t for t in self.starts],
            "off_for_s": None if self.on else min(now - self.changed_at, HOUR_S),
            "locked": self.locked,
            "out_of_service": self.out_of_service,
        }

    def restore(self, saved: Mapping[str, Any], boot: float) -> None:
        """The saved history, every age taken as before ``boot`` (see
        ``ControlCore.restore_state``); anything damaged is dropped, never trusted."""
        self.run_s = _age(saved.get("run_s"), limit=math.inf) or 0.0
        total = saved.get("starts_total")
        self.starts_total = total if isinstance(total, int) and total >= 0 else 0
        self.starts = deque(sorted(boot - a for a in _ages(saved.get("starts_age_s"))))
        off_for = _age(saved.get("off_for_s"))
        self.changed_at = boot if off_for is None else boot - off_for
        locked = saved.get("locked")
        if isinstance(locked, str) and locked:
            self.locked = locked[:200]  # latched until a technician acknowledges
        # Switched Off for maintenance stays Off through a power cut: only True counts.
        self.out_of_service = saved.get("out_of_service") is True


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


@dataclass(frozen=True)
class Lockout:
    pump: str
    reason: str


class Stager:
    """State of every pump and the staging decision; ``update`` once per tick, with one
    directive: ``StopAll``, ``Fixed``, ``Manual`` or ``Demand``."""

    def __init__(
        self, pumps: Mapping[str, PumpConfig], staging: StagingConfig, *, now: float
    ) -> None:
        self.cfg = staging
        self.pumps = {name: PumpRecord(name, p) for name, p in pumps.items()}
        self.station_starts: deque[float] = deque()
        self.target = 0
        self._up_since: float | None = None
        self._down_since: float | None = None
        self._last = now
        self._born = now
        self._new_lockouts: list[Lockout] = []
        #: True while a healthy drive can lead (``set_lead_vfd``, by the drive cascade).
        self.lead_vfd = False
        #: Since when every running pump lost its run feedback at once (grid or
        #: contactor supply lost), until a pump's feedback arrives again; None: powered.
        self.power_lost_since: float | None = None
        self._retry_at = -math.inf
        #: a pump whose feedback never came after its start, and when: not yet known to
        #: be a pump fault (the supply may have failed)
        self._suspect: tuple[str, float] | None = None
        #: this tick, the pressures show the pumps switched on are not turning
        self._no_lift = False

    # -- configuration --------------------------------------------------------------------

    @property
    def max_running(self) -> int:
        cap = self.cfg.max_running if self.cfg.max_running is not None else len(self.pumps)
        return min(cap, len(self.pumps))

    def available(self) -> int:
        return min(self.max_running, sum(1 for p in self.pumps.values() if p.usable))

    def running(self) -> int:
        """Pumps running for the demand (a pump being exercised does not count)."""
        return sum(1 for p in self.pumps.values() if p.on and p.exercise_until is None)

    def _on_count(self) -> int:
        return sum(1 for p in self.pumps.values() if p.on)

    def reconfigure(self, pumps: Mapping[str, PumpConfig], staging: StagingConfig) -> None:
        """Keep the state of pumps that remain; new pumps start off, dropped ones vanish."""
        self.cfg = staging
        old = self.pumps
        self.pumps = {}
        for name, p in pumps.items():
            rec = old.get(name) or PumpRecord(name, p)
            rec.cfg = p
            self.pumps[name] = rec

    def set_lead_vfd(self, live: bool) -> None:
        """Whether a healthy drive leads: it then starts first and stops last."""
        self.lead_vfd = live

    def take_lockouts(self) -> list[Lockout]:
        """The lockouts since the last call (each is alarmed once)."""
        new, self._new_lockouts = self._new_lockouts, []
        return new

    def relay_opened(self, name: str, now: float) -> None:
        """A stopped pump's relay opened only now (the end of a destage hand-over): its
        minimum off time counts from its real stop, not from the decision."""
        rec = self.pumps.get(name)
        if rec is not None and not rec.on:
            rec.changed_at = now

    def export_state(self, now: float) -> dict[str, Any]:
        """Every pump's motor history and the station's starts of the hour, as ages."""
        self.station_can_start(now)  # prunes the rolling hour before it is saved
        return {
            "pumps": {name: rec.export(now) for name, rec in self.pumps.items()},
            "station_starts_age_s": [now - t for t in self.station_starts],
        }

    def restore_state(self, data: Mapping[str, Any], boot: float) -> None:
        """The history ``export_state`` saved, for the pumps still in the file."""
        for name, saved in dict(data.get("pumps", {})).items():
            rec = self.pumps.get(name)
            if rec is not None and isinstance(saved, Mapping):
                rec.restore(saved, boot)
        self.station_starts = deque(
            sorted(boot - a for a in _ages(data.get("station_starts_age_s")))
        )

    def set_out_of_service(self, name: str, off: bool, now: float) -> None:
        """The Off (``off``) or Auto of one pump's Hand-Off-Auto (rule 7): Off stops it
        now, whatever its minimum run time."""
        rec = self.pumps[name]
        rec.out_of_service = off
        if off and rec.on:
            rec.exercise_until = None
            self._stop(rec, now)

    def reset_lockout(self, name: str | None = None) -> list[str]:
        done = []
        for rec in self.pumps.values():
            if rec.locked and (name is None or rec.name == name):
                rec.locked = None
                done.append(rec.name)
        return done

    # -- the decision ---------------------------------------------------------------------

    def station_can_start(self, now: float) -> bool:
        while self.station_starts and self.station_starts[0] <= now - HOUR_S:
            self.station_starts.popleft()
        return len(self.station_starts) < self.cfg.station_max_starts_per_hour

    def _start(self, rec: PumpRecord, now: float) -> None:
        rec.on = True
        rec.confirmed = False
        rec.changed_at = rec.started_at = now
        rec.starts.append(now)
        rec.starts_total += 1
        self.station_starts.append(now)

    def _stop(self, rec: PumpRecord, now: float) -> None:
        rec.on = False
        rec.changed_at = now

    def _lock(self, rec: PumpRecord, reason: str, now: float) -> None:
        rec.locked = reason
        if rec.on:
            self._stop(rec, now)
        self._new_lockouts.append(Lockout(rec.name, reason))

    def _check_lockouts(
        self, now: float, feedback: Mapping[str, bool | None], fault: Mapping[str, bool]
    ) -> None:
        for rec in self.pumps.values():
            if not rec.locked and fault.get(rec.name, False):
                self._lock(rec, "motor protection tripped", now)
        watched = [
            r
            for r in self.pumps.values()
            if r.on and not r.locked and feedback.get(r.name) is not None
        ]
        if any(feedback[r.name] for r in watched):
            self.power_lost_since = None  # a contactor pulled in: the station has power
            self._convict_suspect(now)
        for rec in watched:
            rec.confirmed = rec.confirmed or bool(feedback[rec.name])
        dropped = [r for r in watched if r.confirmed and not feedback[r.name]]
        if dropped and not any(feedback[r.name] for r in watched):
            # Every running pump at once: the supply failed, not the pumps.
            if self.power_lost_since is None:
                self.power_lost_since = now
            self._retry_at = now + POWER_RETRY_S
            for rec in watched:
                self._stop(rec, now)
            return
        for rec in dropped:
            self._lock(rec, "run feedback lost while running", now)
        self._check_silent_starts(now, watched)

    def _check_silent_starts(self, now: float, watched: list[PumpRecord]) -> None:
        """Starts whose run feedback never came: a pump fault, or the supply (rule 1)."""
        for rec in watched:
            if rec.confirmed or now - rec.started_at <= rec.cfg.feedback_timeout_s:
                continue
            suspect = self._suspect
            if suspect is not None and now - suspect[1] > SUSPECT_WINDOW_S:
                suspect = self._suspect = None
            own = suspect is not None and suspect[0] == rec.name
            if self.power_lost_since is None and own and not self._no_lift:
                self._suspect = None  # its own second try, with nothing else to tell by
                self._lock(rec, self._no_feedback_reason(rec), now)
                continue
            if self.power_lost_since is None and suspect is None:
                self._suspect = (rec.name, now)  # a pump fault or the supply: try another
            elif self.power_lost_since is None:
                # Two pumps in a row, none pulling in between: the supply failed.
                self.power_lost_since = suspect[1] if suspect is not None else now
                self._suspect = None
            # This try never ran the motor, so it costs no start.
            self._stop(rec, now)
            self._refund_start(rec)
            self._retry_at = now + POWER_RETRY_S if self.power_lost_since is not None else now

    @staticmethod
    def _no_feedback_reason(rec: PumpRecord) -> str:
        return f"no run feedback {rec.cfg.feedback_timeout_s:g} s after start"

    def _convict_suspect(self, now: float) -> None:
        """Another contactor pulled in: the station has power, so the suspect's missing
        feedback was its own fault."""
        if self._suspect is None:
            return
        rec = self.pumps.get(self._suspect[0])
        self._suspect = None
        if rec is not None and not rec.locked:
            self._lock(rec, self._no_feedback_reason(rec), now)

    def _refund_start(self, rec: PumpRecord) -> None:
        if rec.starts and rec.starts[-1] == rec.started_at:
            rec.starts.pop()
            rec.starts_total -= 1
        if rec.started_at in self.station_starts:
            self.station_starts.remove(rec.started_at)

    def _start_order(self, rec: PumpRecord) -> tuple[bool, float, str]:
        """Lowest first to start, highest first to stop: with a live drive, the VFD
        pump leads (starts first, stops last); then by run hours."""
        fixed = self.lead_vfd and rec.cfg.vfd is None
        return (fixed, rec.run_s, rec.name)

    def lock_out(self, name: str, reason: str, now: float) -> None:
        """Lock a pump out from outside (a drive that tripped)."""
        rec = self.pumps[name]
        if not rec.locked:
            self._lock(rec, reason, now)

    def starts_left(self, now: float) -> int:
        """Starts the station and its running pumps may still make this hour (the least)."""
        self.station_can_start(now)  # prunes the station's rolling hour
        left = self.cfg.station_max_starts_per_hour - len(self.station_starts)
        for rec in self.pumps.values():
            if rec.on:
                rec.prune(now)
                left = min(left, rec.cfg.max_starts_per_hour - len(rec.starts))
        return left

    def cannot_start(self, now: float, start_ok: StartCheck | None = None) -> str | None:
        """Why no further pump can start now, in a technician's words; None if one can."""
        if self.power_lost_since is not None:
            return "station power lost (no run feedback on any pump)"
        if self.running() >= self.max_running:
            return f"all {self.max_running} pumps allowed to run at once are running"
        idle = [r for r in self.pumps.values() if not r.on]
        if not idle:
            return "every pump is running"
        if not self.station_can_start(now):
            wait = self.station_starts[0] + HOUR_S - now
            return (
                f"the station is out of starts ({self.cfg.station_max_starts_per_hour} per "
                f"hour); the next start is allowed in {wait:.0f} s"
            )
        reasons = []
        for rec in idle:
            rec.prune(now)
            if rec.locked:
                reasons.append(f"{rec.name} locked out ({rec.locked})")
            elif rec.out_of_service:
                reasons.append(f"{rec.name} switched Off (out of service)")
            elif now - rec.changed_at < rec.cfg.min_off_s:
                left = rec.cfg.min_off_s - (now - rec.changed_at)
                reasons.append(f"{rec.name} in its minimum off time ({left:.0f} s left)")
            elif len(rec.starts) >= rec.cfg.max_starts_per_hour:
                wait = rec.starts[0] + HOUR_S - now
                reasons.append(
                    f"{rec.name} out of starts ({rec.cfg.max_starts_per_hour} per hour; "
                    f"next in {wait:.0f} s)"
                )
            elif start_ok is not None and not start_ok(rec, False):
                reasons.append(f"{rec.name} would push the pressure up to the cutout")
            else:
                return None
        return "; ".join(reasons)

    def end_exercise(self, now: float) -> list[str]:
        """Stop every exercise run now (the pressure approaches the cutout)."""
        ended = []
        for rec in self.pumps.values():
            if rec.exercise_until is not None:
                rec.exercise_until = None
                if rec.on:
                    self._stop(rec, now)
                ended.append(rec.name)
        return ended

    def _start_one(self, now: float, start_ok: StartCheck | None, sizing: Sizing | None) -> bool:
        if self.running() >= self.available():
            return False
        if self.power_lost_since is not None and (
            now < self._retry_at or any(r.on and not r.confirmed for r in self.pumps.values())
        ):
            return False  # without power, one try at a time until a contactor pulls in
        for rec in self.pumps.values():
            if rec.on and rec.exercise_until is not None:
                rec.exercise_until = None  # the demand needs a pump: keep the one running
                return True
        if not self.station_can_start(now):
            return False
        candidates = [
            r
            for r in sorted(self.pumps.values(), key=self._start_order)
            if r.can_start(now) and (start_ok is None or start_ok(r, False))
        ]
        if not candidates:
            return False
        choice = candidates[0]
        if sizing is not None:
            on = [r for r in self.pumps.values() if r.on]
            choice = sizing.best_start(on, candidates)
        self._start(choice, now)
        return True

    def _demand_pumps(self) -> list[PumpRecord]:
        return [r for r in self.pumps.values() if r.on and r.exercise_until is None]

    def _stop_candidates(self, now: float) -> list[PumpRecord]:
        """The running pumps that may stop now, in stop order."""
        running = self._demand_pumps()
        if self.lead_vfd and any(r.cfg.vfd is None for r in running):
            # The drive leads: fixed pumps go first, and if none may stop yet, wait.
            running = [r for r in running if r.cfg.vfd is None]
        return sorted((r for r in running if r.can_stop(now)), key=self._start_order, reverse=True)

    def _mixed_sizes(self) -> bool:
        """Pumps of more than one size (curve): which one stops decides what is left."""
        curves = {
            (r.cfg.rated_flow_m3h, r.cfg.rated_head_m, r.cfg.shutoff_head_m)
            for r in self.pumps.values()
        }
        return len(curves) > 1

    def _stop_one(self, now: float) -> bool:
        """Stop the next pump in stop order (the running cap, a fixed count)."""
        candidates = self._stop_candidates(now)
        if not candidates:
            return False
        self._stop(candidates[0], now)
        return True

    def _destage(self, now: float, start_ok: StartCheck | None, sizing: Sizing | None) -> bool:
        """A stop the demand asks for. With the curves known, the set left must carry the
        zone's need at the setpoint; where no stop leaves such a set, a smaller idle pump
        takes a running one's place (one step down in size, the count unchanged), and
        where none can, the set runs on: pressure above the setpoint costs energy, a set
        too small for the flow costs the zone its water."""
        if sizing is None:
            return self._stop_one(now)
        candidates = self._stop_candidates(now)
        if not candidates:
            return False
        running = self._demand_pumps()
        choice = sizing.best_stop(running, candidates)
        if not self._mixed_sizes() or (
            sizing.capacity([r for r in running if r is not choice]) >= sizing.needed
        ):
            # Equal pumps stage as they always have: on the demand alone.
            self._stop(choice, now)
            return True
        if self.power_lost_since is not None or not self.station_can_start(now):
            return False
        idle = [
            r
            for r in sorted(self.pumps.values(), key=self._start_order)
            if not r.on and r.can_start(now) and (start_ok is None or start_ok(r, False))
        ]
        before = sizing.capacity(running)
        for out in candidates:
            rest = [r for r in running if r is not out]
            for into in idle:
                if sizing.needed <= sizing.capacity([*rest, into]) < before - 1e-9:
                    self._start(into, now)
                    self._stop(out, now)
                    # One step a time: the demand asks again after its stage-down delay.
                    self.target = self.running()
                    return True
        return False

    def _count_target(self, now: float, demand: float, *, may_destage: bool) -> None:
        n = self.running()
        up_at = FIRST_PUMP_DEMAND if n == 0 else n + (1.0 - self.cfg.stage_up_demand)
        down_at = n - 1 + self.cfg.stage_down_demand
        if n == 1 and not self.cfg.last_pump_stops_on_demand:
            down_at = -math.inf  # only low flow, a protection or the operator stops it
        if demand >= up_at and n < self.available():
            self._down_since = None
            self._up_since = now if self._up_since is None else self._up_since
            if now - self._up_since >= self.cfg.stage_up_delay_s:
                self.target = n + 1
                self._up_since = None
        elif demand <= down_at and n > 0 and may_destage:
            self._up_since = None
            self._down_since = now if self._down_since is None else self._down_since
            if now - self._down_since >= self.cfg.stage_down_delay_s:
                self.target = n - 1
                self._down_since = None
        else:
            self._up_since = self._down_since = None

    def _exercise(self, now: float, start_ok: StartCheck | None) -> None:
        """Run a pump that has stood idle for ``exercise_interval_h`` for ``exercise_s``,
        when the station can spare it: below the running cap, within every start limit."""
        interval = self.cfg.exercise_interval_h * HOUR_S
        if interval <= 0 or any(r.exercise_until is not None for r in self.pumps.values()):
            return
        if self.power_lost_since is not None:
            return  # nothing to exercise a motor with
        if self._on_count() >= self.max_running or not self.station_can_start(now):
            return
        idle = [
            r
            for r in self.pumps.values()
            if r.can_start(now)
            and now - max(r.changed_at, self._born) >= interval
            and (start_ok is None or start_ok(r, True))
        ]
        if idle:
            rec = min(idle, key=lambda r: (max(r.changed_at, self._born), r.name))
            self._start(rec, now)
            rec.exercise_until = now + self.cfg.exercise_s

    def _alternate(self, now: float, start_ok: StartCheck | None, sizing: Sizing | None) -> None:
        if self.cfg.alternation_h <= 0:
            return
        limit = self.cfg.alternation_h * HOUR_S
        for rec in sorted(self.pumps.values(), key=lambda r: r.started_at):
            if not rec.on or now - rec.started_at < limit or not rec.can_stop(now):
                continue
            on = [r for r in self.pumps.values() if r.on]
            idle = [
                r
                for r in self.pumps.values()
                if r.can_start(now)
                and (start_ok is None or start_ok(r, False))
                and (sizing is None or sizing.may_swap(on, rec, r))
            ]
            if not idle or not self.station_can_start(now):
                return
            if self.lead_vfd and rec.cfg.vfd is not None and all(r.cfg.vfd is None for r in idle):
                continue  # no other drive is free: this one keeps the lead role
            self._start(min(idle, key=self._start_order), now)
            self._stop(rec, now)
            return

    def update(
        self,
        now: float,
        directive: Directive,
        *,
        feedback: Mapping[str, bool | None] | None = None,
        fault: Mapping[str, bool] | None = None,
        no_lift: bool = False,
    ) -> dict[str, bool]:
        """Advance to ``now`` and return the relay state of every pump.

        ``feedback`` and ``fault`` are what the pumps report (a missing feedback: no
        input configured); ``directive`` is what the control asks for this tick;
        ``no_lift``: the pressures show the pumps switched on are not turning (rule 1).
        """
        self._no_lift = no_lift
        dt = max(0.0, now - self._last)
        self._last = now
        for rec in self.pumps.values():
            if rec.on:
                rec.run_s += dt
        self._check_lockouts(now, feedback or {}, fault or {})
        for rec in self.pumps.values():
            if rec.out_of_service and rec.on:
                self.set_out_of_service(rec.name, True, now)  # at once (rule 7)
        if isinstance(directive, StopAll):
            self._stop_all(now)
        elif isinstance(directive, Manual):
            self._manual(now, directive.want)
        elif isinstance(directive, Fixed):
            self.target = min(directive.pumps, self.available())
            self._up_since = self._down_since = None
            self._stage(now, None, None)
        else:
            if directive.restart and self.running() == 0 and self.available() > 0:
                self.target = 1
                self._up_since = self._down_since = None
            else:
                self._count_target(now, directive.demand, may_destage=directive.may_destage)
            self._stage(now, directive.start_ok, directive.sizing)
            self._exercise(now, directive.start_ok)
        self._end_exercises(now, automatic=isinstance(directive, Demand))
        # The cap holds even against a reload that lowered it.
        while self._on_count() > self.max_running and self._stop_one(now):
            pass
        return {name: rec.on for name, rec in self.pumps.items()}

    def _end_exercises(self, now: float, *, automatic: bool) -> None:
        """An exercise run ends on time, and at once when the station is not in automatic."""
        for rec in self.pumps.values():
            if rec.exercise_until is not None and (now >= rec.exercise_until or not automatic):
                rec.exercise_until = None
                if rec.on:
                    self._stop(rec, now)  # a short run by design: min run time does not apply

    def _stop_all(self, now: float) -> None:
        for rec in self.pumps.values():
            if rec.on:
                self._stop(rec, now)
        self.target = 0
        self._up_since = self._down_since = None

    def _manual(self, now: float, want: Mapping[str, bool]) -> None:
        self.target = self.running()
        for name, on in want.items():
            rec = self.pumps.get(name)
            if rec is None:
                continue
            if on and rec.can_start(now) and self.running() < self.available():
                if self.station_can_start(now):
                    self._start(rec, now)
            elif not on and rec.can_stop(now):
                self._stop(rec, now)

    def _stage(self, now: float, start_ok: StartCheck | None, sizing: Sizing | None) -> None:
        """Start or stop pumps toward ``target``, then alternate."""
        self.target = min(self.target, self.available())
        while self.running() < self.target and self._start_one(now, start_ok, sizing):
            pass
        while self.running() > self.target and self._destage(now, start_ok, sizing):
            pass
        self._alternate(now, start_ok, sizing)

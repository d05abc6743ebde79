"""Invariants checked on every tick of a scenario run: pure code over per-tick state.

``TickState`` is what one tick of a closed-loop run looked like from outside the
control core: the outputs (relays, setpoint, state, alarms and their events), the
plant (true pressures, which pumps really turn) and which injected faults were active.
``check_trace`` feeds a sequence of them through every invariant and returns the
violations; ``InvariantChecker`` does the same one tick at a time, so a day of
170,000 ticks needs no memory for the trace.

The invariants, and the exceptions that are by design (stager.py, protections.py,
docs/control.md):

* ``setpoint_range``: the controlled setpoint is finite and within
  ``setpoint_min_bar``..``setpoint_max_bar``.
* ``non_finite``: no NaN or infinity in the outputs, the plant state, or the status
  snapshot and telemetry sample as strict JSON.
* ``start_limit`` / ``station_start_limit``: no pump more than ``max_starts_per_hour``
  relay starts, the station no more than ``station_max_starts_per_hour``, in any
  rolling hour. A start whose motor never turned (no power, or a contactor that never
  pulled in) is given back (not counted): the limits are the motor's.
* ``min_run`` / ``min_off``: a relay stays on ``min_run_s`` and off ``min_off_s``
  (less one tick). Immediate stops are by design for protection stops, the operator's
  ``off`` (of the station, or of one pump: out of service), lockouts, power loss, a dark
  controller, exercise runs, and a start whose motor never turned.
* ``out_of_service_ran``: a pump switched Off (``pump_mode`` off: state ``out of
  service``) has its relay open.
* ``running_cap``: never more relays on than ``max_running``.
* ``cutout``: the true discharge pressure is never above the anchored high-pressure
  limit (the controlled setpoint clamped to its range, plus ``margin_bar``; while
  filling, ``setpoint_max_bar + margin_bar``) for longer than ``delay_s`` plus one
  tick while a pump runs, unless the supply alone is above it or the pressure
  transmitter is faulted (the protection is blind by construction).
* ``lockout_without_fault``: a pump is locked out only within a short grace after an
  injected fault on that pump (``pump_trip``, ``pump_no_feedback``, ``drive_fault``).
* ``silent_no_service``: in automatic, powered, with supply, no pump turning and the
  pressure more than ``no_service_margin`` below the setpoint for longer than the
  station's ``protections.low_pressure.delay_s`` plus two ticks (its stated time; the
  power-on delay does not count) needs an active alarm whose cause is present and which explains
  it (anything but a single pump's lockout, a pump switched Off or a drive's lost
  communication; every pump locked out or switched Off explains it).
* ``alarm_lifecycle``: every raise says why (a message); an alarm whose cause has
  gone is cleared unless it is latched and unacknowledged; no alarm disappears
  without a clear. ``alarm_lost_in_reboot``: active alarms forgotten when the
  controller boots again after a power cut (SCADA never sees their clear).
* ``plant_vessel`` (the simulator, not the controller): with no pump running the
  pressure may fall no faster than the zone's outflow drains the network's
  compliance, ``dp = Q_out * dt / C`` (issue 13 item 4); a plant that empties at
  once makes every judgement of low-flow cycling and trip recovery meaningless.

A kind gets the suffix ``_after_reboot`` when the controller rebooted inside the
window that broke it (it forgot its start history or timers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from controller.config.schema import StationConfig

#: Longest a zone may sit below its setpoint with no pump and no alarm saying why.
NO_SERVICE_S = 120.0
#: How far below the setpoint counts as "below" for that (the low-flow band adds to it).
NO_SERVICE_MARGIN_BAR = 0.3
#: Transmitter resolution and rounding: the cutout is judged this far above its limit.
CUTOUT_TOLERANCE_BAR = 0.01
#: Core states in which every pump stops at once, minimum run time or not.
IMMEDIATE_STOP_STATES = frozenset(
    {
        "dry_run",
        "suction_sensor_failure",
        "high_pressure",
        "sensor_failure",
        "off",
        "filling_failed",
        "high_pressure_repeated",
        "power_on_delay",
        "unpowered",
        "power_lost",
    }
)
PUMP_FAULTS = ("pump_trip", "pump_no_feedback", "drive_fault")
SENSOR_FAULTS = ("wire_break", "noise", "stuck", "slave_silent", "slave_bad_crc",
                 "slave_garbage", "slave_exception")  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlarmView:
    """One active alarm in the core's registry."""

    id: str
    condition: bool
    latched: bool
    acked: bool = False


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One alarm event the core emitted this tick (raise, clear, ack)."""

    id: str
    event: str
    message: str


@dataclass(frozen=True, slots=True)
class TickState:
    """One tick of a run, as the invariants see it. Per-pump tuples follow
    ``Limits.pumps``."""

    t: float
    powered: bool
    state: str
    mode: str
    setpoint_bar: float
    relays: tuple[bool, ...]
    running: tuple[bool, ...]
    pump_states: tuple[str, ...]
    pressure_bar: float
    suction_bar: float
    demand: float = 0.0
    speeds: tuple[float, ...] = ()
    #: active injected faults as "kind" or "kind:target"
    faults: frozenset[str] = frozenset()
    alarms: tuple[AlarmView, ...] = ()
    events: tuple[AlarmChange, ...] = ()
    #: what the zone drew and leaked this tick (the simulator's truth), m3/h
    outflow_m3h: float = 0.0
    #: times the controller has booted again so far
    reboots: int = 0
    #: why the status snapshot or telemetry sample was not strict JSON (checked now and
    #: then), or None
    json_error: str | None = None


@dataclass(frozen=True)
class Limits:
    """The station's limits the invariants judge against."""

    pumps: tuple[str, ...]
    tick_s: float
    setpoint_min_bar: float
    setpoint_max_bar: float
    max_starts_per_hour: tuple[int, ...]
    min_run_s: tuple[float, ...]
    min_off_s: tuple[float, ...]
    station_max_starts_per_hour: int
    max_running: int
    cutout_margin_bar: float
    cutout_delay_s: float
    dry_run_min_bar: float
    #: the pressure transmitter's point and device (their faults blind the cutout)
    pressure_sources: frozenset[str] = frozenset()
    no_service_margin_bar: float = NO_SERVICE_MARGIN_BAR
    #: how long a loss of service may last before an alarm must say why: the station's
    #: own ``protections.low_pressure.delay_s`` (its stated time), plus two ticks
    no_service_s: float = NO_SERVICE_S
    lockout_grace_s: float = 15.0
    #: the simulated network's compliance; 0 leaves the plant unchecked
    compliance_m3_per_bar: float = 0.0

    @classmethod
    def of(cls, cfg: StationConfig) -> Limits:
        ctl = cfg.control
        prot = cfg.protections
        pumps = tuple(cfg.pumps)
        dev, _ = cfg.points()[ctl.pressure_point]
        band = prot.low_flow.band_bar if prot.low_flow.flow_min_m3h > 0 else 0.0
        timeout = max(p.feedback_timeout_s for p in cfg.pumps.values())
        cap = ctl.staging.max_running if ctl.staging.max_running is not None else len(pumps)
        return cls(
            pumps=pumps,
            tick_s=ctl.tick_s,
            setpoint_min_bar=ctl.setpoint_min_bar,
            setpoint_max_bar=ctl.setpoint_max_bar,
            max_starts_per_hour=tuple(cfg.pumps[p].max_starts_per_hour for p in pumps),
            min_run_s=tuple(cfg.pumps[p].min_run_s for p in pumps),
            min_off_s=tuple(cfg.pumps[p].min_off_s for p in pumps),
            station_max_starts_per_hour=ctl.staging.station_max_starts_per_hour,
            max_running=min(cap, len(pumps)),
            cutout_margin_bar=prot.high_pressure.margin_bar,
            cutout_delay_s=prot.high_pressure.delay_s,
            dry_run_min_bar=prot.dry_run.suction_min_bar,
            pressure_sources=frozenset({ctl.pressure_point, dev}),
            no_service_margin_bar=max(
                NO_SERVICE_MARGIN_BAR, band / 2 + 0.1, prot.low_pressure.margin_bar
            ),
            no_service_s=prot.low_pressure.delay_s + 2 * ctl.tick_s,
            lockout_grace_s=timeout + 3 * ctl.tick_s + 1.0,
            compliance_m3_per_bar=cfg.simulation.compliance_m3_per_bar,
        )


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: which, when (simulated seconds) and what was seen."""

    kind: str
    t: float
    detail: str


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def cutout_limit(s: TickState, lim: Limits) -> float:
    """The high-pressure limit in force, as protections.py anchors it."""
    if s.state == "filling" or not math.isfinite(s.setpoint_bar):
        # The fill ramp is applied after the protections: they judged the managed
        # setpoint, which the outputs do not show; take the highest it may be.
        anchor = lim.setpoint_max_bar
    else:
        anchor = min(max(s.setpoint_bar, lim.setpoint_min_bar), lim.setpoint_max_bar)
    return anchor + lim.cutout_margin_bar


def _pump_faulted(s: TickState, pump: str) -> bool:
    return any(f"{kind}:{pump}" in s.faults for kind in PUMP_FAULTS)


def _pressure_blind(s: TickState, lim: Limits) -> bool:
    return any(
        f"{kind}:{src}" in s.faults for kind in SENSOR_FAULTS for src in lim.pressure_sources
    )


class _Values:
    """Setpoint in range and finite; nothing non-finite anywhere."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim

    def feed(self, s: TickState, out: list[Violation]) -> None:
        lim = self.lim
        if not _finite(s.setpoint_bar) or not (
            lim.setpoint_min_bar - 1e-9 <= s.setpoint_bar <= lim.setpoint_max_bar + 1e-9
        ):
            out.append(
                Violation(
                    "setpoint_range",
                    s.t,
                    f"controlled setpoint {s.setpoint_bar!r} bar outside "
                    f"{lim.setpoint_min_bar}-{lim.setpoint_max_bar} bar",
                )
            )
        if not _finite(s.setpoint_bar, s.demand, s.pressure_bar, s.suction_bar, *s.speeds):
            out.append(
                Violation(
                    "non_finite",
                    s.t,
                    f"setpoint {s.setpoint_bar!r}, demand {s.demand!r}, pressure "
                    f"{s.pressure_bar!r}, suction {s.suction_bar!r}, speeds {s.speeds!r}",
                )
            )
        if s.json_error is not None:
            out.append(Violation("non_finite", s.t, s.json_error))

    def finish(self, out: list[Violation]) -> None:
        pass


@dataclass
class _Episode:
    on_at: float
    reboots: int
    ran: bool = False
    exercised: bool = False
    faulted: bool = False
    no_power: bool = False


@dataclass(frozen=True, slots=True)
class _Start:
    t: float
    reboots: int


class _Relays:
    """Start limits, minimum run and off times, and the running cap, from relay edges."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        n = len(lim.pumps)
        self.episodes: list[_Episode | None] = [None] * n
        self.off_at: list[tuple[float, int] | None] = [None] * n
        self.starts: list[list[_Start]] = [[] for _ in range(n)]

    def feed(self, s: TickState, out: list[Violation]) -> None:
        lim = self.lim
        slack = lim.tick_s + 1e-6
        on = sum(s.relays)
        if on > lim.max_running:
            out.append(Violation("running_cap", s.t, f"{on} relays on, cap {lim.max_running}"))
        for i, relay in enumerate(s.relays):
            ep = self.episodes[i]
            name = lim.pumps[i]
            if relay and ep is None:
                off = self.off_at[i]
                if off is not None and s.t - off[0] < lim.min_off_s[i] - slack:
                    kind = "min_off" + ("_after_reboot" if s.reboots > off[1] else "")
                    out.append(
                        Violation(
                            kind,
                            s.t,
                            f"{name} started {s.t - off[0]:.1f} s after its stop "
                            f"(min_off_s {lim.min_off_s[i]:g})",
                        )
                    )
                ep = self.episodes[i] = _Episode(s.t, s.reboots)
            if ep is not None:
                ep.ran = ep.ran or s.running[i]
                ep.exercised = ep.exercised or s.pump_states[i] == "exercising"
                ep.faulted = ep.faulted or _pump_faulted(s, name)
                ep.no_power = ep.no_power or "power_cut" in s.faults
            if not relay and ep is not None:
                self._stopped(i, ep, s, out)
            if relay and s.pump_states and s.pump_states[i] == "out of service":
                out.append(Violation("out_of_service_ran", s.t, f"{name} on while switched Off"))

    def _stopped(self, i: int, ep: _Episode, s: TickState, out: list[Violation]) -> None:
        lim = self.lim
        name = lim.pumps[i]
        self.episodes[i] = None
        self.off_at[i] = (s.t, s.reboots)
        if ep.ran:  # a start whose motor never turned is given back
            self.starts[i].append(_Start(ep.on_at, ep.reboots))
        ran_s = s.t - ep.on_at
        immediate = (
            not ep.ran
            or ep.exercised
            or ep.faulted
            or not s.powered
            or s.state in IMMEDIATE_STOP_STATES
            or s.pump_states[i] in ("locked out", "out of service")
        )
        if ran_s < lim.min_run_s[i] - lim.tick_s - 1e-6 and not immediate:
            out.append(
                Violation(
                    "min_run",
                    s.t,
                    f"{name} stopped after {ran_s:.1f} s in state {s.state!r} "
                    f"(min_run_s {lim.min_run_s[i]:g})",
                )
            )

    def finish(self, out: list[Violation]) -> None:
        lim = self.lim
        for i, ep in enumerate(self.episodes):
            if ep is not None:
                self.starts[i].append(_Start(ep.on_at, ep.reboots))
        for i, starts in enumerate(self.starts):
            _window(out, "start_limit", lim.pumps[i], starts, lim.max_starts_per_hour[i])
        station = sorted((st for starts in self.starts for st in starts), key=lambda x: x.t)
        _window(out, "station_start_limit", "station", station, lim.station_max_starts_per_hour)


def _window(out: list[Violation], kind: str, who: str, starts: list[_Start], cap: int) -> None:
    """One violation per burst: more than ``cap`` starts in a rolling hour."""
    first = 0
    reported_until = -math.inf
    for j, st in enumerate(starts):
        while starts[first].t <= st.t - 3600.0:
            first += 1
        count = j - first + 1
        if count > cap and st.t > reported_until:
            rebooted = starts[first].reboots < st.reboots
            out.append(
                Violation(
                    kind + ("_after_reboot" if rebooted else ""),
                    st.t,
                    f"{who}: {count} starts within the hour before t={st.t:.0f} s (limit {cap}/h)",
                )
            )
            reported_until = starts[first].t + 3600.0


class _Cutout:
    """Never above the anchored high-pressure limit longer than its delay plus a tick."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        self.since: float | None = None
        self.reported = False

    def feed(self, s: TickState, out: list[Violation]) -> None:
        lim = self.lim
        limit = cutout_limit(s, lim)
        acting = s.powered and any(s.running) and not _pressure_blind(s, lim)
        over = acting and s.pressure_bar > limit + CUTOUT_TOLERANCE_BAR and s.suction_bar < limit
        if not over:
            self.since = None
            self.reported = False
            return
        if self.since is None:
            self.since = s.t
        held = s.t - self.since
        if held > lim.cutout_delay_s + lim.tick_s + 1e-6 and not self.reported:
            self.reported = True
            out.append(
                Violation(
                    "cutout",
                    s.t,
                    f"discharge {s.pressure_bar:.2f} bar above the cutout {limit:.2f} bar "
                    f"for {held:.1f} s with {sum(s.running)} pump(s) running in state "
                    f"{s.state!r} (delay_s {lim.cutout_delay_s:g})",
                )
            )

    def finish(self, out: list[Violation]) -> None:
        pass


class _Lockouts:
    """A lockout only for a fault injected on that pump (or its drive) just before."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        self.last_fault: dict[str, float] = {}

    def feed(self, s: TickState, out: list[Violation]) -> None:
        for name in self.lim.pumps:
            if _pump_faulted(s, name):
                self.last_fault[name] = s.t
        for ev in s.events:
            if ev.event != "raise" or not ev.id.startswith("pump_lockout_"):
                continue
            name = ev.id.removeprefix("pump_lockout_")
            seen = self.last_fault.get(name)
            if seen is None or s.t - seen > self.lim.lockout_grace_s:
                out.append(Violation("lockout_without_fault", s.t, ev.message or name))

    def finish(self, out: list[Violation]) -> None:
        pass


def explains_no_service(s: TickState) -> bool:
    """An active alarm whose cause is present and that says why no pump runs."""
    if s.pump_states and all(p in ("locked out", "out of service") for p in s.pump_states):
        return True
    single = ("pump_lockout_", "pump_off_", "drive_comms_")
    return any(a.condition and not a.id.startswith(single) for a in s.alarms)


class _NoService:
    """Never a zone left below its setpoint with no pump and no alarm saying why."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        self.since: float | None = None
        self.reported = False

    def feed(self, s: TickState, out: list[Violation]) -> None:
        lim = self.lim
        silent = (
            s.powered
            and s.mode == "auto"
            and s.state != "power_on_delay"  # a configured wait, not a loss of service
            and not any(s.running)
            and "power_cut" not in s.faults
            and s.suction_bar >= lim.dry_run_min_bar + 0.1
            and s.pressure_bar < s.setpoint_bar - lim.no_service_margin_bar
            and not explains_no_service(s)
        )
        if not silent:
            self.since = None
            self.reported = False
            return
        if self.since is None:
            self.since = s.t
        if s.t - self.since > lim.no_service_s and not self.reported:
            self.reported = True
            out.append(
                Violation(
                    "silent_no_service",
                    s.t,
                    f"no pump running for {s.t - self.since:.0f} s at {s.pressure_bar:.2f} bar "
                    f"(setpoint {s.setpoint_bar:.2f}) in state {s.state!r}, pumps "
                    f"{dict(zip(lim.pumps, s.pump_states, strict=False))}, no alarm says why",
                )
            )

    def finish(self, out: list[Violation]) -> None:
        pass


class _AlarmLifecycle:
    """Raised alarms say why, clear when their cause goes (unless latched), never vanish."""

    def __init__(self) -> None:
        self.raised: set[str] = set()
        self.reboots = 0
        self.rebooted = False

    def feed(self, s: TickState, out: list[Violation]) -> None:
        if s.reboots > self.reboots:
            self.reboots = s.reboots
            self.rebooted = True
        if not s.powered:
            return
        if self.rebooted:
            self.rebooted = False
            self._forgotten_in_reboot(s, out)
        self._events(s, out)
        self._vanished(s, out)
        self._cause_gone(s, out)

    def _forgotten_in_reboot(self, s: TickState, out: list[Violation]) -> None:
        """The controller booted again: every alarm SCADA was told of must still be
        active (restored from the saved state) or be cleared now, never forgotten."""
        kept = {a.id for a in s.alarms} | {e.id for e in s.events if e.event == "clear"}
        lost = self.raised - kept
        if lost:
            out.append(
                Violation(
                    "alarm_lost_in_reboot",
                    s.t,
                    f"active alarms {sorted(lost)} forgotten by the reboot "
                    "(SCADA never sees them clear)",
                )
            )
        self.raised -= lost

    def _events(self, s: TickState, out: list[Violation]) -> None:
        """Each raise says why; each clear follows a raise."""
        for ev in s.events:
            if ev.event == "raise":
                if not ev.message.strip():
                    out.append(Violation("alarm_lifecycle", s.t, f"{ev.id} raised without a cause"))
                self.raised.add(ev.id)
            elif ev.event == "clear":
                if ev.id not in self.raised:
                    out.append(Violation("alarm_lifecycle", s.t, f"{ev.id} cleared, never raised"))
                self.raised.discard(ev.id)

    def _vanished(self, s: TickState, out: list[Violation]) -> None:
        """A raised alarm no longer active, with no clear."""
        active = {a.id for a in s.alarms}
        for gone in sorted(self.raised - active):
            out.append(Violation("alarm_lifecycle", s.t, f"{gone} vanished without a clear"))
            self.raised.discard(gone)

    def _cause_gone(self, s: TickState, out: list[Violation]) -> None:
        """An alarm still active with its cause gone, and no unacknowledged latch holding it."""
        for a in s.alarms:
            if not a.condition and (not a.latched or a.acked):
                out.append(
                    Violation("alarm_lifecycle", s.t, f"{a.id} stays active, its cause gone")
                )

    def finish(self, out: list[Violation]) -> None:
        pass


class _Vessel:
    """The simulated network drains no faster than its outflow allows (the plant's own
    invariant: the controller is judged on a plant whose physics hold)."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        self.last: float | None = None
        self.reported = False

    def feed(self, s: TickState, out: list[Violation]) -> None:
        last, self.last = self.last, s.pressure_bar
        c = self.lim.compliance_m3_per_bar
        if last is None or c <= 0 or any(s.running) or self.reported:
            return
        drop = last - s.pressure_bar
        allowed = s.outflow_m3h / 3600.0 * self.lim.tick_s / c
        if drop > 1.1 * allowed + 0.005:
            self.reported = True
            out.append(
                Violation(
                    "plant_vessel",
                    s.t,
                    f"no pump running, pressure fell {last:.2f} -> {s.pressure_bar:.2f} bar in "
                    f"one {self.lim.tick_s:g} s tick; {s.outflow_m3h:.1f} m3/h out of a "
                    f"{c:g} m3/bar network allows {allowed:.3f} bar",
                )
            )

    def finish(self, out: list[Violation]) -> None:
        pass


class InvariantChecker:
    """Every invariant, fed one tick at a time; ``violations`` so far."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        self.violations: list[Violation] = []
        self._checks = (
            _Values(lim),
            _Relays(lim),
            _Cutout(lim),
            _Lockouts(lim),
            _NoService(lim),
            _AlarmLifecycle(),
            _Vessel(lim),
        )
        self._finished = False

    def feed(self, s: TickState) -> None:
        for check in self._checks:
            check.feed(s, self.violations)

    def finish(self) -> list[Violation]:
        """The violations of the whole run (start windows are judged here)."""
        if not self._finished:
            self._finished = True
            for check in self._checks:
                check.finish(self.violations)
        return self.violations


def check_trace(ticks: Iterable[TickState], lim: Limits) -> list[Violation]:
    """Every violation in a whole trace."""
    checker = InvariantChecker(lim)
    for s in ticks:
        checker.feed(s)
    return checker.finish()


def kinds(violations: Sequence[Violation]) -> dict[str, int]:
    """How many violations of each kind."""
    out: dict[str, int] = {}
    for v in violations:
        out[v.kind] = out.get(v.kind, 0) + 1
    return dict(sorted(out.items()))


@dataclass
class Summary:
    """The first violation of each kind, with counts: what a report needs."""

    first: dict[str, Violation] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, violations: Sequence[Violation]) -> Summary:
        out = cls()
        for v in violations:
            out.first.setdefault(v.kind, v)
        out.counts = kinds(violations)
        return out

"""The drive cascade: drive health, the lead drive, drive speeds and the destage hand-over.

``DriveCascade`` owns what only drives have: which destaged fixed pumps still run while
the lead drive ramps up to take over their flow (``handover``) and the speed reference
of every drive (``speeds``). It works on the stager's pump records and the PID's demand
through their public methods; the control core calls it in this order each tick:
``check`` (before staging), ``hand_over`` and ``speeds`` (after).
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.config.schema import StationConfig
from controller.control.alarms import Alarms
from controller.control.pid import Pid
from controller.control.stager import Stager
from controller.values import Reading

#: Without a run-feedback input, a started fixed pump is taken as running after this.
HANDOVER_S = 2.0
#: Longest a destaged fixed pump keeps running while the lead drive ramps up to take
#: over its flow (the drive's own ramp time, capped here).
DESTAGE_HANDOVER_MAX_S = 10.0
#: The lead drive is up to speed within this fraction of its full speed.
UP_TO_SPEED = 0.95
#: The fixed-speed deadband of a station with drives whose file leaves it at 0: once the
#: drives are out, whole pumps land in a band around the setpoint, and without a
#: deadband the integral stages a fixed pump on and off until the start limits stop it.
FALLBACK_DEADBAND_BAR = 0.3


def fixed_speed_deadband_bar(cfg: StationConfig) -> float:
    """The PID's deadband while fixed-speed pumps stage (no drive leading): the file's,
    or ``FALLBACK_DEADBAND_BAR`` where a station with drives leaves it at 0 (documented
    as used only while the drive is out)."""
    band = cfg.control.pid.deadband_bar
    if band == 0 and len(cfg.pumps) > 1 and any(p.vfd for p in cfg.pumps.values()):
        return FALLBACK_DEADBAND_BAR
    return band


class DriveCascade:
    def __init__(self, cfg: StationConfig, *, stager: Stager, pid: Pid, alarms: Alarms) -> None:
        self.cfg = cfg
        self.stager = stager
        self.pid = pid
        self.alarms = alarms
        #: Destaged fixed pumps still running until the lead drive has ramped up: pump ->
        #: monotonic time its relay really opens.
        self.handover: dict[str, float] = {}
        #: speed reference of every drive-equipped pump, as a fraction of rated speed
        self.speeds: dict[str, float] = {}

    def reconfigure(self, cfg: StationConfig, now: float) -> None:
        """A new station file. A hand-over in progress ends (its pump may be gone)."""
        self.cfg = cfg
        self.end_hand_overs(now)

    # -- health and the lead ------------------------------------------------------------

    def check(self, now: float, readings: Mapping[str, Reading], *, starting: bool) -> set[str]:
        """Drive trips lock their pump out; lost drive communication falls back to relays.
        Returns the pumps whose drive reports a trip this tick."""
        tripped: set[str] = set()
        live = False
        for name, pcfg in self.cfg.pumps.items():
            vfd = pcfg.vfd
            if vfd is None:
                continue
            if vfd.fault_point is not None:
                r = readings.get(vfd.fault_point)
                if r is not None and r.good and bool(r.value):
                    self.stager.lock_out(name, "drive tripped", now)
                    tripped.add(name)
            talking = all(
                (r := readings.get(point)) is not None and r.good
                for point in (vfd.speed_point, vfd.frequency_point, vfd.fault_point)
                if point is not None
            )
            self.alarms.set(
                f"drive_comms_{name}",
                not talking and not starting,
                now,
                severity="major",
                message=f"drive of {name} not answering: staging fixed-speed",
            )
            # A drive leads only on a pump control may run (not locked out, not Off).
            live = live or (talking and self.stager.pumps[name].usable)
        if live != self.stager.lead_vfd:
            self.stager.set_lead_vfd(live)
            self.pid.set_deadband(self.deadband_bar(self.cfg))
        return tripped

    def deadband_bar(self, cfg: StationConfig) -> float:
        """The PID's deadband: continuous control with a drive leading; a deadband only
        for fixed-speed steps."""
        return 0.0 if self.stager.lead_vfd else fixed_speed_deadband_bar(cfg)

    def running(self, relays: Mapping[str, bool]) -> list[str]:
        """The drives switched on, the lead (the first started) first."""
        return sorted(
            (n for n, p in self.cfg.pumps.items() if p.vfd is not None and relays.get(n)),
            key=lambda n: self.stager.pumps[n].started_at,
        )

    def lead(self, relays: Mapping[str, bool]) -> list[str]:
        """The lead drive, if a drive leads (as a list of at most one)."""
        return self.running(relays)[:1] if self.stager.lead_vfd else []

    # -- destage hand-over ----------------------------------------------------------------

    def hand_over(
        self,
        now: float,
        relays: Mapping[str, bool],
        *,
        was_on: Mapping[str, bool],
        pv: float | None,
        readings: Mapping[str, Reading],
        automatic: bool,
        setpoint: float,
    ) -> dict[str, bool]:
        """Destage behind a drive without a dip: the fixed pump keeps running while the
        lead drive ramps up to carry its flow, then stops. Returns the relays with the
        handed-over pumps still on.

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
        relay opens now; so does a pump switched Off or locked out, for its own.
        """
        out = dict(relays)
        if not self.handover and not automatic:
            return out
        drives = self.running(out)
        lead = drives[0] if drives else None
        vfd = self.cfg.pumps[lead].vfd if lead is not None else None
        live = automatic and self.stager.lead_vfd and pv is not None
        if not live or vfd is None or not vfd.ramp_s:
            self.end_hand_overs(now)
            return out
        freq = readings.get(vfd.frequency_point) if vfd.frequency_point else None
        full_speed = vfd.max_speed_pct / 100.0
        if freq is not None and freq.good and freq.value is not None:
            hold_s = DESTAGE_HANDOVER_MAX_S
            up_to_speed = freq.value / vfd.rated_hz >= UP_TO_SPEED * full_speed
        else:
            hold_s = min(vfd.ramp_s, DESTAGE_HANDOVER_MAX_S)
            up_to_speed = False
        for name, before in was_on.items():
            rec = self.stager.pumps[name]
            if before and not rec.on and rec.cfg.vfd is None and rec.usable:
                self.handover.setdefault(name, now + hold_s)
        cap = self.stager.max_running
        for name, until in list(self.handover.items()):
            rec = self.stager.pumps[name]
            # Never more pumps at once than the cap (the standby stays standby): a swap
            # that starts another pump as this one stops is no destage to hand over.
            over_cap = sum(out.values()) + 1 > cap
            if rec.on or not rec.usable or now >= until or over_cap or up_to_speed:
                self.end_hand_overs(now, name)
            else:
                out[name] = True
        if self.handover and pv is not None:
            others = sum(1 for n, on in out.items() if on and n != lead and n not in self.handover)
            self.pid.hold(others + full_speed, pv, setpoint)
        return out

    def end_hand_overs(self, now: float, *names: str) -> None:
        """The relays of these hand-overs (all, without names) open now: a pump's
        minimum off time counts from its real stop, not from the stager's decision."""
        for name in names or list(self.handover):
            del self.handover[name]
            self.stager.relay_opened(name, now)

    # -- speeds ---------------------------------------------------------------------------

    def update_speeds(
        self,
        now: float,
        relays: Mapping[str, bool],
        feedback: Mapping[str, bool | None],
        *,
        pid_live: bool,
    ) -> dict[str, float]:
        """Speed of each drive. The lead (the running drive that started first) takes the
        demand left after the other running pumps; a second drive runs flat out like a
        fixed-speed pump, so the cascade is the same with one drive or several.

        A pump counts only once it runs (its feedback closed, or, without a feedback
        input, a few seconds after its start): until then the lead carries its share,
        so a stage change does not dip the pressure while a contactor closes.
        """
        out = {n: 0.0 for n, p in self.cfg.pumps.items() if p.vfd is not None}
        self.speeds = out
        running = self.running(relays)
        if not running:
            return out
        live = self.stager.lead_vfd and pid_live
        lead = running[0]
        others = 0
        for n, on in relays.items():
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

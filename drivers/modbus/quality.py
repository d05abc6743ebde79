"""From reads to the value control sees: plausibility, hold, staleness, per point.

A read that decodes is not yet a good value. A transmitter glitch or a frame corrupted
in a way the CRC cannot see still decodes, so each point may declare what it can do:
``max_rate_per_s`` (how fast it can change) and ``monotonic`` (a totaliser never goes
backwards). A value that breaks them is bad with reason ``implausible``.

One failed poll must never stop a station: the suction transmitter unreadable for one
tick would stop every pump. So after a failed read the point keeps its last good value,
marked *held*, for ``hold_s`` after that value was read; only then is it bad, with the
real reason of the last failure. Acquisition and the simulator's source share this, so
the closed-loop tests see what the field sees.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.schema import BusConfig, PointConfig, StationConfig
from controller.logs import get_logger
from controller.values import BadReason, Reading

log = get_logger(__name__)

#: A good value older than this many poll periods (plus one timeout) is stale.
STALE_PERIODS = 3.0
#: A totaliser reading below its last good value this many times in a row, never
#: decreasing among themselves, is a reset or a rollover, not noise.
RESET_CONFIRM_READS = 3


def hold_s(bus: BusConfig, point: PointConfig, period_s: float) -> float:
    """How long ``point`` keeps its last good value after failed reads."""
    if point.hold_s is not None:
        return point.hold_s
    if bus.hold_s is not None:
        return bus.hold_s
    return stale_s(bus, period_s)


def stale_s(bus: BusConfig, period_s: float) -> float:
    """Age at which a good value that was not read again is stale."""
    return STALE_PERIODS * period_s + bus.timeout_s


@dataclass
class PointGuard:
    """One point's judged state: the last read, the last good value, a reset candidate."""

    name: str
    point: PointConfig
    hold_s: float
    stale_s: float
    latest: Reading | None = None
    last_good: Reading | None = None
    _reset_value: float | None = None
    _reset_reads: int = 0

    def update(self, reading: Reading) -> Reading:
        """Take a fresh read (good or bad); the reading as judged."""
        if reading.good:
            reading = self._plausible(reading)
        if reading.good:
            self.last_good = reading
        elif reading.reason is BadReason.IMPLAUSIBLE and (
            self.latest is None or self.latest.reason is not BadReason.IMPLAUSIBLE
        ):
            log.warning("implausible value rejected", point=self.name, detail=reading.detail)
        self.latest = reading
        return reading

    def view(self, now: float) -> Reading:
        """What control sees at ``now``: fresh, held, stale or bad."""
        r = self.latest
        if r is None:
            return Reading.bad(self.name, self.point.unit, BadReason.NOT_POLLED, "no read yet")
        if r.good:
            if now - r.t_mono > self.stale_s:
                return Reading.bad(
                    self.name,
                    self.point.unit,
                    BadReason.STALE,
                    f"last good value {now - r.t_mono:.1f} s old",
                    raw=r.raw,
                    t_mono=r.t_mono,
                )
            return r
        good = self.last_good
        if good is not None and now - good.t_mono <= self.hold_s:
            return good.hold(r)
        return r

    def _plausible(self, r: Reading) -> Reading:
        good = self.last_good
        if good is None or good.value is None or r.value is None:
            return r
        cfg = self.point
        unit = f" {cfg.unit}" if cfg.unit else ""
        if cfg.monotonic and r.value < good.value:
            if self._confirm_reset(r.value):
                log.warning(
                    "totaliser reset or rollover accepted",
                    point=self.name,
                    before=good.value,
                    after=r.value,
                )
                return r
            return self._implausible(
                r, f"went back from {good.value:g} to {r.value:g}{unit} (monotonic)"
            )
        self._reset_value, self._reset_reads = None, 0
        dt = r.t_mono - good.t_mono
        limit = cfg.max_rate_per_s
        # The allowed step grows with the time since the last good value, so a real
        # change faster than the limit is accepted once the limit could explain it.
        if limit is not None and abs(r.value - good.value) > limit * max(dt, 0.0):
            return self._implausible(
                r,
                f"changed {r.value - good.value:+g}{unit} in {dt:.2f} s (max_rate_per_s {limit:g})",
            )
        return r

    def _confirm_reset(self, value: float) -> bool:
        if self._reset_value is not None and value >= self._reset_value:
            self._reset_reads += 1
        else:
            self._reset_reads = 1
        self._reset_value = value
        if self._reset_reads >= RESET_CONFIRM_READS:
            self._reset_value, self._reset_reads = None, 0
            return True
        return False

    def _implausible(self, r: Reading, detail: str) -> Reading:
        return Reading.bad(
            self.name, r.unit, BadReason.IMPLAUSIBLE, detail, raw=r.raw, t_mono=r.t_mono
        )


def point_guards(cfg: StationConfig) -> dict[str, PointGuard]:
    """A guard per point, with its hold and staleness limits from the station file."""
    guards: dict[str, PointGuard] = {}
    for name, (dev_name, point) in cfg.points().items():
        bus = cfg.buses[cfg.devices[dev_name].bus]
        period = cfg.poll_period_s(point.poll)
        guards[name] = PointGuard(
            name, point, hold_s=hold_s(bus, point, period), stale_s=stale_s(bus, period)
        )
    return guards

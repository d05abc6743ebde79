"""The control loop: each tick reads the freshest values, runs the control law, writes relays.

The loop owns no policy. Protections, PID and staging live in ``controller.control``
(pure code); acquisition runs in its own task and the loop only takes its latest
readings (``ValueSource.read_all``), so a slow bus can never delay a tick. ``tick`` is
synchronous so that the closed-loop simulator can call it thousands of times per second;
``run`` drives it from a fixed-rate ticker on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.aio import wait_event
from controller.control.core import ControlOutputs, PumpInputs
from controller.logs import get_logger
from controller.state.enums import ControlState, Mode, coerce
from controller.state.models import TelemetrySample, Why
from controller.telemetry.encoding import (
    PUMP_EXERCISING,
    PUMP_FAULT,
    PUMP_FEEDBACK,
    PUMP_LOCKED_OUT,
    PUMP_NO_FEEDBACK,
    PUMP_ON,
    PUMP_OUT_OF_SERVICE,
    TelemetrySchema,
)
from controller.ticker import FixedRateTicker, Tick
from controller.values import Reading

log = get_logger(__name__)


class ValueSource(Protocol):
    """Where a station's values come from: Modbus acquisition, or the simulated plant.

    What the loop reads each tick (``read_all``, never blocking: the latest reading of
    every point), plus what the daemon needs: progress for the watchdog, statistics for the
    status, and writes for the drives.
    """

    def read_all(self) -> dict[str, Reading]: ...

    @property
    def progress(self) -> int: ...

    def stats(self) -> dict[str, object]: ...

    def write(self, point: str, value: float) -> None: ...


class ControlLaw(Protocol):
    """What the loop runs each tick: ``ControlCore``, or the benchmark's baseline."""

    def step(
        self, now: float, readings: Mapping[str, Reading], pumps: Mapping[str, PumpInputs]
    ) -> ControlOutputs: ...


class PumpLines(Protocol):
    """The relay outputs and pump inputs (``drivers.gpio.factory.PumpIO``)."""

    def apply(self, relays: Mapping[str, bool]) -> None: ...

    def feedback(self, name: str) -> bool | None: ...

    def fault(self, name: str) -> bool: ...

    def all_safe(self) -> None: ...


@dataclass
class LoopStats:
    ticks: int = 0
    overruns: int = 0
    missed: int = 0
    max_tick_s: float = 0.0
    last_tick_mono: float | None = None
    #: how late each recent tick started after its deadline (the loop's jitter)
    lateness_s: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def as_dict(self) -> dict[str, Any]:
        late = sorted(self.lateness_s)

        def pct(q: float) -> float | None:
            return round(1000 * late[min(len(late) - 1, int(q * len(late)))], 3) if late else None

        return {
            "ticks": self.ticks,
            "overruns": self.overruns,
            "missed": self.missed,
            "max_tick_ms": round(self.max_tick_s * 1000, 3),
            "jitter_ms_p50": pct(0.50),
            "jitter_ms_p99": pct(0.99),
            "jitter_ms_max": round(1000 * late[-1], 3) if late else None,
        }


#: A tick's sample as the buffer takes it: ``TelemetrySample.body()``, with the
#: ``TelemetrySchema`` itself under ``sch`` (the buffer stores it once, sends its id).
Sample = dict[str, Any]


def telemetry_sample(
    readings: Mapping[str, Reading],
    out: ControlOutputs,
    pumps: Mapping[str, PumpInputs],
) -> tuple[TelemetrySample, TelemetrySchema]:
    """One tick in telemetry format 2 (docs/mqtt.md), and the schema it refers to.

    Names and units live in the schema (``sch``, sent once, retained), so a sample is
    a few numbers: values in the schema's point order, pumps as flag words. Built on
    every tick, so without validation (controller/state/models.py says why)."""
    schema = _schema(
        tuple((name, r.unit) for name, r in readings.items()),
        tuple(pumps),
    )
    values: list[float | None] = []
    bad: dict[str, Why] = {}
    held: dict[str, Why] = {}
    for name, r in readings.items():
        values.append(r.wire_value())  # not as_dict(): a dict per point per tick, for "v"
        if r.reason is not None:
            why: Why = (r.reason, r.detail) if r.detail else (r.reason,)
            # A held value is good (the last good one, kept through a failed poll): its
            # reason says why the fresh read failed, and it is not a bad value.
            (held if r.good else bad)[name] = why
    lockouts = {name: out.lockouts[name] for name in pumps if name in out.lockouts}
    speeds = None
    if any(name in out.speeds for name in pumps):
        speeds = [
            round(100.0 * out.speeds[name], 2) if name in out.speeds else None for name in pumps
        ]
    sample = TelemetrySample(
        sch=schema.id,
        m=coerce(Mode, out.mode),
        st=coerce(ControlState, out.state),
        sp=round(out.setpoint_bar, 4),
        dem=round(out.demand, 4),
        val=values,
        pmp=[_pump_flags(name, inputs, out) for name, inputs in pumps.items()],
        bad=bad or None,
        held=held or None,
        lock=lockouts or None,
        spd=speeds,
    )
    return sample, schema


def make_sample(
    readings: Mapping[str, Reading],
    out: ControlOutputs,
    pumps: Mapping[str, PumpInputs],
) -> Sample:
    """The telemetry body for one tick, as the buffer takes it: the buffer adds
    ``seq``, ``boot`` and ``ts`` and encodes it once, to the bytes SCADA receives."""
    sample, schema = telemetry_sample(readings, out, pumps)
    body = sample.body()
    body["sch"] = schema
    return body


@functools.lru_cache(maxsize=16)
def _schema(points: tuple[tuple[str, str], ...], pumps: tuple[str, ...]) -> TelemetrySchema:
    # The same objects every tick: the schema (and its hash) is built once per station file.
    return TelemetrySchema(points=points, pumps=pumps)


def _pump_flags(name: str, inputs: PumpInputs, out: ControlOutputs) -> int:
    flags = PUMP_ON if out.relays.get(name, False) else 0
    if inputs.feedback is None:
        flags |= PUMP_NO_FEEDBACK
    elif inputs.feedback:
        flags |= PUMP_FEEDBACK
    if inputs.fault:
        flags |= PUMP_FAULT
    state = out.pump_states.get(name)
    if state == "locked out" or name in out.lockouts:
        flags |= PUMP_LOCKED_OUT
    elif state == "out of service":
        flags |= PUMP_OUT_OF_SERVICE
    elif state == "exercising":
        flags |= PUMP_EXERCISING
    return flags


class ControlLoop:
    """One station's control loop."""

    def __init__(
        self,
        *,
        core: ControlLaw,
        source: ValueSource,
        pumps: PumpLines,
        pump_names: list[str],
        tick_s: float,
        sink: Callable[[Sample], object] | None = None,
        on_events: Callable[[ControlOutputs], None] | None = None,
        speeds: Callable[[Mapping[str, float]], None] | None = None,
    ) -> None:
        self.core = core
        self.source = source
        self.pumps = pumps
        self.pump_names = list(pump_names)
        self.tick_s = tick_s
        self.sink = sink
        self.on_events = on_events
        self.speeds = speeds
        self.stats = LoopStats()
        self.readings: dict[str, Reading] = {}
        self.outputs: ControlOutputs | None = None

    def tick(self, now: float) -> ControlOutputs:
        """Read, decide, write, record. Exceptions propagate: the daemon makes outputs safe."""
        readings = self.source.read_all()
        inputs = {
            name: PumpInputs(feedback=self.pumps.feedback(name), fault=self.pumps.fault(name))
            for name in self.pump_names
        }
        out = self.core.step(now, readings, inputs)
        self.pumps.apply(out.relays)
        if self.speeds is not None and out.speeds:
            self.speeds(out.speeds)
        self.readings = readings
        self.outputs = out
        self.stats.ticks += 1
        if self.sink is not None:
            self.sink(make_sample(readings, out, inputs))
        if self.on_events is not None and out.events:
            self.on_events(out)
        return out

    async def run(
        self,
        stop: asyncio.Event,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Tick at a fixed rate until ``stop`` is set."""

        async def sleep(delay: float) -> None:
            await wait_event(stop, delay)

        ticker = FixedRateTicker(period_s=self.tick_s, clock=clock, sleep=sleep)
        ticker.on_overrun = self._overrun
        async for tick in ticker:
            if stop.is_set():
                return
            started = time.perf_counter()
            self.tick(tick.started)
            elapsed = time.perf_counter() - started
            stats = self.stats
            stats.lateness_s.append(tick.lateness)
            stats.max_tick_s = max(stats.max_tick_s, elapsed)
            stats.last_tick_mono = time.monotonic()
            stats.overruns = ticker.stats.overruns
            stats.missed = ticker.stats.missed
            # Give the other tasks (uplink keep-alive, status) a turn even when late.
            await asyncio.sleep(0)

    def _overrun(self, tick: Tick) -> None:
        log.warning(
            "control tick overrun",
            missed=tick.missed,
            late_ms=round(tick.lateness * 1000, 1),
        )

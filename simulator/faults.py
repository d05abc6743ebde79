"""Faults scripted by simulated time.

A fault is written ``KIND[:TARGET]@AT[+DURATION][,KEY=VALUE...]``, times in simulated
seconds from the start of the run, e.g.::

    slave_silent:flow_meter@60+30      the flow meter stops answering for 30 s
    pump_trip:P2@120                   P2's motor protection trips (until the end)
    noise:discharge_pressure@0+600,sigma=0.05
    suction_loss@300+120               the supply main runs dry for two minutes
    burst@1200,flow_m3h=40             a main bursts: 40 m3/h more outflow
    power_cut@900+300,ups=0            grid lost for 5 min, the controller with it
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from controller.errors import BoosterError

#: kind -> (what the target names, allowed parameters with defaults)
KINDS: dict[str, tuple[str | None, dict[str, float]]] = {
    "slave_silent": ("device", {}),
    "slave_bad_crc": ("device", {}),
    "slave_garbage": ("device", {}),
    "slave_exception": ("device", {"code": 4.0}),
    "stuck": ("point", {}),
    "noise": ("point", {"sigma": 0.05}),
    "wire_break": ("point", {}),
    "pump_trip": ("pump", {}),
    "pump_no_feedback": ("pump", {}),
    "drive_fault": ("pump", {}),
    "suction_loss": (None, {"bar": 0.0}),
    # ups=1: the Pi rides through on a UPS while the contactors drop out; the transmitters
    # go silent unless sensors=1 (they are on the UPS too). ups=0: the whole station goes
    # dark, the controller too, and boots again when the power returns.
    "power_cut": (None, {"ups": 1.0, "sensors": 0.0}),
    "demand_step": (None, {"factor": 1.5}),
    "burst": (None, {"flow_m3h": 30.0}),
}

_SPEC = re.compile(
    r"^(?P<kind>[a-z_]+)(?::(?P<target>[A-Za-z0-9_.-]+))?"
    r"@(?P<at>[0-9.]+)(?:\+(?P<dur>[0-9.]+))?(?P<params>(?:,[a-z_][a-z0-9_]*=[-0-9.eE]+)*)$"
)


class FaultSpecError(BoosterError):
    """A fault specification could not be understood."""


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float | None = None
    target: str | None = None
    params: dict[str, float] = field(default_factory=dict)

    def active(self, t: float) -> bool:
        if t < self.at_s:
            return False
        return self.duration_s is None or t < self.at_s + self.duration_s

    def param(self, key: str) -> float:
        return self.params.get(key, KINDS[self.kind][1][key])


def parse_fault(spec: str) -> Fault:
    """A Fault from its one-line form; FaultSpecError says what is wrong."""
    m = _SPEC.match(spec.strip())
    if m is None:
        raise FaultSpecError(
            f"fault {spec!r}: expected KIND[:TARGET]@AT[+DURATION][,KEY=VALUE], "
            "e.g. slave_silent:flow_meter@60+30"
        )
    kind = m["kind"]
    if kind not in KINDS:
        raise FaultSpecError(f"fault {spec!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    needs, allowed = KINDS[kind]
    target = m["target"]
    if needs and not target:
        raise FaultSpecError(f"fault {spec!r}: {kind} needs a {needs}, e.g. {kind}:NAME@60")
    if not needs and target:
        raise FaultSpecError(f"fault {spec!r}: {kind} takes no target")
    params: dict[str, float] = {}
    for item in filter(None, (m["params"] or "").split(",")):
        key, _, value = item.partition("=")
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise FaultSpecError(f"fault {spec!r}: {kind} has no parameter {key!r} ({known})")
        number = float(value)
        if not math.isfinite(number):
            raise FaultSpecError(f"fault {spec!r}: {key} must be a finite number")
        params[key] = number
    return Fault(
        kind=kind,
        at_s=float(m["at"]),
        duration_s=float(m["dur"]) if m["dur"] else None,
        target=target,
        params=params,
    )


class FaultSchedule:
    """The faults of one run; ``active(t)`` lists those in force at simulated time t."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self.faults = list(faults or [])

    def add(self, fault: Fault) -> None:
        self.faults.append(fault)

    def active(self, t: float) -> list[Fault]:
        return [f for f in self.faults if f.active(t)]

    def validate(self, *, devices: set[str], points: set[str], pumps: set[str]) -> None:
        """Check every target exists in the station (before the run, not mid-way)."""
        names = {"device": devices, "point": points, "pump": pumps}
        for f in self.faults:
            needs = KINDS[f.kind][0]
            if needs and f.target not in names[needs]:
                known = ", ".join(sorted(names[needs]))
                raise FaultSpecError(f"fault {f.kind}: no {needs} {f.target!r} ({known})")

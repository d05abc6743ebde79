"""A scenario generator that finds what the example stations hide (issue 13, item 5).

Random but physically sensible stations (``stations``), random days of demand,
supply and events for them (``days``), run on the simulator in accelerated time with
invariants checked on every tick (``invariants``, ``runner``); a failing case is shrunk
and printed as a seed, a station file and an event script. Seeded ``random.Random``
only: the same seed gives the same station-day.
"""

from simulator.scenarios.days import Command, Day, generate_day
from simulator.scenarios.invariants import (
    InvariantChecker,
    Limits,
    TickState,
    Violation,
    check_trace,
)
from simulator.scenarios.runner import (
    Case,
    RunResult,
    events_text,
    parse_events,
    reproducer,
    run_day,
    shrink,
)
from simulator.scenarios.stations import GeneratedStation, generate_station

__all__ = [
    "Case",
    "Command",
    "Day",
    "GeneratedStation",
    "InvariantChecker",
    "Limits",
    "RunResult",
    "TickState",
    "Violation",
    "check_trace",
    "events_text",
    "generate_day",
    "generate_station",
    "parse_events",
    "reproducer",
    "run_day",
    "shrink",
]

"""The control law: PID, pump staging, protections and alarms. Pure code: no I/O, no asyncio.

Every function takes ``now`` (monotonic seconds, or simulated time) as an argument, so
the same code runs in the daemon and thousands of times faster than real time in the
closed-loop simulator. The one clock read here is the station's local time of day, for
the pressure-management schedule (``setpoint.wall_clock``; the simulator injects its own).
``core.py`` runs the stages of a tick in order; docs/control.md describes them.
"""

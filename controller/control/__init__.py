"""The control law: PID, pump staging, protections and alarms. Pure code: no I/O, no clock.

Every function takes ``now`` (monotonic seconds, or simulated time) as an argument, so
the same code runs in the daemon and thousands of times faster than real time in the
closed-loop simulator.
"""

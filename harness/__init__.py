"""The controller run around the simulated plant: closed loop, demo, and their pacing.

``simulator/`` is the plant (hydraulics, pumps, faults, register image, Modbus slaves);
this package runs the controller around it: ``closed_loop`` as fast as the CPU allows
(the closed-loop tests and the control benchmark), ``demo`` the whole daemon in
simulated time (``boosterd demo``), ``pacing`` the simulated time the demo's daemon is
given. Both wire the station with ``controller.runtime.assembly.assemble``, as the
daemon does in the field.
"""

"""What the control core may refuse, and the modes it knows.

Command *values* are checked by the command processor (``controller.telemetry.commands``,
the one path for SCADA, Sparkplug NCMD, the HMI and the status socket) against the
station file in force: the core receives values that are valid (a setpoint inside the
range, a known mode, a validated pressure management table). What depends on the core's
own state is refused here, by the core, with ``CommandRejected``: a pump command outside
manual mode or for a locked-out or switched-Off pump, an acknowledgement of an alarm that
is not active.
"""

from __future__ import annotations

from controller.errors import BoosterError

MODES = ("auto", "manual", "off")
#: A pump's own mode, the Auto and Off of its Hand-Off-Auto (Hand is the station's manual
#: mode with the pump started): ``off`` takes it out of service.
PUMP_MODES = ("auto", "off")


class CommandRejected(BoosterError):
    """A command that was not carried out; the message says why."""

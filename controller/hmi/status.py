"""What the HMI renders: the daemon's typed status and what only the HMI adds to it.

Built once a second (``HmiServer.snapshot``) and shared by every page, the live view
(``live.live_view``) and the trend sample; read by attribute, never by key. A dict of
the older shape (``local_status_json`` plus the HMI's keys, as tests and tools without
a daemon give) is read leniently into one by ``hmi_status``: what it lacks is None.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.state.dump import read
from controller.state.models import LocalStatus


@dataclass(frozen=True, kw_only=True)
class PointRoles:
    """The P&ID's measurement roles and the point names that play them (None: not
    measured at this station)."""

    discharge: str | None
    suction: str | None = None
    flow: str | None = None
    far_end: str | None = None

    def items(self) -> Iterator[tuple[str, str | None]]:
        """``(role, point)`` in the P&ID's order: discharge, suction, flow, far end."""
        yield "discharge", self.discharge
        yield "suction", self.suction
        yield "flow", self.flow
        yield "far_end", self.far_end


@dataclass(frozen=True, kw_only=True)
class HmiStatus:
    """One second of the station as the HMI shows it."""

    status: LocalStatus
    """The daemon's status: control, pumps, alarms, values, subsystems."""
    roles: PointRoles
    """Which points are discharge, suction, flow and far end pressure."""
    manual: Mapping[str, bool] = field(default_factory=dict)
    """What the operator asked of each pump in manual mode (Hand or Off on the
    faceplate); the pump itself may follow later (anti-cycling, protections)."""
    frequency_points: Mapping[str, str] = field(default_factory=dict)
    """Each drive pump's output frequency point, where one is configured."""
    starts_today: Mapping[str, int] = field(default_factory=dict)
    """Each pump's starts since the station's midnight."""
    seq: int = 0
    """The live frame this status belongs to (pages match it to the stream)."""


#: What the HMI's rendering functions take: the typed status, or a dict read into one.
Snapshot = HmiStatus | Mapping[str, Any]


def hmi_status(snap: Snapshot) -> HmiStatus:
    """``snap`` itself, or the dict read leniently (for display only)."""
    if isinstance(snap, HmiStatus):
        return snap
    ctl = snap.get("control_points") or {}
    return HmiStatus(
        status=read(LocalStatus, snap),
        roles=PointRoles(
            discharge=snap.get("pressure_point"),
            suction=ctl.get("suction"),
            flow=ctl.get("flow"),
            far_end=ctl.get("far_end"),
        ),
        manual=snap.get("manual") or {},
        frequency_points=snap.get("frequency_points") or {},
        starts_today=snap.get("starts_today") or {},
        seq=snap.get("seq") or 0,
    )

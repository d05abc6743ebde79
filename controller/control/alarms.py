"""Alarms with raise and clear times; latched ones stay until a technician acknowledges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A change SCADA is told about on the alarm topic."""

    id: str
    event: str  # raise | clear | ack
    severity: str
    message: str
    t: float
    latched: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "event": self.event,
            "severity": self.severity,
            "message": self.message,
            "t_mono": round(self.t, 3),
            "latched": self.latched,
        }


@dataclass(slots=True)
class Alarm:
    id: str
    severity: str
    message: str
    since: float
    latched: bool
    condition: bool = True  # is the cause still present?
    acked: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "severity": self.severity,
            "message": self.message,
            "since": round(self.since, 3),
            "latched": self.latched,
            "condition": self.condition,
            "acked": self.acked,
        }


class Alarms:
    """The registry. ``set`` every tick with the condition; events accumulate for draining."""

    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}
        self._events: list[AlarmEvent] = []

    def set(
        self,
        alarm_id: str,
        condition: bool,
        now: float,
        *,
        severity: str = "warning",
        message: str = "",
        latched: bool = False,
    ) -> None:
        alarm = self._alarms.get(alarm_id)
        if condition:
            if alarm is None:
                alarm = Alarm(alarm_id, severity, message, now, latched)
                self._alarms[alarm_id] = alarm
                self._emit(alarm, "raise", now)
            elif not alarm.condition:
                alarm.condition = True
                alarm.acked = False
            if message:
                alarm.message = message
            return
        if alarm is None or not alarm.condition:
            return
        alarm.condition = False
        if not alarm.latched or alarm.acked:
            self._clear(alarm, now)

    def _clear(self, alarm: Alarm, now: float) -> None:
        del self._alarms[alarm.id]
        self._emit(alarm, "clear", now)

    def _emit(self, alarm: Alarm, event: str, now: float) -> None:
        self._events.append(
            AlarmEvent(alarm.id, event, alarm.severity, alarm.message, now, alarm.latched)
        )

    def ack(self, now: float, alarm_id: str | None = None) -> list[str]:
        """Acknowledge one latched alarm (or all); returns the ids acknowledged."""
        done: list[str] = []
        for alarm in list(self._alarms.values()):
            if alarm_id is not None and alarm.id != alarm_id:
                continue
            if not alarm.latched or alarm.acked:
                continue
            alarm.acked = True
            done.append(alarm.id)
            self._emit(alarm, "ack", now)
            if not alarm.condition:
                self._clear(alarm, now)
        return done

    def is_active(self, alarm_id: str) -> bool:
        return alarm_id in self._alarms

    def unacknowledged(self, alarm_id: str) -> bool:
        alarm = self._alarms.get(alarm_id)
        return alarm is not None and alarm.latched and not alarm.acked

    def active(self) -> list[Alarm]:
        return list(self._alarms.values())

    def export(self) -> list[dict[str, object]]:
        """The active alarms, to be restored after a restart (``restore``)."""
        return [{"id": a.id, **a.as_dict()} for a in self._alarms.values()]

    def restore(self, saved: object, now: float) -> None:
        """Alarms active before a restart stay active, without a second ``raise``: the
        controller's first ticks then clear those whose cause is gone, so SCADA sees every
        alarm it was told of cleared (or still latched), none silently forgotten."""
        if not isinstance(saved, list):
            return
        for item in saved[:200]:
            if not isinstance(item, dict):
                continue
            aid, severity, message = item.get("id"), item.get("severity"), item.get("message")
            if not isinstance(aid, str) or not aid or len(aid) > 128 or aid in self._alarms:
                continue
            self._alarms[aid] = Alarm(
                aid,
                severity if isinstance(severity, str) else "warning",
                message[:500] if isinstance(message, str) else "",
                now,
                item.get("latched") is True,
                condition=True,
                acked=item.get("acked") is True,
            )

    def drain(self) -> list[AlarmEvent]:
        events, self._events = self._events, []
        return events

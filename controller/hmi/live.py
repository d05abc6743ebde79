"""What the live pages show, computed once per second from the HMI's typed status.

The result is flat and display-ready (``fields``: element key -> text, ``classes``:
element key -> abnormal class), per language, so every browser gets the same JSON and
the page script only copies text: no formatting logic in JavaScript, no HTML injected.
"""

from __future__ import annotations

import math
from typing import Any

from controller.hmi.status import Snapshot, hmi_status
from controller.i18n import alarm_text, state_name, t
from controller.state.enums import Quality

#: abnormal classes: ISA-101 grey for normal, colour only for these.
ALARM_CLASS = {"critical": "alarm-crit", "major": "alarm-major"}


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def points(snap: Snapshot) -> dict[str, str | None]:
    """The P&ID's measurement roles and the point names that play them."""
    return dict(hmi_status(snap).roles.items())


def live_view(snap: Snapshot, lang: str) -> dict[str, Any]:
    """The display-ready live state in ``lang``."""
    hmi = hmi_status(snap)
    st = hmi.status
    fields: dict[str, str] = {}
    classes: dict[str, str] = {}
    values = st.values
    for role, point in hmi.roles.items():
        v = values.get(point) if point else None
        good = v is not None and v.q == Quality.GOOD
        if not point:
            fields[f"v.{role}"] = "-"  # not measured at this station
        else:
            fields[f"v.{role}"] = fmt(v.v) if good and v is not None else t(lang, "ui.bad")
        classes[f"v.{role}"] = "" if good or not point else "bad"
    mode = _word(st.mode)
    fields["mode"] = state_name(lang, mode)
    state = _word(st.state)
    fields["state"] = state_name(lang, state)
    classes["state"] = "" if state in ("auto", "manual", "off", "filling", "low_flow") else "abn"
    fields["setpoint"] = fmt(st.setpoint_bar)
    fields["base_setpoint"] = fmt(st.base_setpoint_bar)
    running = 0
    for name, pump in st.pumps.items():
        on = bool(pump.running)
        running += on
        fields[f"p.{name}.state"] = state_name(lang, _word(pump.state))
        asked = bool(hmi.manual.get(name, on))
        switch = hoa(mode, asked, out_of_service=bool(pump.out_of_service))
        fields[f"p.{name}.hoa"] = t(lang, f"ui.hoa_{switch}")
        fields[f"p.{name}.starts_today"] = fmt(hmi.starts_today.get(name), 0)
        hz = values.get(hmi.frequency_points.get(name) or "")
        fields[f"p.{name}.hz"] = fmt(hz.v, 1) if hz is not None and hz.q == Quality.GOOD else "-"
        classes[f"p.{name}"] = "fault" if pump.locked_out else ("run" if on else "")
        # a pump without a drive runs at its rated speed when its contactor is in
        speed = pump.speed_pct if pump.speed_pct is not None else 100.0
        fields[f"p.{name}.speed"] = fmt(speed, 0) if on else "0"
        fields[f"p.{name}.hours"] = fmt(pump.run_hours, 1)
        fields[f"p.{name}.starts_hour"] = fmt(pump.starts_last_hour, 0)
        fields[f"p.{name}.starts_total"] = fmt(pump.starts_total, 0)
        fields[f"p.{name}.lockout"] = str(pump.locked_out or "-")
    fields["pumps_running"] = str(running)
    connected = st.uplink.get("connected")
    fields["uplink"] = t(lang, "ui.connected" if connected else "ui.disconnected")
    classes["uplink"] = "" if connected else "abn"
    fields["backlog"] = fmt(st.buffer.get("backlog"), 0)
    alarms = [
        {
            "id": _word(a.id),
            "severity": t(lang, f"severity.{_word(a.severity)}"),
            "cls": ALARM_CLASS.get(_word(a.severity), "alarm-warn"),
            "text": alarm_text(lang, _word(a.id), _word(a.message)),
            "detail": _word(a.message),  # the controller's own words: the specifics
            "acked": bool(a.acked),
        }
        for a in st.alarms
    ]
    fields["alarm_count"] = str(len(alarms))
    classes["alarm_count"] = "abn" if alarms else ""
    return {"fields": fields, "classes": classes, "alarms": alarms, "seq": hmi.seq}


def _word(value: object) -> str:
    """A word of the status as text (an enum's value); nothing is the empty text."""
    return "" if value is None else str(value)


def hoa(mode: str, asked_on: bool, *, out_of_service: bool = False) -> str:
    """Hand-Off-Auto of one pump: ``oos`` when the pump itself is switched Off (out of
    service, whatever the station's mode); else the station's mode, and in manual mode
    the operator's own start (hand) or stop (off) of that pump."""
    if out_of_service:
        return "oos"
    if mode == "auto":
        return "auto"
    if mode == "manual" and asked_on:
        return "hand"
    return "off"


def trend_values(snap: Snapshot) -> dict[str, float | None]:
    """One trend sample: the measurements when good, the setpoint, pumps running, speed."""
    hmi = hmi_status(snap)
    st = hmi.status
    out: dict[str, float | None] = {}
    for role, point in hmi.roles.items():
        if role == "far_end":
            continue
        v = st.values.get(point) if point else None
        out[role] = v.v if v is not None and v.q == Quality.GOOD else None
    out["setpoint"] = st.setpoint_bar
    pumps = st.pumps.values()
    out["pumps"] = float(sum(1 for p in pumps if p.running))
    speeds = [p.speed_pct for p in pumps if p.running and p.speed_pct is not None]
    out["speed"] = max(speeds) if speeds else None
    return out

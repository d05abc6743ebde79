"""What the live pages show, computed once per second from the daemon's status snapshot.

The result is flat and display-ready (``fields``: element key -> text, ``classes``:
element key -> abnormal class), per language, so every browser gets the same JSON and
the page script only copies text: no formatting logic in JavaScript, no HTML injected.
"""

from __future__ import annotations

import math
from typing import Any

from controller.i18n import alarm_text, state_name, t

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


def points(snap: dict[str, Any]) -> dict[str, str | None]:
    """The P&ID's measurement roles and the point names that play them."""
    ctl = snap.get("control_points", {})
    return {
        "discharge": snap.get("pressure_point"),
        "suction": ctl.get("suction"),
        "flow": ctl.get("flow"),
        "far_end": ctl.get("far_end"),
    }


def live_view(snap: dict[str, Any], lang: str) -> dict[str, Any]:
    """The display-ready live state in ``lang``."""
    fields: dict[str, str] = {}
    classes: dict[str, str] = {}
    values = snap.get("values", {})
    for role, point in points(snap).items():
        v = values.get(point, {}) if point else {}
        good = v.get("q") == "good"
        if not point:
            fields[f"v.{role}"] = "-"  # not measured at this station
        else:
            fields[f"v.{role}"] = fmt(v.get("v")) if good else t(lang, "ui.bad")
        classes[f"v.{role}"] = "" if good or not point else "bad"
    fields["mode"] = state_name(lang, str(snap.get("mode", "")))
    state = str(snap.get("state", ""))
    fields["state"] = state_name(lang, state)
    classes["state"] = "" if state in ("auto", "manual", "off", "filling", "low_flow") else "abn"
    fields["setpoint"] = fmt(snap.get("setpoint_bar"))
    fields["base_setpoint"] = fmt(snap.get("base_setpoint_bar"))
    running = 0
    mode = str(snap.get("mode", ""))
    today = snap.get("starts_today", {})
    hz_points = snap.get("frequency_points", {})
    for name, pump in snap.get("pumps", {}).items():
        on = bool(pump.get("running"))
        running += on
        fields[f"p.{name}.state"] = state_name(lang, str(pump.get("state", "")))
        asked = bool(snap.get("manual", {}).get(name, on))
        switch = hoa(mode, asked, out_of_service=bool(pump.get("out_of_service")))
        fields[f"p.{name}.hoa"] = t(lang, f"ui.hoa_{switch}")
        fields[f"p.{name}.starts_today"] = fmt(today.get(name), 0)
        hz = values.get(hz_points.get(name) or "", {})
        fields[f"p.{name}.hz"] = fmt(hz.get("v"), 1) if hz.get("q") == "good" else "-"
        classes[f"p.{name}"] = "fault" if pump.get("locked_out") else ("run" if on else "")
        # a pump without a drive runs at its rated speed when its contactor is in
        fields[f"p.{name}.speed"] = fmt(pump.get("speed_pct", 100.0), 0) if on else "0"
        fields[f"p.{name}.hours"] = fmt(pump.get("run_hours"), 1)
        fields[f"p.{name}.starts_hour"] = fmt(pump.get("starts_last_hour"), 0)
        fields[f"p.{name}.starts_total"] = fmt(pump.get("starts_total"), 0)
        fields[f"p.{name}.lockout"] = str(pump.get("locked_out") or "-")
    fields["pumps_running"] = str(running)
    link = snap.get("uplink", {})
    fields["uplink"] = t(lang, "ui.connected" if link.get("connected") else "ui.disconnected")
    classes["uplink"] = "" if link.get("connected") else "abn"
    fields["backlog"] = fmt(snap.get("buffer", {}).get("backlog"), 0)
    alarms = [
        {
            "id": str(a.get("id", "")),
            "severity": t(lang, f"severity.{a.get('severity', '')}"),
            "cls": ALARM_CLASS.get(str(a.get("severity")), "alarm-warn"),
            "text": alarm_text(lang, str(a.get("id", "")), str(a.get("message", ""))),
            "detail": str(a.get("message", "")),  # the controller's own words: the specifics
            "acked": bool(a.get("acked")),
        }
        for a in snap.get("alarms", [])
    ]
    fields["alarm_count"] = str(len(alarms))
    classes["alarm_count"] = "abn" if alarms else ""
    return {"fields": fields, "classes": classes, "alarms": alarms, "seq": snap.get("seq", 0)}


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


def trend_values(snap: dict[str, Any]) -> dict[str, float | None]:
    """One trend sample: the measurements when good, the setpoint, pumps running, speed."""
    values = snap.get("values", {})
    out: dict[str, float | None] = {}
    for role, point in points(snap).items():
        if role == "far_end":
            continue
        v = values.get(point, {}) if point else {}
        out[role] = v.get("v") if v.get("q") == "good" else None
    out["setpoint"] = snap.get("setpoint_bar")
    pumps = snap.get("pumps", {}).values()
    out["pumps"] = float(sum(1 for p in pumps if p.get("running")))
    speeds = [p["speed_pct"] for p in pumps if p.get("running") and "speed_pct" in p]
    out["speed"] = max(speeds) if speeds else None
    return out

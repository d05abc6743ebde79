"""Rendering the station's status for people: ``boosterd status`` and the demo dashboard.

It renders a ``LocalStatus`` (controller/state/models.py); a dict is read into one first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controller.i18n import alarm_text, normalise, state_name, t
from controller.state.dump import read
from controller.state.models import ActiveAlarm, BriefStatus, LocalStatus

if TYPE_CHECKING:
    from rich.console import Group


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _status(given: LocalStatus | Mapping[str, Any]) -> LocalStatus:
    """A dict (the demo's ``local_status_json``, or a status from another release) read
    into the model: what it lacks shows as "-"."""
    return given if isinstance(given, LocalStatus) else read(LocalStatus, given)


def headline(given: BriefStatus | Mapping[str, Any]) -> str:
    """One line: what systemd's STATUS= and a glance at the screen should say."""
    status = given if isinstance(given, BriefStatus) else _status(given)
    values = status.values or {}
    p = values.get(status.pressure_point) if status.pressure_point else None
    running = [n for n, pump in (status.pumps or {}).items() if pump.running]
    alarms = status.alarms or []
    parts = [
        f"mode {status.mode or '?'}",
        f"setpoint {_fmt(status.setpoint_bar)} bar",
        f"pressure {_fmt(p.v)} bar" if p is not None and p.q == "good" else "pressure BAD",
        f"pumps {','.join(running) or 'none'}",
    ]
    if alarms:
        parts.append(f"{len(alarms)} alarm{'s' if len(alarms) != 1 else ''}")
    return "; ".join(parts)


def _alarm_line(lang: str, alarm: ActiveAlarm) -> str:
    """The catalogue's text, and the controller's own message when it says more."""
    message = alarm.message or ""
    text = alarm_text(lang, alarm.id or "", message)
    return text if not message or message == text else f"{text} ({message})"


def render(given: LocalStatus | Mapping[str, Any], lang: str | None = None) -> Group:
    """The whole station on one screen; state names and alarm texts in ``lang`` (default:
    the station's ``site.language``)."""
    # rich only here: the daemon imports this module for ``headline`` and never renders
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    status = _status(given)
    site = status.site
    lang = normalise(lang or (site.language if site else None))
    title = Text.assemble(
        (f"{_text(site.name if site else None)} ", "bold"),
        (f"[{_text(site.id if site else None)}]  ", "dim"),
        (f"{t(lang, 'ui.state')}: {state_name(lang, status.state or '')}  ", "bold"),
        headline(status),
    )
    if status.sim is not None:
        sim = status.sim
        title.append(f"  sim t={_text(sim.time)} x{_fmt(sim.speed, 0)}", style="cyan")

    values = Table(title="Measurements", expand=False)
    for col in ("point", "value", "unit", "quality"):
        values.add_column(col, justify="right" if col == "value" else "left")
    for name, v in (status.values or {}).items():
        good = v.q == "good"
        quality = "good" if good else f"BAD {v.reason or ''} {v.detail or ''}".strip()
        values.add_row(name, _fmt(v.v, 3), v.unit or "", Text(quality, "green" if good else "red"))

    pumps = Table(title="Pumps", expand=False)
    for col in ("pump", "running", "speed %", "run h", "starts/h", "starts", "energy kWh", "state"):
        pumps.add_column(col)
    for name, pump in (status.pumps or {}).items():
        state = state_name(lang, pump.state or "")
        if pump.locked_out:
            state = f"{state}: {pump.locked_out}"
        pumps.add_row(
            name,
            Text("RUN", "bold green") if pump.running else Text("off", "dim"),
            _fmt(pump.speed_pct, 0),
            _fmt(pump.run_hours, 1),
            _fmt(pump.starts_last_hour),
            _fmt(pump.starts_total),
            _fmt(pump.energy_kwh, 1),
            Text(str(state), "red" if pump.locked_out else ""),
        )

    alarms = Table(title="Active alarms", expand=False)
    for col in ("alarm", "severity", "since", "latched", "message"):
        alarms.add_column(col)
    for a in status.alarms or []:
        alarms.add_row(
            _text(a.id),
            Text(a.severity or "", "red"),
            _fmt(a.since),
            _fmt(a.latched),
            Text(_alarm_line(lang, a)),  # Text: brackets in a message are not rich markup
        )
    if not status.alarms:
        alarms.add_row("none", "", "", "", "")

    # The subsystems' counters are theirs (dicts of their own shape).
    link = status.uplink or {}
    buf = status.buffer or {}
    loop = status.loop
    footer = Text(
        f"uplink {'connected' if link.get('connected') else 'DISCONNECTED'}"
        f" backlog {_fmt(buf.get('backlog', link.get('backlog')))}"
        f" | buffer rows {_fmt(buf.get('rows'))} evicted {_fmt(buf.get('evicted'))}"
        f" | loop ticks {_fmt(loop.ticks if loop else None)}"
        f" overruns {_fmt(loop.overruns if loop else None)}",
        style="dim",
    )
    return Group(title, values, pumps, alarms, footer)


def _text(value: str | None) -> str:
    return "?" if value is None else str(value)

"""Rendering a status snapshot for people: ``boosterd status`` and the demo dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.i18n import alarm_text, normalise, state_name, t

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


def headline(snap: dict[str, Any]) -> str:
    """One line: what systemd's STATUS= and a glance at the screen should say."""
    values = snap.get("values", {})
    pressure = snap.get("pressure_point")
    p = values.get(pressure, {}) if pressure else {}
    running = [n for n, pump in snap.get("pumps", {}).items() if pump.get("running")]
    alarms = snap.get("alarms", [])
    parts = [
        f"mode {snap.get('mode', '?')}",
        f"setpoint {_fmt(snap.get('setpoint_bar'))} bar",
        f"pressure {_fmt(p.get('v'))} bar" if p.get("q") == "good" else "pressure BAD",
        f"pumps {','.join(running) or 'none'}",
    ]
    if alarms:
        parts.append(f"{len(alarms)} alarm{'s' if len(alarms) != 1 else ''}")
    return "; ".join(parts)


def _alarm_line(lang: str, alarm: dict[str, Any]) -> str:
    """The catalogue's text, and the controller's own message when it says more."""
    message = str(alarm.get("message", ""))
    text = alarm_text(lang, str(alarm.get("id", "")), message)
    return text if not message or message == text else f"{text} ({message})"


def render(snap: dict[str, Any], lang: str | None = None) -> Group:
    """The whole station on one screen; state names and alarm texts in ``lang`` (default:
    the station's ``site.language``)."""
    # rich only here: the daemon imports this module for ``headline`` and never renders
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    site = snap.get("site", {})
    lang = normalise(lang or site.get("language"))
    title = Text.assemble(
        (f"{site.get('name', '?')} ", "bold"),
        (f"[{site.get('id', '?')}]  ", "dim"),
        (f"{t(lang, 'ui.state')}: {state_name(lang, str(snap.get('state', '')))}  ", "bold"),
        headline(snap),
    )
    sim = snap.get("sim")
    if sim:
        title.append(f"  sim t={sim.get('time', '?')} x{_fmt(sim.get('speed'), 0)}", style="cyan")

    values = Table(title="Measurements", expand=False)
    for col in ("point", "value", "unit", "quality"):
        values.add_column(col, justify="right" if col == "value" else "left")
    for name, v in snap.get("values", {}).items():
        good = v.get("q") == "good"
        quality = "good" if good else f"BAD {v.get('reason', '')} {v.get('detail', '')}".strip()
        values.add_row(
            name, _fmt(v.get("v"), 3), v.get("unit", ""), Text(quality, "green" if good else "red")
        )

    pumps = Table(title="Pumps", expand=False)
    for col in ("pump", "running", "speed %", "run h", "starts/h", "starts", "energy kWh", "state"):
        pumps.add_column(col)
    for name, p in snap.get("pumps", {}).items():
        state = state_name(lang, str(p.get("state") or ""))
        if p.get("locked_out"):
            state = f"{state}: {p['locked_out']}"
        pumps.add_row(
            name,
            Text("RUN", "bold green") if p.get("running") else Text("off", "dim"),
            _fmt(p.get("speed_pct"), 0),
            _fmt(p.get("run_hours"), 1),
            _fmt(p.get("starts_last_hour")),
            _fmt(p.get("starts_total")),
            _fmt(p.get("energy_kwh"), 1),
            Text(str(state), "red" if p.get("locked_out") else ""),
        )

    alarms = Table(title="Active alarms", expand=False)
    for col in ("alarm", "severity", "since", "latched", "message"):
        alarms.add_column(col)
    for a in snap.get("alarms", []):
        alarms.add_row(
            str(a.get("id", "?")),
            Text(str(a.get("severity", "")), "red"),
            _fmt(a.get("since")),
            _fmt(a.get("latched")),
            Text(_alarm_line(lang, a)),  # Text: brackets in a message are not rich markup
        )
    if not snap.get("alarms"):
        alarms.add_row("none", "", "", "", "")

    link = snap.get("uplink", {})
    buf = snap.get("buffer", {})
    loop = snap.get("loop", {})
    footer = Text(
        f"uplink {'connected' if link.get('connected') else 'DISCONNECTED'}"
        f" backlog {_fmt(buf.get('backlog', link.get('backlog')))}"
        f" | buffer rows {_fmt(buf.get('rows'))} evicted {_fmt(buf.get('evicted'))}"
        f" | loop ticks {_fmt(loop.get('ticks'))} overruns {_fmt(loop.get('overruns'))}",
        style="dim",
    )
    return Group(title, values, pumps, alarms, footer)

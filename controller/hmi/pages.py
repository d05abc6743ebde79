"""Server-rendered pages: plain HTML, no inline script or style (the CSP forbids both).

Every text comes from the catalogue; every value from the station's status (an
``HmiStatus``, read by attribute) goes through ``esc``. Elements that update live carry
``data-live`` (text) and ``data-cls`` (abnormal class) keys that match ``live.live_view``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from controller.hmi.live import fmt
from controller.hmi.status import HmiStatus, Snapshot, hmi_status
from controller.i18n import alarm_text, state_name, t
from controller.state.dump import to_json
from controller.state.enums import Mode, Quality

NAV = (
    ("/", "ui.overview"),
    ("/alarms", "ui.alarms"),
    ("/pumps", "ui.pumps"),
    ("/trends", "ui.trends"),
    ("/diagnostics", "ui.diagnostics"),
    ("/audit", "ui.audit"),
)


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def _live(key: str, view: Mapping[str, Any], tag: str = "span", cls: str = "") -> str:
    text = view["fields"].get(key, "-")
    abn = view["classes"].get(key, "")
    classes = " ".join(c for c in (cls, abn) if c)
    return (
        f'<{tag} data-live="{esc(key)}" data-cls="{esc(key)}" class="{esc(classes)}">'
        f"{esc(text)}</{tag}>"
    )


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def layout(
    *,
    lang: str,
    title: str,
    body: str,
    path: str,
    user: str | None = None,
    role: str | None = None,
    csrf: str | None = None,
    site: str = "",
    flash: Iterable[tuple[str, str]] = (),
    demo: bool = False,
) -> str:
    nav = ""
    if user is not None and csrf is not None:
        entries = [*NAV, ("/users", "ui.users")] if role == "admin" else list(NAV)
        links = "".join(
            f'<a href="{href}"{" aria-current=page" if href == path else ""}>'
            f"{esc(t(lang, key))}</a>"
            for href, key in entries
        )
        other = "en" if lang == "id" else "id"
        nav = (
            f'<nav class="top"><span class="site">{esc(site)}</span>{links}'
            f'<span class="who">{esc(user)} ({esc(role)})</span>'
            f'<form method="post" action="/lang" class="inline">{csrf_field(csrf)}'
            f'<input type="hidden" name="lang" value="{other}">'
            f'<input type="hidden" name="next" value="{esc(path)}">'
            f'<button type="submit" id="lang-switch" lang="{other}">'
            f"{'English' if other == 'en' else 'Bahasa Indonesia'}</button></form>"
            f'<form method="post" action="/logout" class="inline">{csrf_field(csrf)}'
            f'<button type="submit" id="logout">{esc(t(lang, "ui.logout"))}</button></form>'
            "</nav>"
        )
    notes = "".join(
        f'<p class="flash {esc(kind)}" role="status" id="flash-{esc(kind)}">{esc(text)}</p>'
        for kind, text in flash
    )
    banner = f'<p class="demo">{esc(t(lang, "ui.demo"))}</p>' if demo else ""
    return (
        f'<!DOCTYPE html><html lang="{esc(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} - boosterd</title>"
        '<link rel="stylesheet" href="/static/hmi.css">'
        '<script src="/static/hmi.js" defer></script></head>'
        f'<body data-page="{esc(path)}">{nav}{banner}<main><h1>{esc(title)}</h1>{notes}{body}'
        f'<p class="conn" id="conn" data-offline="{esc(t(lang, "ui.offline"))}" hidden></p>'
        "</main></body></html>"
    )


def login_page(lang: str, error: str | None, csrf: str) -> str:
    err = f'<p class="flash refused" id="flash-refused">{esc(error)}</p>' if error else ""
    body = (
        f'{err}<form method="post" action="/login" class="login">{csrf_field(csrf)}'
        f"<label>{esc(t(lang, 'ui.username'))}"
        '<input name="username" id="username" autocomplete="username" required maxlength="32">'
        f"</label><label>{esc(t(lang, 'ui.password'))}"
        '<input name="password" id="password" type="password" autocomplete="current-password" '
        'required maxlength="256"></label>'
        f'<button type="submit" id="login">{esc(t(lang, "ui.login"))}</button></form>'
    )
    return layout(lang=lang, title=t(lang, "ui.login"), body=body, path="/login")


def _alarm_rows(
    lang: str, view: Mapping[str, Any], csrf: str, writable: bool, page: str = "/alarms"
) -> str:
    rows = []
    for a in view["alarms"]:
        ack = ""
        if writable and not a["acked"]:
            ack = (
                f'<form method="post" action="/cmd/ack" class="inline">{csrf_field(csrf)}'
                f'<input type="hidden" name="alarm" value="{esc(a["id"])}">'
                f'<input type="hidden" name="next" value="{esc(page)}">'
                f'<button type="submit" class="ack" data-alarm="{esc(a["id"])}">'
                f"{esc(t(lang, 'ui.ack'))}</button></form>"
            )
        state = t(lang, "ui.acked") if a["acked"] else ack
        rows.append(
            f'<tr class="{esc(a["cls"])}" data-alarm-row="{esc(a["id"])}">'
            f"<td>{esc(a['severity'])}</td><td>{esc(a['text'])}"
            f'<br><small class="detail">{esc(a["detail"])}</small></td>'
            f"<td><code>{esc(a['id'])}</code></td><td>{state}</td></tr>"
        )
    if not rows:
        return f'<p class="none" id="no-alarms">{esc(t(lang, "ui.no_alarms"))}</p>'
    head = "".join(
        f"<th>{esc(t(lang, k))}</th>" for k in ("ui.severity", "ui.message", "ui.alarms", "ui.ack")
    )
    return f'<table class="alarms" id="active-alarms"><tr>{head}</tr>{"".join(rows)}</table>'


def setpoint_form(lang: str, csrf: str, snap: HmiStatus, limits: tuple[float, float]) -> str:
    lo, hi = limits
    return (
        f'<form method="post" action="/cmd/setpoint" class="write">{csrf_field(csrf)}'
        '<input type="hidden" name="next" value="/">'
        f"<label>{esc(t(lang, 'ui.setpoint'))} (bar, {lo:g}-{hi:g})"
        f'<input name="value" id="setpoint-input" inputmode="decimal" maxlength="16" '
        f'value="{esc(fmt(snap.status.base_setpoint_bar))}"></label>'
        f'<button type="submit" id="setpoint-apply">{esc(t(lang, "ui.set"))}</button></form>'
    )


def mode_form(lang: str, csrf: str, current: str) -> str:
    buttons = "".join(
        f'<button type="submit" name="mode" value="{m}" id="mode-{m}"'
        f"{' disabled' if m == current else ''}>{esc(state_name(lang, m))}</button>"
        for m in ("auto", "manual", "off")
    )
    return (
        f'<form method="post" action="/cmd/mode" class="write">{csrf_field(csrf)}'
        f'<input type="hidden" name="next" value="/">{esc(t(lang, "ui.mode"))}: {buttons}</form>'
    )


def pid_svg(lang: str, view: Mapping[str, Any], pumps: list[str], has: Mapping[str, bool]) -> str:
    """The station as a simple P&ID: suction header, pumps in parallel, discharge, flow."""
    n = max(len(pumps), 1)
    height = 60 + 70 * n
    mid = height // 2
    parts = [
        f'<svg class="pid" viewBox="0 0 640 {height}" role="img" '
        f'aria-label="{esc(t(lang, "ui.overview"))}">',
        f'<line x1="20" y1="{mid}" x2="140" y2="{mid}" class="pipe"/>',
        f'<line x1="140" y1="40" x2="140" y2="{height - 40}" class="pipe"/>',
        f'<line x1="400" y1="40" x2="400" y2="{height - 40}" class="pipe"/>',
        f'<line x1="400" y1="{mid}" x2="620" y2="{mid}" class="pipe"/>',
    ]
    for i, name in enumerate(pumps):
        y = 40 + i * ((height - 80) / max(n - 1, 1)) if n > 1 else mid
        parts.append(f'<line x1="140" y1="{y:.0f}" x2="400" y2="{y:.0f}" class="pipe"/>')
        parts.append(
            f'<circle cx="270" cy="{y:.0f}" r="22" class="pump" data-cls="p.{esc(name)}"/>'
            f'<text x="270" y="{y + 5:.0f}" class="plabel">{esc(name)}</text>'
            f'<text x="310" y="{y - 8:.0f}" class="small" data-live="p.{esc(name)}.speed">'
            f"{esc(view['fields'].get(f'p.{name}.speed', '-'))}</text>"
            f'<text x="345" y="{y - 8:.0f}" class="small">%</text>'
        )
    labels = (
        ("suction", 20, mid - 36, "ui.suction", "bar"),  # above the pipe, not on it
        ("discharge", 420, mid - 36, "ui.discharge", "bar"),
        ("flow", 420, mid + 24, "ui.flow", "m3/h"),
        ("far_end", 530, mid + 24, "ui.far_end", "bar"),  # the zone's far end, downstream
    )
    for role, x, y, key, unit in labels:
        if not has.get(role):
            continue
        parts.append(
            f'<text x="{x}" y="{y}" class="small">{esc(t(lang, key))}</text>'
            f'<text x="{x}" y="{y + 18}" class="val" data-live="v.{role}" data-cls="v.{role}">'
            f"{esc(view['fields'].get(f'v.{role}', '-'))}</text>"
            f'<text x="{x + 70}" y="{y + 18}" class="small">{unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def overview_body(
    lang: str,
    snap: Snapshot,
    view: Mapping[str, Any],
    *,
    csrf: str,
    writable: bool,
    limits: tuple[float, float],
    has: Mapping[str, bool],
) -> str:
    hmi = hmi_status(snap)
    pumps = list(hmi.status.pumps)
    facts = "".join(
        f"<div><dt>{esc(t(lang, label))}</dt><dd>{_live(key, view)}{esc(unit)}</dd></div>"
        for label, key, unit in (
            ("ui.mode", "mode", ""),
            ("ui.state", "state", ""),
            ("ui.base_setpoint", "base_setpoint", " bar"),
            ("ui.managed_setpoint", "setpoint", " bar"),
            ("ui.discharge", "v.discharge", " bar"),
            *((("ui.far_end", "v.far_end", " bar"),) if has.get("far_end") else ()),
            ("ui.pumps_running", "pumps_running", ""),
            ("ui.active_alarms", "alarm_count", ""),
            ("ui.uplink", "uplink", ""),
        )
    )
    writes = ""
    if writable:
        writes = setpoint_form(lang, csrf, hmi, limits) + mode_form(
            lang, csrf, str(hmi.status.mode)
        )
    else:
        writes = f'<p class="none">{esc(t(lang, "ui.read_only"))}</p>'
    return (
        f'<div class="grid"><section>{pid_svg(lang, view, pumps, has)}</section>'
        f'<section><dl class="facts">{facts}</dl>{writes}</section></div>'
        f"<h2>{esc(t(lang, 'ui.active_alarms'))}</h2>"
        f"{alarm_box(lang, view, csrf, writable, '/')}"
    )


def alarm_box(lang: str, view: Mapping[str, Any], csrf: str, writable: bool, page: str) -> str:
    """The active alarms; the page script rebuilds it from the live view."""
    return (
        f'<div id="alarm-box" data-ack="{int(writable)}" data-next="{esc(page)}" '
        f'data-ack-label="{esc(t(lang, "ui.ack"))}" data-acked-label="{esc(t(lang, "ui.acked"))}" '
        f'data-none-label="{esc(t(lang, "ui.no_alarms"))}">'
        f"{_alarm_rows(lang, view, csrf, writable, page)}</div>"
    )


def alarms_body(
    lang: str,
    view: Mapping[str, Any],
    history: list[dict[str, Any]],
    *,
    csrf: str,
    writable: bool,
) -> str:
    ack_all = ""
    if writable and view["alarms"]:
        ack_all = (
            f'<form method="post" action="/cmd/ack" class="write">{csrf_field(csrf)}'
            '<input type="hidden" name="next" value="/alarms">'
            f'<button type="submit" id="ack-all">{esc(t(lang, "ui.ack_all"))}</button></form>'
        )
    rows = "".join(
        f"<tr><td>{esc(h['when'])}</td><td>{esc(t(lang, 'event.' + h['event']))}</td>"
        f"<td>{esc(alarm_text(lang, h['id'], h.get('message', '')))}</td>"
        f"<td><code>{esc(h['id'])}</code></td><td>{esc(h.get('by') or '')}</td></tr>"
        for h in history
    )
    head = "".join(
        f"<th>{esc(t(lang, k))}</th>"
        for k in ("ui.when", "ui.state", "ui.message", "ui.alarms", "ui.who")
    )
    return (
        f"{ack_all}{alarm_box(lang, view, csrf, writable, '/alarms')}"
        f"<h2>{esc(t(lang, 'ui.alarm_history'))}</h2>"
        f'<table class="history" id="alarm-history"><tr>{head}</tr>{rows}</table>'
    )


def pumps_body(
    lang: str, snap: Snapshot, view: Mapping[str, Any], *, csrf: str, writable: bool
) -> str:
    hmi = hmi_status(snap)
    cards = []
    manual = hmi.status.mode == Mode.MANUAL
    hz_pumps = {p for p, point in hmi.frequency_points.items() if point}
    for name, pump in hmi.status.pumps.items():
        rows = "".join(
            f"<div><dt>{esc(t(lang, label))}</dt><dd>{_live(f'p.{name}.{key}', view)}"
            f"{esc(unit)}</dd></div>"
            for label, key, unit in (
                ("ui.hoa", "hoa", ""),
                ("ui.state", "state", ""),
                ("ui.speed", "speed", " %"),
                *((("ui.frequency", "hz", " Hz"),) if name in hz_pumps else ()),
                ("ui.run_hours", "hours", " h"),
                ("ui.starts_today", "starts_today", ""),
                ("ui.starts_hour", "starts_hour", ""),
                ("ui.starts_total", "starts_total", ""),
                ("ui.lockout", "lockout", ""),
            )
        )
        actions = ""
        oos = bool(pump.out_of_service)
        if writable:
            if manual and not oos:
                on = not hmi.manual.get(name, pump.running)
                actions += (
                    f'<form method="post" action="/cmd/pump" class="inline">{csrf_field(csrf)}'
                    f'<input type="hidden" name="pump" value="{esc(name)}">'
                    f'<input type="hidden" name="on" value="{"1" if on else "0"}">'
                    '<input type="hidden" name="next" value="/pumps">'
                    f'<button type="submit" id="pump-{esc(name)}-toggle">'
                    f"{esc(t(lang, 'ui.start' if on else 'ui.stop'))}</button></form>"
                )

            # Off and Auto as two buttons, not one toggle: a toggle rendered before the
            # last tick would send the state the pump is already in.
            buttons = "".join(
                f'<button type="submit" name="mode" value="{mode}" id="pump-{esc(name)}-{mode}" '
                f'aria-pressed="{"true" if oos == (mode == "off") else "false"}">'
                f"{esc(t(lang, label))}</button>"
                for mode, label in (("off", "ui.take_out_of_service"), ("auto", "ui.hoa_auto"))
            )
            actions += (
                f'<form method="post" action="/cmd/pump_mode" class="inline">{csrf_field(csrf)}'
                f'<input type="hidden" name="pump" value="{esc(name)}">'
                f'<input type="hidden" name="next" value="/pumps">{buttons}</form>'
            )
            if pump.locked_out:
                actions += (
                    f'<form method="post" action="/cmd/ack" class="inline">{csrf_field(csrf)}'
                    f'<input type="hidden" name="alarm" value="pump_lockout_{esc(name)}">'
                    '<input type="hidden" name="next" value="/pumps">'
                    f'<button type="submit" id="pump-{esc(name)}-reset">'
                    f"{esc(t(lang, 'ui.reset'))}</button></form>"
                )
        cards.append(
            f'<section class="card" data-cls="p.{esc(name)}" '
            f'id="pump-{esc(name)}"><h2>{esc(t(lang, "ui.pump"))} {esc(name)}</h2>'
            f'<dl class="facts">{rows}</dl>{actions}</section>'
        )
    hint = f'<p class="none">{esc(t(lang, "ui.hoa_hint"))}</p>' if writable and not manual else ""
    return f'{hint}<div class="cards">{"".join(cards)}</div>'


def _table(rows: Iterable[tuple[str, object]], table_id: str = "") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f'<table class="kv"{ident}>{body}</table>'


def _flatten(prefix: str, value: object, out: list[tuple[str, object]], depth: int = 0) -> None:
    if isinstance(value, Mapping) and depth < 3:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out, depth + 1)
    else:
        out.append((prefix, value))


def diagnostics_body(lang: str, snap: Snapshot, check: str) -> str:
    st = hmi_status(snap).status
    sections = []
    for key, part, counters in (
        ("ui.modbus", "acquisition", st.acquisition),
        ("ui.uplink", "uplink", st.uplink),
        ("ui.buffer", "buffer", st.buffer),
        ("ui.loop", "loop", st.loop if st.loop is not None else {}),
    ):
        rows: list[tuple[str, object]] = []
        # As the status socket sends them: a subsystem's own counters shown as JSON has them.
        _flatten("", to_json(counters), rows)
        sections.append(f"<h2>{esc(t(lang, key))}</h2>{_table(rows, f'diag-{part}')}")
    vrows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(fmt(v.v, 3))} {esc(v.unit or '')}</td>"
        f'<td class="{"" if v.q == Quality.GOOD else "bad"}">'
        f"{esc(t(lang, 'ui.good') if v.q == Quality.GOOD else v.reason or v.q)}"
        "</td></tr>"
        for name, v in st.values.items()
    )
    head = "".join(f"<th>{esc(t(lang, k))}</th>" for k in ("ui.point", "ui.value", "ui.quality"))
    version = st.version if st.version is not None else "?"
    return (
        f"{_table([(t(lang, 'ui.version'), version)], 'diag-version')}"
        f'<table class="values"><tr>{head}</tr>{vrows}</table>'
        + "".join(sections)
        + f'<h2>{esc(t(lang, "ui.station_file"))}</h2><pre id="check-summary">{esc(check)}</pre>'
    )


def audit_body(lang: str, entries: list[dict[str, Any]]) -> str:
    head = "".join(
        f"<th>{esc(t(lang, k))}</th>"
        for k in ("ui.when", "ui.who", "ui.what", "ui.result", "ui.message")
    )
    rows = "".join(
        f'<tr class="{"" if e.get("ok") else "refused"}"><td>{esc(e.get("ts", ""))}</td>'
        f"<td>{esc(e.get('source', ''))}: {esc(e.get('who', ''))}</td>"
        f"<td><code>{esc(e.get('command', ''))} {esc(e.get('payload', ''))}</code></td>"
        f"<td>{esc(t(lang, 'ui.accepted' if e.get('ok') else 'ui.refused'))}</td>"
        f"<td>{esc(e.get('error') or '')}</td></tr>"
        for e in entries
    )
    return f'<table class="audit" id="audit-log"><tr>{head}</tr>{rows}</table>'


def trends_body(lang: str) -> str:
    spans = "".join(
        f'<button type="button" class="span" data-span="{s}" id="span-{s}">'
        f"{esc(t(lang, key))}</button>"
        for s, key in (("hour", "ui.last_hour"), ("day", "ui.last_day"), ("month", "ui.last_30d"))
    )
    legend = "".join(
        f'<span class="lg lg-{s}">{esc(t(lang, key))}</span>'
        for s, key in (
            ("discharge", "ui.discharge"),
            ("suction", "ui.suction"),
            ("setpoint", "ui.managed_setpoint"),
            ("flow", "ui.flow"),
            ("pumps", "ui.pumps_running"),
            ("speed", "ui.speed"),
        )
    )
    return (
        f'<div class="spans">{spans}</div><p class="legend">{legend}</p>'
        '<canvas id="trend-pressure" class="trend" width="900" height="260"></canvas>'
        '<canvas id="trend-flow" class="trend" width="900" height="200"></canvas>'
        f'<p class="none" id="trend-empty" hidden>{esc(t(lang, "ui.no_data"))}</p>'
    )


def users_body(lang: str, users: Mapping[str, Any], *, csrf: str, me: str) -> str:
    """Admins only: the accounts, remove one, add one (the same rules as ``hmi-user``)."""
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(u.role)}</td><td>{esc(u.lang or '-')}</td><td>"
        + (
            ""
            if name == me
            else f'<form method="post" action="/users/remove" class="inline">{csrf_field(csrf)}'
            f'<input type="hidden" name="name" value="{esc(name)}">'
            f'<button type="submit" id="remove-{esc(name)}">{esc(t(lang, "ui.remove"))}</button>'
            "</form>"
        )
        + "</td></tr>"
        for name, u in sorted(users.items())
    )
    head = "".join(
        f"<th>{esc(t(lang, k))}</th>" for k in ("ui.user", "ui.role", "ui.language", "ui.remove")
    )
    roles = "".join(f'<option value="{r}">{r}</option>' for r in ("viewer", "operator", "admin"))
    return (
        f'<table id="users"><tr>{head}</tr>{rows}</table>'
        f"<h2>{esc(t(lang, 'ui.add_user'))}</h2>"
        f'<form method="post" action="/users/add" class="write">{csrf_field(csrf)}'
        f'<label>{esc(t(lang, "ui.username"))}<input name="name" id="new-name" required '
        'maxlength="32"></label>'
        f"<label>{esc(t(lang, 'ui.role'))}"
        f'<select name="role" id="new-role">{roles}</select></label>'
        f'<label>{esc(t(lang, "ui.password"))}<input name="password" id="new-password" '
        'type="password" autocomplete="new-password" required minlength="10" maxlength="256">'
        f'</label><button type="submit" id="add-user">{esc(t(lang, "ui.add_user"))}</button></form>'
    )

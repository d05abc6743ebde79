"""The local web HMI, served by the daemon in its own event loop (aiohttp).

Security model (see docs/hmi.md): station LAN or VPN only; no default account; every
page needs a login; viewers read, operators write, admins also manage users; every
write carries the session's CSRF token and goes through the daemon's one
``CommandProcessor``, so the HMI has exactly SCADA's validation, limits and interlocks,
and lands in the audit log like any other command.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from controller.aio import wait_event
from controller.audit import AuditLog, who_from_topic
from controller.config.schema import HmiConfig, StationConfig
from controller.hmi import pages
from controller.hmi.history import History
from controller.hmi.live import live_view, trend_values
from controller.hmi.security import LoginThrottle, Session, Sessions, csrf_ok, security_headers
from controller.hmi.status import HmiStatus, PointRoles
from controller.hmi.users import (
    UserError,
    UserStore,
    make_user,
    role_at_least,
    verify_and_release,
)
from controller.i18n import LANGUAGES, from_accept_language, t
from controller.logs import get_logger
from controller.state.dump import read
from controller.state.models import ActiveAlarm, CommandEvent, LocalStatus
from controller.telemetry.commands import CommandProcessor

log = get_logger(__name__)

COOKIE = "boosterd_session"
LOGIN_COOKIE = "boosterd_login"  # the login form's CSRF token, before there is a session
STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
FRAME_S = 1.0  # live pages update once a second
MAX_SSE_CLIENTS = 20
MAX_SSE_PER_SESSION = 4  # one person cannot take every live stream
MAX_FORM_BYTES = 8192
ALARM_HISTORY = 500
PAGES = {p for p, _ in pages.NAV} | {"/users"}
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
SPANS = {"hour": 3600, "day": 86400, "month": 30 * 86400}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HmiServer:
    """``await HmiServer(...).run(stop)`` serves until ``stop`` is set."""

    def __init__(
        self,
        cfg: HmiConfig,
        *,
        station: Callable[[], StationConfig],
        snapshot: Callable[[], LocalStatus | Mapping[str, Any]],
        commands: CommandProcessor,
        audit: AuditLog,
        history: History,
        report: Callable[[CommandEvent], None] | None = None,
        check_summary: Callable[[], str] = lambda: "",
        demo: bool = False,
        manual: Callable[[], Mapping[str, bool]] = dict,
    ) -> None:
        """``snapshot`` gives the daemon's status (``Daemon.local_status``; a dict, from
        tests and tools without a daemon, is read leniently); ``manual`` what the operator
        asked of each pump in manual mode (``ControlCore.manual``)."""
        self.cfg = cfg
        self.station = station
        self._snapshot = snapshot
        self._manual = manual
        self.commands = commands
        self.audit = audit
        self.history = history
        self.report = report
        self.check_summary = check_summary
        self.demo = demo
        self.users = UserStore(cfg.users_file)
        self.sessions = Sessions(cfg.session_idle_s)
        self.throttle = LoginThrottle()
        # One thread for every password check: scrypt takes 16 MiB, and glibc would keep
        # that much per worker thread (see users.verify_and_release).
        self._kdf = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hmi-kdf")
        self._frame = asyncio.Event()
        self._snap: HmiStatus | None = None
        self._views: dict[str, str] = {}
        self._frames: dict[str, bytes] = {}  # the SSE frame per language, shared by all
        self._seq = 0
        self.sse_clients = 0
        self._streams: dict[str, list[_Stream]] = {}  # live streams per session, oldest first
        self._static = _load_static()
        self._tz: Any = UTC
        self._tz_name = ""
        self.alarm_history: deque[dict[str, Any]] = deque(maxlen=ALARM_HISTORY)
        self._active: dict[str, ActiveAlarm] = {}
        self._acked_by: dict[str, str] = {}
        self.port: int | None = None  # the bound port (useful with port 0 in tests)
        self.started = asyncio.Event()
        self._closing = False
        self.app = self._make_app()

    # -- the app ---------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._guard], client_max_size=MAX_FORM_BYTES, handler_args=None
        )
        app.on_response_prepare.append(self._headers)
        r = app.router
        r.add_get("/login", self.login_form)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_post("/lang", self.set_lang)
        r.add_get("/", self.overview)
        r.add_get("/alarms", self.alarms)
        r.add_get("/pumps", self.pumps)
        r.add_get("/trends", self.trends)
        r.add_get("/diagnostics", self.diagnostics)
        r.add_get("/audit", self.audit_page)
        r.add_get("/events", self.events)
        r.add_get("/api/live", self.api_live)
        r.add_get("/api/trend", self.api_trend)
        r.add_post("/cmd/{name}", self.command)
        r.add_get("/users", self.users_page)
        r.add_post("/users/add", self.user_add)
        r.add_post("/users/remove", self.user_remove)
        r.add_get("/static/{name}", self.static)
        return app

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for key, value in security_headers(self.cfg.tls).items():
            response.headers.setdefault(key, value)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every page but the login form and static files needs a live session."""
        if request.path in ("/login",) or request.path.startswith("/static/"):
            return await handler(request)
        touch = request.path not in ("/events", "/api/live")  # a watching page is not activity
        session = self.sessions.get(request.cookies.get(COOKIE), touch=touch)
        if session is None:
            if request.method == "GET" and request.path in PAGES:
                raise web.HTTPSeeOther("/login")
            raise web.HTTPUnauthorized(text="log in first")
        request["session"] = session
        return await handler(request)

    # -- language ---------------------------------------------------------------------------

    def _lang(self, request: web.Request, session: Session | None = None) -> str:
        default = self.station().site.language
        if session is not None and session.lang:
            return session.lang
        return from_accept_language(request.headers.get("Accept-Language"), default)

    # -- login --------------------------------------------------------------------------------

    def _login_page(
        self, request: web.Request, error: str | None = None, status: int = 200
    ) -> web.Response:
        """The login form with its CSRF token (double submit: the same random value in
        an HttpOnly, SameSite=Strict cookie and in the form; another site can set
        neither)."""
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not _token_shape_ok(token):
            token = secrets.token_urlsafe(32)
        response = self._html(pages.login_page(self._lang(request), error, token), status)
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self.cfg.tls,
            path="/login",
            max_age=3600,
        )
        return response

    async def login_form(self, request: web.Request) -> web.Response:
        return self._login_page(request)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))
        address = request.remote or "?"
        lang = self._lang(request)
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        sent = _field(form, "csrf") or ""
        if not (_token_shape_ok(cookie) and hmac.compare_digest(cookie, sent)):
            log.warning("hmi login refused: CSRF token", user=name, address=address)
            return self._login_page(request, t(lang, "err.csrf"), status=403)
        wait = self.throttle.wait_s(name, address)
        if wait > 0:
            log.warning("hmi login refused: locked out", user=name, address=address)
            error = t(lang, "err.locked", seconds=int(wait) + 1)
            return self._login_page(request, error, status=429)
        try:
            user = self.users.get(name)
        except UserError as exc:
            log.error("hmi users file unreadable", error=str(exc))
            user = None
        # scrypt is deliberately slow: off the event loop, or it would jitter control.
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._kdf, verify_and_release, user, password)
        if not ok or user is None:
            self.throttle.failed(name, address)
            log.warning("hmi login failed", user=name, address=address)
            return self._login_page(request, t(lang, "err.login"), status=401)
        self.throttle.succeeded(name, address)
        old = request.cookies.get(COOKIE)
        self.sessions.drop(old)  # a fresh token on login: no session fixation
        session = self.sessions.create(user.name, user.role, user.lang)
        log.info("hmi login", user=user.name, role=user.role, address=address)
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            secure=self.cfg.tls,
            path="/",
        )
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        session: Session = request["session"]
        form = await request.post()
        if not csrf_ok(session, _field(form, "csrf")):
            return self._refuse_csrf(request, session)
        self.sessions.drop(session.token)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def set_lang(self, request: web.Request) -> web.Response:
        session: Session = request["session"]
        form = await request.post()
        if not csrf_ok(session, _field(form, "csrf")):
            return self._refuse_csrf(request, session)
        lang = str(form.get("lang", ""))
        if lang in LANGUAGES:
            session.lang = lang
        raise web.HTTPSeeOther(_next(form))

    # -- pages ----------------------------------------------------------------------------------

    def _page(self, request: web.Request, key: str, body: str) -> web.Response:
        session: Session = request["session"]
        lang = self._lang(request, session)
        flash, session.flash = session.flash, []
        html = pages.layout(
            lang=lang,
            title=t(lang, key),
            body=body,
            path=request.path,
            user=session.user,
            role=session.role,
            csrf=session.csrf,
            site=self.station().site.name,
            flash=flash,
            demo=self.demo,
        )
        return self._html(html)

    def _context(self, request: web.Request) -> tuple[Session, str, HmiStatus, bool]:
        session: Session = request["session"]
        lang = self._lang(request, session)
        snap = self._snap if self._snap is not None else self.snapshot(self._seq)
        return session, lang, snap, role_at_least(session.role, "operator")

    async def overview(self, request: web.Request) -> web.Response:
        session, lang, snap, writable = self._context(request)
        ctl = self.station().control
        has = {
            "discharge": True,
            "suction": ctl.suction_point is not None,
            "flow": ctl.flow_point is not None,
            "far_end": ctl.far_end_point is not None,
        }
        body = pages.overview_body(
            lang,
            snap,
            live_view(snap, lang),
            csrf=session.csrf,
            writable=writable,
            limits=(ctl.setpoint_min_bar, ctl.setpoint_max_bar),
            has=has,
        )
        return self._page(request, "ui.overview", body)

    async def alarms(self, request: web.Request) -> web.Response:
        session, lang, snap, writable = self._context(request)
        body = pages.alarms_body(
            lang,
            live_view(snap, lang),
            list(reversed(self.alarm_history)),
            csrf=session.csrf,
            writable=writable,
        )
        return self._page(request, "ui.alarms", body)

    async def pumps(self, request: web.Request) -> web.Response:
        session, lang, snap, writable = self._context(request)
        body = pages.pumps_body(
            lang, snap, live_view(snap, lang), csrf=session.csrf, writable=writable
        )
        return self._page(request, "ui.pumps", body)

    async def trends(self, request: web.Request) -> web.Response:
        _, lang, _, _ = self._context(request)
        return self._page(request, "ui.trends", pages.trends_body(lang))

    async def diagnostics(self, request: web.Request) -> web.Response:
        _, lang, snap, _ = self._context(request)
        body = pages.diagnostics_body(lang, snap, self.check_summary())
        return self._page(request, "ui.diagnostics", body)

    async def audit_page(self, request: web.Request) -> web.Response:
        _, lang, _, _ = self._context(request)
        entries = await asyncio.to_thread(self.audit.recent, 200)
        return self._page(request, "ui.audit", pages.audit_body(lang, entries))

    # -- live data -----------------------------------------------------------------------------

    def snapshot(self, seq: int = 0) -> HmiStatus:
        """The station now, as every page of live frame ``seq`` shows it."""
        got = self._snapshot()
        status = got if isinstance(got, LocalStatus) else read(LocalStatus, got)
        station = self.station()
        ctl = station.control
        totals = {name: int(p.starts_total or 0) for name, p in status.pumps.items()}
        pressure = status.pressure_point  # None: a dict without it (a test's core status)
        return HmiStatus(
            status=status,
            roles=PointRoles(
                discharge=ctl.pressure_point if pressure is None else pressure,
                suction=ctl.suction_point,
                flow=ctl.flow_point,
                far_end=ctl.far_end_point,
            ),
            manual=dict(self._manual()),  # a copy: the frame must not change under a page
            frequency_points={
                name: pump.vfd.frequency_point
                for name, pump in station.pumps.items()
                if pump.vfd is not None and pump.vfd.frequency_point
            },
            starts_today=self.history.starts_today(self._local_day(), totals),
            seq=seq,
        )

    def _local_day(self) -> str:
        """The station's date (site.timezone): 'starts today' counts from its midnight."""
        from zoneinfo import ZoneInfo

        tz = self.station().site.timezone
        if tz != self._tz_name:
            self._tz, self._tz_name = ZoneInfo(tz), tz
        return datetime.now(self._tz).date().isoformat()

    def _view_json(self, lang: str) -> str:
        cached = self._views.get(lang)
        if cached is None:
            assert self._snap is not None  # (every caller has a frame first)
            view = live_view(self._snap, lang)
            cached = self._views[lang] = json.dumps(view, separators=(",", ":"))
        return cached

    def _sse_frame(self, lang: str) -> bytes:
        """The live view as one server-sent event: encoded once per language and frame,
        the same bytes object written to every client."""
        frame = self._frames.get(lang)
        if frame is None:
            frame = self._frames[lang] = b"data: " + self._view_json(lang).encode() + b"\n\n"
        return frame

    async def api_live(self, request: web.Request) -> web.Response:
        session: Session = request["session"]
        if self._snap is None:
            self._snap = self.snapshot(self._seq)
        body = self._view_json(self._lang(request, session))
        return web.Response(text=body, content_type="application/json")

    async def api_trend(self, request: web.Request) -> web.Response:
        span = SPANS.get(request.query.get("span", "hour"), 3600)
        data = await asyncio.to_thread(self.history.query, span, time.time())
        return web.json_response(data)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the live view once a second; the stream ends with the session."""
        session: Session = request["session"]
        token = session.token
        mine = self._streams.get(token, [])
        if len(mine) >= MAX_SSE_PER_SESSION:
            # One person's pages give way to each other (the newest wins: a page left open
            # in another tab stops updating), never to someone else's.
            self._release(token, mine[0])
        if self.sse_clients >= MAX_SSE_CLIENTS:
            raise web.HTTPServiceUnavailable(text="too many live pages open; close some")
        lang = self._lang(request, session)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        stream = _Stream()
        self._streams.setdefault(token, []).append(stream)
        self.sse_clients += 1
        try:
            seq = -1
            while not (self._closing or stream.released):
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the browser went away (a page change): free the slot now
                if self.sessions.get(token, touch=False) is None:
                    await response.write(b"event: expired\ndata: {}\n\n")
                    break
                if self._seq != seq and self._snap is not None:
                    seq = self._seq
                    await response.write(self._sse_frame(lang))
                frame = self._frame
                if not await wait_event(frame, 15.0):
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:
            pass  # the browser went away: nothing to tell it
        finally:
            self._release(token, stream)
        return response

    def _release(self, token: str, stream: _Stream) -> None:
        """Free a live stream's slot (once); its loop ends at the next frame."""
        if stream.released:
            return
        stream.released = True
        self.sse_clients -= 1
        mine = self._streams.get(token, [])
        if stream in mine:
            mine.remove(stream)
        if not mine:
            self._streams.pop(token, None)

    async def static(self, request: web.Request) -> web.Response:
        """The two page files, from memory (read once at start; no file I/O per request)."""
        found = self._static.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, ctype, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache"}  # revalidate: 304 when unchanged
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers=headers)

    async def _broadcast(self, stop: asyncio.Event) -> None:
        """Once a second: one snapshot for every page, the trend sample, the alarm history."""
        while not stop.is_set():
            try:
                snap = self.snapshot(self._seq + 1)
            except Exception as exc:  # a status bug must not take the HMI down
                log.error("hmi snapshot failed", error=repr(exc), exc_info=exc)
            else:
                self._snap = snap
                self._seq = snap.seq
                self._views = {}
                self._frames = {}
                self._track_alarms(self._snap)
                self.history.add(time.time(), trend_values(self._snap))
                if self.history.has_pending:
                    await asyncio.to_thread(self.history.flush)
            frame, self._frame = self._frame, asyncio.Event()
            frame.set()
            await wait_event(stop, FRAME_S)

    def _track_alarms(self, snap: HmiStatus) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        current = {str(a.id): a for a in snap.status.alarms}
        for aid, alarm in current.items():
            old = self._active.get(aid)
            if old is None:
                self.alarm_history.append(
                    {"when": now, "event": "raised", "id": aid, "message": alarm.message}
                )
            elif alarm.acked and not old.acked:
                by = self._acked_by.pop(aid, None)
                self.alarm_history.append({"when": now, "event": "acknowledged", "id": aid,
                                           "message": alarm.message, "by": by})  # fmt: skip
        for aid, alarm in self._active.items():
            if aid not in current:
                by = self._acked_by.pop(aid, None)
                self.alarm_history.append({"when": now, "event": "cleared", "id": aid,
                                           "message": alarm.message, "by": by})  # fmt: skip
        self._active = current

    def on_command(
        self, name: str, payload: bytes, reply: dict[str, Any], topic: str | None
    ) -> None:
        """Audit hook part: remember who acknowledged which alarm (HMI or SCADA)."""
        if name == "ack" and reply.get("ok"):
            _, who = who_from_topic(topic)
            for aid in reply.get("acknowledged") or []:
                self._acked_by[str(aid)] = who

    # -- user management (admin) ---------------------------------------------------------------

    def _admin(self, request: web.Request) -> Session:
        session: Session = request["session"]
        if not role_at_least(session.role, "admin"):
            lang = self._lang(request, session)
            raise web.HTTPForbidden(text=t(lang, "err.role", role=session.role, needed="admin"))
        return session

    async def users_page(self, request: web.Request) -> web.Response:
        session = self._admin(request)
        lang = self._lang(request, session)
        users = await asyncio.to_thread(self.users.users)
        body = pages.users_body(lang, users, csrf=session.csrf, me=session.user)
        return self._page(request, "ui.users", body)

    async def _user_change(self, request: web.Request, change: str) -> web.Response:
        session = self._admin(request)
        form = await request.post()
        request["_form"] = {"next": "/users"}
        if not csrf_ok(session, _field(form, "csrf")):
            return self._refuse_csrf(request, session)
        name = _field(form, "name") or ""
        loop = asyncio.get_running_loop()
        try:
            if change == "add":
                role, password = _field(form, "role") or "", _field(form, "password") or ""
                user = await loop.run_in_executor(self._kdf, make_user, name, role, password)
                await asyncio.to_thread(self.users.add, user)
            else:
                if name == session.user:
                    raise UserError("you cannot remove your own account")
                await asyncio.to_thread(self.users.remove, name)
                self.sessions.drop_user(name)  # a removed user is out at once
        except UserError as exc:
            return self._audited_result(request, session, change, name, str(exc))
        return self._audited_result(request, session, change, name, None)

    def _audited_result(
        self, request: web.Request, session: Session, change: str, name: str, error: str | None
    ) -> web.Response:
        """Account changes are writes too: audited like commands (never the password)."""
        topic = f"hmi:{session.user}@{request.remote or '?'}"
        payload = json.dumps({"user": name}).encode()
        self.audit.record(f"user_{change}", payload, {"ok": error is None, "error": error}, topic)
        lang = self._lang(request, session)
        if error is None:
            return self._result(request, session, ok=True, text=t(lang, "ui.command_ok"))
        text = t(lang, "ui.command_refused", reason=error)
        return self._result(request, session, ok=False, text=text, status=409)

    async def user_add(self, request: web.Request) -> web.Response:
        return await self._user_change(request, "add")

    async def user_remove(self, request: web.Request) -> web.Response:
        return await self._user_change(request, "remove")

    # -- writes ---------------------------------------------------------------------------------

    async def command(self, request: web.Request) -> web.Response:
        session: Session = request["session"]
        lang = self._lang(request, session)
        name = request.match_info["name"]
        form = await request.post()
        request["_form"] = form
        if not csrf_ok(session, _field(form, "csrf") or request.headers.get("X-CSRF-Token")):
            return self._refuse_csrf(request, session)
        if not role_at_least(session.role, "operator"):
            log.warning("hmi write refused: role", user=session.user, role=session.role)
            msg = t(lang, "err.role", role=session.role, needed="operator")
            return self._result(request, session, ok=False, text=msg, status=403)
        try:
            body = _command_body(name, form)
        except ValueError:
            msg = t(lang, "ui.command_refused", reason=t(lang, "err.number"))
            return self._result(request, session, ok=False, text=msg, status=400)
        body.update(id=f"hmi-{secrets.token_hex(8)}", ts=time.time())
        topic = f"hmi:{session.user}@{request.remote or '?'}"
        reply = self.commands.handle(name, json.dumps(body).encode(), topic=topic)
        self._report(session, name, body, reply)
        if reply.get("ok"):
            return self._result(request, session, ok=True, text=t(lang, "ui.command_ok"))
        reason = str(reply.get("error"))
        msg = t(lang, "ui.command_refused", reason=reason)
        return self._result(request, session, ok=False, text=msg, status=409)

    def _report(
        self, session: Session, name: str, body: dict[str, Any], reply: dict[str, Any]
    ) -> None:
        """Tell SCADA: an HMI write is a ``CommandEvent`` on the alarm topic."""
        if self.report is None:
            return
        fields = {k: v for k, v in body.items() if k not in ("id", "ts")}
        name = name if len(name) <= 64 else name[:61] + "..."  # the URL's, any length
        self.report(
            CommandEvent(
                id="hmi_command",
                event="hmi_command",
                severity="info",
                message=f"HMI user {session.user} sent {name} {json.dumps(fields)}: "
                + ("accepted" if reply.get("ok") else f"refused ({reply.get('error')})"),
                user=session.user,
                command=name,
                ok=bool(reply.get("ok")),
            )
        )

    def _result(
        self, request: web.Request, session: Session, *, ok: bool, text: str, status: int = 200
    ) -> web.Response:
        """A form post goes back to its page with the verdict; a script gets JSON."""
        if request.headers.get("Accept", "").startswith("application/json"):
            return web.json_response({"ok": ok, "message": text}, status=status)
        session.flash = [*session.flash[-4:], ("accepted" if ok else "refused", text)]
        raise web.HTTPSeeOther(_next_from(request))

    def _refuse_csrf(self, request: web.Request, session: Session) -> web.Response:
        log.warning("hmi write refused: CSRF token", user=session.user, path=request.path)
        lang = self._lang(request, session)
        return web.Response(status=403, text=t(lang, "err.csrf"))

    def _html(self, text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    # -- lifecycle ---------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        assert self.cfg.cert_file is not None
        assert self.cfg.key_file is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
        return ctx

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.history.open)
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.cfg.bind, self.cfg.port, ssl_context=self._ssl())
            await site.start()
            addresses = runner.addresses
            self.port = int(addresses[0][1]) if addresses else self.cfg.port
            scheme = "https" if self.cfg.tls else "http"
            log.info("hmi serving", url=f"{scheme}://{self.cfg.bind}:{self.port}/")
            if not self.users.users():
                log.warning("hmi has no users: add one with 'boosterd hmi-user add NAME --role "
                            "operator'", users_file=self.cfg.users_file)  # fmt: skip
            self.started.set()
            await self._broadcast(stop)
        finally:
            self._closing = True  # live streams end, so the runner's cleanup does not wait
            self._frame.set()
            with contextlib.suppress(Exception):
                await runner.cleanup()
            self._kdf.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(self.history.close)


class _Stream:
    """One open live stream (server-sent events)."""

    __slots__ = ("released",)

    def __init__(self) -> None:
        self.released = False


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in STATIC.iterdir():
        ctype = STATIC_TYPES.get(path.suffix)
        if ctype is not None:
            body = path.read_bytes()
            files[path.name] = (body, ctype, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return files


def _token_shape_ok(token: str) -> bool:
    """A token we could have made: 43 URL-safe characters (and nothing an attacker can
    stretch to make the comparison or the cookie expensive)."""
    return TOKEN_RE.fullmatch(token) is not None


def _field(form: Any, key: str) -> str | None:
    value = form.get(key)
    return value if isinstance(value, str) else None


def _next(form: Any) -> str:
    """Where to go after a form: one of our own pages, never a URL from the request."""
    target = _field(form, "next")
    return target if target in PAGES else "/"


def _next_from(request: web.Request) -> str:
    form = request.get("_form")
    return _next(form) if form is not None else "/"


def _command_body(name: str, form: Any) -> dict[str, Any]:
    """The JSON a SCADA command of ``name`` carries, from an HMI form (ValueError: bad number)."""
    if name == "setpoint":
        raw = (_field(form, "value") or "").strip().replace(",", ".")  # "3,2" on id keyboards
        value = float(raw) if len(raw) <= 16 else math.nan
        if not math.isfinite(value):
            raise ValueError(raw)
        return {"value": value}
    if name == "mode":
        return {"mode": _field(form, "mode") or ""}
    if name == "pump":
        return {"pump": _field(form, "pump") or "", "on": _field(form, "on") == "1"}
    if name == "pump_mode":
        return {"pump": _field(form, "pump") or "", "mode": _field(form, "mode") or ""}
    if name == "ack":
        alarm = _field(form, "alarm")
        return {"alarm": alarm} if alarm else {}
    return {}

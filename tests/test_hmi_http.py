"""The HMI's security and write path, through a plain HTTP client against a real
``boosterd demo`` process (no browser: what an attacker's script would do)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import Demo, HmiClient
from tests.support.waiting import wait_until

PAGES = ("/", "/alarms", "/pumps", "/trends", "/diagnostics", "/audit")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # P2 trips 30 simulated seconds in (6 s at --speed 5) and stays locked out: alarms to
    # acknowledge and a lockout to reset.
    d = Demo(
        tmp_path_factory.mktemp("hmi-demo"), extra=("--speed", "5", "--fault", "pump_trip:P2@30+1")
    ).start()
    try:
        yield d
    finally:
        d.close()


def operator(demo: Demo) -> HmiClient:
    client = HmiClient(demo.port)
    assert client.login("demo", demo.operator_password).status == 303
    return client


def audit_entries(demo: Demo) -> list[dict[str, object]]:
    path = demo.state_dir / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_page_and_api_needs_a_login(demo: Demo) -> None:
    anon = HmiClient(demo.port)
    for page in PAGES:
        reply = anon.get(page)
        assert reply.status == 303, page
        assert reply.headers["Location"] == "/login"
    assert anon.get("/api/live").status == 401
    assert anon.get("/events").status == 401
    assert anon.get("/api/trend?span=day").status == 401
    assert anon.post("/cmd/setpoint", {"value": "3.1"}).status == 401
    assert anon.get("/login").status == 200


def test_pages_carry_the_security_headers(demo: Demo) -> None:
    client = operator(demo)
    for page in ("/login", *PAGES):
        headers = client.get(page).headers
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    body = client.get("/").body
    assert "<script>" not in body  # only the external page script: the CSP forbids inline
    assert " style=" not in body


def test_login_cookie_is_httponly_strict_and_fresh_each_login(demo: Demo) -> None:
    client = HmiClient(demo.port)
    reply = client.login("demo", demo.operator_password)
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on localhost; see the TLS test
    first = client.cookie
    client.login("demo", demo.operator_password)
    assert client.cookie != first
    stale = HmiClient(demo.port)
    stale.cookie = first
    assert stale.get("/api/live").status == 401, "the replaced session still works"


def test_wrong_password_is_refused_without_saying_which_part(demo: Demo) -> None:
    client = HmiClient(demo.port)
    wrong_pw = client.login("demo", "not-the-password")
    no_user = client.login("nobody-here", "not-the-password")
    assert wrong_pw.status == no_user.status == 401
    assert client.cookie is None


def test_write_without_csrf_token_is_refused_and_not_carried_out(demo: Demo) -> None:
    client = operator(demo)
    before = client.live()["fields"]["base_setpoint"]
    assert client.post("/cmd/setpoint", {"value": "3.4"}).status == 403
    assert client.post("/cmd/setpoint", {"value": "3.4", "csrf": "forged"}).status == 403
    assert client.post("/cmd/mode", {"mode": "off"}).status == 403
    assert client.live()["fields"]["base_setpoint"] == before
    assert client.live()["fields"]["mode"] != "mati"


def test_login_needs_the_forms_csrf_token(demo: Demo) -> None:
    """Login CSRF: another site cannot log the browser in to an account of its choosing."""
    client = HmiClient(demo.port)
    reply = client.login("demo", demo.operator_password, csrf=False)
    assert reply.status == 403
    assert client.cookie is None
    forged = client.post("/login", {"username": "demo", "password": demo.operator_password,
                                    "csrf": "x" * 43})  # fmt: skip
    assert forged.status == 403
    # a real token without its cookie (what a cross-site form would send) is refused too
    token = client.login_token()
    stranger = HmiClient(demo.port)
    form = {"username": "demo", "password": demo.operator_password, "csrf": token}
    assert stranger.post("/login", form).status == 403
    assert stranger.cookie is None
    assert client.login("demo", demo.operator_password).status == 303
    assert client.cookie is not None
    assert client.login_cookie is None  # spent: cleared at login


def test_every_write_refuses_a_missing_token(demo: Demo) -> None:
    client = operator(demo)
    for path, form in (
        ("/logout", {}),
        ("/lang", {"lang": "en"}),
        ("/cmd/ack", {}),
        ("/cmd/pump", {"pump": "P1", "on": "1"}),
        ("/cmd/pump_mode", {"pump": "P1", "mode": "off"}),
        ("/users/add", {"name": "x", "role": "viewer", "password": "p" * 12}),
    ):
        reply = client.post(path, form)
        assert reply.status == 403, path
    assert client.get("/api/live").status == 200  # the refused logout did not log out
    assert '<html lang="id">' in client.get("/").body  # nor did the language change


def test_static_files_come_from_memory_with_an_etag(demo: Demo) -> None:
    client = HmiClient(demo.port)
    js = client.get("/static/hmi.js")
    assert js.status == 200
    assert js.headers["Content-Type"].startswith("text/javascript")
    assert client.get("/static/hmi.js", If_None_Match=js.headers["ETag"]).status == 304
    assert client.get("/static/../server.py").status == 404
    assert client.get("/static/nothing.js").status == 404


def test_one_session_cannot_take_every_live_stream(demo: Demo) -> None:
    """A session's pages give way to each other (the newest wins), never to others'."""
    import http.client

    from controller.hmi.server import MAX_SSE_PER_SESSION

    client = operator(demo)
    streams = []
    try:
        for _ in range(MAX_SSE_PER_SESSION + 1):
            conn = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
            conn.request("GET", "/events", headers={"Cookie": client.cookie or ""})
            resp = conn.getresponse()
            assert resp.status == 200
            streams.append((conn, resp))
        oldest = streams[0][1]
        ended = False
        for _ in range(10):  # one frame a second; the evicted stream ends at its next one
            if not oldest.readline():
                ended = True
                break
        assert ended, "the oldest stream of the session was not closed"
        assert streams[-1][1].readline().startswith(b"data: ")  # the newest is live
    finally:
        for conn, _ in streams:
            conn.close()


def test_viewer_can_read_but_not_write(demo: Demo) -> None:
    viewer = HmiClient(demo.port)
    assert viewer.login("viewer", demo.viewer_password).status == 303
    page = viewer.get("/")
    assert page.status == 200
    assert 'id="setpoint-input"' not in page.body
    before = viewer.live()["fields"]["base_setpoint"]
    reply = viewer.post(
        "/cmd/setpoint", {"value": "3.3", "csrf": viewer.csrf()}, Accept="application/json"
    )
    assert reply.status == 403
    assert "viewer" in json.loads(reply.body)["message"]
    assert viewer.live()["fields"]["base_setpoint"] == before
    assert 'id="pump-P1-off"' not in viewer.get("/pumps").body
    reply = viewer.post("/cmd/pump_mode", {"pump": "P1", "mode": "off", "csrf": viewer.csrf()},
                        Accept="application/json")  # fmt: skip
    assert reply.status == 403
    assert "Off" not in viewer.live()["fields"]["p.P1.hoa"]


def test_setpoint_goes_through_the_command_path_and_is_audited(demo: Demo) -> None:
    client = operator(demo)
    reply = client.post(
        "/cmd/setpoint", {"value": "3,2", "csrf": client.csrf()}, Accept="application/json"
    )
    assert reply.status == 200, reply.body
    wait_until(lambda: client.live()["fields"]["base_setpoint"] == "3.20", timeout=5,
               what="the new setpoint in the live view")  # fmt: skip
    entry = [e for e in audit_entries(demo) if e["command"] == "setpoint"][-1]
    assert entry["source"] == "hmi"
    assert str(entry["who"]).startswith("demo@")
    assert entry["ok"] is True
    assert '"value": 3.2' in str(entry["payload"])


def test_out_of_range_setpoint_is_refused_with_the_station_reason(demo: Demo) -> None:
    client = operator(demo)
    before = client.live()["fields"]["base_setpoint"]
    reply = client.post(
        "/cmd/setpoint", {"value": "24", "csrf": client.csrf()}, Accept="application/json"
    )
    assert reply.status == 409
    assert "outside the allowed" in json.loads(reply.body)["message"]
    assert client.live()["fields"]["base_setpoint"] == before
    last = audit_entries(demo)[-1]
    assert last["ok"] is False
    assert "outside the allowed" in str(last["error"])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "", "abc", "3" * 40])
def test_setpoint_that_is_not_a_number_is_refused(demo: Demo, value: str) -> None:
    client = operator(demo)
    before = client.live()["fields"]["base_setpoint"]
    reply = client.post(
        "/cmd/setpoint", {"value": value, "csrf": client.csrf()}, Accept="application/json"
    )
    assert reply.status == 400
    assert client.live()["fields"]["base_setpoint"] == before


def test_form_post_redirects_only_to_own_pages(demo: Demo) -> None:
    client = operator(demo)
    form = {"value": "3.0", "csrf": client.csrf(), "next": "https://evil.example/"}
    reply = client.post("/cmd/setpoint", form)
    assert reply.status == 303
    assert reply.headers["Location"] == "/"


def test_language_follows_browser_then_the_user_switch(demo: Demo) -> None:
    client = operator(demo)
    assert '<html lang="id">' in client.get("/").body  # site.language default
    assert '<html lang="en">' in client.get("/", Accept_Language="en-GB,en;q=0.9").body
    client.post("/lang", {"lang": "en", "csrf": client.csrf(), "next": "/pumps"})
    page = client.get("/pumps", Accept_Language="id").body
    assert '<html lang="en">' in page
    assert "Run hours" in page


def test_logout_ends_the_session(demo: Demo) -> None:
    client = operator(demo)
    token = client.csrf()
    assert client.post("/logout", {"csrf": token}).status == 303
    assert client.get("/api/live").status == 401


def test_every_page_renders_for_an_operator(demo: Demo) -> None:
    client = operator(demo)
    for page in PAGES:
        reply = client.get(page)
        assert reply.status == 200, page
        assert "Traceback" not in reply.body
    assert "OK" in client.get("/diagnostics").body  # the boosterd check summary
    for span in ("hour", "day", "month"):  # the Trends page's 1 hour, 1 day, 30 days
        trend = json.loads(client.get(f"/api/trend?span={span}").body)
        assert set(trend) >= {"t", "discharge", "suction", "setpoint", "flow", "pumps", "speed"}
        assert all(len(trend[k]) == len(trend["t"]) for k in trend)
    assert 'data-span="month"' in client.get("/trends").body


def test_login_lockout_is_per_user_and_address_and_spares_others(tmp_path: Path) -> None:
    demo = Demo(tmp_path).start()
    try:
        client = HmiClient(demo.port)
        for _ in range(5):
            assert client.login("demo", "wrong-password!").status == 401
        locked = client.login("demo", demo.operator_password)
        assert locked.status == 429, "the sixth try came through"
        assert client.cookie is None
        other = HmiClient(demo.port)
        assert other.login("viewer", demo.viewer_password).status == 303
    finally:
        demo.close()


def test_daemon_stops_promptly_with_live_pages_open(tmp_path: Path) -> None:
    import http.client
    import signal
    import time

    demo = Demo(tmp_path).start()
    try:
        client = operator(demo)
        conn = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
        conn.request("GET", "/events", headers={"Cookie": client.cookie or ""})
        stream = conn.getresponse()
        assert stream.status == 200
        assert stream.readline().startswith(b"data: ")
        assert demo.proc is not None
        started = time.monotonic()
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        conn.close()
    finally:
        demo.close()


def test_only_an_admin_manages_users_and_it_is_audited(demo: Demo) -> None:
    from controller.hmi.users import UserStore, make_user

    store = UserStore(demo.state_dir / "hmi-users.json")
    store.add(make_user("kepala", "admin", "admin-password-1"))
    op = operator(demo)
    assert op.get("/users").status == 403
    assert op.post("/users/add", {"name": "x1", "role": "admin", "password": "p" * 12,
                                  "csrf": op.csrf()}).status == 403  # fmt: skip
    admin = HmiClient(demo.port)
    assert admin.login("kepala", "admin-password-1").status == 303
    assert 'href="/users"' in admin.get("/").body
    form = {"name": "teknisi2", "role": "viewer", "password": "teknisi-pass-1"}
    assert admin.post("/users/add", form).status == 403  # no CSRF token
    reply = admin.post("/users/add", {**form, "csrf": admin.csrf()}, Accept="application/json")
    assert reply.status == 200, reply.body
    weak = {**form, "name": "t3", "password": "short", "csrf": admin.csrf()}
    assert admin.post("/users/add", weak, Accept="application/json").status == 409
    newcomer = HmiClient(demo.port)
    assert newcomer.login("teknisi2", "teknisi-pass-1").status == 303
    removed = admin.post("/users/remove", {"name": "teknisi2", "csrf": admin.csrf()})
    assert removed.status == 303
    assert newcomer.get("/api/live").status == 401  # out at once
    own = admin.post(
        "/users/remove", {"name": "kepala", "csrf": admin.csrf()}, Accept="application/json"
    )
    assert own.status == 409
    audit = demo.state_dir / "audit.jsonl"
    text = audit.read_text()
    assert '"command": "user_add"' in text
    assert "teknisi-pass-1" not in text
    store.remove("kepala")


def test_hand_off_auto_on_the_faceplate_follows_the_mode_and_the_pump(demo: Demo) -> None:
    client = operator(demo)
    json_reply = {"Accept": "application/json"}
    assert "Auto" in client.live()["fields"]["p.P1.hoa"]
    assert 'id="pump-P1-toggle"' not in client.get("/pumps").body  # Hand/Off: manual only
    try:
        reply = client.post("/cmd/mode", {"mode": "manual", "csrf": client.csrf()}, **json_reply)
        assert reply.status == 200, reply.body
        reply = client.post(
            "/cmd/pump", {"pump": "P1", "on": "1", "csrf": client.csrf()}, **json_reply
        )
        assert reply.status == 200, reply.body
        wait_until(lambda: client.live()["fields"]["p.P1.hoa"].startswith("Hand"), timeout=5,
                   what="P1 in Hand")  # fmt: skip
        assert 'id="pump-P1-toggle"' in client.get("/pumps").body
        reply = client.post(
            "/cmd/pump", {"pump": "P1", "on": "0", "csrf": client.csrf()}, **json_reply
        )
        assert reply.status == 200, reply.body
        # Off with the next frame (what the operator asked), whatever anti-cycling makes the
        # pump itself wait
        wait_until(lambda: client.live()["fields"]["p.P1.hoa"].startswith("Off"), timeout=5,
                   what="P1 Off")  # fmt: skip
    finally:
        client.post("/cmd/mode", {"mode": "auto", "csrf": client.csrf()}, **json_reply)
    wait_until(lambda: "Auto" in client.live()["fields"]["p.P1.hoa"], timeout=10, what="auto")


def test_acknowledge_all_resets_the_lockout_and_names_who(demo: Demo) -> None:
    client = operator(demo)
    wait_until(lambda: client.live()["fields"]["p.P2.lockout"] != "-", timeout=30,
               what="the P2 lockout")  # fmt: skip
    assert 'id="pump-P2-reset"' in client.get("/pumps").body
    reply = client.post(
        "/cmd/ack", {"csrf": client.csrf(), "next": "/alarms"}, Accept="application/json"
    )
    assert reply.status == 200, reply.body
    wait_until(lambda: client.live()["fields"]["p.P2.lockout"] == "-", timeout=10,
               what="the lockout reset by the acknowledge")  # fmt: skip
    history = client.get("/alarms").body
    assert "pump_lockout_P2" in history
    assert "demo@127.0.0.1" in history  # who acknowledged


def test_a_pump_switched_off_on_its_faceplate_is_out_of_service_in_automatic(demo: Demo) -> None:
    """The Off of Hand-Off-Auto per pump, with the station in automatic: the pump stops
    and stays stopped, the others carry on; Auto gives it back. Both writes are audited."""
    client = operator(demo)
    json_reply = {"Accept": "application/json"}
    assert 'id="pump-P3-off"' in client.get("/pumps").body  # in any station mode
    reply = client.post("/cmd/pump_mode", {"pump": "P3", "mode": "off", "csrf": client.csrf()},
                        **json_reply)  # fmt: skip
    assert reply.status == 200, reply.body
    try:
        wait_until(lambda: client.live()["fields"]["p.P3.hoa"] == "Off (tidak beroperasi)",
                   timeout=5, what="P3 Off (out of service)")  # fmt: skip
        fields = client.live()["fields"]
        assert fields["p.P3.state"] == "tidak beroperasi (Off)"
        assert fields["p.P3.speed"] == "0"
        assert "Auto" in fields["p.P1.hoa"]  # the others stay in automatic
        page = client.get("/pumps").body
        assert 'id="pump-P3-off" aria-pressed="true"' in page
        assert 'id="pump-P3-auto" aria-pressed="false"' in page
        entry = [e for e in audit_entries(demo) if e["command"] == "pump_mode"][-1]
        assert entry["ok"] is True
        assert entry["source"] == "hmi"
        assert '"mode": "off"' in str(entry["payload"])
        # Hand needs manual mode, and a pump switched Off is not started by hand either
        client.post("/cmd/mode", {"mode": "manual", "csrf": client.csrf()}, **json_reply)
        reply = client.post("/cmd/pump", {"pump": "P3", "on": "1", "csrf": client.csrf()},
                            **json_reply)  # fmt: skip
        assert reply.status == 409
        assert "out of service" in json.loads(reply.body)["message"]
    finally:
        client.post("/cmd/mode", {"mode": "auto", "csrf": client.csrf()}, **json_reply)
        reply = client.post("/cmd/pump_mode", {"pump": "P3", "mode": "auto",
                            "csrf": client.csrf()}, **json_reply)  # fmt: skip
    assert reply.status == 200, reply.body
    wait_until(lambda: "Auto" in client.live()["fields"]["p.P3.hoa"], timeout=5, what="P3 Auto")

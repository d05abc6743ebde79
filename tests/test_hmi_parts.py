"""The HMI's parts on their own: sessions, login throttle, accounts, catalogue, trend
history, the command audit hook, and the session cookie under TLS."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.audit import AuditLog
from controller.config import load_config
from controller.config.schema import HmiConfig
from controller.control.core import ControlCore
from controller.hmi.history import History
from controller.hmi.security import MAX_LOCK_S, LoginThrottle, Sessions
from controller.hmi.server import HmiServer
from controller.hmi.users import UserStore, make_user, verify
from controller.i18n import MESSAGES, alarm_text, from_accept_language, state_name, t
from controller.telemetry.commands import CommandProcessor
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.cli import boosterd


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- sessions and the login throttle ----------------------------------------------------------


def test_idle_session_expires_and_activity_keeps_it() -> None:
    clock = Clock()
    sessions = Sessions(idle_s=600, clock=clock)
    s = sessions.create("ana", "operator", None)
    clock.now += 500
    assert sessions.get(s.token) is s  # a request: activity
    clock.now += 500
    assert sessions.get(s.token, touch=False) is s  # a live page watching: not activity
    clock.now += 200
    assert sessions.get(s.token) is None
    assert sessions.get(s.token) is None


def test_lockout_grows_is_capped_and_expires() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        throttle.failed("op", "10.0.0.5")
    assert throttle.wait_s("op", "10.0.0.5") == 0
    throttle.failed("op", "10.0.0.5")
    first = throttle.wait_s("op", "10.0.0.5")
    assert first > 0
    for _ in range(50):  # an attacker keeps trying for ever
        throttle.failed("op", "10.0.0.5")
    assert throttle.wait_s("op", "10.0.0.5") <= MAX_LOCK_S
    # the operator at another address is not locked out by the attacker
    assert throttle.wait_s("op", "192.168.1.20") == 0
    clock.now += MAX_LOCK_S + 1
    assert throttle.wait_s("op", "10.0.0.5") == 0


def test_throttle_memory_is_bounded_against_made_up_names() -> None:
    throttle = LoginThrottle(clock=Clock())
    for i in range(12_000):
        throttle.failed(f"user{i}", "10.0.0.9")
    assert len(throttle._records) <= 10_000


# -- accounts -----------------------------------------------------------------------------------


def test_password_hash_is_scrypt_and_checks(tmp_path: Path) -> None:
    user = make_user("ana", "operator", "correct horse battery")
    assert "correct" not in json.dumps(user.as_dict())
    assert verify(user, "correct horse battery")
    assert not verify(user, "correct horse batterY")
    assert not verify(None, "anything at all")
    assert not verify(user, "x" * 10_000)


def test_hmi_user_command_adds_lists_changes_and_removes(tmp_path: Path) -> None:
    users = tmp_path / "users.json"

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        import sys

        return subprocess.run(
            [sys.executable, "-m", "controller.cli", "hmi-user", "--file", str(users),
             "--password-stdin", *args],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert run("add", "budi", "--role", "operator", stdin="rahasia-panjang-1\n").returncode == 0
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    short = run("add", "sari", "--role", "viewer", stdin="pendek\n")
    assert short.returncode == 1
    assert "at least" in short.stderr
    assert run("add", "budi", "--role", "admin", stdin="rahasia-panjang-2\n").returncode == 1
    assert run("add", "bad name!", "--role", "admin", stdin="rahasia-panjang-2\n").returncode == 1
    listed = run("list")
    assert re.search(r"^budi\toperator", listed.stdout, re.M)
    assert "rahasia" not in users.read_text()
    assert run("passwd", "budi", stdin="kata-sandi-baru-9\n").returncode == 0
    store = UserStore(users)
    assert verify(store.get("budi"), "kata-sandi-baru-9")
    assert run("remove", "budi").returncode == 0
    assert UserStore(users).users() == {}


def test_no_default_account_exists() -> None:
    assert UserStore("/nonexistent/users.json").users() == {}
    assert "hmi-user" in boosterd("--help").stdout


# -- the catalogue ------------------------------------------------------------------------------


def test_every_text_exists_in_both_languages_with_the_same_fields() -> None:
    for key, entry in MESSAGES.items():
        assert set(entry) == {"id", "en"}, key
        fields = {lang: set(re.findall(r"{(\w+)}", text)) for lang, text in entry.items()}
        assert fields["id"] == fields["en"], key
        assert entry["id"].strip(), key
        assert entry["en"].strip(), key


def test_every_alarm_and_state_the_controller_raises_has_a_text() -> None:
    sources = (
        "\n".join(p.read_text() for p in (REPO / "controller" / "control").glob("*.py"))
        + (REPO / "controller" / "runtime" / "daemon.py").read_text()
    )
    ids = set(re.findall(r'alarms\.set\(\s*f?"([a-z_]+)', sources))
    ids |= set(re.findall(r'^\s+"([a-z_]+)",\n\s+(?:cond|self\.|now|active|lost|dry|high)',
                          sources, re.M))  # fmt: skip
    assert {"dry_run", "high_pressure", "buffer_evicting"} <= ids
    for aid in ids:
        key = "alarm." + aid.rstrip("_")
        assert key in MESSAGES, f"alarm {aid} has no catalogue text"
    states = set(re.findall(r'state="([a-z_]+)"', sources)) | set(
        re.findall(r'return "([a-z_]+)"', sources)
    )
    for state in states - {"locked out"} | {"locked out", "auto", "manual", "off"}:
        assert f"state.{state.replace(' ', '_')}" in MESSAGES, f"state {state} untranslated"
    assert alarm_text("id", "pump_lockout_P2").startswith("Pompa P2")
    assert state_name("en", "locked out") == "locked out"


def test_browser_language_and_fallbacks() -> None:
    assert from_accept_language("fr-FR,en;q=0.5,id;q=0.9", "en") == "id"
    assert from_accept_language("de", "id") == "id"
    assert from_accept_language(None, "en") == "en"
    assert t("en", "no.such.key") == "no.such.key"


# -- the trend history ---------------------------------------------------------------------------


def test_history_downsamples_bounds_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    h = History(path)
    h.open()
    start = 1_800_000_000.0
    for s in range(0, 3 * 86400, 20):  # three days of a sample every 20 s
        h.add(start + s, {"discharge": 3.0 + (s % 3600) / 3600, "pumps": 1.0, "flow": None})
        if s % 7200 == 0:  # the server flushes every minute; hours here keep the test quick
            h.flush()
    h.close()
    h = History(path)
    h.open()
    now = start + 3 * 86400
    hour = h.query(3600, now)
    assert 55 <= len(hour["t"]) <= 61
    assert all(v is None for v in hour["flow"])
    assert all(2.9 < v < 4.1 for v in hour["discharge"] if v is not None)
    month = h.query(30 * 86400, now)
    assert 3 * 96 - 2 <= len(month["t"]) <= 3 * 96 + 1  # 15-minute rows
    rows = h._db.execute("SELECT res, count(*) FROM trend GROUP BY res").fetchall()  # type: ignore[union-attr]
    counts = dict(rows)
    assert counts[60] <= 2 * 1440 + 1  # older minute rows were dropped
    h.close()


def test_starts_today_count_from_midnight_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    h = History(path)
    assert h.starts_today("2026-11-26", {"P1": 40}) == {}  # not open: no guess
    h.open()
    assert h.starts_today("2026-11-26", {"P1": 40, "P2": 7}) == {"P1": 0, "P2": 0}
    assert h.starts_today("2026-11-26", {"P1": 43, "P2": 7}) == {"P1": 3, "P2": 0}
    h.close()
    h = History(path)  # the daemon restarts during the day
    h.open()
    assert h.starts_today("2026-11-26", {"P1": 45, "P2": 8}) == {"P1": 5, "P2": 1}
    assert h.starts_today("2026-11-27", {"P1": 45, "P2": 8}) == {"P1": 0, "P2": 0}  # midnight
    h.flush()
    days = h._db.execute("SELECT DISTINCT day FROM day_starts").fetchall()  # type: ignore[union-attr]
    assert days == [("2026-11-27",)]  # bounded: yesterday's rows are gone
    h.close()


def test_far_end_pressure_is_on_the_overview_where_configured() -> None:
    from controller.hmi import pages
    from controller.hmi.live import live_view

    snap = {
        "pressure_point": "discharge_pressure",
        "control_points": {"far_end": "zone_end"},
        "values": {"zone_end": {"v": 1.634, "q": "good"}},
        "pumps": {"P1": {"running": True}},
    }
    view = live_view(snap, "en")
    assert view["fields"]["v.far_end"] == "1.63"
    body = pages.overview_body(
        "en", snap, view, csrf="x", writable=False, limits=(1.5, 4.5),
        has={"discharge": True, "far_end": True},
    )  # fmt: skip
    assert 'data-live="v.far_end"' in body
    assert "Far end" in body
    without = pages.overview_body(
        "en", snap, view, csrf="x", writable=False, limits=(1.5, 4.5), has={"discharge": True}
    )
    assert "v.far_end" not in without


def test_far_end_point_must_name_a_point(tmp_path: Path) -> None:
    import yaml

    from controller.config import ConfigError

    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["control"]["far_end_point"] = "no_such_logger"
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="far_end_point"):
        load_config(path)


# -- the audit hook on the one command path --------------------------------------------------------


def test_audit_hook_sees_every_command_accepted_or_refused(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    core = ControlCore(cfg, now=0.0)
    audit = AuditLog(tmp_path / "audit.jsonl", max_bytes=2000)
    proc = CommandProcessor(core, audit=audit.record)
    ok = json.dumps({"id": "a1", "ts": time.time(), "value": 3.1}).encode()
    bad = json.dumps({"id": "a2", "ts": time.time(), "value": 99}).encode()
    assert proc.handle("setpoint", ok, topic="pdam/x/cmd/setpoint")["ok"]
    assert not proc.handle("setpoint", bad, topic="hmi:ana@10.0.0.1")["ok"]
    proc.handle("setpoint", b"\xff\xfe not json", topic="pdam/x/cmd/setpoint")
    proc.refuse("mode", b'{"id": "r1"}', "retained commands are not executed", topic="t")
    entries = list(reversed(audit.recent(10)))
    assert [e["ok"] for e in entries] == [True, False, False, False]
    assert entries[0]["source"] == "scada"
    assert entries[1]["who"] == "ana@10.0.0.1"
    assert "outside the allowed" in entries[1]["error"]
    for i in range(100):  # bounded: rotated, never more than twice max_bytes
        proc.handle(
            "setpoint", json.dumps({"id": f"b{i}", "ts": time.time(), "value": 3.0}).encode()
        )
    total = sum(p.stat().st_size for p in tmp_path.glob("audit.jsonl*"))
    assert total <= 2 * 2000 + 400


def test_a_failing_audit_never_fails_the_command(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    core = ControlCore(cfg, now=0.0)

    def broken(*_: Any) -> None:
        raise OSError("disk gone")

    proc = CommandProcessor(core, audit=broken)
    reply = proc.handle(
        "setpoint", json.dumps({"id": "x", "ts": time.time(), "value": 3.3}).encode()
    )
    assert reply["ok"]
    assert core.setpoint == 3.3


# -- TLS: the session cookie is Secure ------------------------------------------------------


def test_hmi_cert_names_the_station_and_keeps_the_key_private(tmp_path: Path) -> None:
    cert, key = tmp_path / "hmi.crt", tmp_path / "hmi.key"
    made = boosterd("hmi-cert", "--cert", str(cert), "--key", str(key), "--ip", "10.20.30.40",
                    "--name", "booster-sukamaju.lan")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "SHA-256 fingerprint" in made.stdout
    assert stat.S_IMODE(key.stat().st_mode) & 0o077 in (0, 0o040)  # never world-readable
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(cert)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    for san in ("IP Address:10.20.30.40", "IP Address:127.0.0.1", "DNS:booster-sukamaju.lan",
                "DNS:localhost", "TLS Web Server Authentication"):  # fmt: skip
        assert san in text, san
    again = boosterd("hmi-cert", "--cert", str(cert), "--key", str(key))
    assert again.returncode == 1  # an existing certificate is never replaced silently
    assert "--force" in again.stderr


@pytest.mark.asyncio
async def test_hmi_serves_tls_with_its_certificate_and_a_secure_cookie(tmp_path: Path) -> None:
    cert, key = tmp_path / "hmi.crt", tmp_path / "hmi.key"
    made = boosterd("hmi-cert", "--cert", str(cert), "--key", str(key))
    assert made.returncode == 0, made.stderr
    users = tmp_path / "users.json"
    UserStore(users).save({"ana": make_user("ana", "operator", "kata-sandi-ana-1")})
    station = load_config(EXAMPLE_CONFIG)
    hmi_cfg = HmiConfig(port=0, cert_file=str(cert), key_file=str(key), users_file=str(users))
    core = ControlCore(station, now=0.0)
    server = HmiServer(
        hmi_cfg,
        station=lambda: station,
        snapshot=lambda: dict(core.status(), values={}),
        commands=CommandProcessor(core),
        audit=AuditLog(tmp_path / "audit.jsonl"),
        history=History(tmp_path / "h.sqlite3"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    try:
        async with asyncio.timeout(10):
            await server.started.wait()
        # the browser's check: the certificate is trusted once, and names 127.0.0.1
        ctx = ssl.create_default_context(cafile=str(cert))
        base = f"https://127.0.0.1:{server.port}"
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(f"{base}/login", ssl=ctx) as resp:
                form_cookie = resp.headers["Set-Cookie"]
                page = await resp.text()
            assert "Secure" in form_cookie
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            assert token is not None
            data = {"username": "ana", "password": "kata-sandi-ana-1", "csrf": token.group(1)}
            async with http.post(
                f"{base}/login", data=data, ssl=ctx, allow_redirects=False
            ) as resp:
                assert resp.status == 303
                cookie = next(c for c in resp.headers.getall("Set-Cookie")
                              if c.startswith("boosterd_session="))  # fmt: skip
                assert "Secure" in cookie
                assert "HttpOnly" in cookie
                assert "Strict-Transport-Security" in resp.headers
            async with http.get(f"{base}/", ssl=ctx) as resp:
                assert resp.status == 200
                assert 'id="logout"' in await resp.text()
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task


# -- the terminal dashboard uses the same catalogue --------------------------------------------


def test_dashboard_names_states_and_alarms_in_the_station_language() -> None:
    from rich.console import Console

    from controller.dashboard import render

    snap = {
        "site": {"id": "bs01", "name": "Sukamaju", "language": "id"},
        "state": "high_pressure",
        "mode": "auto",
        "pumps": {"P1": {"running": False, "state": "locked out", "locked_out": "tripped"}},
        "alarms": [{"id": "dry_run", "severity": "critical", "message": "suction 0.1 bar"}],
    }
    console = Console(width=400, record=True)
    console.print(render(snap))
    text = console.export_text()
    assert "tekanan terlalu tinggi" in text
    assert "terkunci: tripped" in text
    assert "proteksi kering" in text
    assert "suction 0.1 bar" in text
    console = Console(width=400, record=True)
    console.print(render(snap, "en"))
    assert "high pressure cutout" in console.export_text()


def test_password_checks_do_not_leave_the_process_bigger() -> None:
    """scrypt's 16 MiB per check must go back to the system (measured: +15-64 MB without)."""
    import sys

    script = """
import asyncio, concurrent.futures
from controller.hmi.users import make_user, verify_and_release
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
user = make_user("a", "operator", "0123456789ab")
verify_and_release(user, "0123456789ab")
before = rss()
pool = concurrent.futures.ThreadPoolExecutor(1)
async def main():
    loop = asyncio.get_running_loop()
    for _ in range(2):
        await asyncio.gather(*(loop.run_in_executor(pool, verify_and_release, user, "x" * 12)
                               for _ in range(2)))
asyncio.run(main())
print(rss() - before)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True, cwd=REPO)  # fmt: skip
    assert float(out.stdout) < 8.0


# -- footprint: what the daemon with its HMI imports ---------------------------------------------


def test_daemon_with_hmi_imports_no_table_renderer_and_no_protobuf() -> None:
    """The HMI's aiohttp costs about 7 MB; the room comes from modules the daemon never
    used (rich and pygments: tables for 'status'/'read'/the demo; protobuf: Sparkplug)."""
    import sys

    code = (
        "import sys, controller.cli as c; c.build_parser(); "
        "import controller.runtime.daemon, controller.hmi.server, controller.logs; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    assert "aiohttp" in out  # the measurement means something
    for heavy in ("rich", "pygments", "google"):
        assert heavy not in out, heavy

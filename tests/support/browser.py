"""The HMI under test: a real ``boosterd demo`` process, a plain HTTP client, and
Debian's headless Chromium driven by selenium."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

ANNOUNCE = re.compile(
    r"HMI: http://127\.0\.0\.1:(\d+)/\s+operator: demo / (\S+)\s+viewer: viewer / (\S+)"
)


@dataclass
class Demo:
    """``boosterd demo --plain`` with its HMI on a free port; accounts parsed from its output."""

    state_dir: Path
    extra: tuple[str, ...] = ()
    port: int = 0
    operator_password: str = ""
    viewer_password: str = ""
    proc: subprocess.Popen[str] | None = None
    _out: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def start(self) -> Demo:
        self._fh = self._out.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--plain", "--hmi-port", "0",
             "--state-dir", str(self.state_dir), *self.extra],
            stdout=self._fh, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        proc = self.proc
        wait_until(lambda: ANNOUNCE.search(self.output()) is not None or proc.poll() is not None,
                   timeout=30, what="the demo to announce its HMI")  # fmt: skip
        found = ANNOUNCE.search(self.output())
        assert found is not None, self.output()
        self.port = int(found.group(1))
        self.operator_password = found.group(2)
        self.viewer_password = found.group(3)
        return self

    def output(self) -> str:
        return self._out.read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._fh.close()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str


class HmiClient:
    """A plain HTTP client with one cookie (the session): no browser, no JavaScript."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None
        self.login_cookie: str | None = None  # the login form's CSRF cookie

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        cookies = [c for c in (self.cookie, self.login_cookie) if c]
        if cookies:
            hdrs["Cookie"] = "; ".join(cookies)
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        reply = Reply(resp.status, resp.headers, resp.read().decode("utf-8", "replace"))
        conn.close()
        for header in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";")[0].strip('"')  # a deleted cookie is ""
            if name == "boosterd_session":
                self.cookie = f"boosterd_session={value}" if value else None
            elif name == "boosterd_login":
                self.login_cookie = f"boosterd_login={value}" if value else None
        return reply

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, **headers)

    def post(self, path: str, form: dict[str, str], **headers: str) -> Reply:
        return self.request("POST", path, form, **headers)

    def login(self, user: str, password: str, *, csrf: bool = True) -> Reply:
        """As a browser does: fetch the form (its CSRF token and cookie), then post it."""
        form = {"username": user, "password": password}
        if csrf:
            form["csrf"] = self.login_token()
        return self.post("/login", form)

    def login_token(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get("/login").body)
        assert found is not None, "no CSRF token on the login form"
        return found.group(1)

    def csrf(self, page: str = "/") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(page).body)
        assert found is not None, "no CSRF token on the page"
        return found.group(1)

    def live(self) -> dict[str, Any]:
        import json

        reply = self.get("/api/live")
        assert reply.status == 200, reply.body
        data: dict[str, Any] = json.loads(reply.body)
        return data


CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)  # fmt: skip


def chromium_available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def chromium(width: int = 1280, height: int = 900, lang: str = "id") -> Any:
    """Debian's headless Chromium through chromium-driver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="boosterd-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.boosterd_profile = profile
    return driver


def close_chromium(driver: Any) -> None:
    profile = getattr(driver, "boosterd_profile", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)

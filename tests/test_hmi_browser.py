"""The HMI in a real browser: Debian's headless Chromium driven by selenium against a
real ``boosterd demo`` process whose uplink talks to a real Mosquitto.

Set BOOSTERD_HMI_SCREENSHOTS=docs/hmi to refresh the committed screenshots.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Broker
from tests.support.browser import Demo, chromium, chromium_available, close_chromium
from tests.test_uplink import Subscriber

pytestmark = pytest.mark.skipif(
    not chromium_available(), reason="needs chromium and chromium-driver (scripts/bootstrap test)"
)

TIMEOUT = 20
ACK_TIMEOUT = 5
PAGES = ("/", "/alarms", "/pumps", "/trends", "/diagnostics", "/audit")


@pytest.fixture(scope="module")
def demo(_session_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    _session_broker.start()
    # P1 trips 30 simulated seconds in (6 s at --speed 5) for 1 s and stays locked out: an
    # alarm to acknowledge.
    d = Demo(
        tmp_path_factory.mktemp("hmi-browser"),
        extra=("--speed", "5", "--fault", "pump_trip:P1@30+1",
               "--mqtt", f"127.0.0.1:{_session_broker.port}"),
    ).start()  # fmt: skip
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("BOOSTERD_HMI_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screens")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait(driver: Any, condition: Any, what: str, timeout: float = TIMEOUT) -> Any:
    """Poll `condition` until it holds. A page that reloads between finding an
    element and reading it (the language switch, a redirect) leaves a stale
    reference: that is "not yet", not a failure, so the poll goes on."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition, message=what)


def login(driver: Any, demo: Demo, user: str = "demo", password: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    driver.get(demo.url + "/")
    wait(driver, lambda d: d.find_elements(By.ID, "username"), "the login form")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password or demo.operator_password)
    driver.find_element(By.ID, "login").click()
    wait(driver, lambda d: d.find_elements(By.ID, "logout"), "the logged-in overview")


def body_data(driver: Any, key: str) -> str | None:
    from selenium.webdriver.common.by import By

    value = driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{key}")
    return None if value is None else str(value)


def live_text(driver: Any, key: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, f'[data-live="{key}"]').text)


def flash(driver: Any, kind: str) -> str:
    from selenium.webdriver.common.by import By

    return str(wait(driver, lambda d: d.find_elements(By.ID, f"flash-{kind}"), kind)[0].text)


def test_operator_session_in_the_browser(
    demo: Demo, broker: Broker, tmp_path: Path, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    base = "pdam/bs01-sukamaju"
    telemetry = Subscriber(broker.port, f"{base}/telemetry", tmp_path / "telemetry.txt")
    events = Subscriber(broker.port, f"{base}/alarm", tmp_path / "events.txt")
    driver = chromium(1280, 900, lang="id")
    try:
        driver.get(demo.url + "/login")
        driver.save_screenshot(str(screenshots / "login-desktop.png"))
        login(driver, demo)
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "id"

        # live values change without a reload (server-sent events)
        seq = driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq")
        first = live_text(driver, "v.discharge")
        wait(driver, lambda d: live_text(d, "v.discharge") != first, "the discharge to move")
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq") != seq

        # a setpoint change takes effect and reaches SCADA's telemetry
        box = driver.find_element(By.ID, "setpoint-input")
        box.clear()
        box.send_keys("3.4")
        driver.find_element(By.ID, "setpoint-apply").click()
        assert "diterima" in flash(driver, "accepted")
        wait(driver, lambda d: live_text(d, "base_setpoint") == "3.40", "the new setpoint")
        wait(driver, lambda d: any(_has_setpoint(m, 3.4) for m in telemetry.messages()),
             "setpoint 3.4 in the MQTT telemetry")  # fmt: skip
        # ...and the write itself is reported to SCADA as an event, naming the user
        wait(driver, lambda d: any(m.get("event") == "hmi_command" and m.get("user") == "demo"
                                   and m.get("command") == "setpoint" for m in events.messages()),
             "the HMI write as an event on the alarm topic")  # fmt: skip
        # ...which SCADA can validate with the committed schema, like every alarm event
        from tests.test_state_broker import validator

        for message in events.messages():
            validator("alarm.json").validate(message)

        # a SCADA command lands in the same audit log
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
             "-t", f"{base}/cmd/mode", "-m",
             json.dumps({"id": "scada-1", "ts": time.time(), "mode": "auto"})],
            check=True, timeout=10,
        )  # fmt: skip

        # out of range: refused, with the station's reason, and nothing changes
        box = driver.find_element(By.ID, "setpoint-input")
        box.clear()
        box.send_keys("24")
        driver.find_element(By.ID, "setpoint-apply").click()
        refused = flash(driver, "refused")
        assert "ditolak" in refused
        assert "outside the allowed" in refused
        assert live_text(driver, "base_setpoint") == "3.40"

        # acknowledge the pump lockout on the alarms page
        driver.get(demo.url + "/alarms")
        button = 'button.ack[data-alarm="pump_lockout_P1"]'
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, button), "the P1 lockout alarm")
        driver.save_screenshot(str(screenshots / "alarms-desktop.png"))
        _acknowledge(driver, button)
        driver.get(demo.url + "/alarms")
        history = driver.find_element(By.ID, "alarm-history").text
        assert "pump_lockout_P1" in history
        assert "demo@" in history  # who acknowledged

        # Hand-Off-Auto: P3 switched Off (out of service) with the station in automatic,
        # seen in SCADA's telemetry (pump flag 64), then given back to Auto
        driver.get(demo.url + "/pumps")
        wait(driver, lambda d: d.find_elements(By.ID, "pump-P3-off"), "P3's Off button")
        driver.find_element(By.ID, "pump-P3-off").click()
        assert "diterima" in flash(driver, "accepted")
        wait(driver, lambda d: live_text(d, "p.P3.hoa") == "Off (tidak beroperasi)", "P3 Off")
        wait(driver, lambda d: any(_pump_flags(m, 2) & 64 for m in telemetry.messages()),
             "P3 out of service in the MQTT telemetry")  # fmt: skip
        assert live_text(driver, "p.P2.hoa").startswith("Auto")  # the station stays automatic
        driver.find_element(By.ID, "pump-P3-auto").click()
        wait(driver, lambda d: live_text(d, "p.P3.hoa").startswith("Auto"), "P3 back in Auto")

        # every page, as a screenshot for the docs, then the language switch
        for page in PAGES:
            driver.get(demo.url + page)
            wait(driver, lambda d: d.find_elements(By.ID, "logout"), page)
            if page in ("/", "/pumps"):
                wait(driver, lambda d: body_data(d, "seq"), "live data")
            if page == "/trends":
                wait(driver, lambda d: body_data(d, "trend-points"), "trend data")
            name = "overview" if page == "/" else page.strip("/")
            driver.save_screenshot(str(screenshots / f"{name}-desktop.png"))
        audit = driver.find_element(By.ID, "audit-log").text
        assert "setpoint" in audit
        assert "ditolak" in audit
        wait(driver, lambda d: _audit_shows(d, demo, "scada: scada"),
             "SCADA's mode command in the audit log, like the HMI's")  # fmt: skip
        driver.find_element(By.ID, "lang-switch").click()
        wait(driver, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en",
             "English")  # fmt: skip
        assert "Audit log" in driver.find_element(By.TAG_NAME, "h1").text
        driver.get(demo.url + "/")
        wait(driver, lambda d: live_text(d, "mode") == "automatic", "live texts in English")
        driver.save_screenshot(str(screenshots / "overview-desktop-en.png"))
    finally:
        close_chromium(driver)
        telemetry.close()
        events.close()


def _audit_shows(driver: Any, demo: Demo, text: str) -> bool:
    from selenium.webdriver.common.by import By

    if text in driver.find_element(By.ID, "audit-log").text:
        return True
    driver.get(demo.url + "/audit")  # the audit page is not live: look again
    return False


def _acknowledge(driver: Any, button: str) -> None:
    """Click Acknowledge; while the trip itself lasts, the lockout comes straight back
    (as on a real panel), so an operator, and this test, acknowledges again."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    for _ in range(3):
        driver.find_element(By.CSS_SELECTOR, button).click()
        assert flash(driver, "accepted")
        try:
            wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, button), "the ack",
                 ACK_TIMEOUT)  # fmt: skip
            return
        except TimeoutException:
            continue
    raise AssertionError("the lockout could not be acknowledged")


def _pump_flags(message: Any, index: int) -> int:
    """The flag word of the schema's ``index``-th pump in a telemetry message (format 2)."""
    if isinstance(message, dict) and message.get("v") == 2:
        flags = message.get("pmp") or []
        return int(flags[index]) if len(flags) > index else 0
    return 0


def _has_setpoint(message: Any, value: float) -> bool:
    if isinstance(message, dict):
        # Telemetry format 2 carries the controlled setpoint as "sp" (format 1: setpoint_bar).
        if message.get("v") == 2 and message.get("sp") == value:
            return True
        if message.get("setpoint_bar") == value:
            return True
        return any(_has_setpoint(v, value) for v in message.values())
    if isinstance(message, list):
        return any(_has_setpoint(v, value) for v in message)
    return False


def test_viewer_in_the_browser_sees_no_write_controls(demo: Demo) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium(1280, 900, lang="en")
    try:
        login(driver, demo, "viewer", demo.viewer_password)
        assert not driver.find_elements(By.ID, "setpoint-input")
        assert "Read only" in driver.find_element(By.TAG_NAME, "main").text
        driver.get(demo.url + "/pumps")
        assert not driver.find_elements(By.CSS_SELECTOR, "main form")
    finally:
        close_chromium(driver)


def test_phone_viewport_is_usable(demo: Demo, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium(390, 844, lang="id")
    try:
        driver.set_window_size(390, 844)
        login(driver, demo)
        for page in PAGES:
            driver.get(demo.url + page)
            wait(driver, lambda d: d.find_elements(By.ID, "logout"), page)
            width = driver.execute_script("return window.innerWidth")
            scroll = driver.execute_script("return document.documentElement.scrollWidth")
            assert scroll <= width + 1, f"{page} scrolls sideways on a phone ({scroll} > {width})"
            name = "overview" if page == "/" else page.strip("/")
            driver.save_screenshot(str(screenshots / f"{name}-phone.png"))
        driver.get(demo.url + "/")
        box = driver.find_element(By.ID, "setpoint-input")
        assert box.is_displayed()
        assert box.size["height"] >= 30  # big enough for a thumb
        box.clear()
        box.send_keys("3.1")
        driver.find_element(By.ID, "setpoint-apply").click()
        assert flash(driver, "accepted")
        wait(driver, lambda d: live_text(d, "base_setpoint") == "3.10", "the phone's setpoint")
    finally:
        close_chromium(driver)

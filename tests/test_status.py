"""``boosterd status`` reaches a live status socket; the socket is read-only by default.
The socket sends the typed ``LocalStatus``; the CLI reads a partial or older one too."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.state.dump import to_json, validate
from controller.state.enums import BadReason, ControlState, Mode, PumpState, Quality, Severity
from controller.state.models import (
    ActiveAlarm,
    LocalStatus,
    LoopView,
    PointValue,
    PumpStatus,
    SiteInfo,
)
from controller.status_server import StatusServer, StatusUnavailable, query

STATUS = LocalStatus(
    mode=Mode.AUTO,
    setpoint_bar=3.0,
    base_setpoint_bar=3.2,
    state=ControlState.AUTO,
    demand=1.2,
    pumps={
        "P1": PumpStatus(running=True, run_hours=12.5, starts_last_hour=2, starts_total=40,
                         locked_out=None, state=PumpState.RUNNING, speed_pct=87.0),
        "P2": PumpStatus(running=False, run_hours=3.0, starts_last_hour=0, starts_total=9,
                         locked_out="no run feedback", state=PumpState.LOCKED_OUT),
    },
    alarms=[ActiveAlarm(id="pump_lockout_P2", severity=Severity.MAJOR, message="P2 silent",
                        since=81.5, latched=True, condition=False, acked=False)],
    pressure_management=None,
    pressure_point="discharge_pressure",
    values={
        "discharge_pressure": PointValue(v=3.02, unit="bar", q=Quality.GOOD),
        "flow": PointValue(v=None, unit="m3/h", q=Quality.BAD, reason=BadReason.TIMEOUT),
    },
    site=SiteInfo(id="bs01", name="Booster Test", language="en"),
    version="0.1.0",
    loop=LoopView(ticks=1000, overruns=0, missed=0, max_tick_ms=1.5, jitter_ms_p50=0.1,
                  jitter_ms_p99=0.4, jitter_ms_max=0.9),
    acquisition={},
    buffer={"rows": 120, "backlog": 120, "evicted": 0},
    uplink={"connected": False},
    ready=True,
)  # fmt: skip

#: What a daemon of an older release (or the HMI's tests) may send: partial, loosely shaped.
PARTIAL: dict[str, Any] = {
    "site": {"id": "bs01", "name": "Booster Test"},
    "mode": "auto",
    "setpoint_bar": 3.0,
    "pressure_point": "discharge_pressure",
    "values": {
        "discharge_pressure": {"v": 3.02, "unit": "bar", "q": "good"},
        "flow": {"v": None, "unit": "m3/h", "q": "bad", "reason": "timeout"},
    },
    "pumps": {
        "P1": {"running": True, "run_hours": 12.5, "starts_last_hour": 2, "starts_total": 40},
        "P2": {"running": False, "locked_out": "no run feedback"},
    },
    "alarms": [{"id": "sensor_flow", "severity": "warning", "message": "flow meter silent"}],
    "uplink": {"connected": False},
    "buffer": {"rows": 120, "backlog": 120, "evicted": 0},
    "loop": {"ticks": 1000, "overruns": 0},
}


async def _run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.cli",
        "status",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_status_command_shows_the_live_status(tmp_path: Path) -> None:
    sock = str(tmp_path / "status.sock")
    async with StatusServer(path=sock, status=lambda: STATUS) as server:
        code, out, err = await _run_cli("--socket", sock)
        assert code == 0, err
        assert "Booster Test" in out
        assert "discharge_pressure" in out
        assert "BAD timeout" in out
        assert "no run feedback" in out
        assert "P2 silent" in out
        assert "87" in out  # P1's speed
        code, out, err = await _run_cli("--socket", sock, "--json")
        assert code == 0, err
        assert json.loads(out) == to_json(STATUS)
        assert validate(LocalStatus, json.loads(out)) == STATUS
        assert server.served == 2
    assert not Path(sock).exists()


@pytest.mark.asyncio
async def test_a_partial_status_from_another_release_still_shows(tmp_path: Path) -> None:
    sock = str(tmp_path / "status.sock")
    async with StatusServer(path=sock, status=lambda: PARTIAL):
        code, out, err = await _run_cli("--socket", sock)
        assert code == 0, err
        assert "Traceback" not in err
        assert "Booster Test" in out
        assert "BAD timeout" in out
        assert "no run feedback" in out
        assert "flow meter silent" in out
        code, out, err = await _run_cli("--socket", sock, "--json")
        assert json.loads(out) == PARTIAL


@pytest.mark.asyncio
async def test_socket_is_read_only_by_default(tmp_path: Path) -> None:
    sock = str(tmp_path / "status.sock")
    async with StatusServer(path=sock, status=lambda: STATUS):
        reply = await query(sock, {"request": "command", "command": "mode", "mode": "off"})
        assert reply["ok"] is False
        assert "read-only" in reply["error"]


@pytest.mark.asyncio
async def test_garbage_request_gets_an_error_not_a_crash(tmp_path: Path) -> None:
    sock = str(tmp_path / "status.sock")
    async with StatusServer(path=sock, status=lambda: STATUS):
        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(b"\xff\xfe not json\n")
        await writer.drain()
        reply = json.loads(await reader.readline())
        writer.close()
        assert reply == {"ok": False, "error": "request is not JSON"}
        assert (await query(sock))["ok"] is True  # still serving


@pytest.mark.asyncio
async def test_stale_socket_from_a_crash_is_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "status.sock"
    sock.write_text("left over")
    async with StatusServer(path=str(sock), status=lambda: STATUS):
        assert (await query(str(sock)))["status"]["mode"] == "auto"


@pytest.mark.asyncio
async def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StatusUnavailable, match="is the service running"):
        await query(str(tmp_path / "none.sock"))
    code, _, err = await _run_cli("--socket", str(tmp_path / "none.sock"))
    assert code == 3
    assert "Traceback" not in err
    assert "cannot reach boosterd" in err

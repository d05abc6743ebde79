"""Outputs go safe when the process ends: normal exit, SIGTERM, and what a SIGKILL leaves.

Real processes and real signals; the only fake is the GPIO chip, replaced by a backend
that appends every electrical level it drives to a file, so the parent can read what
the child did to the relays right up to its death.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import load_config
from drivers.gpio.factory import PumpIO
from drivers.gpio.safety import ExitSafety, install_exit_safety
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.fake_gpio import FileGpio


def levels(path: Path, line: str) -> list[int]:
    """Every level the file records for ``line``, in order."""
    return [
        int(lv) for name, lv in (r.split() for r in path.read_text().splitlines()) if name == line
    ]


CHILD = """
import asyncio, signal, sys
from controller.config import load_config
from drivers.gpio.factory import PumpIO
from drivers.gpio.safety import install_exit_safety
from tests.support.fake_gpio import FileGpio

mode, path, station = sys.argv[1:4]
io = PumpIO(FileGpio(path), load_config(station).pumps)

def ready():
    print("ready", flush=True)

if mode == "exit":
    install_exit_safety(io)
    io.set("P1", True)
    sys.exit(0)
elif mode == "signals":
    install_exit_safety(io, signals=True)
    io.set("P1", True)
    ready()
    sys.stdin.read()  # until a signal ends us
elif mode == "asyncio":
    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        safety = None
        def on_stop():
            safety()  # relays first, as the daemon does
            stop.set()
        loop.add_signal_handler(signal.SIGTERM, on_stop)
        safety = install_exit_safety(io, signals=True)  # must leave asyncio's handler alone
        io.set("P1", True)
        ready()
        await stop.wait()
        print(f"stopped runs={safety.runs}", flush=True)
    asyncio.run(main())
elif mode == "kill":
    io.set("P1", True)
    ready()
    sys.stdin.read()
"""


def spawn(mode: str, record: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(record), str(EXAMPLE_CONFIG)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], 20.0)
    assert readable, "the child never became ready"
    assert proc.stdout.readline().strip() == "ready"


def test_a_normal_exit_switches_the_relays_off(tmp_path: Path) -> None:
    record = tmp_path / "levels"
    proc = spawn("exit", record)
    assert proc.wait(timeout=30) == 0
    # Claimed off (high, active low), energised (low), off again by the atexit hook.
    assert levels(record, "GPIO17") == [1, 0, 1]


def test_sigterm_in_a_plain_program_switches_off_and_exits_143(tmp_path: Path) -> None:
    record = tmp_path / "levels"
    proc = spawn("signals", record)
    wait_ready(proc)
    assert levels(record, "GPIO17")[-1] == 0  # running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert levels(record, "GPIO17")[-1] == 1
    assert levels(record, "GPIO27") == [1] * len(levels(record, "GPIO27"))  # never on


def test_sigterm_under_asyncio_runs_the_daemons_handler_not_ours(tmp_path: Path) -> None:
    record = tmp_path / "levels"
    proc = spawn("asyncio", record)
    wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0  # asyncio's handler ran; ours (SystemExit 143) did not
    assert "stopped runs=1" in out  # the daemon's signal path put the relays off
    assert levels(record, "GPIO17")[-1] == 1


def test_after_sigkill_the_relay_stays_as_left_until_the_restart_claims_it_off(
    tmp_path: Path,
) -> None:
    record = tmp_path / "levels"
    proc = spawn("kill", record)
    wait_ready(proc)
    proc.kill()
    proc.wait(timeout=30)
    # No code ran at the SIGKILL: the last level written is "energised". (On a Pi the
    # kernel releases the line; what the pin then does is in docs/gpio.md.)
    assert levels(record, "GPIO17") == [1, 0]
    PumpIO(FileGpio(record), load_config(EXAMPLE_CONFIG).pumps)
    # The restart's first write to the line is the safe level, before anything else.
    assert levels(record, "GPIO17") == [1, 0, 1]


class _Failing:
    def all_safe(self) -> None:
        raise OSError("chip gone")


def test_exit_safety_never_raises_in_an_exit_path(capsys: pytest.CaptureFixture[str]) -> None:
    safety = ExitSafety(_Failing())
    assert safety() is False
    assert "outputs NOT all safe: chip gone" in capsys.readouterr().err


def test_signals_are_taken_only_where_no_handler_was_installed() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    old_term = signal.signal(signal.SIGTERM, mine)
    old_int = signal.getsignal(signal.SIGINT)
    try:
        safety = install_exit_safety(FileGpio("/dev/null"), signals=True)
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) != old_int  # the default was replaced
        safety.uninstall()
        assert signal.getsignal(signal.SIGINT) == old_int
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def test_outputs_off_claims_every_relay_off_and_lets_go(tmp_path: Path) -> None:
    from controller.config.schema import GpioConfig
    from drivers.gpio.safety import outputs_off
    from drivers.gpio.shared import OUTPUTS

    station = load_config(EXAMPLE_CONFIG)
    station = station.model_copy(update={"gpio": GpioConfig(backend="sim", sim_dir=str(tmp_path))})
    assert outputs_off(station) == ["GPIO17", "GPIO27", "GPIO24"]
    written = (tmp_path / OUTPUTS).read_text()
    assert '"GPIO17": true' in written  # electrical high: off on the active-low board


@pytest.mark.asyncio
async def test_the_daemon_puts_the_relays_off_through_its_exit_safety_on_sigterm(
    tmp_path: Path,
) -> None:
    import asyncio
    import os

    from harness.demo import DemoOptions, demo_config, demo_daemon

    options = DemoOptions(speed=50.0, state_dir=tmp_path, live=False, hmi_port=None)
    daemon = demo_daemon(demo_config(load_config(EXAMPLE_CONFIG), options), options)
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(30):
            while not any(daemon.pump_io.states().values()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        safety = daemon.exit_safety
        assert safety is not None
        assert safety.target is daemon.pump_io
        assert safety.runs == 0
        os.kill(os.getpid(), signal.SIGTERM)  # the daemon's asyncio handler takes it
        async with asyncio.timeout(30):
            assert await task == 0
    finally:
        daemon.stop.set()
        if not task.done():
            await task
    assert safety.runs == 1  # the signal path, once; the atexit hook was removed at the stop

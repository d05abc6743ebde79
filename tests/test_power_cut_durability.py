"""Power cuts, as the SD card sees them: the buffer's filesystem is an ext4 image on a
loop device, and a "power cut" is a copy of the image taken at a random instant while
the real controller runs (its process stopped for the few milliseconds of the copy).

The copy holds exactly what had reached the block device: what was fsynced, plus what
the kernel happened to write back by itself; whatever sat only in the page cache is not
in it, as after a real power cut. Mounting the copy replays ext4's journal as a reboot
would. What it cannot show: an SD card's own controller losing or reordering writes it
had acknowledged (a card without power-loss protection may), and the kernel writing back
during the copy (the controller is stopped, the kernel's flusher is not; the copy takes
a few ms against its 5 s cycle).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from controller.telemetry.buffer import SampleBuffer
from tests.conftest import EXAMPLE_CONFIG, REPO
from tests.support.broker import Broker
from tests.support.waiting import wait_until
from tests.test_uplink import Subscriber

SITE = "bs01-sukamaju"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _loop_mount_possible() -> bool:
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        return False
    probe = Path("/tmp") / f"boosterd-loop-probe-{os.getpid()}"
    try:
        with ext4_image(probe.with_suffix(".img"), probe):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        probe.with_suffix(".img").unlink(missing_ok=True)
        shutil.rmtree(probe, ignore_errors=True)


@contextmanager
def ext4_image(image: Path, mount_point: Path, *, size_mb: int | None = 24) -> Iterator[Path]:
    """An ext4 filesystem in ``image`` (made when ``size_mb``), loop-mounted."""
    if size_mb is not None:
        _run("truncate", "-s", f"{size_mb}M", str(image))
        _run("mkfs.ext4", "-q", "-F", str(image))
    mount_point.mkdir(parents=True, exist_ok=True)
    _run("mount", "-o", "loop", str(image), str(mount_point))
    try:
        yield mount_point
    finally:
        _run("umount", str(mount_point))


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _loop_mount_possible(), reason="needs root and loop-mounted ext4"),
]


def _station_file(tmp_path: Path, topic_root: str) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["uplink"].update(topic_prefix=topic_root, tls=None, credentials_file=None, keepalive_s=5)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _command_mode(port: int, base: str, cid: str, mode: str) -> None:
    payload = json.dumps({"id": cid, "ts": time.time(), "mode": mode})
    _run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
         "-t", f"{base}/cmd/mode", "-m", payload)  # fmt: skip


async def _restart_seq(buffer: Path) -> tuple[int, int]:
    """Open the buffer as the controller would after the reboot: its next seq and boot."""
    buf = SampleBuffer(buffer, site=SITE)
    await buf.open()
    seq = buf.append({"after": "reboot"})
    await buf.close()
    return seq, buf.boot


def test_power_cuts_never_reuse_a_seq_scada_has_and_keep_the_last_command(
    broker: Broker, tmp_path: Path, topic_root: str
) -> None:
    station = _station_file(tmp_path, topic_root)
    base = f"{topic_root}/{SITE}"
    image = tmp_path / "sd.img"
    rng = random.Random(12)
    snapshots: list[tuple[Path, int, int, str]] = []
    with ext4_image(image, tmp_path / "sd") as sd:
        state_dir = sd / "boosterd"
        telemetry = Subscriber(broker.port, f"{base}/telemetry", tmp_path / "tele.txt")
        results = Subscriber(broker.port, f"{base}/cmd/+/result", tmp_path / "results.txt")
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--config", str(station),
             "--speed", "4", "--plain", "--mqtt", f"127.0.0.1:{broker.port}",
             "--state-dir", str(state_dir)],
            cwd=REPO, stdout=(tmp_path / "demo.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(lambda: len(telemetry.seqs()) >= 5, timeout=30, what="first telemetry")
            mode = "auto"
            for i in range(6):
                if i == 0 or rng.random() < 0.6:
                    mode = rng.choice([m for m in ("off", "manual", "auto") if m != mode])
                    _command_mode(broker.port, base, f"m{i}", mode)
                    wait_until(lambda i=i: any(r.get("id") == f"m{i}" and r["ok"]  # type: ignore[misc]
                                               for r in results.messages()),
                               timeout=15, what=f"the reply to m{i}")  # fmt: skip
                # A random instant: a random number of further samples, some right after
                # the command's reply.
                target = max(telemetry.seqs()) + rng.randint(0, 12)
                wait_until(lambda t=target: max(telemetry.seqs()) >= t, timeout=20,  # type: ignore[misc]
                           what="more telemetry")  # fmt: skip
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    seen = telemetry.messages()
                    copy = tmp_path / f"cut{i}.img"
                    shutil.copyfile(image, copy)
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
                top = max(int(m["seq"]) for m in seen)  # type: ignore[call-overload]
                boot = max(int(m["boot"]) for m in seen)  # type: ignore[call-overload]
                snapshots.append((copy, top, boot, mode))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            telemetry.close()
            results.close()
    assert proc.returncode == 0
    for copy, top, boot, mode in snapshots:
        with ext4_image(copy, tmp_path / f"{copy.stem}.mnt", size_mb=None) as cut:
            seq, new_boot = asyncio.run(_restart_seq(cut / "boosterd" / "buffer.sqlite3"))
            state = json.loads((cut / "boosterd" / "control-state.json").read_text())
        assert seq > top, f"{copy.name}: seq {seq} reused (SCADA has up to {top})"
        assert new_boot > boot, f"{copy.name}: boot {new_boot} not above {boot}"
        assert state["mode"] == mode, f"{copy.name}: control state says {state['mode']}"

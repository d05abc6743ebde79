"""A wrong clock, as a Pi without RTC sees it: the real buffer process under libfaketime
boots at 1970-01-02, then network time sets the clock, then it steps +1 h and -1 h."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.waiting import wait_until

# Debian's multiarch path: x86_64-linux-gnu on a PC, aarch64/arm-linux-gnueabihf on a Pi.
LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"), Path("/nonexistent"))
pytestmark = pytest.mark.skipif(
    shutil.which("faketime") is None or not LIBFAKETIME.exists(),
    reason="libfaketime not installed (apt-get install faketime)",
)


def _progress(path: Path) -> int:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def test_a_1970_boot_then_sync_and_1_h_steps_evict_nothing_and_keep_seq_order(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "faketime"
    fake.write_text("@1970-01-02 00:00:00\n")
    flag = tmp_path / "synchronized"
    progress = tmp_path / "progress"
    db = tmp_path / "buf.sqlite3"
    env = dict(os.environ, LD_PRELOAD=str(LIBFAKETIME), FAKETIME_TIMESTAMP_FILE=str(fake),
               FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.telemetry_writer", "--db", str(db),
         "--port", "0", "--prefix", "unused", "--rate", "50", "--total", "100000",
         "--progress", str(progress), "--sync-flag", str(flag)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    marks = []
    try:
        for offset in (None, "+0", "+1h", "-1h"):
            if offset is not None:
                fake.write_text(f"{offset}\n")  # the clock is set, then stepped
                flag.touch()
            marks.append(_progress(progress))
            wait_until(lambda m=marks[-1]: _progress(progress) >= m + 40, timeout=20,  # type: ignore[misc]
                       what="40 more samples")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    with sqlite3.connect(db) as conn:
        # ts: the row's stamp in Unix seconds (format 2 rows keep it in t, not as text).
        rows = conn.execute("SELECT seq, t, data FROM samples ORDER BY seq").fetchall()
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    seqs = [r[0] for r in rows]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing evicted, no gap
    assert meta.get("evicted", 0) == 0
    synced_at = marks[1]  # the last seq stamped before the clock was set, give or take one
    early = [r for r in rows if r[0] < synced_at]
    late = [r for r in rows if r[0] > synced_at + 1]
    assert early
    assert all(86400 <= r[1] < 2 * 86400 for r in early)  # 1970-01-02
    assert all(json.loads(r[2]).get("ts_unsynced") is True for r in early)
    assert late
    assert not any("ts_unsynced" in json.loads(r[2]) for r in late)
    # The steps show in ts (back by 1 h at the end); the order stays that of seq.
    assert rows[-1][1] < rows[marks[3] - 2][1]  # seq marks[3] - 1: stamped at +1 h

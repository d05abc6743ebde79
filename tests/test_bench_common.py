"""The benchmark plumbing: targets that can fail, results that render the same twice,
the telemetry sink that changes no control figure, and an anchor flow that reads what
the station file says."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bench import common, report
from bench.sink import TelemetrySink, scratch_dir
from controller.config import load_config
from harness.closed_loop import ClosedLoop
from harness.metrics import summarise
from tests.conftest import REPO


def _args(check: bool) -> argparse.Namespace:
    return argparse.Namespace(check=check, save=False)


def test_a_missed_target_fails_check_and_a_met_one_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    targets = [common.Target("x_ms", "<=", 10.0, "why"), common.Target("y", ">=", 2, "")]
    common.finish("t", {"x_ms": 9.5, "y": 2}, targets, _args(True), command="c")
    doc = json.loads(capsys.readouterr().out)
    assert doc["pass"] is True
    assert [v["pass"] for v in doc["targets"]] == [True, True]
    with pytest.raises(SystemExit) as exited:
        common.finish("t", {"x_ms": 10.5, "y": 2}, targets, _args(True), command="c")
    assert exited.value.code == 1
    assert "MISS x_ms = 10.5" in capsys.readouterr().err
    # A figure that is missing, or not a number, is a miss too.
    assert not common.Target("z", "<=", 1).verdict({"z": None})["pass"]
    assert not common.Target("z", "<=", 1).verdict({})["pass"]


def test_without_check_a_miss_is_printed_but_exits_normally(
    capsys: pytest.CaptureFixture[str],
) -> None:
    common.finish("t", {"x": 3}, [common.Target("x", "<=", 1)], _args(False), command="c")
    assert json.loads(capsys.readouterr().out)["pass"] is False


def _doc(value: float) -> dict[str, Any]:
    return {
        "bench": "b", "command": "python -m bench.b --save", "date": "2026-11-26 18:00 UTC",
        "commit": "abc", "machine": {"cpu": "cpu", "cores": 2, "python": "3.11.7"},
        "figures": {"cpu_ms": value, "rows": 10}, "tables": {"runs": [{"a": 1, "b": {"c": 2}}]},
        "targets": [{"figure": "cpu_ms", "op": "<=", "limit": 5.0, "value": value,
                     "pass": value <= 5.0, "why": "issue 14"}],
        "pass": value <= 5.0,
    }  # fmt: skip


def test_the_report_renders_verdicts_and_regenerates_identically() -> None:
    text = "# Results\n\n<!-- bench:b -->\nold\n<!-- /bench:b -->\n\nprose\n"
    docs = {"b": _doc(7.0), "buffer": {"figures": {"example_1000k_commit_cpu_ms_p50": 0.5}},
            "daemon": {"figures": {"cpu_ms_per_tick_10hz": 2.0}}}  # fmt: skip
    once = report.generate(text, docs)
    assert report.generate(once, docs) == once
    assert "| cpu_ms | 7 | <= 5 | **MISS** | issue 14 |" in once
    assert "MISSED" in once
    assert "prose" in once
    assert "\nold\n" not in once
    assert "| runs" not in once
    assert "b.c" in once
    # The Pi 3 budget: 2 ms a tick at 10 Hz and 0.5 ms a commit, times the factor.
    assert f"| {report.fmt(2.0 * report.PI3_FACTOR)} |" in once
    assert "jwhitham.org" in once
    changed = report.generate(once, {**docs, "b": _doc(4.0)})
    assert changed != once
    assert "| cpu_ms | 4 | <= 5 | pass | issue 14 |" in changed


def test_the_telemetry_sink_buffers_every_tick_and_changes_no_control_figure() -> None:
    cfg = load_config(REPO / "config" / "station.vfd-example.yaml")
    bare = ClosedLoop(cfg, seed=7, start_hour=6.0).run(300)
    fed = ClosedLoop(cfg, seed=7, start_hour=6.0)
    directory = scratch_dir()
    try:
        sink = TelemetrySink(cfg, fed, directory)
        sink.run(300)
        figures = sink.figures()
        rows = _rows(directory / "buffer.sqlite3")
    finally:
        shutil.rmtree(directory)
    ticks = round(300 / cfg.control.tick_s)
    assert figures["samples"] == ticks == rows
    assert figures["commits"] == round(300 / cfg.buffer.commit_interval_s)
    assert 100 < figures["bytes_on_disk_per_sample"] < 2000
    without = {k: v for k, v in summarise(bare).items() if k != "wall_s"}
    assert {k: v for k, v in summarise(fed).items() if k != "wall_s"} == without


def test_a_sink_on_the_wall_clock_commits_once_per_real_interval_and_keeps_every_tick() -> None:
    """As the daemon's flusher when the stack simulates: its interval is real time, so a
    run much faster than real time commits a few times, every tick still on disk."""
    cfg = load_config(REPO / "config" / "station.vfd-example.yaml")
    fed = ClosedLoop(cfg, seed=7, start_hour=6.0)
    directory = scratch_dir()
    try:
        sink = TelemetrySink(cfg, fed, directory, commit_clock="wall")
        started = time.monotonic()
        sink.run(600)
        wall_s = time.monotonic() - started
        figures = sink.figures()
        rows = _rows(directory / "buffer.sqlite3")
    finally:
        shutil.rmtree(directory)
    assert figures["samples"] == round(600 / cfg.control.tick_s) == rows
    # The last flush, and one per real interval before it.
    assert 1 <= figures["commits"] <= wall_s / cfg.buffer.commit_interval_s + 1
    assert figures["commits"] < 600 / cfg.buffer.commit_interval_s


def _rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


def test_the_node_red_anchor_reads_the_registers_the_station_file_names() -> None:
    anchor = REPO / "bench" / "anchors" / "node-red"
    package = json.loads((anchor / "package.json").read_text())["dependencies"]
    assert package["node-red"].startswith("4.1.")
    assert package["node-red-contrib-modbus"] == "5.23.3"
    flow = json.loads((anchor / "flow.json").read_text())
    reads = {(int(n["unitid"]), int(n["adr"]), int(n["quantity"]), int(n["rate"]))
             for n in flow if n["type"] == "modbus-read"}  # fmt: skip
    cfg = load_config(REPO / "config" / "station.example.yaml")
    wanted = set()
    for device in cfg.devices.values():
        for point in device.points.values():
            words = 2 if point.type in ("float32", "uint32", "int32") else 1
            period = 10 if point.poll == "slow" else 1
            wanted.add((device.slave_id, point.address, words, period))
    # The flow reads adjacent fast points in one block, as the daemon's plan does.
    covered = {(u, a + i, r) for u, a, q, r in reads for i in range(q)}
    for unit, address, words, period in wanted:
        assert all((unit, address + i, period) in covered for i in range(words)), (unit, address)
    client = next(n for n in flow if n["type"] == "modbus-client")
    assert client["serialBaudrate"] == str(cfg.buses["rs485"].baudrate)
    assert next(n for n in flow if n["type"] == "mqtt out")["qos"] == "1"

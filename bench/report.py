"""RESULTS.md's tables, generated from the JSON in bench/results/ (never hand-copied).

    .venv/bin/python -m bench.report            # rewrite the generated parts of RESULTS.md
    .venv/bin/python -m bench.report --check    # exit 1 if RESULTS.md is not what the JSON says

Each benchmark's table goes between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
where such markers are placed in RESULTS.md (its prose sections stay as written);
the tables without a placed marker, and the Pi 3 budget, go into one generated section
at the end. A result written by ``bench.common.finish`` carries its date, commit,
machine, command, targets and verdicts; older JSON (a bare dict or list) is shown as it
is and says that it lacks them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from bench.common import RESULTS

RESULTS_MD = RESULTS.parent / "RESULTS.md"
TAIL_BEGIN = "<!-- bench.report: generated from bench/results, do not edit by hand -->"
TAIL_END = "<!-- /bench.report -->"

#: How much slower a Raspberry Pi 3 (Cortex-A53, 1.2 GHz) runs this Python than the
#: measuring machine (one core of a 2.6 GHz AMD EPYC), per core. Derived, not measured
#: on a Pi: a Pi 2 ran single-threaded Quake 2 / Doom benchmarks 10.5x / 11.3x slower
#: than a Core i3-3220 in 64-bit mode (J. Whitham, "Relative speed of Raspberry Pi, Pi 2,
#: and desktop PC", 2015, jwhitham.org); a Pi 3 core is 1.4-1.6x a Pi 2 core (Dhrystone
#: and Whetstone, think-dash.com 2016; sysbench primes, one core, resourcefulman.net
#: 2016): a Pi 3 is about 7x slower than that 2012 desktop core, and a server core of
#: 2019 or later is faster again than the i3-3220. 10 is that chain rounded up, and the
#: 8-10x issue 14 extrapolated; a Pi 3 in the field should be measured to replace it.
PI3_SOURCE = (
    "Pi 2 vs Core i3-3220 x64: 10.5-11.3x slower single-threaded (jwhitham.org, 2015); "
    "Pi 3 per core 1.4-1.6x a Pi 2 (think-dash.com; resourcefulman.net, 2016): ~7x "
    "below that 2012 desktop core, more below this EPYC core; rounded up to 10"
)
PI3_FACTOR = 10.0
TICK_10HZ_S = 0.1


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value).replace("|", "/")


def flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``outer.inner`` columns (lists are left out)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    rows = [flat(r) for r in rows]
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys and not isinstance(row[k], dict | list)]
    out = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    out += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return out


def render(name: str, doc: Any) -> list[str]:
    lines: list[str] = []
    if isinstance(doc, dict) and "figures" in doc and "targets" in doc:
        m = doc["machine"]
        load = f", load average {fmt(m['load_avg_1m'])}" if "load_avg_1m" in m else ""
        lines.append(f"`{doc['command']}`: {doc['date']}, commit {doc['commit']}, "
                     f"{m['cpu']} ({m['cores']} cores{load}), Python {m['python']}. "
                     f"Targets: **{'all met' if doc['pass'] else 'MISSED'}**.")  # fmt: skip
        lines.append("")
        verdicts = {v["figure"]: v for v in doc["targets"]}
        lines += ["| figure | value | target | | why |", "| --- | --- | --- | --- | --- |"]
        for key, value in doc["figures"].items():
            v = verdicts.get(key)
            target = f"{v['op']} {fmt(v['limit'])}" if v else ""
            mark = ("pass" if v["pass"] else "**MISS**") if v else ""
            why = fmt(v.get("why", "")) if v else ""
            lines.append(f"| {key} | {fmt(value)} | {target} | {mark} | {why} |")
        for title, rows in doc.get("tables", {}).items():
            lines += ["", f"{title}:", "", *table(rows)]
        return lines
    lines.append(f"`bench/results/{name}.json` (older format: no date, commit, machine or "
                 "targets recorded; re-run the benchmark with --save to add them).")  # fmt: skip
    lines.append("")
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        return lines + table(doc)
    if isinstance(doc, dict) and all(isinstance(v, dict) for v in doc.values()):
        return lines + table([{"case": k, **v} for k, v in doc.items()])
    if isinstance(doc, dict):
        return lines + table([doc])
    return [*lines, "(not a table)"]


def _figures(docs: dict[str, Any], name: str) -> dict[str, Any]:
    doc = docs.get(name, {})
    figures = doc.get("figures", {}) if isinstance(doc, dict) else {}
    return figures if isinstance(figures, dict) else {}


def pi3_budget(docs: dict[str, Any]) -> list[str]:
    """Per-tick CPU and commit cost scaled by PI3_FACTOR, and the headroom at 10 Hz."""
    tick_ms = _figures(docs, "daemon").get("cpu_ms_per_tick_10hz")
    commit_ms = _figures(docs, "buffer").get("example_1000k_commit_cpu_ms_p50")
    control_us = _figures(docs, "control").get("realtime_day_cpu_us_per_tick")
    lines = [
        f"Scaled by a stated factor of {PI3_FACTOR:g} (a Pi 3 core against one core of the "
        f"measuring machine; CPU time, not wall time). Where it comes from: {PI3_SOURCE} "
        "(`PI3_FACTOR` in bench/report.py).",
        "",
    ]
    if tick_ms is None or commit_ms is None:
        return [*lines, "Needs daemon.json and buffer.json in the current format."]
    pi_tick = tick_ms * PI3_FACTOR
    pi_commit = commit_ms * PI3_FACTOR
    per_s = pi_tick / TICK_10HZ_S + pi_commit  # ms of CPU per second at 10 Hz, 1 commit/s
    lines += [
        "| cost | source | here ms | Pi 3 ms |",
        "| --- | --- | --- | --- |",
        f"| CPU per control tick at 10 Hz (whole daemon: acquisition over Modbus, control, "
        f"telemetry, uplink, status) | daemon.json | {fmt(tick_ms)} | {fmt(pi_tick)} |",
    ]
    if control_us is not None:
        lines.append(
            f"| CPU per control tick of the closed loop (control stack, simulator physics and "
            f"the telemetry sink committing once per simulated second as in real time; no "
            f"Modbus, no asyncio ticker) | control.json "
            f"| {fmt(control_us / 1000)} | {fmt(control_us / 1000 * PI3_FACTOR)} |"
        )
    lines += [
        f"| CPU per buffer commit, example station, 1M rows waiting (p50) | buffer.json "
        f"| {fmt(commit_ms)} | {fmt(pi_commit)} |",
        f"| CPU per second at 10 Hz (10 daemon ticks + 1 commit) | | "
        f"{fmt(tick_ms * 10 + commit_ms)} | {fmt(per_s)} |",
        "",
        f"Headroom at 10 Hz on a Pi 3: {fmt(100 - per_s / 10)} % of one core free "
        f"(a tick's CPU is {fmt(100 * pi_tick / (TICK_10HZ_S * 1000))} % of its 100 ms; "
        "the Pi 3 has four cores, the daemon's Python runs on one).",
    ]
    replay = _figures(docs, "telemetry").get("replay_cpu_ms_per_1000_msgs")
    if replay is not None:
        pi_replay = replay * PI3_FACTOR  # ms of CPU per 1000 messages on a Pi 3
        free_ms = 1000 - per_s
        lines += [
            "",
            f"Replay costs {fmt(replay)} ms of CPU per 1,000 messages here, "
            f"{fmt(pi_replay)} ms on a Pi 3: the headroom above replays at most "
            f"{fmt(1000 * free_ms / pi_replay)} messages/s there with the whole core busy "
            "(the control tick's jitter during a replay was measured here, not there).",
        ]
    return lines


def load() -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def generate(text: str, docs: dict[str, Any]) -> str:
    placed = set()
    for name, doc in docs.items():
        tag = re.escape(name)
        pattern = re.compile(rf"(<!-- bench:{tag} -->\n).*?(<!-- /bench:{tag} -->)", re.S)
        if pattern.search(text):
            body = "\n".join(render(name, doc))

            def fill(m: re.Match[str], body: str = body) -> str:
                return m.group(1) + body + "\n" + m.group(2)

            text = pattern.sub(fill, text)
            placed.add(name)
    tail = [TAIL_BEGIN, "## Generated tables", ""]
    for name, doc in docs.items():
        if name not in placed:
            tail += [f"### {name}", "", *render(name, doc), ""]
    tail += ["### Pi 3 budget", "", *pi3_budget(docs), "", TAIL_END]
    generated = "\n".join(tail)
    if TAIL_BEGIN in text:
        head = text[: text.index(TAIL_BEGIN)]
        rest = text[text.index(TAIL_END) + len(TAIL_END) :] if TAIL_END in text else "\n"
        return head + generated + rest
    return text.rstrip("\n") + "\n\n" + generated + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md is stale")
    args = ap.parse_args()
    current = RESULTS_MD.read_text()
    wanted = generate(current, load())
    if args.check:
        if wanted != current:
            print("bench/RESULTS.md differs from bench/results/*.json: run python -m bench.report",
                  file=sys.stderr)  # fmt: skip
            sys.exit(1)
        return
    RESULTS_MD.write_text(wanted)


if __name__ == "__main__":
    main()

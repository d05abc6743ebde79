"""What the typed station state (controller/state, issue 15) costs per control tick.

    .venv/bin/python -m bench.state [--number 20000] [--check] [--save]

The sample is built on every tick: ``make_sample`` builds a ``TelemetrySample`` (a
frozen dataclass, no validation) and writes out its body. Measured for the example
station (5 points, one bad and one held, 3 pumps, a drive) against the same sample
built as a plain dict, as the release before the models did (``_dict_sample`` below,
its code as of commit 8dff2ca), and against the whole tick it belongs to (the control
core's step, the sample, and its encoding to the bytes the buffer stores). Also the
status (built at each publish, socket request and headline) and an alarm event. Each
figure is the best of 7 runs of ``--number`` calls (the least disturbed by other load
on the machine), in microseconds per call.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable, Mapping
from typing import Any

from bench.common import Target, add_arguments, finish
from controller.config import load_config
from controller.control.alarms import AlarmEvent as ControlAlarmEvent
from controller.control.core import ControlCore, ControlOutputs, PumpInputs
from controller.runtime import loop
from controller.runtime.loop import make_sample
from controller.state.build import alarm_event, station_status
from controller.state.dump import to_json
from controller.telemetry.encoding import TELEMETRY_VERSION, dumpb, dumps
from controller.values import BadReason, Reading
from tests.conftest import VFD_CONFIG


def _dict_sample(
    readings: Mapping[str, Reading], out: ControlOutputs, pumps: Mapping[str, PumpInputs]
) -> dict[str, Any]:
    """``make_sample`` before the typed models: the dict built directly."""
    schema = loop._schema(tuple((n, r.unit) for n, r in readings.items()), tuple(pumps))
    values: list[object] = []
    bad: dict[str, list[object]] = {}
    held: dict[str, list[object]] = {}
    for name, r in readings.items():
        d = r.as_dict()
        values.append(d["v"])
        if r.reason is not None:
            why = [d["reason"], d["detail"]] if "detail" in d else [d["reason"]]
            (held if r.good else bad)[name] = why
    sample: dict[str, Any] = {
        "v": TELEMETRY_VERSION, "sch": schema, "m": out.mode, "st": out.state,
        "sp": round(out.setpoint_bar, 4), "dem": round(out.demand, 4), "val": values,
        "pmp": [loop._pump_flags(name, inputs, out) for name, inputs in pumps.items()],
    }  # fmt: skip
    if bad:
        sample["bad"] = bad
    if held:
        sample["held"] = held
    lockouts = {name: out.lockouts[name] for name in pumps if name in out.lockouts}
    if lockouts:
        sample["lock"] = lockouts
    if any(name in out.speeds for name in pumps):
        sample["spd"] = [
            round(100.0 * out.speeds[name], 2) if name in out.speeds else None for name in pumps
        ]
    return sample


def best_us(fn: Callable[[], object], number: int) -> float:
    return round(min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6, 2)


def run(number: int) -> dict[str, Any]:
    cfg = load_config(VFD_CONFIG)
    core = ControlCore(cfg, now=0.0)
    units = {"suction_pressure": "bar", "discharge_pressure": "bar", "flow": "m3/h",
             "panel_temperature": "degC", "volume_total": "m3"}  # fmt: skip
    readings = {name: Reading.ok(name, 2.9, unit) for name, unit in units.items()}
    readings["suction_pressure"] = Reading.ok("suction_pressure", 1.0, "bar")
    readings["panel_temperature"] = Reading.bad("panel_temperature", "degC", BadReason.WIRE_BREAK)
    readings["flow"] = readings["flow"].hold(Reading.bad("flow", "m3/h", BadReason.TIMEOUT))
    pumps = {name: PumpInputs(feedback=None, fault=False) for name in cfg.pumps}
    t = [0.0]
    out = core.step(0.0, readings, pumps)
    for _ in range(200):  # past the power-on delay, pumps staged
        t[0] += cfg.control.tick_s
        out = core.step(t[0], readings, pumps)

    def encode(sample: dict[str, Any]) -> bytes:
        return dumpb({"seq": 1, "boot": 1, "ts": 1, **sample, "sch": sample["sch"].id})

    # The same bytes on the wire, or the comparison would mean nothing.
    assert encode(make_sample(readings, out, pumps)) == encode(_dict_sample(readings, out, pumps))

    def tick() -> None:
        t[0] += cfg.control.tick_s
        step = core.step(t[0], readings, pumps)
        encode(make_sample(readings, step, pumps))

    event = ControlAlarmEvent("dry_run", "raise", "critical", "suction below 0.2 bar", 12.5, False)
    figures: dict[str, Any] = {
        "sample_typed_us": best_us(lambda: make_sample(readings, out, pumps), number),
        "sample_dict_us": best_us(lambda: _dict_sample(readings, out, pumps), number),
        "encode_us": best_us(lambda: encode(make_sample(readings, out, pumps)), number),
        "tick_us": best_us(tick, max(1, number // 4)),
        "status_typed_us": best_us(
            lambda: dumps(to_json(station_status(core.status()))), max(1, number // 10)
        ),
        "status_dict_us": best_us(lambda: dumps(core.status()), max(1, number // 10)),
        "alarm_event_us": best_us(lambda: dumpb(to_json(alarm_event(event))), number),
    }
    extra = figures["sample_typed_us"] - figures["sample_dict_us"]
    figures["sample_extra_us"] = round(extra, 2)
    figures["sample_extra_pct_of_tick"] = round(100 * extra / figures["tick_us"], 2)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--number", type=int, default=20000)
    add_arguments(ap)
    args = ap.parse_args()
    figures = run(args.number)
    targets = [
        # Within noise: the typed sample adds at most 5 % to the tick it is built in.
        Target("sample_extra_pct_of_tick", "<=", 5.0, "issue 15: per-tick cost within noise"),
    ]
    command = "python -m bench.state " + " ".join(sys.argv[1:])
    finish("state", figures, targets, args, command=command.strip())


if __name__ == "__main__":
    main()

"""``boosterd check PATH``: validate a station file and summarise it."""

from __future__ import annotations

import argparse
from typing import Any

from controller.commands._station import EXIT_CONFIG, load_or_report
from controller.config import StationConfig
from controller.config.checks import unreadable
from drivers.modbus.plan import build_plan

SYSTEMD_CREDENTIALS = "/run/credentials/"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check", help="validate a station file and print a summary"
    )
    p.add_argument("path", help="station YAML file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.path)
    if cfg is None:
        return EXIT_CONFIG
    print(summary(cfg, args.path))
    return 0


def summary(cfg: StationConfig, path: str) -> str:
    """A short human summary, including the Modbus wire budget against the tick."""
    n_points = sum(len(d.points) for d in cfg.devices.values())
    lines = [
        f"{path}: OK",
        f"  site      {cfg.site.id} ({cfg.site.name}), {cfg.site.timezone}",
        f"  buses     {len(cfg.buses)}, devices {len(cfg.devices)}, points {n_points}, "
        f"pumps {len(cfg.pumps)}",
        f"  control   {cfg.control.pressure_point} at {cfg.control.setpoint_bar} bar "
        f"({cfg.control.setpoint_min_bar}-{cfg.control.setpoint_max_bar}), "
        f"tick {cfg.control.tick_s * 1000:.0f} ms",
    ]
    plan = build_plan(cfg)
    tick = cfg.control.tick_s
    for bp in plan.buses:
        fast = [b for b in bp.blocks if b.period_s <= tick]
        fast_s = sum(bp.block_time_s(b) for b in fast)
        worst_s = bp.worst_cycle_s()
        where = bp.bus.port if bp.bus.type == "rtu" else f"{bp.bus.host}:{bp.bus.tcp_port}"
        lines.append(
            f"  bus {bp.name}: {bp.bus.type} {where} {bp.bus.baudrate} baud, "
            f"{len(bp.blocks)} block reads"
        )
        # A fast cycle longer than the tick is an error (checks.cross_check): only
        # the rounds in which the slower blocks fall due as well may run over.
        verdict = "fits" if fast_s <= tick else "DOES NOT FIT"
        lines.append(
            f"    wire time per tick ~{fast_s * 1000:.0f} ms (every block due: "
            f"{worst_s * 1000:.0f} ms) against a {tick * 1000:.0f} ms tick: {verdict}"
        )
        if bp.bus.type == "rtu" and worst_s > tick >= fast_s:
            lines.append(
                "    a round in which every slower block falls due as well runs past the "
                "tick: spread the slow points over more poll classes or raise the baud rate"
            )
    lines.extend(f"  warning   {w}" for w in file_warnings(cfg) + control_warnings(cfg))
    return "\n".join(lines)


def control_warnings(cfg: StationConfig) -> list[str]:
    """Settings that validate but that the field has shown to cost starts."""
    from controller.control.drives import fixed_speed_deadband_bar

    out = []
    if cfg.control.pid.deadband_bar == 0 and len(cfg.pumps) > 1:
        fallback = fixed_speed_deadband_bar(cfg)
        if fallback > 0:
            out.append(
                "control.pid.deadband_bar is 0: while the drive is out (tripped or silent) "
                f"the station stages fixed-speed pumps with {fallback} bar "
                "instead; set about half this station's stage band (0.3-0.5 bar on most)"
            )
        else:
            out.append(
                "control.pid.deadband_bar is 0: fixed-speed pumps land in a band around "
                "the setpoint and the integral stages a pump on and off until the start "
                "limits stop it; set about half that band (0.3-0.5 bar on most stations)"
            )
    return out


def file_warnings(cfg: StationConfig) -> list[str]:
    """Files the station refers to that cannot be read here (run the check as the
    service user on the Pi): the uplink would retry without ever connecting."""
    up = cfg.uplink
    if not up.enabled:
        return []
    files = [("uplink.credentials_file", up.credentials_file)]
    if up.tls is not None:
        files += [(f"uplink.tls.{field}", path) for field, _, path in up.tls.files()]
    out = []
    for field, path in files:
        if path is None or path.startswith(SYSTEMD_CREDENTIALS):
            continue  # systemd's LoadCredential= provides it only while the service runs
        why = unreadable(path)
        if why is not None:
            out.append(f"{field} {path}: {why}; the uplink cannot connect without it")
    return out

"""Checks that need the whole station: names that refer to each other, shared resources."""

from __future__ import annotations

from collections.abc import Mapping

from controller.config.loader import Path
from controller.config.schema import StationConfig


def unreadable(path: str) -> str | None:
    """Why the file at ``path`` cannot be opened for reading here, or None if it can."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def cross_check(cfg: StationConfig) -> list[tuple[Path, str]]:
    """Return (path, message) for every inconsistency between sections."""
    errors: list[tuple[Path, str]] = []
    points = cfg.points()

    seen_points: dict[str, str] = {}
    for dev_name, dev in cfg.devices.items():
        if dev.bus not in cfg.buses:
            errors.append(
                (
                    ("devices", dev_name, "bus"),
                    f"no bus named {dev.bus!r} (buses: {_names(cfg.buses)})",
                )
            )
        for point_name, point in dev.points.items():
            if point_name in seen_points:
                errors.append(
                    (
                        ("devices", dev_name, "points", point_name),
                        f"point name {point_name!r} is already used on device "
                        f"{seen_points[point_name]!r}; point names are station-wide",
                    )
                )
            else:
                seen_points[point_name] = dev_name
            if point.poll != "fast" and point.poll not in cfg.poll_classes:
                errors.append(
                    (
                        ("devices", dev_name, "points", point_name, "poll"),
                        f"no poll class named {point.poll!r} "
                        f"(poll_classes: {_names(cfg.poll_classes) or 'none defined'})",
                    )
                )

    by_bus: dict[tuple[str, int], str] = {}
    for dev_name, dev in cfg.devices.items():
        key = (dev.bus, dev.slave_id)
        if key in by_bus:
            errors.append(
                (
                    ("devices", dev_name, "slave_id"),
                    f"slave id {dev.slave_id} on bus {dev.bus!r} is already used by "
                    f"device {by_bus[key]!r}",
                )
            )
        else:
            by_bus[key] = dev_name

    ports: dict[str, str] = {}
    for bus_name, bus in cfg.buses.items():
        if bus.type == "rtu" and bus.port:
            if bus.port in ports:
                errors.append(
                    (
                        ("buses", bus_name, "port"),
                        f"serial port {bus.port} is already bus {ports[bus.port]!r}",
                    )
                )
            else:
                ports[bus.port] = bus_name

    control = cfg.control
    for field in ("pressure_point", "suction_point", "flow_point"):
        name = getattr(control, field)
        if name is not None and name not in points:
            errors.append(
                (("control", field), f"no point named {name!r} (points: {_names(points)})")
            )
        elif name is not None and points[name][1].kind in ("coil", "discrete"):
            errors.append((("control", field), f"point {name!r} is a bit, not a measurement"))

    lines: dict[str, Path] = {}
    for pump_name, pump in cfg.pumps.items():
        for field in ("relay", "run_feedback", "fault_input"):
            line = getattr(pump, field)
            if line is None:
                continue
            path: Path = ("pumps", pump_name, field)
            if line in lines:
                first = ".".join(str(p) for p in lines[line])
                errors.append((path, f"line {line} is already used by {first}"))
            else:
                lines[line] = path

    for pump_name, pump in cfg.pumps.items():
        if pump.vfd is None:
            continue
        for field in ("speed_point", "frequency_point", "fault_point", "run_point"):
            name = getattr(pump.vfd, field)
            if name is None:
                continue
            path = ("pumps", pump_name, "vfd", field)
            if name not in points:
                errors.append((path, f"no point named {name!r} (points: {_names(points)})"))
            elif field in ("speed_point", "run_point") and points[name][1].kind not in (
                "holding",
                "coil",
            ):
                errors.append((path, f"point {name!r} must be a holding register (it is written)"))
            elif field == "frequency_point" and points[name][1].unit.lower() not in ("hz", ""):
                # Compared with rated_hz (a destage waits for the drive to reach speed);
                # a point without a unit is taken to read Hz.
                errors.append(
                    (path, f"point {name!r} must read the output frequency in Hz "
                           f"(unit: Hz, scaled as needed), not {points[name][1].unit!r}")
                )  # fmt: skip

    pm = control.pressure_management
    for i, entry in enumerate(pm.schedule if pm else []):
        if not control.setpoint_min_bar <= entry.setpoint_bar <= control.setpoint_max_bar:
            errors.append(
                (
                    ("control", "pressure_management", "schedule", i, "setpoint_bar"),
                    f"{entry.setpoint_bar} bar is outside setpoint_min_bar..setpoint_max_bar "
                    f"({control.setpoint_min_bar}-{control.setpoint_max_bar})",
                )
            )
    if pm and pm.flow_compensation and control.flow_point is None:
        errors.append(
            (
                ("control", "pressure_management", "flow_compensation"),
                "flow compensation needs control.flow_point",
            )
        )

    staging = control.staging
    if staging.max_running is not None and staging.max_running > len(cfg.pumps):
        errors.append(
            (
                ("control", "staging", "max_running"),
                f"max_running {staging.max_running} exceeds the {len(cfg.pumps)} pumps configured",
            )
        )
    if staging.stage_down_demand >= staging.stage_up_demand:
        errors.append(
            (
                ("control", "staging", "stage_down_demand"),
                "stage_down_demand must be below stage_up_demand (hysteresis)",
            )
        )
    sf = cfg.protections.sensor_failure
    if sf.pumps > len(cfg.pumps):
        errors.append(
            (
                ("protections", "sensor_failure", "pumps"),
                f"{sf.pumps} emergency pumps but only {len(cfg.pumps)} configured",
            )
        )
    if cfg.protections.dry_run.suction_min_bar > 0 and control.suction_point is None:
        # Dry-run protection is the one that saves the pumps: insist it is wired.
        errors.append(
            (
                ("control", "suction_point"),
                "dry-run protection needs a suction pressure point "
                "(or set protections.dry_run.suction_min_bar to 0 to disable it knowingly)",
            )
        )
    return errors


def _names(d: Mapping[str, object]) -> str:
    return ", ".join(sorted(d))

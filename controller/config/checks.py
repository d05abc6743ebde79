"""Checks that need the whole station: names that refer to each other, shared resources."""

from __future__ import annotations

from collections.abc import Mapping

from controller.config.loader import Path
from controller.config.schema import PointConfig, StationConfig

# drivers.modbus imports controller.config.schema, so its modules are imported where
# used: importing a driver first must not find this package half initialised.

#: The values each integer register type can hold; a float32 holds any current.
_INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


def unreadable(path: str) -> str | None:
    """Why the file at ``path`` cannot be opened for reading here, or None if it can."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


#: (path, message): one inconsistency, located in the station file.
Problem = tuple[Path, str]
#: The points of the station by name: (device name, point).
Points = Mapping[str, tuple[str, PointConfig]]


def cross_check(cfg: StationConfig) -> list[Problem]:
    """Return (path, message) for every inconsistency between sections."""
    points = cfg.points()
    return [
        *_device_checks(cfg),
        *_slave_id_checks(cfg),
        *_port_checks(cfg),
        *_control_point_checks(cfg, points),
        *_line_checks(cfg),
        *_vfd_checks(cfg, points),
        *_pressure_management_checks(cfg),
        *_limit_checks(cfg),
        *_span_checks(cfg),
        *_poll_fit_checks(cfg),
    ]


def _device_checks(cfg: StationConfig) -> list[Problem]:
    """Each device on a known bus; point names station-wide; poll classes defined."""
    errors: list[Problem] = []
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
    return errors


def _slave_id_checks(cfg: StationConfig) -> list[Problem]:
    """One device per slave id on a bus."""
    errors: list[Problem] = []
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
    return errors


def _port_checks(cfg: StationConfig) -> list[Problem]:
    """One RTU bus per serial port."""
    errors: list[Problem] = []
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
    return errors


def _control_point_checks(cfg: StationConfig, points: Points) -> list[Problem]:
    """The control section's measurements exist and are not bits."""
    errors: list[Problem] = []
    control = cfg.control
    for field in ("pressure_point", "suction_point", "flow_point", "far_end_point"):
        name = getattr(control, field)
        if name is not None and name not in points:
            errors.append(
                (("control", field), f"no point named {name!r} (points: {_names(points)})")
            )
        elif name is not None and points[name][1].kind in ("coil", "discrete"):
            errors.append((("control", field), f"point {name!r} is a bit, not a measurement"))
    return errors


def _line_checks(cfg: StationConfig) -> list[Problem]:
    """Each GPIO line serves one pump signal."""
    errors: list[Problem] = []
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
    return errors


def _vfd_checks(cfg: StationConfig, points: Points) -> list[Problem]:
    """A drive's points exist, the written ones are writable, its frequency reads Hz."""
    errors: list[Problem] = []
    for pump_name, pump in cfg.pumps.items():
        if pump.vfd is None:
            continue
        for field in ("speed_point", "frequency_point", "fault_point", "run_point"):
            name = getattr(pump.vfd, field)
            if name is None:
                continue
            path: Path = ("pumps", pump_name, "vfd", field)
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
    return errors


def _pressure_management_checks(cfg: StationConfig) -> list[Problem]:
    """Scheduled setpoints within the setpoint range; flow compensation has a flow point."""
    errors: list[Problem] = []
    control = cfg.control
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
    return errors


def _limit_checks(cfg: StationConfig) -> list[Problem]:
    """Staging and protection limits that refer to the pumps or to a point."""
    errors: list[Problem] = []
    control = cfg.control
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


def _span_checks(cfg: StationConfig) -> list[tuple[Path, str]]:
    errors: list[tuple[Path, str]] = []
    for dev_name, dev in cfg.devices.items():
        for point_name, point in dev.points.items():
            path: Path = ("devices", dev_name, "points", point_name, "span_4_20ma")
            errors.extend(((*path, field), msg) for field, msg in span_problems(point))
    return errors


def span_problems(point: PointConfig) -> list[tuple[str, str]]:
    """(field, message) for a 4-20 mA span the point's register type cannot carry.

    A broken loop (0 mA) must read as a wire break, never as a good value: some count
    meaning less than WIRE_BREAK_MA has to exist in the register's type. With
    ``type: uint16`` and ``raw_at_4ma: 0`` the module's lowest count means 4 mA, so a
    cut cable reads a good 0.00 bar and the high-pressure cutout is blind.
    """
    from drivers.modbus.codec import WIRE_BREAK_MA

    span = point.span_4_20ma
    if span is None or point.type not in _INT_RANGE:
        return []
    lo, hi = _INT_RANGE[point.type]
    out: list[tuple[str, str]] = []
    for field in ("raw_at_4ma", "raw_at_20ma"):
        raw = getattr(span, field)
        if not lo <= raw <= hi:
            out.append((field, f"{raw:g} cannot be read from a {point.type} register "
                               f"(it holds {lo} to {hi}): check the module's manual "
                               "and the point's type"))  # fmt: skip
    if out:
        return out

    def current_ma(raw: float) -> float:
        return 4.0 + 16.0 * (raw - span.raw_at_4ma) / (span.raw_at_20ma - span.raw_at_4ma)

    rising = span.raw_at_20ma > span.raw_at_4ma
    limit = lo if rising else hi  # the count that means the least current
    if current_ma(limit) >= WIRE_BREAK_MA:
        unit = f" {point.unit}" if point.unit else ""
        at_limit = span.eng_at_4ma + (current_ma(limit) - 4.0) / 16.0 * (
            span.eng_at_20ma - span.eng_at_4ma
        )
        below = span.raw_at_4ma - (span.raw_at_20ma - span.raw_at_4ma) * (4.0 - WIRE_BREAK_MA) / 16
        out.append(
            (
                "raw_at_4ma",
                f"a broken 4-20 mA loop would read as a good {at_limit:.2f}{unit}, not as a "
                f"wire break: below {WIRE_BREAK_MA} mA the count would go "
                f"{'under' if rising else 'over'} {below:g}, past what a {point.type} register "
                f"holds ({limit}). Check raw_at_4ma and raw_at_20ma in the module's manual, "
                "and the type (int16 if it reports negative counts)",
            )
        )
    return out


def _poll_fit_checks(cfg: StationConfig) -> list[tuple[Path, str]]:
    """A serial bus must read every point polled each tick within one tick, or control
    runs on older values than it believes and acquisition falls ever further behind."""
    from drivers.modbus.plan import build_plan

    errors: list[tuple[Path, str]] = []
    tick = cfg.control.tick_s
    for bp in build_plan(cfg).buses:
        if bp.bus.type != "rtu":
            continue  # over TCP the serial side's speed is the gateway's, unknown here
        fast = [b for b in bp.blocks if b.period_s <= tick]
        fast_s = sum(bp.block_time_s(b) for b in fast)
        if fast_s > tick:
            errors.append(
                (
                    ("buses", bp.name),
                    f"reading the points polled every tick takes about {fast_s * 1000:.0f} ms "
                    f"on this bus ({len(fast)} block reads at {bp.bus.baudrate} baud), longer "
                    f"than the {tick * 1000:.0f} ms control tick: raise the baud rate, move "
                    "points control does not need each tick to a slower poll class, or "
                    "lengthen control.tick_s",
                )
            )
    return errors


def _names(d: Mapping[str, object]) -> str:
    return ", ".join(sorted(d))

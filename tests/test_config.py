"""Station files: the example is accepted; every kind of mistake is named, located, reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import controller
from controller.config import ConfigError, load_config, parse_config
from tests.conftest import EXAMPLE_CONFIG, REPO, VFD_CONFIG
from tests.support.cli import boosterd

EXAMPLE_TEXT = EXAMPLE_CONFIG.read_text(encoding="utf-8")


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "station.yaml")
    return [str(i) for i in info.value.issues]


def _line_of(text: str, needle: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in text")


def test_example_station_is_valid_and_complete() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    assert len(cfg.pumps) == 3
    assert {d.bus for d in cfg.devices.values()} == {"rs485"}
    assert len(cfg.devices) == 2
    points = cfg.points()
    for name in ("suction_pressure", "discharge_pressure", "flow"):
        assert name in points
    assert cfg.site.timezone == "Asia/Jakarta"


def test_check_command_prints_summary_and_exits_0() -> None:
    result = boosterd("check", str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stderr
    assert "pumps 3" in result.stdout
    assert "devices 2" in result.stdout
    assert "wire time per tick" in result.stdout
    assert "fits" in result.stdout


# (description, replace this, with that, expected field path, expected words, line needle)
BROKEN = [
    (
        "typo in key",
        "    baudrate: 9600",
        "    baudrat: 9600",
        "buses.rs485.baudrat",
        "did you mean 'baudrate'",
        "baudrat:",
    ),
    (
        "wrong type",
        "    baudrate: 9600",
        "    baudrate: fast",
        "buses.rs485.baudrate",
        "found 'fast'",
        "baudrate: fast",
    ),
    (
        "string number",
        "    slave_id: 2",
        '    slave_id: "2"',
        "devices.flow_meter.slave_id",
        "valid integer",
        'slave_id: "2"',
    ),
    (
        "out of range",
        "    slave_id: 2",
        "    slave_id: 300",
        "devices.flow_meter.slave_id",
        "less than or equal to 247",
        "slave_id: 300",
    ),
    (
        "duplicate slave id",
        "    slave_id: 2",
        "    slave_id: 1",
        "devices.flow_meter.slave_id",
        "already used by device 'ai_module'",
        "    slave_id: 1\n    points:\n      flow:",
    ),
    (
        "duplicate relay line",
        "    relay: GPIO27",
        "    relay: GPIO17",
        "pumps.P2.relay",
        "GPIO17 is already used by pumps.P1.relay",
        "relay: GPIO17\n    relay_active_low: true\n    run_feedback: GPIO5",
    ),
    (
        "dangling point",
        "  flow_point: flow",
        "  flow_point: flow_rate",
        "control.flow_point",
        "no point named 'flow_rate'",
        "flow_point: flow_rate",
    ),
    (
        "setpoint outside limits",
        "  setpoint_bar: 3.0",
        "  setpoint_bar: 5.0",
        "control",
        "must lie between",
        "control:",
    ),
    (
        "register past the end",
        "        address: 4114",
        "        address: 65535",
        "devices.flow_meter.points.volume_total",
        "runs past the last register",
        "volume_total:",
    ),
    (
        "bad enum",
        "        byte_order: CDAB       # low word",
        "        byte_order: CBAD       # low word",
        "devices.flow_meter.points.flow.byte_order",
        "'ABCD', 'CDAB', 'BADC' or 'DCBA'",
        "CBAD",
    ),
    (
        "bit type on register",
        "        type: int16",
        "        type: bool",
        "devices.ai_module.points.panel_temperature",
        "coil/discrete",
        "panel_temperature:",
    ),
    (
        "unknown time zone",
        "  timezone: Asia/Jakarta",
        "  timezone: Asia/Jakata",
        "site",
        "unknown time zone",
        "site:",
    ),
    (
        "unknown poll class",
        "        poll: slow\n  # Slave 2",
        "        poll: slwo\n  # Slave 2",
        "devices.ai_module.points.panel_temperature.poll",
        "no poll class named 'slwo'",
        "poll: slwo",
    ),
    (
        "duplicate yaml key",
        "  P3:\n    relay: GPIO24",
        "  P3:\n    relay: GPIO24\n    relay: GPIO25",
        "pumps.P3.relay",
        "duplicate key",
        "relay: GPIO25",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "path", "words", "needle"),
    [pytest.param(*case[1:], id=case[0]) for case in BROKEN],
)
def test_broken_station_names_field_and_line(
    old: str, new: str, path: str, words: str, needle: str
) -> None:
    assert old in EXAMPLE_TEXT
    text = EXAMPLE_TEXT.replace(old, new, 1)
    errors = _errors(text)
    line = (
        _line_of(text, needle) if "\n" not in needle else text[: text.index(needle)].count("\n") + 1
    )
    matching = [e for e in errors if f" {path}:" in e and words in e]
    assert matching, errors
    assert any(f"station.yaml:{line}:" in e for e in matching), (line, errors)


def test_all_errors_are_reported_at_once() -> None:
    text = (
        EXAMPLE_TEXT.replace("    baudrate: 9600", "    baudrat: 9600")
        .replace("  flow_point: flow", "  flow_point: flow_rate")
        .replace("    slave_id: 2", "    slave_id: 300")
    )
    # The dangling point is a cross-check: it runs once the schema errors are fixed,
    # so two schema errors are reported together here.
    errors = _errors(text)
    assert any("baudrat" in e for e in errors)
    assert any("slave_id" in e for e in errors)
    fixed = text.replace("slave_id: 300", "slave_id: 2").replace("baudrat:", "baudrate:")
    fixed = fixed.replace("    relay: GPIO27", "    relay: GPIO17")
    errors = _errors(fixed)
    assert any("flow_rate" in e for e in errors)
    assert any("GPIO17" in e for e in errors)


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = EXAMPLE_TEXT.replace('  name: "Booster Sukamaju, Zona 3"', "  name: [unclosed")
    bad.write_text(text, encoding="utf-8")
    result = boosterd("check", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "YAML syntax error" in result.stderr
    assert f"bad.yaml:{_line_of(text, '[unclosed') + 1}:" in result.stderr or (
        f"bad.yaml:{_line_of(text, '[unclosed')}:" in result.stderr
    )


@pytest.mark.parametrize(
    "content",
    ["", "just a string\n", "- a\n- list\n", "site: {id: X!, name: n}\n", "\x00\x01binary"],
)
def test_garbage_files_exit_2_without_traceback(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "garbage.yaml"
    bad.write_text(content, encoding="utf-8")
    result = boosterd("check", str(bad))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert "garbage.yaml" in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = boosterd("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_cli_error_output_lists_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "two.yaml"
    bad.write_text(
        EXAMPLE_TEXT.replace("    baudrate: 9600", "    baudrat: 9600").replace(
            "    stopbits: 1", "    stopbits: 3"
        ),
        encoding="utf-8",
    )
    result = boosterd("check", str(bad))
    assert result.returncode == 2
    assert "2 errors" in result.stderr
    assert "baudrat" in result.stderr
    assert "stopbits" in result.stderr


def test_yaml_anchors_and_merge_keys_work() -> None:
    data = yaml.safe_load(EXAMPLE_TEXT)
    assert data["site"]["id"] == "bs01-sukamaju"
    text = EXAMPLE_TEXT.replace("  P2:\n    relay: GPIO27", "  P2: &p2\n    relay: GPIO27")
    cfg = parse_config(text)
    assert cfg.pumps["P2"].relay == "GPIO27"


@pytest.mark.parametrize("path", sorted((EXAMPLE_CONFIG.parent).glob("*.yaml")), ids=str)
def test_every_shipped_station_file_is_valid(path: Path) -> None:
    assert load_config(path).pumps


def test_a_drive_must_name_existing_points_and_write_a_holding_register() -> None:
    text = EXAMPLE_TEXT.replace(
        "    min_off_s: 60\n",
        "    min_off_s: 60\n    vfd:\n      speed_point: flow\n      fault_point: nope\n",
        1,
    )
    errors = _errors(text)
    assert any("pumps.P1.vfd.fault_point" in e and "no point named 'nope'" in e for e in errors)
    assert not any("speed_point" in e for e in errors)  # flow is a holding register
    text = text.replace("speed_point: flow", "speed_point: suction_pressure")
    assert any("must be a holding register" in e for e in _errors(text))


def test_a_drive_frequency_point_must_read_hertz() -> None:
    vfd_text = VFD_CONFIG.read_text(encoding="utf-8")
    assert parse_config(vfd_text).pumps["P1"].vfd is not None
    in_percent = vfd_text.replace(
        "        scale: 0.1\n        unit: Hz", '        scale: 0.1\n        unit: "%"'
    )
    assert in_percent != vfd_text
    errors = _errors(in_percent)
    assert any(
        "pumps.P1.vfd.frequency_point" in e and "output frequency in Hz" in e for e in errors
    ), errors


def test_pressure_management_entries_must_lie_in_the_setpoint_range() -> None:
    text = EXAMPLE_TEXT.replace(
        "  staging:\n",
        "  pressure_management:\n    schedule:\n      - {at: '22:00', setpoint_bar: 0.5}\n"
        "      - {at: '25:00', setpoint_bar: 3.0}\n  staging:\n",
        1,
    )
    errors = _errors(text)
    assert any("schedule[1].at" in e and "HH:MM" in e for e in errors)
    fixed = text.replace("'25:00'", "'05:00'")
    assert any(
        "pressure_management.schedule[0].setpoint_bar" in e and "outside" in e
        for e in _errors(fixed)
    )


def test_the_demo_default_is_the_example_shipped_inside_the_package() -> None:
    """``boosterd demo`` with no arguments must run from an installed wheel, where the
    repository's config/ directory does not exist: the package carries the example."""
    import tomllib

    from controller.commands.demo import DEFAULT_CONFIG

    assert DEFAULT_CONFIG.parent.parent == Path(controller.__file__).parent
    assert DEFAULT_CONFIG.read_text() == EXAMPLE_CONFIG.read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "examples/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["controller"]
    load_config(DEFAULT_CONFIG)


def test_check_warns_about_an_unreadable_tls_file_but_accepts_the_station(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.crt"
    station = tmp_path / "station.yaml"
    station.write_text(EXAMPLE_TEXT.replace("ca_file: /etc/boosterd/ca.crt", f"ca_file: {ca}"))
    result = boosterd("check", str(station))
    assert result.returncode == 0, result.stderr
    assert f"warning   uplink.tls.ca_file {ca}: No such file or directory" in result.stdout
    # systemd's credentials exist only while the service runs: no warning for those.
    assert "credentials_file" not in result.stdout
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert "warning" not in boosterd("check", str(station)).stdout


def test_a_schema_error_in_the_uplink_does_not_hide_a_duplicate_relay_line() -> None:
    text = EXAMPLE_TEXT.replace("    relay: GPIO27", "    relay: GPIO17").replace(
        "  topic_prefix: pdam", "  topic_prefx: pdam"
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "s.yaml")
    messages = [str(i) for i in err.value.issues]
    assert len(messages) == 2, messages
    assert any("topic_prefx" in m and "did you mean 'topic_prefix'" in m for m in messages)
    assert any("GPIO17" in m and "pumps.P2" in m for m in messages), messages


def test_a_schema_error_the_cross_checks_depend_on_is_reported_alone() -> None:
    # A device that is not understood: "unknown point" errors from the cross-checks
    # would only repeat it, so they wait until the schema is clean.
    text = EXAMPLE_TEXT.replace("    baudrate: 9600", "    baudrate: fast")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "s.yaml")
    assert [i.path for i in err.value.issues] == ["buses.rs485.baudrate"]

"""Station files: the example is accepted; every kind of mistake is named, located, reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import controller
from controller.config import ConfigError, load_config, parse_config
from controller.errors import ConfigIssue
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


# -- issue 11: what a file can no longer hide or break --------------------------------------


def _issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "station.yaml")
    return info.value.issues


DISCHARGE_SPAN = (
    "span_4_20ma: {raw_at_4ma: 4000, raw_at_20ma: 20000, eng_at_4ma: 0.0, eng_at_20ma: 16.0}"
)


def _discharge(dtype: str, raw_4: float, raw_20: float) -> str:
    assert DISCHARGE_SPAN in EXAMPLE_TEXT
    span = DISCHARGE_SPAN.replace("4000", str(raw_4)).replace("20000", str(raw_20))
    return EXAMPLE_TEXT.replace(
        "        address: 1\n        type: uint16\n        " + DISCHARGE_SPAN,
        f"        address: 1\n        type: {dtype}\n        {span}",
    )


# (type, raw_at_4ma, raw_at_20ma, refused): a count meaning < 3.8 mA must exist in the type.
SPANS = [
    ("uint16", 0, 27648, True),  # seen in the field: a cut cable reads a good 0.00 bar
    ("uint16", 341, 27648, True),  # count 0 means 3.8002 mA: no count below 3.8 mA
    ("uint16", 342, 27648, False),  # count 0 means 3.7996 mA: a wire break is seen
    ("uint16", 4000, 20000, False),
    ("uint16", 5530, 27648, False),
    ("int16", 0, 27648, False),  # the module reports negative counts below 4 mA
    ("int16", -32768, 32767, True),
    ("uint32", 0, 100000, True),
    ("int32", 0, 100000, False),
    ("float32", 0, 27648, False),  # a float holds any current
    ("uint16", 65535, 0, True),  # falling span: less current means a higher count
    ("uint16", 65000, 0, True),  # 3.8 mA would be count 65812.5
    ("uint16", 64000, 0, False),  # 3.8 mA is count 64800: 65535 means a wire break
    ("int16", 32767, -32768, True),
    ("uint16", 4000, 70000, True),  # 20 mA cannot be read from a uint16
    ("uint16", -5, 20000, True),
]


@pytest.mark.parametrize(("dtype", "raw_4", "raw_20", "refused"), SPANS)
def test_a_4_20ma_span_must_let_a_wire_break_be_seen(
    dtype: str, raw_4: int, raw_20: int, refused: bool
) -> None:
    text = _discharge(dtype, raw_4, raw_20)
    if not refused:
        parse_config(text)
        return
    issues = _issues(text)
    span_issues = [i for i in issues if "discharge_pressure.span_4_20ma" in i.path]
    assert span_issues, issues
    assert span_issues[0].line == _line_of(text, f"raw_at_4ma: {raw_4}, raw_at_20ma: {raw_20}")


def test_a_blind_span_says_what_a_broken_loop_would_read() -> None:
    (issue,) = _issues(_discharge("uint16", 0, 27648))
    assert issue.path == "devices.ai_module.points.discharge_pressure.span_4_20ma.raw_at_4ma"
    assert "a broken 4-20 mA loop would read as a good 0.00 bar" in issue.message
    assert "uint16" in issue.message


def test_check_and_run_refuse_a_blind_span(tmp_path: Path) -> None:
    bad = tmp_path / "blind.yaml"
    bad.write_text(_discharge("uint16", 0, 27648))
    line = _line_of(bad.read_text(), "raw_at_4ma: 0,")
    for args in (("check", str(bad)), ("run", "--config", str(bad))):
        result = boosterd(*args)
        assert result.returncode == 2, result
        assert f"blind.yaml:{line}:" in result.stderr
        assert "wire break" in result.stderr


def test_a_poll_cycle_longer_than_the_tick_is_an_error(tmp_path: Path) -> None:
    slow = tmp_path / "slow.yaml"
    slow.write_text(EXAMPLE_TEXT.replace("  tick_s: 0.5", "  tick_s: 0.05"))  # 10 Hz at 9600 baud
    result = boosterd("check", str(slow))
    assert result.returncode == 2, result.stdout
    line = _line_of(slow.read_text(), "  rs485:")
    assert f"slow.yaml:{line}:" in result.stderr
    assert "takes about 70 ms on this bus" in result.stderr
    assert "longer than the 50 ms control tick" in result.stderr
    assert "raise the baud rate" in result.stderr
    # Every tick's points fit at 9600 baud; only a round with the slow ones as well may not.
    fits = boosterd("check", str(EXAMPLE_CONFIG))
    assert "against a 500 ms tick: fits" in fits.stdout


def test_exponent_numbers_need_no_dot_and_times_of_day_need_no_quotes() -> None:
    text = EXAMPLE_TEXT.replace("    kd: 0.0", "    kd: 1e-3").replace(
        "  staging:\n",
        "  pressure_management:\n    ramp_bar_per_min: 2E-1\n    schedule:\n"
        "      - {at: 22:00, setpoint_bar: 2.5}\n  staging:\n",
        1,
    )
    cfg = parse_config(text)
    assert cfg.control.pid.kd == pytest.approx(0.001)
    pm = cfg.control.pressure_management
    assert pm is not None
    assert pm.ramp_bar_per_min == pytest.approx(0.2)
    assert pm.schedule[0].at == "22:00"  # YAML 1.1 would have read the integer 1320
    # Only our loader reads YAML this way: the library's own stays standard.
    assert yaml.safe_load("a: 1e-3\nb: 22:00\nc: 010") == {"a": "1e-3", "b": 1320, "c": 8}


@pytest.mark.parametrize(("written", "value"), [("0100", 100), ("0o17", 15), ("0x1F", 31),
                                                ("0b11", 3), ("1_000", 1000)])  # fmt: skip
def test_a_leading_zero_is_decimal_as_in_yaml_1_2(written: str, value: int) -> None:
    text = EXAMPLE_TEXT.replace("        address: 4114", f"        address: {written}")
    assert text != EXAMPLE_TEXT
    point = parse_config(text).devices["flow_meter"].points["volume_total"]
    assert point.address == value  # YAML 1.1 read 0100 as 64: another register


def test_a_tag_is_refused_by_name_where_it_stands() -> None:
    text = EXAMPLE_TEXT.replace("pumps:\n", "pumps: !!python/object:builtins.dict\n", 1)
    issues = _issues(text)
    assert [(i.path, i.line) for i in issues] == [("pumps", _line_of(text, "!!python"))]
    assert "unsupported YAML tag '!!python/object:builtins.dict'" in issues[0].message


@pytest.mark.parametrize(("value", "found"), [(".inf", ".inf"), ("-.Inf", "-.Inf"),
                                              (".nan", ".nan"), ("1e999", "1e999")])  # fmt: skip
def test_a_non_finite_number_is_refused_once_where_it_stands(value: str, found: str) -> None:
    text = EXAMPLE_TEXT.replace("    margin_bar: 1.5", f"    margin_bar: {value}")
    assert text != EXAMPLE_TEXT
    issues = _issues(text)
    assert [(i.path, i.line) for i in issues] == [
        ("protections.high_pressure.margin_bar", _line_of(text, "margin_bar:"))
    ]
    assert issues[0].message == f"must be a finite number; found {found}"


def test_pydantic_finite_number_errors_read_as_words() -> None:
    """The schema refuses non-finite numbers itself (allow_inf_nan=False): its error reads
    like ours, with the value spelled as in YAML."""
    from pydantic import BaseModel, ConfigDict, ValidationError

    from controller.config import _issue_from_pydantic

    class Finite(BaseModel):
        model_config = ConfigDict(allow_inf_nan=False)
        x: float

    for value, spelled in (
        (float("inf"), ".inf"),
        (float("-inf"), "-.inf"),
        (float("nan"), ".nan"),
    ):
        with pytest.raises(ValidationError) as info:
            Finite.model_validate({"x": value})
        (err,) = info.value.errors()
        assert err["type"] == "finite_number"
        issue = _issue_from_pydantic(err, "s.yaml", {("x",): (4, 3)})
        assert str(issue) == f"s.yaml:4:3: x: must be a finite number; found {spelled}"


def test_long_values_are_shortened_in_messages() -> None:
    from controller.config import _found

    assert _found(10**5000) == "an integer of about 5001 digits"  # str() would raise
    assert _found("x" * 10_000) == repr("x" * 57) + "... (10000 characters)"
    text = EXAMPLE_TEXT.replace("    slave_id: 2", "    slave_id: " + "9" * 39)
    (issue,) = _issues(text)
    assert "found an integer of 39 digits" in issue.message


def test_explicit_keys_win_over_merged_ones_and_merges_are_expanded() -> None:
    text = EXAMPLE_TEXT.replace("  P2:\n    relay: GPIO27", "  P2: &p2\n    relay: GPIO27").replace(
        "  P3:\n    relay: GPIO24", "  P3:\n    <<: *p2\n    relay: GPIO24"
    )
    cfg = parse_config(text)
    assert cfg.pumps["P3"].relay == "GPIO24"
    assert cfg.pumps["P3"].rated_flow_m3h == cfg.pumps["P2"].rated_flow_m3h


def test_thousands_of_errors_are_summed_up() -> None:
    text = EXAMPLE_TEXT + "".join(f"unknown_{i}: 1\n" for i in range(500))
    issues = _issues(text)
    assert len(issues) == 101
    assert issues[-1].message == "... and 400 more errors not shown"


def test_the_time_budget_is_a_parameter(tmp_path: Path) -> None:
    from controller.config import Limits

    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE_CONFIG, limits=Limits(time_budget_s=0.0))
    (issue,) = info.value.issues
    assert "longer than 0 s (the time limit)" in issue.message
    assert load_config(EXAMPLE_CONFIG, limits=Limits(time_budget_s=5.0)).pumps


@pytest.mark.parametrize(
    ("value", "words"),
    [("!!int address", "'address' is not a valid int"), ("!!bool maybe", "not a valid bool"),
     ("!!float x", "not a valid float"), ("0x_", "'0x_' is not a valid int"),
     ("!!float _", "'_' is not a valid float"), ('!!float ""', "'' is not a valid float")],
)  # fmt: skip
def test_a_value_that_is_not_what_its_tag_says_is_an_issue_not_a_crash(
    value: str, words: str
) -> None:
    text = EXAMPLE_TEXT.replace("    slave_id: 2", f"    slave_id: {value}")
    (issue,) = _issues(text)
    assert issue.path == "devices.flow_meter.slave_id"
    assert words in issue.message
    assert issue.line == _line_of(text, "slave_id: " + value)


def test_an_exception_escaping_a_validator_is_still_a_config_error() -> None:
    # ZoneInfo("Asia") raises IsADirectoryError, which the schema's time-zone check
    # does not expect: check, run and outputs-off must still get a ConfigError.
    text = EXAMPLE_TEXT.replace("  timezone: Asia/Jakarta", "  timezone: Asia")
    (issue,) = _issues(text)
    assert "time zone" in issue.message or "could not be checked" in issue.message


def test_check_warns_about_a_multi_pump_station_without_a_deadband(tmp_path: Path) -> None:
    # An outside tester's VFD station left at deadband 0 staged its fixed pumps on and
    # off every ~90 s once the drive tripped, until every pump was out of starts.
    station = tmp_path / "station.yaml"
    vfd_text = (REPO / "config" / "station.vfd-example.yaml").read_text()
    station.write_text(vfd_text.replace("deadband_bar: 0.4", "deadband_bar: 0.0"))
    result = boosterd("check", str(station))
    assert result.returncode == 0, result.stderr
    assert "warning   control.pid.deadband_bar is 0: while the drive is out" in result.stdout
    station.write_text(vfd_text)
    assert "deadband_bar" not in boosterd("check", str(station)).stdout

"""Point guards (plausibility, hold, staleness) and the precision values keep: pure tables."""

from __future__ import annotations

import pytest

from controller.config.schema import BusConfig, PointConfig
from controller.values import BadReason, Reading
from drivers.modbus.codec import encode_value, to_engineering
from drivers.modbus.quality import PointGuard, hold_s, stale_s


def guard(hold: float = 1.0, stale: float = 2.0, **point: object) -> PointGuard:
    cfg = PointConfig.model_validate({"address": 0, "type": "float32", **point})
    return PointGuard("p", cfg, hold_s=hold, stale_s=stale)


def ok(value: float, t: float) -> Reading:
    return Reading.ok("p", value, "", t_mono=t)


def failed(t: float, reason: BadReason = BadReason.FRAMING) -> Reading:
    return Reading.bad("p", "", reason, "CRC error", t_mono=t)


def test_hold_keeps_the_last_good_value_for_hold_s_then_the_real_reason() -> None:
    g = guard(hold=1.0)
    g.update(ok(3.0, 10.0))
    g.update(failed(10.5))
    held = g.view(10.5)
    assert held.good
    assert held.held
    assert held.value == 3.0
    assert held.reason is BadReason.FRAMING
    assert held.t_mono == 10.0  # the age is the held value's
    assert g.view(11.0).held
    after = g.view(11.01)
    assert not after.good
    assert after.reason is BadReason.FRAMING
    assert after.detail == "CRC error"


def test_no_hold_without_a_good_value_and_none_with_hold_0() -> None:
    g = guard(hold=1.0)
    g.update(failed(1.0, BadReason.TIMEOUT))
    assert g.view(1.0).reason is BadReason.TIMEOUT
    g0 = guard(hold=0.0)
    g0.update(ok(3.0, 1.0))
    g0.update(failed(1.5))
    assert not g0.view(1.5).good


def test_a_good_value_not_read_again_goes_stale() -> None:
    g = guard(stale=2.0)
    g.update(ok(3.0, 1.0))
    assert g.view(3.0).good
    stale = g.view(3.01)
    assert stale.reason is BadReason.STALE
    assert "2.0 s old" in stale.detail


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (value, t) after a good 30.0 at t=0; max_rate_per_s 1.0
        ([(30.4, 0.5)], [True]),
        ([(1666.6, 0.5)], [False]),
        ([(1666.6, 0.5), (30.2, 1.0)], [False, True]),  # back to plausible at once
        ([(35.0, 0.5), (35.0, 5.0)], [False, True]),  # a real step, once the limit allows it
        ([(29.0, 0.5)], [False]),  # too fast downwards too
    ],
)
def test_max_rate_per_s(steps: list[tuple[float, float]], expected: list[bool]) -> None:
    g = guard(max_rate_per_s=1.0)
    g.update(ok(30.0, 0.0))
    got = [g.update(ok(v, t)).good for v, t in steps]
    assert got == expected
    assert g.latest is not None
    if not expected[-1]:
        assert g.latest.reason is BadReason.IMPLAUSIBLE
        assert "max_rate_per_s 1" in g.latest.detail


def test_a_totaliser_going_back_is_bad_until_a_reset_is_confirmed() -> None:
    g = guard(monotonic=True)
    g.update(ok(1000.0, 0.0))
    assert g.update(ok(1000.0, 1.0)).good  # standing still is fine
    back = g.update(ok(999.0, 2.0))
    assert back.reason is BadReason.IMPLAUSIBLE
    assert "went back from 1000 to 999" in back.detail
    assert g.update(ok(1001.0, 3.0)).good  # one bad read, not a reset
    # A meter reset: read three times in a row, never decreasing among themselves.
    assert not g.update(ok(5.0, 4.0)).good
    assert not g.update(ok(5.5, 5.0)).good
    reset = g.update(ok(6.0, 6.0))
    assert reset.good
    assert reset.value == 6.0
    assert g.update(ok(6.5, 7.0)).good


def test_a_held_value_during_an_implausible_read() -> None:
    g = guard(hold=1.0, max_rate_per_s=1.0)
    g.update(ok(30.0, 0.0))
    g.update(ok(1666.6, 0.5))
    r = g.view(0.5)
    assert r.held
    assert r.value == 30.0
    assert r.reason is BadReason.IMPLAUSIBLE


def test_default_hold_is_the_staleness_limit_and_settings_override_it() -> None:
    bus = BusConfig(port="/dev/ttyUSB0", timeout_s=0.3)
    point = PointConfig(address=0)
    assert hold_s(bus, point, 0.5) == pytest.approx(3 * 0.5 + 0.3)
    assert stale_s(bus, 0.5) == pytest.approx(1.8)
    assert hold_s(bus.model_copy(update={"hold_s": 0.7}), point, 0.5) == 0.7
    assert hold_s(bus, point.model_copy(update={"hold_s": 0.2}), 0.5) == 0.2


@pytest.mark.parametrize(
    ("point", "value", "shown"),
    [
        ({"type": "uint32"}, 987654321, 987654321),
        ({"type": "uint32"}, 4294967295, 4294967295),
        ({"type": "int32"}, -2147483648, -2147483648),
        ({"type": "uint32", "scale": 0.001}, 987654.321, 987654.321),
        ({"type": "uint16", "scale": 0.1}, 0.3, 0.3),  # not 0.30000000000000004
        ({"type": "float32"}, 123.456, 123.456),  # not 123.45600128173828
        ({"type": "float32"}, 1 / 3, 0.33333334),
        ({"type": "float32"}, 16777217.0, 16777216.0),  # float32 cannot hold it
    ],
)
def test_values_keep_the_precision_of_their_source(
    point: dict[str, object], value: float, shown: float
) -> None:
    cfg = PointConfig.model_validate({"address": 0, **point})
    raw = (value - cfg.offset) / cfg.scale
    words = encode_value(raw, dtype=cfg.type)
    r = to_engineering("p", cfg, words)
    assert r.as_dict()["v"] == shown


def test_a_value_without_a_source_precision_is_shown_in_full() -> None:
    assert Reading.ok("x", 0.1 + 0.2, "").as_dict()["v"] == 0.1 + 0.2

"""Property: whatever a mutated example station holds, the loader gives a configuration or a
ConfigError whose every issue is located: never another exception, never a hang.

A small fixed-seed slice; bench/station_files.py runs the long fuzz.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import ConfigError, StationConfig, parse_config
from controller.errors import ConfigIssue
from tests.support.hostile import EXAMPLE_TEXT

#: Pieces a careless edit or an attacker puts into a station file.
TOKENS = [
    "&a ", "*a", "<<: *a", "<<: [*a, *a]", "[", "]", "{", "}", ": ", "- ", "\n", "  ", "? ",
    "!!python/object:os.system ", "!!binary ", "!!set ", "!custom ", "!!str ", "!!int ",
    "!!float ", "!!bool ", "!!null ", "_", "Asia", "0b", "-",
    ".inf", "-.inf", ".nan", "1e999", "9" * 60, "1e-9", "0x1F", "0o17", "22:00", "~", "null",
    "yes", "'", '"', "#", "\t", "\x00", "\x85", "é", "%YAML 1.1\n", "---\n", "...\n", "|\n",
    ">-\n", "x" * 5000, "[" * 80, "{a: " * 80,
]  # fmt: skip

mutation = st.tuples(
    st.sampled_from(["insert", "replace", "delete", "duplicate"]),
    st.integers(min_value=0, max_value=len(EXAMPLE_TEXT)),
    st.integers(min_value=0, max_value=40),
    st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)),
)


def mutate(text: str, mutations: list[tuple[str, int, int, str]]) -> str:
    for op, where, length, token in mutations:
        pos = min(where, len(text))
        end = min(pos + length, len(text))
        if op == "insert":
            text = text[:pos] + token + text[pos:]
        elif op == "replace":
            text = text[:pos] + token + text[end:]
        elif op == "delete":
            text = text[:pos] + text[end:]
        else:
            text = text[:pos] + text[pos:end] * 3 + text[end:]
    return text


def check_outcome(text: str) -> None:
    started = time.monotonic()
    issues: list[ConfigIssue] = []
    try:
        cfg = parse_config(text, "station.yaml")
    except ConfigError as exc:  # any other exception fails the test
        issues = exc.issues
        assert issues
    else:
        assert isinstance(cfg, StationConfig)
    for issue in issues:
        assert issue.file == "station.yaml"
        assert issue.message.strip()
        assert issue.line is not None or issue.message.startswith("... and "), issue
    assert time.monotonic() - started < 5.0


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(mutation, min_size=1, max_size=5))
def test_a_mutated_station_loads_or_is_refused_with_located_issues(
    mutations: list[tuple[str, int, int, str]],
) -> None:
    check_outcome(mutate(EXAMPLE_TEXT, mutations))


def test_the_unmutated_example_loads() -> None:
    check_outcome(EXAMPLE_TEXT)
    assert parse_config(EXAMPLE_TEXT).pumps

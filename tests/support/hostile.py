"""Hostile station files: what a careless technician or an attacker may leave in place of
``station.yaml``. Shared by the tests and bench/station_files.py."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import EXAMPLE_CONFIG

EXAMPLE_TEXT = EXAMPLE_CONFIG.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Hostile:
    name: str
    #: writes the hostile thing at the given path (a file, a directory, a FIFO...)
    make: Callable[[Path], None]
    #: words the refusal must contain (a technician's clue to what is wrong)
    words: str


def _text(text: str) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        p.write_text(text, encoding="utf-8")

    return write


def _example_with(old: str, new: str) -> Callable[[Path], None]:
    assert old in EXAMPLE_TEXT, old
    return _text(EXAMPLE_TEXT.replace(old, new, 1))


def laughs(levels: int, width: int) -> str:
    """The billion-laughs alias bomb: each level refers ``width`` times to the one below."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int) -> str:
    """Merge keys doubling a mapping per level (PyYAML's flatten_mapping copies them)."""
    lines = ["m0: &m0 {x: 1, y: 2}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}], k: {{<<: *m{i - 1}}}}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _seventy_mb(p: Path) -> None:
    with p.open("wb") as f:
        chunk = b"# padding\n" * 100_000
        for _ in range(70):
            f.write(chunk)


def _binary(p: Path) -> None:
    p.write_bytes(random.Random(11).randbytes(64 * 1024))


def _unreadable(p: Path) -> None:
    p.write_text(EXAMPLE_TEXT)
    p.chmod(0)


HOSTILE: list[Hostile] = [
    Hostile("alias bomb, 286 bytes", _text(laughs(9, 5)), "(the limit)"),
    Hostile("alias bomb, 7 levels wide", _text(laughs(7, 10)), "(the limit)"),
    Hostile("alias bomb in a key", _text(laughs(3, 3) + "? *a2\n: 1\n"), "plain name"),
    Hostile("merge-key bomb", _text(merge_bomb(40)), "(the limit)"),
    Hostile("many aliases", _text("a: &a 1\nb: [" + ", ".join(["*a"] * 500) + "]\n"), "aliases"),
    Hostile("recursive alias", _text("a: &a [*a]\n"), "refers to itself"),
    Hostile("recursive merge", _text("a: &a {<<: *a}\n"), "refers to itself"),
    Hostile(
        "alias chain",
        _text("c0: &c0 [1]\n" + "".join(f"c{i}: &c{i} [*c{i - 1}]\n" for i in range(1, 90))),
        "levels deep",
    ),
    Hostile(
        "deep flow sequences", _text("a: " + "[" * 50_000 + "]" * 50_000 + "\n"), "levels deep"
    ),
    Hostile(
        "deep flow mappings",
        _text("a: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n"),
        "levels deep",
    ),
    Hostile(
        "deep block nesting",
        _text("".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v\n"),
        "levels deep",
    ),
    Hostile(
        "5000-digit integer",
        _example_with("    slave_id: 2", "    slave_id: " + "9" * 5000),
        "more than 40 characters",
    ),
    Hostile(
        "5000-digit float",
        _example_with("  setpoint_bar: 3.0", "  setpoint_bar: 3." + "1" * 5000),
        "more than 40 characters",
    ),
    Hostile(
        "float overflow",
        _example_with("  setpoint_bar: 3.0", "  setpoint_bar: 1e99999"),
        "must be a finite number; found 1e99999",
    ),
    Hostile(
        "infinite delay",
        _example_with("    delay_s: 5", "    delay_s: .inf"),
        "must be a finite number; found .inf",
    ),
    Hostile(
        "huge string",
        _example_with('  name: "Booster', '  name: "' + "x" * 900_000),
        "longer than 4096 characters",
    ),
    Hostile("many keys", _text("".join(f"k{i}: {i}\n" for i in range(30_000))), "(the limit)"),
    Hostile("70 MB", _seventy_mb, "larger than 1048576 bytes"),
    Hostile("binary garbage", _binary, "not a "),
    Hostile("control characters", _text("site:\n  id: a\x01b\n"), "control character"),
    Hostile(
        "python object on a list",
        _text("pumps: !!python/object:os.system [ls]\n"),
        "unsupported YAML tag '!!python/object:os.system'",
    ),
    Hostile(
        "python name",
        _example_with("    relay: GPIO17", "    relay: !!python/name:os.system"),
        "unsupported YAML tag",
    ),
    Hostile(
        "binary tag",
        _example_with("    relay: GPIO17", "    relay: !!binary AAAA"),
        "unsupported YAML tag '!!binary'",
    ),
    Hostile("a directory", lambda p: p.mkdir(), "is a directory"),
    Hostile("a FIFO", os.mkfifo, "not a regular file"),
    Hostile("permission denied", _unreadable, "Permission denied"),
]

"""YAML loading that remembers where every key and value stood in the file, within bounds.

PyYAML silently keeps the last of two duplicate keys and forgets line numbers once
it has built Python objects; a technician editing a station file needs both, so we
compose the node tree ourselves and record a (line, column) for every path.

The station file is also hostile input: ``boosterd outputs-off`` must read it within
the unit's stop timeout whatever it holds. A 286-byte alias bomb, a 70 MB file, nesting
that exhausts Python's recursion or a 5000-digit integer each broke the unbounded
loader. Every such resource is bounded here (``Limits``), and a file over a bound is a
located ``ConfigIssue`` naming the limit, like any other mistake.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.errors import ConfigIssue

Path = tuple[str | int, ...]
Positions = dict[Path, tuple[int, int]]

_TAG = "tag:yaml.org,2002:"
#: Scalar types a station file may hold; anything else (``!!python/object``,
#: ``!!binary``, a timestamp...) is refused by name rather than misread.
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_NUMBER_TAGS = frozenset((_TAG + "int", _TAG + "float"))
_MERGE_TAG = _TAG + "merge"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what reading one station file may cost. A real station file is a few
    KB, a few hundred values, nested about 6 deep, with a handful of aliases: every
    default is far above that and far below what hurts a Raspberry Pi."""

    max_bytes: int = 1 << 20
    max_depth: int = 50
    max_aliases: int = 100
    #: values composed from the text, and again values built once aliases are expanded
    max_nodes: int = 20_000
    max_number_chars: int = 40
    #: longer than any path, name or message a station needs (PATH_MAX is 4096)
    max_text_chars: int = 4096
    #: the whole read + parse + validation; past it the file is refused
    time_budget_s: float = 5.0


DEFAULT_LIMITS = Limits()


class LimitExceeded(Exception):
    """Reading stopped at a bound; ``issue`` says which and where."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class Budget:
    """What is left of the limits while one file is read: shared by every stage."""

    def __init__(self, limits: Limits, file: str) -> None:
        self.limits = limits
        self.file = file
        self.deadline = time.monotonic() + limits.time_budget_s
        self.composed = 0
        self.built = 0
        self.aliases = 0

    def refuse(self, where: tuple[int, int] | None, message: str) -> LimitExceeded:
        line, col = where if where is not None else (None, None)
        return LimitExceeded(ConfigIssue(self.file, line, col, "", message))

    def check_time(self, where: tuple[int, int] | None) -> None:
        if time.monotonic() > self.deadline:
            raise self.refuse(
                where,
                f"reading and checking the file took longer than "
                f"{self.limits.time_budget_s:g} s (the time limit); a station file this "
                "complex is refused",
            )


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def format_path(path: Path) -> str:
    """Render a path the way a technician reads it: ``pumps.P1.relay``, ``buses[0]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else str(seg)
    return out


# -- reading the file ----------------------------------------------------------------------


def read_station_text(path: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The file's text, read without ever holding more than ``max_bytes + 1`` bytes.

    Raises ``LimitExceeded`` for a file that is too large, ``OSError`` when it cannot
    be opened or is not a regular file, ``UnicodeDecodeError`` when it is not UTF-8.
    """
    # O_NONBLOCK: opening a FIFO named as the station file must not wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a station file", path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a device, pipe or socket?)", path)
        data = b""
        while len(data) <= limits.max_bytes:
            chunk = os.read(fd, limits.max_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limits.max_bytes:
        head = data[: limits.max_bytes]
        line = head.count(b"\n") + 1
        col = len(head) - (head.rfind(b"\n") + 1) + 1
        budget = Budget(limits, path)
        raise budget.refuse(
            (line, col),
            f"the file is larger than {limits.max_bytes} bytes (the size limit); a "
            "station file is a few KB: is this the right file?",
        )
    return data.decode("utf-8")


# -- YAML: the resolver, composer and constructor of a station file -------------------------

# YAML 1.1 numbers without three traps, as in YAML 1.2: base 60 (``22:00`` is the time
# of day a technician wrote, not the integer 1320), octal by a leading zero (``address:
# 0100`` is register 100, not 64; octal is written ``0o100``) and floats that need a dot
# (``1e-9`` is a number, not the string "1e-9").
_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0o[0-7_]+
    |[-+]?[0-9][0-9_]*
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_INT_BASES = {"0b": 2, "0o": 8, "0x": 16}


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    base = _INT_BASES.get(text[:2].lower(), 10)
    return sign * int(text[2:] if base != 10 else text, base)


_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_KEPT = frozenset((_TAG + "bool", _TAG + "null", _MERGE_TAG))


def _resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [(tag, rx) for tag, rx in entries if tag in _KEPT]
        if kept:
            table[first] = kept
    for first in "-+0123456789.":
        table.setdefault(first, []).append((_TAG + "float", _FLOAT))
        table[first].append((_TAG + "int", _INT))
    return table


class StationLoader(yaml.SafeLoader):
    """A SafeLoader that counts what it composes: nodes, aliases, depth, time.

    Our own subclass, so ``yaml.safe_load`` elsewhere keeps its standard behaviour.
    """

    yaml_implicit_resolvers = _resolvers()

    def __init__(self, stream: str, budget: Budget) -> None:
        super().__init__(stream)
        self.budget = budget
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        where = (event.start_mark.line + 1, event.start_mark.column + 1)
        limits = self.budget.limits
        self.budget.composed += 1
        if self.budget.composed > limits.max_nodes:
            raise self.budget.refuse(
                where, f"the file holds more than {limits.max_nodes} values (the limit)"
            )
        if self.budget.composed % 256 == 0:
            self.budget.check_time(where)
        if isinstance(event, AliasEvent):
            self.budget.aliases += 1
            if self.budget.aliases > limits.max_aliases:
                raise self.budget.refuse(
                    where,
                    f"more than {limits.max_aliases} aliases (*name) (the limit); a station "
                    "file needs a few at most",
                )
        # PyYAML composes recursively: refuse deep nesting before Python's own stack
        # runs out (a RecursionError is no message for a technician).
        self.depth += 1
        try:
            if self.depth > limits.max_depth:
                raise self.budget.refuse(
                    where,
                    f"nested more than {limits.max_depth} levels deep (the limit); a "
                    "station file needs about 6",
                )
            node = super().compose_node(parent, index)
            assert node is not None  # an event was waiting: PyYAML composes a node for it
            return node
        finally:
            self.depth -= 1


# add_constructor copies the table into our class first: yaml.SafeLoader is unchanged.
StationLoader.add_constructor(_TAG + "int", _construct_int)


class _Builder:
    """Builds plain data from the node tree, recording positions and issues, and
    counting every value it builds: aliases are expanded here, so this is where an
    alias bomb would grow, and where it is stopped."""

    def __init__(self, loader: StationLoader, file: str) -> None:
        self.loader = loader
        self.budget = loader.budget
        self.file = file
        self.positions: Positions = {}
        self.issues: list[ConfigIssue] = []
        #: the nodes being built, outermost first: an alias back into one is a cycle
        self.expanding: set[int] = set()

    def issue(self, node: Node, path: Path, message: str) -> None:
        line, col = _mark(node)
        self.issues.append(ConfigIssue(self.file, line, col, format_path(path), message))

    def _count(self, node: Node, path: Path) -> None:
        limits = self.budget.limits
        self.budget.built += 1
        if self.budget.built > limits.max_nodes:
            raise self.budget.refuse(
                _mark(node),
                f"the file expands to more than {limits.max_nodes} values (the limit): "
                "anchors and aliases (&name, *name) repeat whole sections; use them sparingly",
            )
        if len(path) > limits.max_depth:
            raise self.budget.refuse(
                _mark(node),
                f"nested more than {limits.max_depth} levels deep once aliases are expanded "
                "(the limit)",
            )
        if self.budget.built % 256 == 0:
            self.budget.check_time(_mark(node))

    def build(self, node: Node, path: Path) -> Any:
        self._count(node, path)
        self.positions.setdefault(path, _mark(node))
        if id(node) in self.expanding:
            # ``a: &a [*a]`` or ``a: &a {<<: *a}``: the merge never gets deeper, so
            # only this catches it before Python's stack runs out.
            self.issue(node, path, "refers to itself through an alias (*name inside &name)")
            return None
        self.expanding.add(id(node))
        try:
            return self._build(node, path)
        finally:
            self.expanding.discard(id(node))

    def _build(self, node: Node, path: Path) -> Any:
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                self._unsupported_tag(node, path)
                return None
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                self._unsupported_tag(node, path)
                return None
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def _unsupported_tag(self, node: Node, path: Path) -> None:
        tag = node.tag.replace(_TAG, "!!")
        self.issue(node, path, f"unsupported YAML tag {tag!r}: a station file holds plain "
                               "numbers, text, lists and mappings; remove the tag")  # fmt: skip

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        limits = self.budget.limits
        if node.tag not in _SCALAR_TAGS:
            self._unsupported_tag(node, path)
            return None
        if node.tag in _NUMBER_TAGS and len(node.value) > limits.max_number_chars:
            # int() of 5000 digits raises; of 4000 it takes time: never convert one.
            chars = limits.max_number_chars
            self.issue(node, path, f"a number written with more than {chars} characters "
                                   "(the limit); no station setting needs one")  # fmt: skip
            return None
        if len(node.value) > limits.max_text_chars:
            self.issue(node, path, f"a value longer than {limits.max_text_chars} characters "
                                   "(the limit); no station setting needs one")  # fmt: skip
            return None
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, LookupError, TypeError, OverflowError):
            # An explicit tag on text that is not of its type (``!!int address``,
            # ``!!bool maybe``, ``!!float _``), or a number with no digits (``0x_``).
            kind = node.tag.replace(_TAG, "")
            self.issue(node, path, f"{node.value!r} is not a valid {kind} (tag !!{kind})")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.issue(node, path, f"must be a finite number; found {node.value}")
        return value

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                # YAML merge key (<<: *defaults): built here, counted like everything else
                # (PyYAML's own flatten_mapping copies without limit).
                self._merge_into(merged, value_node, path)
                continue
            if not isinstance(key_node, ScalarNode):
                self.issue(key_node, path, "a key must be a plain name")
                continue
            if key_node.tag == _TAG + "null":
                self.issue(key_node, path, "a key must be a plain name")
                continue
            key = self._scalar(key_node, path)
            if key is None:
                continue  # the issue with it is already reported
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            if key in out:
                first = self.positions.get(child, (0, 0))[0]
                self.issue(key_node, child, f"duplicate key (first given on line {first})")
                continue
            # Point at the key, not the value: that is where a typo stands.
            self.positions[child] = _mark(key_node)
            out[key] = self.build(value_node, child)
        # Keys given here win over merged ones, the first merged mapping over later ones.
        return {**merged, **out}

    def _merge_into(self, merged: dict[Any, Any], value_node: Node, path: Path) -> None:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.issue(source, path, "a merge (<<) takes a mapping or a list of mappings")
                continue
            built = self.build(source, path)
            if isinstance(built, dict):
                for key, value in built.items():
                    merged.setdefault(key, value)


def load_yaml(
    text: str, file: str, budget: Budget | None = None
) -> tuple[Any, Positions, list[ConfigIssue]]:
    """Parse ``text``; return the data, the position of every path, and the issues found.

    Data is None when the file could not be read as YAML at all (the issues say why).
    """
    budget = budget or Budget(DEFAULT_LIMITS, file)
    try:
        loader = StationLoader(text, budget)
    except yaml.reader.ReaderError as exc:  # the reader rejects control characters up front
        return None, {}, [_unprintable(text, file, exc)]
    try:
        return _load(loader, file)
    except LimitExceeded as exc:
        return None, {}, [exc.issue]
    finally:
        loader.dispose()


def _unprintable(text: str, file: str, exc: yaml.reader.ReaderError) -> ConfigIssue:
    pos = exc.position
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return ConfigIssue(file, line, col, "", f"not a text file: control character 0x{code:02x} "
                                            "(a station file is plain text: is this the "
                                            "right file?)")  # fmt: skip


def _load(loader: StationLoader, file: str) -> tuple[Any, Positions, list[ConfigIssue]]:
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{exc.context}: {what}"
        return None, {}, [ConfigIssue(file, line, col, "", f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:
        return None, {}, [ConfigIssue(file, None, None, "", f"YAML error: {exc}")]
    if node is None:
        return None, {}, [ConfigIssue(file, 1, 1, "", "the file is empty")]
    builder = _Builder(loader, file)
    try:
        data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        return None, {}, [ConfigIssue(file, line, col, "", f"YAML error: {exc.problem}")]
    return data, builder.positions, builder.issues

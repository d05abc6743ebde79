"""YAML loading that remembers where every key and value stood in the file.

PyYAML silently keeps the last of two duplicate keys and forgets line numbers once
it has built Python objects; a technician editing a station file needs both, so we
compose the node tree ourselves and record a (line, column) for every path.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controller.errors import ConfigIssue

Path = tuple[str | int, ...]
Positions = dict[Path, tuple[int, int]]


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


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions: Positions = {}
        self.issues: list[ConfigIssue] = []

    def issue(self, node: Node, path: Path, message: str) -> None:
        line, col = _mark(node)
        self.issues.append(ConfigIssue(self.file, line, col, format_path(path), message))

    def build(self, node: Node, path: Path) -> Any:
        self.positions.setdefault(path, _mark(node))
        if isinstance(node, MappingNode):
            self.loader.flatten_mapping(node)  # resolve YAML merge keys (<<: *anchor)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if isinstance(key, list | dict) or not isinstance(key, Hashable):
                    self.issue(key_node, path, "a key must be a plain name")
                    continue
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
            return out
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return self.loader.construct_object(node, deep=True)
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover


def load_yaml(text: str, file: str) -> tuple[Any, Positions, list[ConfigIssue]]:
    """Parse ``text``; return the data, the position of every path, and the issues found."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader rejects control characters up front
        return None, {}, [ConfigIssue(file, None, None, "", f"not a YAML text file: {exc}")]
    try:
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
    finally:
        loader.dispose()

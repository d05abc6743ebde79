"""Eclipse Tahu's JavaScript ``sparkplug-payload`` (npm), run by Node: a decoder not ours."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "sparkplug-payload").is_dir():
        pytest.skip("node or tests/support/js/node_modules missing: run scripts/bootstrap test")
    return node


def tahu_decode(messages: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Each ``(topic, payload)`` decoded by Tahu: ``{topic, decoded}`` or ``{topic, error}``."""
    lines = "".join(
        json.dumps({"topic": t, "payload": base64.b64encode(p).decode()}) + "\n"
        for t, p in messages
    )
    out = subprocess.run(
        [_node(), str(JS_DIR / "decode.js")],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def tahu_datatypes() -> dict[str, int]:
    """The DataType enum as Tahu's compiled schema has it."""
    out = subprocess.run(
        [_node(), str(JS_DIR / "decode.js"), "--datatypes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))

"""The audit log: every write by anyone (HMI or SCADA), who, what, when, accepted or refused.

An append-only JSON-lines file in the state directory (next to the buffer), one line per
command, flushed and fsynced before the command's reply leaves, so a power cut does not
lose the record of what was just done. Bounded: past ``max_bytes`` the file is rotated
to ``<name>.1`` (the previous ``.1`` is dropped), so the log holds between ``max_bytes``
and twice that. Writes are rare (people and SCADA commands), so the fsync is cheap.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.logs import get_logger

log = get_logger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
MAX_PAYLOAD_CHARS = 512
MAX_FIELD_CHARS = 200


def _text(raw: bytes, limit: int) -> str:
    text = raw.decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def who_from_topic(topic: str | None) -> tuple[str, str]:
    """(source, who): ``hmi:alice@10.0.0.5`` is the HMI user alice; an MQTT topic is SCADA."""
    if topic is None:
        return "scada", "scada"
    if topic.startswith("hmi:"):
        return "hmi", topic[4:]
    if topic == "status socket":
        return "local", "status socket"
    return "scada", "scada"


class AuditLog:
    """Append and read back; safe to call from the event loop and from threads."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.write_errors = 0

    def record(
        self, name: str, payload: bytes, reply: dict[str, Any], topic: str | None
    ) -> dict[str, Any]:
        """The CommandProcessor's audit hook: one line per command, whoever sent it."""
        source, who = who_from_topic(topic)
        entry: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "source": source,
            "who": _clip(who),
            "command": _clip(name, 64),
            "payload": _text(payload, MAX_PAYLOAD_CHARS),
            "ok": bool(reply.get("ok")),
            "error": None if reply.get("error") is None else _clip(reply["error"], 500),
            "id": None if reply.get("id") is None else _clip(reply["id"], 128),
        }
        if topic is not None and source == "scada":
            entry["topic"] = _clip(topic)
        self.append(entry)
        return entry

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=True) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._rotate_if_full()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode("ascii"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                # The command already happened: losing its record must not undo it, but
                # it must be visible in the station log.
                self.write_errors += 1
                log.error("audit log write failed", file=str(self.path), error=str(exc),
                          entry=entry)  # fmt: skip

    def _rotate_if_full(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size >= self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first; damaged lines are skipped."""
        lines: list[str] = []
        for path in (self.path, self.path.with_name(self.path.name + ".1")):
            try:
                with path.open("r", encoding="ascii", errors="replace") as fh:
                    chunk = fh.readlines()
            except FileNotFoundError:
                continue
            lines = chunk + lines if path != self.path else chunk
            if len(lines) >= limit:
                break
        out: list[dict[str, Any]] = []
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a power failure
            if isinstance(entry, dict):
                out.append(entry)
            if len(out) >= limit:
                break
        return out

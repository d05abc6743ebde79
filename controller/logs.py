"""Logging: structlog everywhere, JSON lines for journald, key=value in a terminal.

Under systemd each JSON line starts with the syslog priority ``<N>`` (journald strips
it and files the line at that priority, so ``journalctl -p warning`` works). Standard
library loggers (pymodbus, paho, aiomqtt) go through the same pipeline. Values under
secret-sounding keys are masked before anything is rendered.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO


def _import_structlog_without_rich() -> None:
    """structlog.dev imports rich (and pygments) if installed, only for pretty console
    tracebacks: about 3.5 MB a daemon that logs JSON never uses. Hide rich while
    structlog loads (tracebacks print plainly); rich stays importable afterwards for the
    dashboard."""
    if "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()
import structlog  # noqa: E402

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|credential|api_?key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")
MASK = "***"


def _mask_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = MASK
    event = event_dict.get("event")
    if isinstance(event, str) and "@" in event:
        event_dict["event"] = _URL_USERINFO.sub(rf"\1{MASK}@", event)
    return event_dict


def _journald_json(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    prio = _PRIORITY.get(str(event_dict.get("level", "info")), 6)
    return f"<{prio}>" + json.dumps(event_dict, default=str, separators=(",", ":"))


def stdout_is_journal(stream: TextIO = sys.stdout) -> bool:
    """True when systemd connected this stream to the journal (JOURNAL_STREAM=dev:ino)."""
    marker = os.environ.get("JOURNAL_STREAM", "")
    if not marker:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return marker == f"{st.st_dev}:{st.st_ino}"


def configure_logging(
    *, level: str = "info", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Set up structlog and the stdlib root logger once for the whole process."""
    out = stream if stream is not None else sys.stdout
    if fmt == "auto":
        fmt = "json" if stdout_is_journal(out) or not out.isatty() else "console"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _mask_secrets,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        _journald_json
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty(), sort_keys=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at warning unless we are debugging ourselves.
    noisy = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("paho", "aiomqtt", "asyncio"):
        logging.getLogger(name).setLevel(noisy)
    # pymodbus logs every timeout as an error with a frame dump; acquisition reports each
    # slave failure once, with its reason, so pymodbus speaks only when debugging.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "debug" else logging.CRITICAL)


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)

"""The local status socket: ``boosterd status`` asks the running daemon what it is doing.

One JSON request line in, one JSON reply line out, then the connection closes. A status
request is answered ``{"ok": true, "status": <LocalStatus>}`` (controller/state/models.py). The
socket is read-only unless the station file allows commands: a technician's terminal
is not an authenticated SCADA link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.errors import BoosterError
from controller.logs import get_logger
from controller.state.dump import to_json
from controller.state.models import LocalStatus
from controller.telemetry.commands import MAX_DEPTH, Invalid, loads_bounded
from controller.telemetry.encoding import dumps

log = get_logger(__name__)

#: What the socket answers a status request with: the model, or its JSON (the daemon's
#: ``local_status_json``, which the demo extends).
StatusView = LocalStatus | Mapping[str, Any]
CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST_BYTES = 64 * 1024


class StatusUnavailable(BoosterError):
    """The daemon's status socket could not be reached."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot reach boosterd at {path}: {reason} (is the service running?)")


class StatusServer:
    """``async with StatusServer(path=..., status=...)``: serves until the block exits."""

    def __init__(
        self,
        *,
        path: str,
        status: Callable[[], StatusView],
        commands: CommandHandler | None = None,
    ) -> None:
        self.path = path
        self._status = status
        self._commands = commands
        self._server: asyncio.Server | None = None
        self.served = 0

    async def __aenter__(self) -> StatusServer:
        _prepare_socket_path(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o660)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        _remove(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                try:
                    line = await reader.readline()
                except ValueError:  # no newline within the stream's limit (64 KiB)
                    reply: dict[str, Any] = {"ok": False, "error": "request too long"}
                else:
                    reply = await self._answer_safely(line)
                # Strict JSON: a NaN in the status must not make the reply unreadable.
                writer.write(dumps(reply).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer_safely(self, line: bytes) -> dict[str, Any]:
        try:
            return await self._answer(line)
        except Exception as exc:  # one bad request must not take the socket down
            log.error("status request failed", error=repr(exc), exc_info=exc)
            return {"ok": False, "error": f"the daemon failed to answer ({type(exc).__name__})"}

    async def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": "request too long"}
        try:
            text = line.decode("utf-8").strip() or "{}"
        except UnicodeDecodeError:
            return {"ok": False, "error": "request is not JSON"}
        try:
            # The command's payload sits one level in: the same depth limit as on MQTT.
            request = loads_bounded(text, max_depth=MAX_DEPTH + 1)
        except Invalid as exc:
            return {"ok": False, "error": str(exc).replace("payload", "request", 1)}
        if not isinstance(request, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        kind = request.get("request", "status")
        if kind == "status":
            self.served += 1
            view = self._status()
            return {"ok": True, "status": to_json(view) if isinstance(view, LocalStatus) else view}
        if kind == "command":
            if self._commands is None:
                return {
                    "ok": False,
                    "error": "the status socket is read-only (status.allow_commands)",
                }
            return await self._commands(request)
        return {"ok": False, "error": f"unknown request {kind!r}"}


def _prepare_socket_path(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _remove(path)  # left behind by a crashed predecessor


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


async def query(path: str, request: dict[str, Any] | None = None, *, wait_s: float = 3.0) -> Any:
    """Send one request to the daemon and return its decoded reply."""
    try:
        async with asyncio.timeout(wait_s):
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(json.dumps(request or {"request": "status"}).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
            writer.close()
    except FileNotFoundError as exc:
        raise StatusUnavailable(path, "no socket") from exc
    except PermissionError as exc:
        raise StatusUnavailable(path, "permission denied (join the boosterd group)") from exc
    except (ConnectionError, OSError) as exc:
        raise StatusUnavailable(path, str(exc)) from exc
    except TimeoutError as exc:
        raise StatusUnavailable(path, f"no answer within {wait_s} s") from exc
    try:
        return json.loads(line)
    except ValueError as exc:
        raise StatusUnavailable(path, "garbled reply") from exc

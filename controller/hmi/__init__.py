"""The local web HMI: pages, live updates, login and the write path (see docs/hmi.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.hmi.server import HmiServer
    from controller.runtime.daemon import Daemon
    from controller.state.models import CommandEvent


def make_hmi(daemon: Daemon, *, demo: bool = False) -> HmiServer:
    """The HMI of a daemon whose station file has an ``hmi:`` section."""
    from controller.hmi.history import History
    from controller.hmi.server import HmiServer

    cfg = daemon.cfg.hmi
    assert cfg is not None
    history = cfg.history_path or str(Path(daemon.cfg.buffer.path).parent / "hmi-history.sqlite3")

    def report(event: CommandEvent) -> None:
        if daemon.uplink is not None:
            daemon.uplink.publish_alarm(event)

    def check_summary() -> str:
        from controller.commands.check import summary

        try:
            return summary(daemon.cfg, daemon.config_path or "(station file given in code)")
        except Exception as exc:  # a summary bug must not cost the diagnostics page
            return f"summary unavailable: {exc!r}"

    return HmiServer(
        cfg,
        station=lambda: daemon.cfg,
        snapshot=daemon.local_status,
        manual=lambda: daemon.core.manual,
        commands=daemon.commands,
        audit=daemon.audit,
        history=History(history),
        report=report,
        check_summary=check_summary,
        demo=demo,
    )

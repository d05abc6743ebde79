"""A full disk for the buffer, made by SQLite itself."""

from __future__ import annotations

from controller.telemetry.buffer import SampleBuffer


async def limit_pages(buf: SampleBuffer, pages: int | None) -> None:
    """Cap the buffer's file at ``pages`` pages (None: the size it has now). Past the
    cap every write fails with SQLITE_FULL, 'database or disk is full', the error a
    full SD card gives; a large cap lifts it again."""

    def apply() -> None:
        db = buf._conn()
        n = pages if pages is not None else db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(int(n), 1)}")

    await buf._call(apply)

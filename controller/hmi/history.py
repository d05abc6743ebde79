"""The HMI's own trend history: downsampled, bounded, durable (SQLite).

The telemetry buffer deletes rows once SCADA has them, so the Trends page keeps its own:
one-second samples are averaged into 1-minute rows (kept 2 days: the hour and day views)
and 15-minute rows (kept 32 days: the 30-day view). At most about 2 900 + 3 100 rows of
eight numbers: well under 1 MB whatever the uptime. Rows are written once a minute.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

SERIES = ("discharge", "suction", "setpoint", "flow", "pumps", "speed")
#: (resolution in s, how long rows of it are kept in s)
RESOLUTIONS = ((60, 2 * 86400), (900, 32 * 86400))


@dataclass
class _Bucket:
    start: int
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, values: dict[str, float | None]) -> None:
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float | None]:
        return {k: (self.sums[k] / self.counts[k] if self.counts.get(k) else None) for k in SERIES}


class History:
    """``add(t, values)`` often; rows reach the disk when a bucket closes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._open: dict[int, _Bucket] = {}
        self._pending: list[tuple[int, int, dict[str, float | None]]] = []
        self._day_starts: dict[tuple[str, str], int] = {}  # (local day, pump) -> total then
        self._day_pending: list[tuple[str, str, int]] = []

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        cols = ", ".join(f"{s} REAL" for s in SERIES)
        db.execute(
            f"CREATE TABLE IF NOT EXISTS trend (res INTEGER, t INTEGER, {cols}, "
            "PRIMARY KEY (res, t)) WITHOUT ROWID"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS day_starts (day TEXT, pump TEXT, total INTEGER, "
            "PRIMARY KEY (day, pump)) WITHOUT ROWID"
        )
        db.commit()
        self._day_starts = {
            (str(d), str(p)): int(n) for d, p, n in db.execute("SELECT * FROM day_starts")
        }
        self._db = db  # last: starts_today waits for the stored baselines

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def add(self, t: float, values: dict[str, float | None]) -> None:
        """One sample (wall-clock Unix seconds); closes the buckets ``t`` has left."""
        for res, _ in RESOLUTIONS:
            start = int(t // res * res)
            bucket = self._open.get(res)
            if bucket is not None and bucket.start != start:
                self._pending.append((res, bucket.start, bucket.means()))
                bucket = None
            if bucket is None:
                bucket = self._open[res] = _Bucket(start)
            bucket.add(values)

    def starts_today(self, day: str, totals: dict[str, int]) -> dict[str, int]:
        """Starts per pump since the station's local midnight (``day``: its date), from
        each pump's lifetime count: the first count seen each day is kept (durably), so
        a restart during the day does not reset it."""
        out: dict[str, int] = {}
        if self._db is None:  # not open yet: the stored baselines are not known
            return out
        for pump, total in totals.items():
            base = self._day_starts.get((day, pump))
            if base is None or base > total:  # a new day, or the count was reset
                for old in [k for k in self._day_starts if k[0] < day]:
                    del self._day_starts[old]  # here, not in flush's thread: one owner
                base = self._day_starts[(day, pump)] = total
                self._day_pending.append((day, pump, total))
            out[pump] = total - base
        return out

    @property
    def has_pending(self) -> bool:
        return bool(self._pending or self._day_pending)

    def flush(self) -> None:
        """Write closed buckets and drop rows past their keep time (blocking: call in a thread)."""
        with self._lock:
            rows, self._pending = self._pending, []
            days, self._day_pending = self._day_pending, []
            if self._db is None:
                return
            if days:
                self._db.executemany("INSERT OR REPLACE INTO day_starts VALUES (?, ?, ?)", days)
                self._db.execute(
                    "DELETE FROM day_starts WHERE day < ?", (min(d for d, _, _ in days),)
                )
                self._db.commit()
            if not rows:
                return
            marks = ", ".join("?" for _ in range(len(SERIES) + 2))
            self._db.executemany(
                f"INSERT OR REPLACE INTO trend VALUES ({marks})",
                [(res, t, *(m[s] for s in SERIES)) for res, t, m in rows],
            )
            newest = max(t for _, t, _ in rows)
            for res, keep in RESOLUTIONS:
                self._db.execute("DELETE FROM trend WHERE res = ? AND t < ?", (res, newest - keep))
            self._db.commit()

    def query(self, span_s: int, now: float) -> dict[str, list[float | None]]:
        """Columns ``t`` and each series over the last ``span_s``, at the resolution that fits;
        the open bucket is included so the hour view moves every minute."""
        res = 60 if span_s <= 2 * 86400 else 900
        times: list[float] = []
        out: dict[str, list[float | None]] = {s: [] for s in SERIES}
        with self._lock:
            if self._db is not None:
                cur = self._db.execute(
                    f"SELECT t, {', '.join(SERIES)} FROM trend WHERE res = ? AND t >= ? ORDER BY t",
                    (res, int(now - span_s)),
                )
                for row in cur:
                    times.append(float(row[0]))
                    for i, s in enumerate(SERIES):
                        out[s].append(row[i + 1])
        bucket = self._open.get(res)
        if bucket is not None and (not times or times[-1] < bucket.start):
            means = bucket.means()
            times.append(float(bucket.start))
            for s in SERIES:
                out[s].append(means[s])
        return {"t": list[float | None](times), **out}

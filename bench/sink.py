"""The daemon's telemetry sink for the closed loop: every tick's sample made, encoded and
committed as ``boosterd run`` does.

``ControlLoop.tick`` calls ``make_sample`` (controller/runtime/loop.py) once a sink is
set; the sink appends it to a real ``SampleBuffer`` (controller/telemetry/buffer.py),
which encodes it once, to the bytes SCADA receives; the queued samples are committed in
one transaction on the buffer's worker thread every ``buffer.commit_interval_s``, as the
daemon's flusher does. Which clock that interval runs on is the sink's ``commit_clock``:

* ``"wall"``: the flusher's own, the event loop's real clock, which an accelerated
  simulation does not speed up. This is the stack as it runs when it simulates a day
  (``boosterd demo``): a commit per real second, hundreds of ticks in each.
* ``"simulated"``: one commit per simulated ``commit_interval_s``, as a station running
  in real time commits. A day run so costs the CPU one real station-day costs the
  daemon, and gives the commit's cost with a few samples in each (the daemon's commit
  sizes).

Nothing is delivered (the link is down all day: the backlog grows, the buffer's worst
case short of its caps). The file sits on tmpfs when there is one, so an fsync costs no
time here: the CPU of a commit is measured, the card's write cost is
``bench.sd_writes``'s subject.

The sink never feeds anything back to the control law, so a run with it gives the same
control figures as one without (``bench.control_scenarios`` checks that on every run).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from controller.config.schema import StationConfig
from controller.telemetry.buffer import SampleBuffer
from harness.closed_loop import ClosedLoop

#: The simulated day's wall clock starts here (a plausible, synchronised clock for the
#: buffer's stamps and its age cap): 2026-01-01T00:00:00Z.
EPOCH_S = 1_767_225_600.0
#: One append in so many is timed (``append_cpu_us_per_sample`` is their mean): the two
#: reads of the CPU clock a timing takes cost ~2.6 us here, a fifth of an append, which
#: timing all 172,800 of the day's appends would add to the day's CPU.
APPEND_TIMED_EVERY = 16

CommitClock = Literal["wall", "simulated"]


def scratch_dir() -> Path:
    """A fresh directory for the buffer, on tmpfs where the machine has one."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="bench-sink-", dir=shm if shm.is_dir() else None))


class TelemetrySink:
    """A ``SampleBuffer`` fed by ``loop``'s ticks; ``run`` advances the loop and commits."""

    def __init__(
        self,
        cfg: StationConfig,
        loop: ClosedLoop,
        directory: Path,
        *,
        commit_clock: CommitClock = "simulated",
    ) -> None:
        self.loop = loop
        self.commit_clock = commit_clock
        self.interval_s = cfg.buffer.commit_interval_s
        station = loop.station
        self.buffer = SampleBuffer(
            directory / "buffer.sqlite3",
            site=cfg.site.id,
            max_mb=cfg.buffer.max_mb,
            max_age_days=cfg.buffer.max_age_days,
            commit_interval_s=cfg.buffer.commit_interval_s,
            max_pending=cfg.buffer.max_pending,
            clock=lambda: EPOCH_S + station.t,
        )
        self.append_cpu_s = 0.0
        self.appends_timed = 0
        self.commit_cpu_s: list[float] = []
        self.appended = 0
        loop.loop.sink = self._record

    def _record(self, sample: dict[str, Any]) -> None:
        self.appended += 1
        if self.appended % APPEND_TIMED_EVERY:
            self.buffer.append(sample)
            return
        c0 = time.process_time()
        self.buffer.append(sample)
        self.append_cpu_s += time.process_time() - c0
        self.appends_timed += 1

    async def _run(self, duration_s: float) -> None:
        tick = self.loop.cfg.control.tick_s
        # The loop runs a commit interval of simulated time between looks at the clock.
        chunk = max(1, round(self.interval_s / tick)) * tick
        wall = self.commit_clock == "wall"
        await self.buffer.open()
        try:
            done = 0.0
            due = time.monotonic() + self.interval_s
            while done < duration_s - tick / 2:
                step = min(chunk, duration_s - done)
                self.loop.run(step)
                done += step
                if wall:
                    if time.monotonic() < due:
                        continue
                    due = time.monotonic() + self.interval_s
                await self._commit()
            if wall:
                await self._commit()  # what is still queued, as an orderly stop's last flush
        finally:
            await self.buffer.close()

    async def _commit(self) -> None:
        c0 = time.process_time()  # this process, the buffer's worker thread too
        await self.buffer.flush()
        self.commit_cpu_s.append(time.process_time() - c0)

    def run(self, duration_s: float) -> None:
        asyncio.run(self._run(duration_s))

    def figures(self) -> dict[str, Any]:
        commits = sorted(self.commit_cpu_s)
        path = self.buffer.path
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
        return {
            "samples": self.appended,
            "commits": len(commits),
            "append_cpu_us_per_sample": round(
                1e6 * self.append_cpu_s / max(self.appends_timed, 1), 1
            ),
            "commit_cpu_ms_p50": round(1000 * statistics.median(commits), 3) if commits else None,
            "commit_cpu_ms_p99": round(1000 * commits[int(0.99 * (len(commits) - 1))], 3)
            if commits
            else None,
            "commit_cpu_s_total": round(sum(commits), 2),
            "bytes_on_disk_per_sample": round(size / max(self.appended, 1)),
        }

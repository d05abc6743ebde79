"""The simulator and the whole controller in one process (``boosterd demo``).

``SimDaemon`` is the production ``Daemon`` with two parts swapped: values come from the
simulated station (through the real register map and codec) instead of a serial line,
and the control loop is driven in simulated time, so ``--speed 60`` runs an hour a
minute with every tick still computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.aio import wait_event
from controller.config.schema import HmiConfig, StationConfig
from controller.dashboard import headline, render
from controller.runtime.daemon import Daemon, Source
from drivers.gpio.sim import SimGpio
from simulator.faults import FaultSchedule, parse_fault
from simulator.source import SimSource
from simulator.station import SimStation

if TYPE_CHECKING:
    from controller.hmi.server import HmiServer

FRAME_S = 0.1  # wall seconds between simulation frames and dashboard refreshes
#: Longest ``--duration`` waits, after the simulated time is up, for the broker to have
#: every buffered sample (wall seconds).
DRAIN_LIMIT_S = 120.0


@dataclass
class DemoOptions:
    speed: float = 1.0
    duration_s: float | None = None
    faults: list[str] = field(default_factory=list)
    start_hour: float = 6.0
    seed: int = 1
    mqtt: str | None = None
    #: keep the station file's TLS and credentials for --mqtt (the example's point at
    #: files a demo machine does not have)
    mqtt_station_auth: bool = False
    state_dir: Path = Path("/tmp/boosterd-demo")
    live: bool = True
    hmi_port: int | None = 8080  # None: no HMI
    #: the simulated run's start, in the station's time zone (None: today at start_hour);
    #: telemetry and alarm ``ts`` follow the simulated clock from there
    start: datetime | None = None

    def start_at(self, timezone: str) -> datetime:
        """The run's start as an aware time in the station's zone."""
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(timezone)
        if self.start is not None:
            return self.start if self.start.tzinfo else self.start.replace(tzinfo=zone)
        today = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        return today.fromtimestamp(today.timestamp() + self.start_hour * 3600.0, zone)


def demo_config(cfg: StationConfig, options: DemoOptions) -> StationConfig:
    """The station file with the parts that touch the machine pointed at the demo."""
    state = options.state_dir
    uplink: dict[str, Any] = {"enabled": False}
    if options.mqtt:
        host, _, port = options.mqtt.rpartition(":")
        uplink = {"enabled": True, "host": host or "localhost", "port": int(port or 1883)}
        if not options.mqtt_station_auth:
            # A local test broker: the station file's credentials and TLS are for the real one.
            uplink.update({"tls": None, "credentials_file": None})
    return cfg.model_copy(
        update={
            "gpio": cfg.gpio.model_copy(update={"backend": "sim"}),
            "buffer": cfg.buffer.model_copy(update={"path": str(state / "buffer.sqlite3")}),
            "status": cfg.status.model_copy(update={"socket": str(state / "status.sock")}),
            "uplink": cfg.uplink.model_copy(update=uplink),
            "hmi": None
            if options.hmi_port is None
            else HmiConfig(
                bind="127.0.0.1",  # the demo's accounts are printed: never off this machine
                port=options.hmi_port,
                users_file=str(state / "hmi-users.json"),
            ),
        }
    )


def demo_accounts(options: DemoOptions) -> dict[str, str]:
    """Fresh random passwords for the demo's operator and viewer (demo only, printed)."""
    import secrets

    from controller.hmi.users import UserStore, make_user

    store = UserStore(options.state_dir / "hmi-users.json")
    accounts = {"demo": secrets.token_urlsafe(9), "viewer": secrets.token_urlsafe(9)}
    store.save(
        {
            "demo": make_user("demo", "operator", accounts["demo"]),
            "viewer": make_user("viewer", "viewer", accounts["viewer"]),
        }
    )
    return accounts


class SimDaemon(Daemon):
    """The daemon around a simulated station, in simulated time."""

    hangup_stops = True  # run from a terminal: closing it ends the demo

    def __init__(self, cfg: StationConfig, options: DemoOptions) -> None:
        self.options = options
        self.sim_gpio = SimGpio()
        schedule = FaultSchedule([parse_fault(spec) for spec in options.faults])
        start = options.start_at(cfg.site.timezone)
        self.start_epoch = start.timestamp()
        self.station = SimStation(
            cfg,
            gpio=self.sim_gpio,
            seed=options.seed,
            faults=schedule,
            start_hour=start.hour + start.minute / 60 + start.second / 3600,
            start_weekday=start.weekday(),
        )
        super().__init__(
            cfg,
            config_path=None,
            gpio=self.sim_gpio,
            clock=self._sim_now,
            wall_clock=self._sim_wall,
        )
        self.core.local_time = self.station.local_time  # schedules follow simulated time
        self.wall_started = time.monotonic()

    def _make_hmi(self) -> HmiServer:
        from controller.hmi import make_hmi

        return make_hmi(self, demo=True)

    def _sim_now(self) -> float:
        return float(self.station.t)

    def _sim_wall(self) -> float:
        """The simulated wall clock (UTC epoch seconds): telemetry and alarms carry it."""
        return self.start_epoch + float(self.station.t)

    def _make_source(self, cfg: StationConfig) -> Source:
        return SimSource(cfg, self.station)

    async def _run_source(self, source: Source, stop: asyncio.Event) -> None:
        await stop.wait()  # the control task steps the simulator

    async def _run_control(self) -> None:
        """Advance the station and tick the controller in simulated time."""
        tick = self.cfg.control.tick_s
        budget = 0.0
        next_frame = time.monotonic()
        while not self.stop.is_set():
            budget += self.options.speed * FRAME_S
            while budget >= tick:
                self.station.step(tick)
                self.loop.tick(self.station.t)
                budget -= tick
                duration = self.options.duration_s
                if duration is not None and self.station.t >= duration:
                    await self._drain()
                    self.stop.set()
                    return
            next_frame += FRAME_S
            delay = next_frame - time.monotonic()
            if delay < 0:  # the machine cannot keep up with --speed: do not pile up
                next_frame = time.monotonic()
                delay = 0
            await wait_event(self.stop, delay)

    async def _drain(self) -> None:
        """The simulated time is up: wait (bounded) until the broker has every sample, so
        a measured run is whole. The station stands still meanwhile."""
        if self.uplink is None:
            return
        deadline = time.monotonic() + DRAIN_LIMIT_S
        await self.buffer.flush()
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.uplink.connected and self.buffer.stats()["backlog"] == 0:
                return
            await wait_event(self.stop, FRAME_S)

    def extra_snapshot(self) -> dict[str, Any]:
        st = self.station.state
        from zoneinfo import ZoneInfo

        local = datetime.fromtimestamp(self._sim_wall(), ZoneInfo(self.cfg.site.timezone))
        snap: dict[str, Any] = {
            "sim": {
                "time": local.strftime("%a %Y-%m-%d %H:%M"),
                "speed": self.options.speed,
                "demand_m3h": round(st.demand_m3h, 2),
                "leakage_m3h": round(st.leakage_m3h, 2),
            }
        }
        return snap

    def status_snapshot(self) -> dict[str, Any]:
        snap = super().status_snapshot()
        pumps = snap.get("pumps", {})
        for name, pump in self.station.state.pumps.items():
            if name in pumps:
                pumps[name]["energy_kwh"] = round(pump.energy_kwh, 2)
        return snap


async def run_demo(cfg: StationConfig, options: DemoOptions) -> int:
    daemon = SimDaemon(demo_config(cfg, options), options)
    # Before the daemon starts, so the HMI never serves a moment without its accounts.
    accounts = demo_accounts(options) if daemon.hmi is not None else {}
    announce = asyncio.create_task(_announce_hmi(daemon, accounts))
    dashboard = asyncio.create_task(_dashboard(daemon, options))
    try:
        code = await daemon.run()
    finally:
        for task in (dashboard, announce):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    print(headline(daemon.status_snapshot()))
    return code


async def _announce_hmi(daemon: SimDaemon, accounts: dict[str, str]) -> None:
    """Print where the HMI is, and its demo accounts, once it listens."""
    if daemon.hmi is None:
        return
    await daemon.hmi.started.wait()
    print(
        f"HMI: http://127.0.0.1:{daemon.hmi.port}/  operator: demo / {accounts['demo']}"
        f"  viewer: viewer / {accounts['viewer']}  (demo accounts, this run only)",
        flush=True,
    )


async def _dashboard(daemon: SimDaemon, options: DemoOptions) -> None:
    if options.live:
        from rich.live import Live

        with Live(render(daemon.status_snapshot()), refresh_per_second=4, screen=False) as live:
            while True:
                await asyncio.sleep(0.25)
                live.update(render(daemon.status_snapshot()))
    else:
        last_minute = -1
        while True:
            await asyncio.sleep(FRAME_S)
            minute = int(daemon.station.t // 60)
            if minute != last_minute and daemon.loop.stats.ticks:
                last_minute = minute
                sim = daemon.extra_snapshot()["sim"]
                print(f"{sim['time']}  {headline(daemon.status_snapshot())}", flush=True)

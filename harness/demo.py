"""The simulator and the whole controller in one process (``boosterd demo``).

``build_demo`` gives the production ``Daemon`` two parts of its own, passed in rather
than overridden: values come from the simulated plant (through the real register map
and codec) instead of a serial line, and the pacer is ``SimulatedTime``, so
``--speed 60`` runs an hour a minute with every tick still computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.aio import wait_event
from controller.config.schema import HmiConfig, StationConfig
from controller.dashboard import headline, render
from controller.runtime.assembly import Source
from controller.runtime.daemon import Daemon
from drivers.gpio.sim import SimGpio
from harness.pacing import FRAME_S, SimulatedTime
from simulator.plant import Plant, build_plant
from simulator.source import SimSource

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


@dataclass
class Demo:
    """The demo's daemon, the plant it controls, and the simulated time both run in."""

    plant: Plant
    pacer: SimulatedTime
    options: DemoOptions
    daemon: Daemon = field(init=False)

    def sim_status(self) -> dict[str, Any]:
        """The simulated clock and what the plant's customers draw, for the dashboard."""
        from zoneinfo import ZoneInfo

        st = self.plant.station.state
        local = datetime.fromtimestamp(self.pacer.wall(), ZoneInfo(self.daemon.cfg.site.timezone))
        return {
            "time": local.strftime("%a %Y-%m-%d %H:%M"),
            "speed": self.options.speed,
            "demand_m3h": round(st.demand_m3h, 2),
            "leakage_m3h": round(st.leakage_m3h, 2),
        }

    def extend_status(self, snap: dict[str, Any]) -> None:
        """The daemon's status plus the simulation's: its clock, and each pump's energy."""
        snap["sim"] = self.sim_status()
        pumps = snap.get("pumps", {})
        for name, pump in self.plant.station.state.pumps.items():
            if name in pumps:
                pumps[name]["energy_kwh"] = round(pump.energy_kwh, 2)

    async def drain(self) -> None:
        """The simulated time is up: wait (bounded) until the broker has every sample, so
        a measured run is whole. The plant stands still meanwhile."""
        daemon = self.daemon
        if daemon.uplink is None:
            return
        deadline = time.monotonic() + DRAIN_LIMIT_S
        await daemon.buffer.flush()
        while time.monotonic() < deadline and not daemon.stop.is_set():
            if daemon.uplink.connected and daemon.buffer.stats()["backlog"] == 0:
                return
            await wait_event(daemon.stop, FRAME_S)


def build_demo(cfg: StationConfig, options: DemoOptions) -> Demo:
    """The daemon around a simulated plant, in simulated time (``cfg``: see ``demo_config``)."""
    gpio = SimGpio()
    start = options.start_at(cfg.site.timezone)
    plant = build_plant(
        cfg,
        gpio=gpio,
        faults=options.faults,
        seed=options.seed,
        start_hour=start.hour + start.minute / 60 + start.second / 3600,
        start_weekday=start.weekday(),
    )
    gpio.clock = plant.now  # the relay history in simulated seconds
    pacer = SimulatedTime(
        plant.station,
        speed=options.speed,
        start_epoch=start.timestamp(),
        duration_s=options.duration_s,
    )
    demo = Demo(plant, pacer, options)

    def make_source(station_cfg: StationConfig) -> Source:
        if station_cfg is not cfg:  # a reload with new buses: a register image to match
            plant.source = SimSource(station_cfg, plant.station)
        return plant.source

    demo.daemon = Daemon(
        cfg,
        config_path=None,
        gpio=gpio,
        pacer=pacer,
        make_source=make_source,
        local_time=plant.station.local_time,  # schedules follow simulated time
        hangup_stops=True,  # run from a terminal: closing it ends the demo
        hmi_demo=True,
        extend_status=demo.extend_status,
    )
    pacer.finish = demo.drain
    return demo


def demo_daemon(cfg: StationConfig, options: DemoOptions) -> Daemon:
    """Just the demo's daemon (what the daemon tests drive)."""
    return build_demo(cfg, options).daemon


async def run_demo(cfg: StationConfig, options: DemoOptions) -> int:
    demo = build_demo(demo_config(cfg, options), options)
    daemon = demo.daemon
    # Before the daemon starts, so the HMI never serves a moment without its accounts.
    accounts = demo_accounts(options) if daemon.hmi is not None else {}
    announce = asyncio.create_task(_announce_hmi(daemon, accounts))
    dashboard = asyncio.create_task(_dashboard(demo))
    try:
        code = await daemon.run()
    finally:
        for task in (dashboard, announce):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    print(headline(daemon.status_snapshot()))
    return code


async def _announce_hmi(daemon: Daemon, accounts: dict[str, str]) -> None:
    """Print where the HMI is, and its demo accounts, once it listens."""
    if daemon.hmi is None:
        return
    await daemon.hmi.started.wait()
    print(
        f"HMI: http://127.0.0.1:{daemon.hmi.port}/  operator: demo / {accounts['demo']}"
        f"  viewer: viewer / {accounts['viewer']}  (demo accounts, this run only)",
        flush=True,
    )


async def _dashboard(demo: Demo) -> None:
    daemon = demo.daemon
    if demo.options.live:
        from rich.live import Live

        with Live(render(daemon.status_snapshot()), refresh_per_second=4, screen=False) as live:
            while True:
                await asyncio.sleep(0.25)
                live.update(render(daemon.status_snapshot()))
    else:
        last_minute = -1
        while True:
            await asyncio.sleep(FRAME_S)
            minute = int(demo.plant.station.t // 60)
            if minute != last_minute and daemon.loop.stats.ticks:
                last_minute = minute
                sim = demo.sim_status()
                print(f"{sim['time']}  {headline(daemon.status_snapshot())}", flush=True)

"""The simulator and the whole controller in one process (``boosterd demo``).

``build_demo`` gives the production ``Daemon`` two parts of its own, passed in rather
than overridden: values come from the simulated plant (through the real register map
and codec) instead of a serial line, and the pacer is ``SimulatedTime``, so
``--speed 60`` runs an hour a minute with every tick still computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.aio import wait_event
from controller.config.schema import HmiConfig, StationConfig
from controller.dashboard import headline, render
from controller.runtime.assembly import ValueSource
from controller.runtime.daemon import EXIT_OK, Daemon
from controller.state.models import LocalStatus, SimInfo
from drivers.gpio.sim import SimGpio
from harness.pacing import FRAME_S, SimulatedTime
from simulator.plant import Plant, build_plant
from simulator.source import SimSource

#: Longest ``--duration`` waits, after the simulated time is up, for the broker to have
#: every buffered sample (wall seconds).
DRAIN_LIMIT_S = 120.0
#: ``boosterd demo``'s exit status when the drain ran out of its bound with samples
#: still in the buffer (the run is not whole at the broker).
EXIT_UNDELIVERED = 3


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
    #: how long ``--duration`` waits for the broker to have every sample (wall seconds)
    drain_limit_s: float = DRAIN_LIMIT_S

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
    #: A fresh daemon on the same plant, pacer and state dir (the first one, and each
    #: boot after a power cut without a UPS).
    make_daemon: Callable[[], Daemon] = field(init=False)
    #: Samples still in the buffer when the drain ran out of its bound (None: whole).
    undelivered: int | None = None
    boots: int = 1

    def sim_status(self) -> SimInfo:
        """The simulated clock and what the plant's customers draw, for the dashboard."""
        from zoneinfo import ZoneInfo

        st = self.plant.station.state
        local = datetime.fromtimestamp(self.pacer.wall(), ZoneInfo(self.daemon.cfg.site.timezone))
        return SimInfo(
            time=local.strftime("%a %Y-%m-%d %H:%M"),
            speed=self.options.speed,
            demand_m3h=round(st.demand_m3h, 2),
            leakage_m3h=round(st.leakage_m3h, 2),
        )

    def extend_status(self, status: LocalStatus) -> LocalStatus:
        """The daemon's status plus the simulation's: its clock, and each pump's energy."""
        plant = self.plant.station.state.pumps
        pumps = {
            name: replace(pump, energy_kwh=round(plant[name].energy_kwh, 2))
            if name in plant
            else pump
            for name, pump in status.pumps.items()
        }
        return replace(status, sim=self.sim_status(), pumps=pumps)

    async def drain(self) -> None:
        """The simulated time is up: wait (bounded) until the broker has every sample, so
        a measured run is whole. The plant stands still meanwhile. Out of its bound, it
        says how many samples are left and the demo exits ``EXIT_UNDELIVERED``."""
        daemon = self.daemon
        if daemon.uplink is None:
            return
        started = time.monotonic()
        limit = self.options.drain_limit_s
        deadline = started + limit
        await daemon.buffer.flush()
        backlog = daemon.buffer.stats()["backlog"]
        while not daemon.stop.is_set():
            left = daemon.buffer.stats()["backlog"]
            if daemon.uplink.connected and left == 0:
                print(
                    f"simulated time up: the last {backlog} samples delivered in "
                    f"{time.monotonic() - started:.1f} s",
                    flush=True,
                )
                return
            if time.monotonic() >= deadline:
                self.undelivered = left
                print(
                    f"boosterd demo: {left} samples not delivered {limit:g} s after "
                    f"the simulated time ended (uplink "
                    f"{'connected' if daemon.uplink.connected else 'not connected'}); they "
                    f"stay in {daemon.cfg.buffer.path}",
                    file=sys.stderr,
                    flush=True,
                )
                return
            await wait_event(daemon.stop, FRAME_S)

    async def run(self, accounts: dict[str, str]) -> int:
        """Run the daemon; a power cut without a UPS stops it where it stands, the plant
        runs on alone, and at power return a new daemon boots on the same state dir."""
        while True:
            announce = asyncio.create_task(_announce_hmi(self.daemon, accounts))
            try:
                code = await self._run_until_power_cut()
            finally:
                announce.cancel()
                await asyncio.wait([announce])
            if code is not None:
                return code
            if await self._dark() != "powered":
                return EXIT_OK  # the run ended (or was stopped) with the station dark
            self.boots += 1
            self.daemon = self.make_daemon()

    async def _run_until_power_cut(self) -> int | None:
        """The daemon's exit status, or None when a power cut took it down."""
        self.pacer.power_lost.clear()
        run = asyncio.create_task(self.daemon.run())
        lost = asyncio.create_task(self.pacer.power_lost.wait())
        await asyncio.wait([run, lost], return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        await asyncio.wait([lost])
        if not self.pacer.power_lost.is_set():
            return run.result()
        # No orderly stop: no final status or flush to the broker (its Last Will says
        # offline once it notices), the relays drop with the power. The daemon's shutdown
        # still commits what waited in memory (a real cut loses up to one commit
        # interval): the buffer on disk is kept for the next boot.
        run.cancel()
        await asyncio.wait([run])
        return None

    async def _dark(self) -> str:
        """The plant alone until the controller's power returns (``"powered"``), the
        simulated time ends (``"duration"``) or the demo is stopped (``"stop"``)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            return await self.pacer.run_dark(self.daemon.cfg.control.tick_s, stop)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


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

    def make_source(station_cfg: StationConfig) -> ValueSource:
        if station_cfg is not cfg:  # a reload with new buses: a register image to match
            plant.source = SimSource(station_cfg, plant.station)
        return plant.source

    def make_daemon() -> Daemon:
        gpio.closed = False  # after a power cut the GPIO chip is back with the power
        return Daemon(
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

    demo.make_daemon = make_daemon
    demo.daemon = make_daemon()
    pacer.finish = demo.drain
    return demo


def demo_daemon(cfg: StationConfig, options: DemoOptions) -> Daemon:
    """Just the demo's daemon (what the daemon tests drive)."""
    return build_demo(cfg, options).daemon


async def run_demo(cfg: StationConfig, options: DemoOptions) -> int:
    demo = build_demo(demo_config(cfg, options), options)
    # Before the daemon starts, so the HMI never serves a moment without its accounts.
    accounts = demo_accounts(options) if demo.daemon.hmi is not None else {}
    dashboard = asyncio.create_task(_dashboard(demo))
    try:
        code = await demo.run(accounts)
    finally:
        dashboard.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dashboard
    print(headline(demo.daemon.local_status_json()))
    if code == EXIT_OK and demo.undelivered:
        return EXIT_UNDELIVERED
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
    # demo.daemon, not a copy: a power cut without a UPS replaces it
    if demo.options.live:
        from rich.live import Live

        with Live(render(demo.daemon.local_status_json()), refresh_per_second=4,
                  screen=False) as live:  # fmt: skip
            while True:
                await asyncio.sleep(0.25)
                live.update(render(demo.daemon.local_status_json()))
    else:
        last_minute = -1
        while True:
            await asyncio.sleep(FRAME_S)
            minute = int(demo.plant.station.t // 60)
            if minute != last_minute and demo.daemon.loop.stats.ticks:
                last_minute = minute
                sim = demo.sim_status()
                line = (
                    "controller off: power cut without a UPS"
                    if demo.pacer.power_lost.is_set()
                    else headline(demo.daemon.local_status_json())
                )
                print(f"{sim.time}  {line}", flush=True)

"""``boosterd sim CONFIG``: the simulated station, serving Modbus RTU on a pty or TCP.

Every RTU bus of the station file gets a virtual serial line (a socat pty pair); the
simulator serves the bus's slaves on one end and prints the other end's path, which a
copy of the station file uses as ``port:``. TCP and RTU-over-TCP buses are served on
their configured ``host``/``tcp_port`` (or on ``--tcp-host``). Relays reach the
simulator through ``--gpio-dir``, the same directory the controller's station file
names as ``gpio.sim_dir`` with ``gpio.backend: sim``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from controller.aio import wait_event
from controller.commands._station import EXIT_CONFIG, load_or_report
from controller.config import StationConfig
from controller.errors import BoosterError

STEP_S = 0.05  # wall seconds between physics steps


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sim", help="run the simulated station, serving its Modbus slaves on a pty or TCP"
    )
    p.add_argument("config", help="station YAML file (its register maps are served)")
    p.add_argument(
        "--pty-dir",
        default="/tmp/boosterd-sim",
        help="where the controller ends of the virtual serial lines are linked",
    )
    p.add_argument("--tcp-host", help="serve TCP buses on this address instead of their host")
    p.add_argument("--gpio-dir", default="/tmp/boosterd-sim/gpio", help="shared GPIO directory")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    p.add_argument("--duration", type=float, help="stop after this many simulated seconds")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC", help="inject a fault")
    p.add_argument("--emulate-baud", action="store_true", help="delay replies by wire time")
    p.add_argument("--start-hour", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        help="broker for the controller's station file (default: the station's own uplink, "
        "or localhost:1883 without one); its other uplink settings are kept",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    try:
        return asyncio.run(serve(cfg, args))
    except BoosterError as exc:
        print(f"boosterd sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0


async def serve(cfg: StationConfig, args: argparse.Namespace) -> int:
    from drivers.gpio.shared import SharedGpioPeer
    from simulator.modbus_slave import RtuSlave, SlaveFault, TcpSlave
    from simulator.plant import build_plant
    from simulator.ptypair import PtyPair

    idle = {p.relay: p.relay_active_low for p in cfg.pumps.values()}
    gpio = SharedGpioPeer(args.gpio_dir, idle_levels=idle)
    plant = build_plant(
        cfg, gpio=gpio, faults=args.fault, seed=args.seed, start_hour=args.start_hour
    )
    station, source = plant.station, plant.source
    source.publish()
    pairs: list[PtyPair] = []
    slaves: list[RtuSlave | TcpSlave] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for bus_name, bus in cfg.buses.items():

            def faults(slave_id: int, _bus: str = bus_name) -> SlaveFault | None:
                mode = station.slave_fault(_bus, slave_id)
                if mode is None:
                    return None
                return SlaveFault(mode, station.slave_exception_code(_bus, slave_id))

            if bus.type == "rtu":
                pair = PtyPair.start(Path(args.pty_dir) / bus_name)
                pairs.append(pair)
                slave: RtuSlave | TcpSlave = RtuSlave(
                    source.image,
                    bus=bus_name,
                    port=pair.slave_end,
                    baudrate=bus.baudrate,
                    parity=bus.parity,
                    stopbits=bus.stopbits,
                    emulate_baud=args.emulate_baud,
                    faults=faults,
                )
                where = f"RTU on {pair.device} (use it as the bus port)"
            else:
                host = args.tcp_host or bus.host or "127.0.0.1"
                slave = TcpSlave(
                    source.image,
                    bus=bus_name,
                    host=host,
                    port=bus.tcp_port,
                    framing="rtu" if bus.type == "rtu_over_tcp" else "mbap",
                    faults=faults,
                )
                where = f"{bus.type} on {host}:{bus.tcp_port}"
            await slave.start()
            slaves.append(slave)
            print(f"bus {bus_name}: serving {where}", flush=True)
        derived = _controller_config(args, {p.device: p for p in pairs})
        print(f"relays: gpio.sim_dir {args.gpio_dir}; speed x{args.speed:g}", flush=True)
        print(f"station file for the controller: {derived}", flush=True)
        await _advance(station, source, args, stop)
    finally:
        for s in slaves:
            await s.close()
        for pair in pairs:
            pair.close()
    return 0


def _controller_config(args: argparse.Namespace, pairs: dict[str, Any]) -> Path:
    """The station file as the controller must see it: buses on the ptys, relays shared."""
    data = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    out_dir = Path(args.pty_dir)
    for name, bus in data.get("buses", {}).items():
        if bus.get("type", "rtu") == "rtu":
            bus["port"] = str(out_dir / name)
    data["gpio"] = {"backend": "sim", "sim_dir": str(args.gpio_dir)}
    data["buffer"] = {**data.get("buffer", {}), "path": str(out_dir / "buffer.sqlite3")}
    data["status"] = {**data.get("status", {}), "socket": str(out_dir / "status.sock")}
    uplink = dict(data.get("uplink") or {})
    if args.mqtt:
        host, _, port = str(args.mqtt).rpartition(":")
        uplink.update({"host": host or "localhost", "port": int(port or 1883), "enabled": True})
    elif "host" not in uplink:
        uplink.update({"host": "localhost", "port": 1883})
    data["uplink"] = uplink
    path = out_dir / "station.yaml"
    path.write_text(
        "# Written by 'boosterd sim': the simulated station as the controller sees it.\n"
        + yaml.safe_dump(data, sort_keys=False),
        encoding="utf-8",
    )
    return path


async def _advance(
    station: Any, source: Any, args: argparse.Namespace, stop: asyncio.Event
) -> None:
    """Step the physics in (accelerated) real time and keep the register image current."""
    last = time.monotonic()
    next_report = 0.0
    while not stop.is_set():
        await wait_event(stop, STEP_S)
        now = time.monotonic()
        sim_dt = (now - last) * args.speed
        last = now
        while sim_dt > 0:
            dt = min(sim_dt, 0.5)
            station.step(dt)
            sim_dt -= dt
        source.publish()
        if station.t >= next_report:
            next_report = station.t + 60.0
            st = station.state
            running = [n for n, p in st.pumps.items() if p.running]
            print(
                f"t={station.t:8.0f}s suction {st.suction_bar:.2f} bar discharge "
                f"{st.discharge_bar:.2f} bar flow {st.flow_m3h:.1f} m3/h pumps "
                f"{','.join(running) or 'none'}",
                flush=True,
            )
        if args.duration is not None and station.t >= args.duration:
            return

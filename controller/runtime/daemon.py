"""The daemon: every subsystem of one station supervised in one asyncio task group.

Failure policy, from most to least important:

* control: an exception in the control loop puts every relay in its safe state and
  the daemon exits non-zero, so systemd restarts it into a clean state;
* acquisition: restarted with a back-off; while it is down the values go stale and the
  control law's sensor-failure mode takes over;
* buffer, uplink, status socket: restarted with a back-off, never touching control.

Signals: SIGTERM/SIGINT stop everything (relays safe, buffer flushed, offline status
published) and exit 0; SIGHUP re-reads the station file and applies it only if valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import __version__
from controller.aio import wait_any, wait_event
from controller.audit import AuditLog
from controller.config import ConfigError, StationConfig
from controller.config.isolated import load_config_isolated
from controller.config.schema import ControlConfig, PressureManagementConfig
from controller.control.core import ControlCore, ControlOutputs
from controller.dashboard import headline
from controller.errors import BoosterError
from controller.logs import get_logger
from controller.runtime import last_good
from controller.runtime.assembly import Assembly, Pacer, RealTime, ValueSource, assemble
from controller.runtime.watchdog import WatchdogGate
from controller.sdnotify import Notifier, watchdog_interval_s
from controller.state.build import alarm_event, point_value, station_status
from controller.state.dump import fields_of, read, to_json
from controller.state.models import (
    BriefStatus,
    LocalStatus,
    LoopView,
    SiteInfo,
    StationStatus,
)
from controller.status_server import StatusServer
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.commands import CommandProcessor
from controller.telemetry.encoding import dumps
from controller.telemetry.highwater import fsync_dir
from controller.telemetry.uplink import Uplink
from drivers.gpio.base import GpioBackend
from drivers.gpio.safety import ExitSafety, install_exit_safety

if TYPE_CHECKING:
    from controller.hmi.server import HmiServer
    from controller.telemetry.sparkplug.node import SparkplugNode

log = get_logger(__name__)

EXIT_OK = 0
EXIT_CONTROL_FAILED = 1
STATE_SAVE_PERIOD_S = 60.0
#: A buffer alarm clears only after its cause has been gone this long (never flapping).
ALARM_HOLD_OFF_S = 60.0
#: How often readiness and the watchdog are looked at (at most; WatchdogSec/2 if shorter).
WATCHDOG_CHECK_S = 0.5


__all__ = ["Daemon", "DurableCommandTarget", "Episode", "ValueSource", "run_daemon"]


class Episode:
    """A condition that is active from its first sign until it has been gone for
    ``hold_off_s``: one raise and one clear per episode, however often it flickers."""

    def __init__(self, hold_off_s: float) -> None:
        self.hold_off_s = hold_off_s
        self.active = False
        self._last_seen = 0.0

    def update(self, condition: bool, now: float) -> bool:
        if condition:
            self.active = True
            self._last_seen = now
        elif self.active and now - self._last_seen >= self.hold_off_s:
            self.active = False
        return self.active


class DurableCommandTarget:
    """The control core as SCADA and the status socket command it: a new mode, manual
    pump, pump mode or setpoint is on disk before the command's reply says ok, so a power
    cut right after an operator's ``off`` cannot restart the pumps. Costs one small fsync'd write
    per accepted command (commands are operator actions: a few per day)."""

    def __init__(self, core: ControlCore, save: Callable[[], None]) -> None:
        self.core = core
        self.save = save

    @property
    def control(self) -> ControlConfig:
        return self.core.control

    def set_setpoint(self, bar: float) -> None:
        self.core.set_setpoint(bar)
        self.save()

    def set_mode(self, mode: str) -> None:
        self.core.set_mode(mode)
        self.save()

    def pump(self, name: str, on: bool) -> None:
        self.core.pump(name, on)
        self.save()

    def pump_mode(self, name: str, mode: str) -> None:
        self.core.pump_mode(name, mode)
        self.save()

    def ack(self, alarm_id: str | None = None) -> list[str]:
        return self.core.ack(alarm_id)

    def set_pressure_management(self, pm: PressureManagementConfig | None) -> None:
        self.core.set_pressure_management(pm)


class Daemon:
    """One station's controller. ``await Daemon(...).run()`` returns the exit code.

    What runs it is passed in, never overridden: ``pacer`` is how time runs (the field's
    ``RealTime`` by default, the demo's simulated time), ``make_source`` builds the value
    source for a station file (Modbus acquisition by default, the simulated plant in
    the demo), ``local_time`` the (weekday, hour) schedules follow. ``hangup_stops``:
    SIGHUP stops instead of reloading (a program run from a terminal: it was closed).
    ``hmi_demo`` serves the HMI in demo mode; ``extend_status`` returns the local status
    with what the demo adds (its simulated time, each pump's energy).
    """

    #: The last failure to build the headline (logged once until it changes or recovers).
    _headline_failed: str | None = None

    def __init__(
        self,
        cfg: StationConfig,
        *,
        config_path: str | None,
        gpio: GpioBackend,
        notifier: Notifier | None = None,
        pacer: Pacer | None = None,
        make_source: Callable[[StationConfig], ValueSource] | None = None,
        local_time: Callable[[], tuple[int, float]] | None = None,
        hangup_stops: bool = False,
        hmi_demo: bool = False,
        extend_status: Callable[[LocalStatus], LocalStatus] | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.gpio = gpio
        self.notifier = notifier or Notifier()
        self.pacer: Pacer = pacer or RealTime()
        self.clock = self.pacer.now
        self.hangup_stops = hangup_stops
        self.hmi_demo = hmi_demo
        self.extend_status = extend_status or _no_extension
        self.stop = asyncio.Event()
        self._make_source = make_source or self._acquisition
        self.assembly: Assembly = assemble(
            cfg,
            gpio=gpio,
            source=self._make_source(cfg),
            clock=self.clock,
            local_time=local_time,
            sink=self._record,
            on_events=self._on_events,
        )
        self.pump_io = self.assembly.pump_io
        assert self.assembly.core is not None
        self.core: ControlCore = self.assembly.core
        self.loop = self.assembly.loop
        self.exit_safety: ExitSafety | None = None
        self.state_file = Path(cfg.buffer.path).parent / "control-state.json"
        self._restore_state()
        self.buffer = SampleBuffer(
            cfg.buffer.path,
            site=cfg.site.id,
            max_mb=cfg.buffer.max_mb,
            max_age_days=cfg.buffer.max_age_days,
            commit_interval_s=cfg.buffer.commit_interval_s,
            max_pending=cfg.buffer.max_pending,
            clock=self.pacer.wall,
        )
        # Every write by anyone (SCADA, status socket, HMI) is audited, next to the buffer.
        self.audit = AuditLog(Path(cfg.buffer.path).parent / "audit.jsonl")
        self.commands = CommandProcessor(
            DurableCommandTarget(self.core, self._save_state),
            max_age_s=cfg.uplink.command_max_age_s,
            audit=self._audit_command,
        )
        self.uplink: Uplink | SparkplugNode | None = None
        if cfg.uplink.enabled and cfg.uplink.scheme == "sparkplug":
            # protobuf only where Sparkplug is used (about 2 MB of the daemon's memory)
            from controller.telemetry.sparkplug.node import SparkplugNode

            self.uplink = SparkplugNode(
                cfg,
                buffer=self.buffer,
                status=self.station_status,
                commands=self.commands,
                manual=lambda: self.core.manual,
            )
        elif cfg.uplink.enabled:
            self.uplink = Uplink(
                cfg.uplink,
                site=cfg.site.id,
                buffer=self.buffer,
                status=self.station_status,
                commands=self.commands,
            )
        self.exit_code = EXIT_OK
        self.ready = False
        self.reloads = 0
        self.reload_errors = 0
        self._restart_source = asyncio.Event()
        self._evicted_seen = 0
        self._evicting = Episode(ALARM_HOLD_OFF_S)
        self._write_failed = Episode(ALARM_HOLD_OFF_S)
        self._state_dirty = asyncio.Event()
        self._saved_key = self._control_state_key()
        self._last_status = ""
        self.hmi: HmiServer | None = self._make_hmi() if cfg.hmi is not None else None

    def _make_hmi(self) -> HmiServer:
        from controller.hmi import make_hmi

        return make_hmi(self, demo=self.hmi_demo)

    def _audit_command(
        self, name: str, payload: bytes, reply: dict[str, Any], topic: str | None
    ) -> None:
        self.audit.record(name, payload, reply, topic)
        if self.hmi is not None:
            self.hmi.on_command(name, payload, reply, topic)

    def _acquisition(self, cfg: StationConfig) -> ValueSource:
        """The field's value source: every bus of the station file, polled."""
        from drivers.modbus.acquisition import Acquisition

        return Acquisition(cfg, clock=self.clock)

    @property
    def source(self) -> ValueSource:
        """Where the values come from now (a reload that changes the buses replaces it)."""
        return self.assembly.source

    # -- status -------------------------------------------------------------------------

    def station_status(self) -> StationStatus:
        """The body of the retained MQTT status (the uplink adds online/site/version/ts)."""
        return station_status(self.core.status())

    def brief_status(self) -> BriefStatus:
        """What the one-line headline needs (systemd's STATUS=), cheap enough to build often."""
        return BriefStatus(
            **fields_of(self.station_status()),
            pressure_point=self.cfg.control.pressure_point,
            values={name: point_value(r) for name, r in self.loop.readings.items()},
        )

    def local_status(self) -> LocalStatus:
        """Everything ``boosterd status`` and the dashboard show."""
        site = self.cfg.site
        status = LocalStatus(
            **fields_of(self.brief_status()),
            site=SiteInfo(id=site.id, name=site.name, language=site.language),
            version=__version__,
            # Counters the loop and the demo report as dicts of their own: read leniently,
            # so a counter added there never breaks the status.
            loop=read(LoopView, self.loop.stats.as_dict()),
            acquisition=self.source.stats(),
            buffer=self.buffer.stats(),
            uplink=self.uplink.stats() if self.uplink else {"connected": False},
            ready=self.ready,
        )
        return self.extend_status(status)

    def local_status_json(self) -> dict[str, Any]:
        """``local_status`` as the status socket sends it (the dashboard reads it)."""
        snap: dict[str, Any] = to_json(self.local_status())
        return snap

    def _record(self, sample: dict[str, Any]) -> None:
        """Buffer the tick's sample; raise the buffer's alarms once per episode."""
        self.buffer.append(sample)
        now = self.clock()
        evicted = self.buffer.evicted > self._evicted_seen
        self._evicted_seen = self.buffer.evicted
        self.core.alarms.set(
            "buffer_evicting",
            self._evicting.update(self.buffer.over_cap or evicted, now),
            now,
            severity="warning",
            message=f"local buffer full: oldest samples evicted ({self.buffer.evicted} so far)",
        )
        error = self.buffer.write_error
        self.core.alarms.set(
            "buffer_write_failed",
            self._write_failed.update(error is not None, now),
            now,
            severity="warning",
            message=self._write_failed_message(error),
        )
        if self._control_state_key() != self._saved_key:
            self._state_dirty.set()

    def _write_failed_message(self, error: str | None) -> str:
        """What is at stake while the disk refuses writes, for the SCADA operator."""
        hours = self.cfg.buffer.max_pending * self.cfg.control.tick_s / 3600
        link = "up" if self.uplink is not None and self.uplink.connected else "down"
        return (
            f"local buffer cannot write ({error or 'recovered'}): samples go out live from "
            f"memory while the link is up (now {link}); if it stays down more than "
            f"{hours:.1f} h the oldest samples are lost, and a restart loses what waits in memory"
        )

    def _on_events(self, out: ControlOutputs) -> None:
        self._publish_events(out.events)

    def _publish_events(self, events: Iterable[Any]) -> None:
        for raw in events:
            event = alarm_event(raw)
            log.warning(
                f"alarm {event.event}",
                alarm=event.id,
                severity=event.severity,
                message=event.message,
            )
            if self.uplink is not None:
                # Stored in the buffer (durable, in order), forwarded by the uplink.
                self.uplink.publish_alarm(to_json(event))
        if self.uplink is not None:
            self.uplink.notify_status_changed()

    # -- run ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        if self.hangup_stops:
            loop.add_signal_handler(signal.SIGHUP, self._on_stop_signal, signal.SIGHUP)
        else:
            loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        # Relays off at exit too (atexit), and first thing on SIGTERM/SIGINT (below).
        self.exit_safety = install_exit_safety(self.pump_io)
        await self.buffer.open()
        self._evicted_seen = self.buffer.evicted  # evictions before this start are history
        if self.config_path is not None:
            await asyncio.to_thread(last_good.remember, self.config_path, self.cfg)
        log.info("boosterd starting", site=self.cfg.site.id, version=__version__)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._control_task())
                tg.create_task(self._supervise("acquisition", self._source_task))
                tg.create_task(self._supervise("buffer", self.buffer.run))
                if self.uplink is not None:
                    tg.create_task(self._supervise("uplink", self.uplink.run))
                tg.create_task(self._supervise("status", self._status_task))
                if self.hmi is not None:
                    tg.create_task(self._supervise("hmi", self.hmi.run))
                tg.create_task(self._watchdog_task())
                tg.create_task(self._state_task())
        except* Exception as group:
            for exc in group.exceptions:
                log.error("daemon failed", error=repr(exc), exc_info=exc)
            self.exit_code = EXIT_CONTROL_FAILED
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self._shutdown()
        return self.exit_code

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        self.pump_io.all_safe()
        self._save_state()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3.0):
                await self.buffer.close()
        self.pump_io.close()
        if self.exit_safety is not None:
            self.exit_safety.uninstall()
        log.info("boosterd stopped", exit_code=self.exit_code)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("stopping", signal=sig.name)
        # Relays first: whatever happens during the orderly stop, the pumps are safe.
        if self.exit_safety is not None:
            self.exit_safety()
        else:
            self.pump_io.all_safe()
        # Events since the last tick (an acknowledge just before the stop) are not left
        # for a tick that will not come: they go out with the orderly stop.
        self._publish_events(self.core.alarms.drain())
        self.stop.set()

    def _on_reload_signal(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def _control_task(self) -> None:
        try:
            await self.pacer.run_loop(self.loop, self.stop)
        except Exception:
            self.pump_io.all_safe()
            self.exit_code = EXIT_CONTROL_FAILED
            self.stop.set()
            raise
        finally:
            self.stop.set()

    async def _source_task(self, stop: asyncio.Event) -> None:
        """Run the current source; a reload that changes the buses swaps it for a new one."""
        while not stop.is_set():
            restart = asyncio.Event()
            self._restart_source = restart
            source_stop = asyncio.Event()
            watcher = asyncio.create_task(_first_of(stop, restart, then=source_stop))
            try:
                await self.pacer.run_source(self.source, source_stop)
            finally:
                watcher.cancel()

    async def _supervise(
        self,
        name: str,
        run: Callable[[asyncio.Event], Awaitable[None]],
        *,
        healthy_s: float = 30.0,
    ) -> None:
        """Run a non-control subsystem; restart it with a back-off when it fails.

        The back-off doubles while failures come quickly, and starts afresh after a run
        of ``healthy_s`` or longer: a subsystem that fails once a day is back in a
        second, not after the minute its worst day left behind.
        """
        delay = 1.0
        while not self.stop.is_set():
            started = time.monotonic()  # wall time: the back-off is, whatever self.clock runs at
            try:
                await run(self.stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ran_s = time.monotonic() - started
                if ran_s >= healthy_s:
                    delay = 1.0
                log.error(f"{name} failed; restarting", error=repr(exc), retry_s=delay,
                          ran_s=round(ran_s, 1), exc_info=exc)  # fmt: skip
                await wait_event(self.stop, delay)
                delay = min(delay * 2, 60.0)

    async def _status_task(self, stop: asyncio.Event) -> None:
        handler = self._status_command if self.cfg.status.allow_commands else None
        async with StatusServer(
            path=self.cfg.status.socket, status=self.local_status_json, commands=handler
        ):
            await stop.wait()

    async def _status_command(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("name", ""))
        payload = json.dumps(request.get("payload", {})).encode()
        return self.commands.handle(name, payload, topic="status socket")

    async def _watchdog_task(self) -> None:
        """READY once control runs on real data; WATCHDOG only while it keeps doing so."""
        interval = watchdog_interval_s() or 1.0
        gate = WatchdogGate(acquisition_silence_s=self._acquisition_silence_s())
        while not self.stop.is_set():
            await wait_event(self.stop, min(interval, WATCHDOG_CHECK_S))
            if self.stop.is_set():
                return
            ticks = self.loop.stats.ticks
            if not self.ready and ticks > 0 and self.source.progress > 0:
                self.ready = True
                self.notifier.ready(self._headline())
                log.info("ready", ticks=ticks)
                # What start-up built (modules, config, drivers) lives as long as the
                # process: out of the collector's sight, a full collection during a
                # replay's allocations no longer walks it (a 15-60 ms tick delay).
                gc.freeze()
                _trim_heap()
            if not self.ready:
                continue
            if gate.check(
                now=time.monotonic(),
                loop_ticks=ticks,
                acquisition_progress=self.source.progress,
            ):
                self.notifier.watchdog()
            else:
                log.warning("withholding watchdog ping", reason=gate.reason)
            status = self._headline()
            if status != self._last_status:
                self._last_status = status
                self.notifier.status(status)

    def _headline(self) -> str:
        """systemd's STATUS= line; a status that cannot be built must not stop the
        watchdog task (and with it the daemon): it is logged and the line says so."""
        try:
            line = headline(self.brief_status())
        except Exception as exc:
            if repr(exc) != self._headline_failed:  # once per distinct failure, not per check
                self._headline_failed = repr(exc)
                log.error("status not available", error=repr(exc), exc_info=exc)
            return "status not available (see the log)"
        self._headline_failed = None
        return line

    def _acquisition_silence_s(self) -> float:
        worst = max(
            (b.backoff_s + b.timeout_s * (b.retries + 1) for b in self.cfg.buses.values()),
            default=0.0,
        )
        return worst + 4 * self.cfg.control.tick_s + 2.0

    # -- state that survives restarts: run hours and starts ------------------------------

    def _restore_state(self) -> None:
        try:
            data = json.loads(self.state_file.read_text())
            self.core.restore_state(data)
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            log.warning("control state not restored: run hours, mode and setpoint start afresh",
                        file=str(self.state_file), error=str(exc))  # fmt: skip

    def _control_state_key(self) -> tuple[Any, ...]:
        """What an operator or SCADA changes: a change is saved at once, not in a minute."""
        core = self.core
        return (self.commands.executed, core.mode, core.setpoint, sorted(core.manual.items()))

    def _save_state(self) -> None:
        """Write the control state atomically and durably: a power cut leaves either the
        old file or the new one, never an empty or half-written one."""
        key = self._control_state_key()
        tmp = self.state_file.with_suffix(".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(dumps(self.core.export_state()))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_file)
            fsync_dir(self.state_file.parent)
        except OSError as exc:
            log.warning("control state not saved", file=str(self.state_file), error=str(exc))
            return
        self._saved_key = key

    async def _state_task(self) -> None:
        """Save at every command or change of mode, setpoint or manual pumps (run hours
        and start counts ride along), and at least once a minute."""
        while not self.stop.is_set():
            await wait_any((self.stop, self._state_dirty), STATE_SAVE_PERIOD_S)
            if self.stop.is_set():
                return  # _shutdown saves the final state
            self._state_dirty.clear()
            await asyncio.to_thread(self._save_state)

    # -- SIGHUP ---------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the station file; apply it only when it is valid."""
        if self.config_path is None:
            return False
        try:
            # In a child process with a memory and time budget: whatever the file holds,
            # the control loop keeps its ticks and the daemon its memory.
            new = await load_config_isolated(self.config_path)
        except ConfigError as exc:
            self.reload_errors += 1
            log.error(
                "reload rejected; the running configuration stays",
                file=self.config_path,
                errors=[str(i) for i in exc.issues],
            )
            return False
        except OSError as exc:  # no process could be started (out of memory, pids)
            self.reload_errors += 1
            log.error("reload could not check the file; the running configuration stays",
                      file=self.config_path, error=str(exc))  # fmt: skip
            return False
        old = self.cfg
        try:
            # Lines first: a line that cannot be claimed leaves the control law untouched.
            self.pump_io.reclaim(new.pumps)
        except BoosterError as exc:
            self.reload_errors += 1
            log.error("reload could not claim the new lines; restart the service",
                      file=self.config_path, error=str(exc))  # fmt: skip
            return False
        self.cfg = new
        self.core.reconfigure(new, now=self.clock())
        self.assembly.reconfigure(new)
        if new.control.tick_s != old.control.tick_s:
            log.warning("control.tick_s changes at the next restart", tick_s=old.control.tick_s)
        if (new.buses, new.devices, new.poll_classes) != (old.buses, old.devices, old.poll_classes):
            self.assembly.replace_source(self._make_source(new))
            self._restart_source.set()
        self.reloads += 1
        log.info("configuration reloaded", file=self.config_path)
        await asyncio.to_thread(last_good.remember, self.config_path, new)
        return True


def _no_extension(status: LocalStatus) -> LocalStatus:
    return status


async def _first_of(*events: asyncio.Event, then: asyncio.Event) -> None:
    await wait_any(events, None)
    then.set()


async def run_daemon(
    cfg: StationConfig, config_path: str, *, notifier: Notifier | None = None
) -> int:
    """``boosterd run``: open the GPIO backend for the loaded station, run until stopped."""
    from drivers.gpio.factory import open_backend

    daemon = Daemon(cfg, config_path=config_path, gpio=open_backend(cfg.gpio), notifier=notifier)
    return await daemon.run()


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system once start-up is over.

    Imports and the station file's validation allocate and free a few MB of temporary
    objects; glibc keeps that memory in its arenas unless asked (about 1 MB of RSS on
    the example station). A no-op where the C library is not glibc.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols: libc's

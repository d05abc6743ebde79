"""The SCADA link over MQTT (aiomqtt 2.x): telemetry replay, status, alarms, commands.

The SQLite buffer is the only queue: aiomqtt raises on publish while disconnected and
keeps nothing, so a sample leaves the buffer only after the broker's PUBACK (QoS 1).
Replay keeps up to ``max_inflight`` publishes awaiting their PUBACK (a sliding window,
refilled as each is acknowledged, never a batch-then-wait), oldest first; the stored
bytes go out as they are, nothing is decoded or encoded. Samples newer than the backlog
found at connect are live: each round sends up to ``LIVE_SHARE`` of them ahead of the
next ``batch_size`` backlog rows, so SCADA sees the station now while the backlog
drains. Publishes cut by a disconnect are sent again after the reconnect: duplicates
are possible, as QoS 1 allows, and SCADA drops them by ``seq``. With nothing to send,
replay waits for the buffer's commit event, not a poll.

Topics under ``<prefix>/<site>``: ``telemetry`` (QoS 1), ``status`` (retained, QoS 1;
the Last Will sets it offline), ``alarm`` (QoS 1), ``cmd/<name>`` in and
``cmd/<name>/result`` out. See docs/mqtt.md.

SCADA's side is untrusted input. With MQTT 5 the broker is told not to send a packet
larger than ``MAX_PACKET_BYTES``, so an oversize message is dropped before it is read
(MQTT 3.1.1 has no such property: a frame above ``READ_LIMIT_BYTES`` drops the link
unread, and the broker should cap sizes). A retained command is refused and cleared,
never executed. A command that fails is answered, and never ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller import __version__
from controller.aio import cancel_and_wait, raise_if_cancelling, wait_event
from controller.config.checks import unreadable
from controller.config.schema import TlsConfig, UplinkConfig
from controller.errors import BoosterError
from controller.logs import get_logger
from controller.state.dump import fields_of, to_json
from controller.state.models import (
    AlarmEvent,
    CommandEvent,
    LastWill,
    OfflineStatus,
    OnlineStatus,
    StationStatus,
)
from controller.telemetry.buffer import Fetched, SampleBuffer, utc_iso, utc_now_iso
from controller.telemetry.commands import MAX_PAYLOAD_BYTES, CommandProcessor
from controller.telemetry.encoding import dumpb, dumps

log = get_logger(__name__)

#: Idle replay waits for the buffer's "rows ready" event; this long at most (a safety
#: net, not a poll: one look per 30 s costs nothing).
IDLE_WAIT_S = 30.0
#: Live samples sent ahead of each backlog chunk: at one round per chunk the newest
#: state reaches SCADA within a round, however long the backlog.
LIVE_SHARE = 10
STATUS_REFRESH_S = 60.0
ALARM_BATCH = 50
FINAL_TELEMETRY_S = 1.5  # of the orderly stop's 3 s: the rest is for alarms and status
PENDING_MARGIN = 20  # status, an alarm, command replies beside a full batch
#: The largest packet the broker may send us (MQTT 5 CONNECT property): a command is at
#: most MAX_PAYLOAD_BYTES; the margin is for the topic and headers, so a slightly too
#: large command is still read and answered. Bigger ones the broker drops unread.
MAX_PACKET_BYTES = 4 * MAX_PAYLOAD_BYTES
#: MQTT 3.1.1 cannot tell the broker MAX_PACKET_BYTES (and a broker may ignore it): a
#: frame above this is not read at all, the link is dropped instead. It bounds what one
#: message costs (a 100 MB frame read whole peaked the daemon at 460 MB RSS) while a
#: merely oversize command (up to a few MB) is still read and answered in session.
READ_LIMIT_BYTES = 8 * 1024 * 1024
#: Commands waiting to be handled; beyond, aiomqtt drops (and paho still acknowledges)
#: them, so a flood costs at most this many packets of memory.
MAX_QUEUED_COMMANDS = 100
#: A connection that lasted this long was healthy: the next reconnect starts the
#: back-off afresh. A shorter one (kicked right after connecting) keeps doubling it.
HEALTHY_LINK_S = 30.0


class Backoff:
    """Reconnect delays with jitter: from 1 s (or the maximum, if lower) doubling up to
    ``max_s``, afresh after a healthy link. The JSON uplink and the Sparkplug node share it."""

    def __init__(self, max_s: float) -> None:
        self.first = min(1.0, max_s)
        self.max_s = max_s
        self.current = self.first

    def reset(self) -> None:
        self.current = self.first

    def link_lost(self, connected_for_s: float | None) -> None:
        """A link that dropped after a good run (``HEALTHY_LINK_S``): retry soon."""
        if connected_for_s is not None and connected_for_s >= HEALTHY_LINK_S:
            self.reset()

    def next_delay(self) -> float:
        """This retry's wait (half to all of the current step); the next step doubles."""
        delay = self.current * random.uniform(0.5, 1.0)
        self.current = min(self.current * 2, self.max_s)
        return delay


class _OncePerMinute(logging.Filter):
    """Lets aiomqtt's "queue is full" warning through once a minute: a command flood
    must not flood the journal too (one line per dropped message otherwise)."""

    def __init__(self, text: str, period_s: float = 60.0) -> None:
        super().__init__()
        self.text = text
        self.period_s = period_s
        self.suppressed = 0
        self._last = -math.inf

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self._last < self.period_s:
            self.suppressed += 1
            return False
        self._last = now
        more = f"; {self.suppressed} more since the last such line" if self.suppressed else ""
        record.msg = f"{record.msg} (commands arrive faster than they are handled{more})"
        record.args = ()
        self.suppressed = 0
        return True


def _quiet_queue_full(logger: logging.Logger) -> None:
    if not any(isinstance(f, _OncePerMinute) for f in logger.filters):
        logger.addFilter(_OncePerMinute("Message queue is full"))


class OversizePacket(ConnectionAbortedError):
    """The broker started a packet larger than we read; the link is dropped."""


def _limit_reads(client: aiomqtt.Client, limit: int) -> bool:
    """Refuse to read an MQTT packet longer than ``limit`` (True if the guard is in place).

    paho's reader asks its socket for a packet's whole remaining length in one call
    once the length is decoded, and keeps every byte; it has no limit of its own. This
    wraps that call (a private one of paho 1.6 to 2.x): above the limit it fails like a
    lost connection, before any of the body is read, and the uplink reconnects.
    """
    paho = getattr(client, "_client", None)
    recv = getattr(paho, "_sock_recv", None)
    if paho is None or recv is None:
        return False

    def guarded(bufsize: int) -> bytes:
        if bufsize > limit:
            log.error(
                "the broker sent an MQTT packet too large to read; link dropped. Cap it on "
                "the broker (mosquitto: max_packet_size) or use uplink.protocol 5",
                packet_bytes=bufsize,
                limit_bytes=limit,
            )
            raise OversizePacket(f"MQTT packet of {bufsize} bytes (limit {limit})")
        data: bytes = recv(bufsize)
        return data

    paho._sock_recv = guarded  # noqa: SLF001 (paho has no public hook for its reads)
    return True


class CredentialsError(BoosterError):
    """The MQTT credentials file is missing or malformed."""


class TlsFilesError(BoosterError):
    """A configured TLS file (CA, client certificate or key) cannot be read."""


def check_tls_files(tls: TlsConfig | None) -> None:
    """Raise ``TlsFilesError`` naming the file, rather than ssl's bare errno later."""
    for _, what, path in tls.files() if tls is not None else []:
        why = unreadable(path)
        if why is not None:
            raise TlsFilesError(f"cannot read {what} {path}: {why}")


def read_credentials(path: str | None) -> tuple[str | None, str | None]:
    """Username and password from a file (``user:password``, two lines, or key=value lines).

    Without a path, systemd's ``$CREDENTIALS_DIRECTORY/mqtt`` is used when present.
    """
    if path is None:
        creds_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        candidate = Path(creds_dir, "mqtt") if creds_dir else None
        if candidate is None or not candidate.exists():
            return None, None
        path = str(candidate)
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read MQTT credentials file {path}: {exc.strerror}") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        return None, None  # installed empty: the broker takes anonymous clients
    pairs = dict(ln.split("=", 1) for ln in lines if "=" in ln)
    if "username" in pairs:
        return pairs["username"].strip(), pairs.get("password", "").strip() or None
    if len(lines) == 1 and ":" in lines[0]:
        user, _, password = lines[0].partition(":")
        return user, password or None
    if len(lines) == 2:
        return lines[0], lines[1]
    raise CredentialsError(
        f"{path}: expected 'username:password', two lines, or username=/password= lines"
    )


class Uplink:
    """The MQTT session: replays the buffer, publishes status and alarms, serves commands."""

    def __init__(
        self,
        cfg: UplinkConfig,
        *,
        site: str,
        buffer: SampleBuffer,
        status: Callable[[], StationStatus | Mapping[str, Any]],
        commands: CommandProcessor | None,
    ) -> None:
        """``status`` gives the body of the retained status: the daemon's typed
        ``StationStatus``; a plain mapping (tools, tests) is sent as it is."""
        self.cfg = cfg
        self.site = site
        self.buffer = buffer
        self.status = status
        self.commands = commands
        self.base = f"{cfg.topic_prefix}/{site}"
        self.connected = False
        self.published = 0
        self.reconnects = 0
        self.last_error: str | None = None
        #: Telemetry the broker acknowledged, kept across reconnects; each replay run
        #: advances it.
        self._acked = _AckedTelemetry()
        self._schemas_sent: set[str] = set()
        self._alarms_acked = 0
        self._status_dirty = asyncio.Event()
        self._warned_v311 = False

    # -- API for the daemon -----------------------------------------------------------------

    def publish_alarm(self, event: AlarmEvent | CommandEvent | Mapping[str, Any]) -> None:
        """Store an alarm event (or an HMI write) in the buffer (durable, numbered like
        samples); it is forwarded in order when connected, after an outage and after a
        restart. The buffer adds the stamp: what SCADA receives is an ``AlarmMessage``
        (a ``CommandEventMessage``)."""
        body = to_json(event) if isinstance(event, (AlarmEvent, CommandEvent)) else dict(event)
        self.buffer.append_alarm({**body, "site": self.site})

    def notify_status_changed(self) -> None:
        """Republish the retained status soon."""
        self._status_dirty.set()

    def stats(self) -> dict[str, Any]:
        """Counters for the status: connected, broker, published, reconnects, backlog, ..."""
        return {
            "connected": self.connected,
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "published": self.published,
            "reconnects": self.reconnects,
            "backlog": self.buffer.stats()["backlog"],
            "last_error": self.last_error,
        }

    # -- connection -------------------------------------------------------------------------

    def status_payload(self, online: bool) -> bytes:
        """The retained status: an ``OnlineStatus`` or, at an orderly stop, ``OfflineStatus``."""
        message: OnlineStatus | OfflineStatus
        # The buffer's clock: the same as the samples' ts (the demo's simulated clock).
        clock = getattr(self.buffer, "clock", None)
        now = utc_iso(clock()) if clock is not None else utc_now_iso()
        if online:
            status = self.status()
            if not isinstance(status, StationStatus):
                # Tools and tests without a control core: their dict under the head.
                head = {"online": True, "site": self.site, "version": __version__}
                return dumps({**head, "ts": now, **status}).encode()
            message = OnlineStatus(
                online=True,
                site=self.site,
                version=__version__,
                ts=now,
                **fields_of(status),
            )
        else:
            message = OfflineStatus(online=False, site=self.site, version=__version__, ts=now)
        return dumps(to_json(message)).encode()

    def _client(self) -> aiomqtt.Client:
        username, password = read_credentials(self.cfg.credentials_file)
        check_tls_files(self.cfg.tls)
        tls = None
        if self.cfg.tls is not None:
            tls = aiomqtt.TLSParameters(
                ca_certs=self.cfg.tls.ca_file,
                certfile=self.cfg.tls.cert_file,
                keyfile=self.cfg.tls.key_file,
            )
        v5 = self.cfg.protocol == "5"
        protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.MaximumPacketSize = MAX_PACKET_BYTES
        mqtt_log = logging.getLogger("mqtt")  # aiomqtt's default, named here to filter it
        _quiet_queue_full(mqtt_log)
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=username,
            password=password,
            identifier=self.cfg.client_id or f"boosterd-{self.site}",
            protocol=protocol,
            keepalive=self.cfg.keepalive_s,
            tls_params=tls,
            timeout=self.cfg.timeout_s,
            properties=properties,
            max_queued_incoming_messages=MAX_QUEUED_COMMANDS,
            logger=mqtt_log,
            will=aiomqtt.Will(f"{self.base}/status", self.will_payload(), qos=1, retain=True),
        )
        # A whole window in flight is the design, not a concern: without this aiomqtt logs
        # a warning per publish beyond 10 pending, flooding the journal on every replay.
        client.pending_calls_threshold = self.window() + self.cfg.batch_size + PENDING_MARGIN
        # paho holds back publishes beyond its own in-flight limit (20 by default) until
        # earlier ones are acknowledged: ours is the limit, paho must not add a smaller one.
        # aiomqtt has no setter for it: its paho client is reached (an intended crossing).
        client._client.max_inflight_messages_set(self.window() + PENDING_MARGIN)  # noqa: SLF001
        guarded = _limit_reads(client, READ_LIMIT_BYTES)
        if not v5 and not self._warned_v311:
            self._warned_v311 = True
            log.warning(
                "MQTT 3.1.1 cannot ask the broker to cap packet size: set max_packet_size "
                "on the broker (docs/mqtt.md), or use uplink.protocol 5",
                read_limit_bytes=READ_LIMIT_BYTES if guarded else None,
            )
        return client

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect with backoff and jitter, until ``stop``."""
        backoff = Backoff(self.cfg.reconnect_max_s)
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            raise_if_cancelling()
            connected_at: float | None = None
            try:
                async with self._client() as client:
                    self.connected = True
                    connected_at = loop.time()
                    log.info("uplink connected", broker=f"{self.cfg.host}:{self.cfg.port}")
                    await self._serve(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                backoff.link_lost(None if connected_at is None else loop.time() - connected_at)
                log.warning("uplink down", error=str(exc), retry_s=round(backoff.current, 1))
            except (CredentialsError, TlsFilesError) as exc:
                self.last_error = str(exc)
                log.error("uplink cannot start", error=str(exc))
            finally:
                if self.connected:
                    self.reconnects += 1
                self.connected = False
            await wait_event(stop, backoff.next_delay())

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        if self.commands is not None:
            await self._subscribe_commands(client)
        await client.publish(f"{self.base}/status", self.status_payload(True), qos=1, retain=True)
        tasks = [
            asyncio.create_task(self._replay(client)),
            asyncio.create_task(self._send_alarms(client)),
            asyncio.create_task(self._refresh_status(client)),
            asyncio.create_task(self._listen(client)),
        ]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([*tasks, stopper])
        for t in done:
            failure = None if t is stopper else t.exception()
            if failure is not None:
                if not isinstance(failure, aiomqtt.MqttError):
                    await self._say_offline(client)
                raise failure
        if stop.is_set():
            # Orderly stop: say so (retained), rather than leaving it to the Last Will.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(3.0):
                    await self._final_flush(client)

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        topic = f"{self.base}/cmd/+"
        if self.cfg.protocol != "5":
            # 3.1.1 clears the retain flag on live delivery: only a stored retained
            # command (sent on subscribe) can be told apart and refused.
            await client.subscribe(topic, qos=1)
            return
        # Retain As Published: a command published retained while we are connected
        # keeps its flag, so it is refused (and cleared) at once, not executed.
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        await client.subscribe(topic, options=options)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Before a session ends on a fault of ours, with the link still up: leaving
        cleanly skips the Last Will, and the retained status would say online."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(3.0):
                await client.publish(
                    f"{self.base}/status", self.status_payload(False), qos=1, retain=True
                )

    async def _final_flush(self, client: aiomqtt.Client) -> None:
        """Orderly stop: alarms first (SCADA needs them most), then as much telemetry as
        the stop allows, then the offline status."""
        await self.buffer.flush_or_keep()  # the disk refusing: from memory
        while await self._send_alarms_once(client):
            pass
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FINAL_TELEMETRY_S):
                while await self._replay_once(client):
                    pass
        await client.publish(f"{self.base}/status", self.status_payload(False), qos=1, retain=True)

    def will_payload(self) -> bytes:
        """The Last Will: offline, without ``ts``. The broker sends it when it notices
        the silence, possibly days after this was composed at connect; SCADA stamps it
        on arrival (docs/mqtt.md)."""
        will = LastWill(online=False, site=self.site, version=__version__, will=True)
        return dumps(to_json(will)).encode()

    # -- the work ---------------------------------------------------------------------------

    def window(self) -> int:
        """Telemetry publishes that may await their PUBACK at once (at least one)."""
        return max(1, self.cfg.max_inflight)

    async def send_schemas(self, client: aiomqtt.Client) -> None:
        """Every telemetry schema the stored samples refer to, retained, before the first
        sample that needs it (a reload may add one while connected)."""
        for sid, schema in list(self.buffer.schemas.items()):
            if sid not in self._schemas_sent:
                payload = dumpb(to_json(schema.message()))
                await client.publish(f"{self.base}/schema/{sid}", payload, qos=1, retain=True)
                self._schemas_sent.add(sid)

    async def _replay_once(self, client: aiomqtt.Client) -> int:
        """Send one chunk of the oldest unsent rows and wait for all their PUBACKs (the
        orderly stop's flush); returns how many were acknowledged."""
        await self.send_schemas(client)
        after = self._acked.past_ahead(self._acked.head)
        rows = await self.buffer.fetch(after_seq=after, limit=self.cfg.batch_size)
        rows = [r for r in rows if not self._acked.is_ahead(r[0])]
        acked, failure = await self._publish_rows(client, f"{self.base}/telemetry", rows)
        if acked:
            self._acked.advance(rows[acked - 1][0])
            await self.buffer.delete_upto(self._acked.head)
            self.published += acked
        if failure is not None:
            raise failure
        return acked

    async def _send_alarms_once(self, client: aiomqtt.Client) -> int:
        if self.buffer.alarms_waiting():
            # An alarm should not wait for the next periodic commit: commit it now
            # (durable first), or on a disk refusing writes it goes out from memory.
            await self.buffer.flush_or_keep()
        rows = await self.buffer.fetch_alarms(after_seq=self._alarms_acked, limit=ALARM_BATCH)
        acked, failure = await self._publish_rows(client, f"{self.base}/alarm", rows)
        if acked:
            last = rows[acked - 1][0]
            await self.buffer.delete_alarms_upto(last)
            self._alarms_acked = last
        if failure is not None:
            raise failure
        return acked

    async def _publish_rows(
        self, client: aiomqtt.Client, topic: str, rows: list[Fetched]
    ) -> tuple[int, BaseException | None]:
        """Publish ``rows`` (QoS 1, concurrently, in order on the one connection);
        returns how many of the head were acknowledged, and the first failure."""
        outcomes = await asyncio.gather(
            *(client.publish(topic, payload, qos=1) for _, _, payload in rows),
            return_exceptions=True,
        )
        # Keep the acknowledged head of the batch even when its tail failed: on a slow
        # link a whole batch may not fit in one timeout, and resending it from the start
        # on every reconnect would never get past it.
        for acked, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                return acked, outcome
        return len(outcomes), None

    async def _replay(self, client: aiomqtt.Client) -> None:
        """The sliding-window replay (module docstring); runs until the link fails."""
        run = _ReplayRun(self, client, split=self.buffer.committed_top(), acked=self._acked)
        try:
            await run.serve()
        finally:
            await run.close()

    async def _send_alarms(self, client: aiomqtt.Client) -> None:
        # From the buffer, like telemetry: committed first (durable), or from memory
        # while the disk refuses writes; a failed publish is sent again after reconnect.
        while True:
            raise_if_cancelling()
            self.buffer.alarms_ready.clear()
            if await self._send_alarms_once(client) == 0:
                await wait_event(self.buffer.alarms_ready, IDLE_WAIT_S)

    async def _refresh_status(self, client: aiomqtt.Client) -> None:
        while True:
            raise_if_cancelling()
            await wait_event(self._status_dirty, STATUS_REFRESH_S)
            self._status_dirty.clear()
            await client.publish(
                f"{self.base}/status", self.status_payload(True), qos=1, retain=True
            )

    async def _listen(self, client: aiomqtt.Client) -> None:
        if self.commands is None:
            await asyncio.Event().wait()
            return
        async for message in client.messages:
            try:
                await self._on_command(client, self.commands, message)
            except aiomqtt.MqttError:
                raise  # the link is down: reconnect
            except Exception as exc:  # a bug of ours: the next command must still be heard
                log.error("command message not handled", topic=str(message.topic)[:200],
                          error=repr(exc), exc_info=exc)  # fmt: skip
            raise_if_cancelling()

    async def _on_command(
        self, client: aiomqtt.Client, commands: CommandProcessor, message: aiomqtt.Message
    ) -> None:
        """Answer one message on ``cmd/<name>``; only a lost link may raise from here."""
        topic = str(message.topic)
        name = topic.rsplit("/", 1)[-1]
        payload = message.payload
        raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
        if not raw:
            # How MQTT deletes a retained message (ours below, or the SCADA engineer's):
            # nothing to answer.
            return
        if message.retain:
            # Stored by the broker, replayed on every subscribe: executing it would
            # repeat an old order on each reconnect (or crash-loop on a poison one).
            reply = commands.refuse(
                name,
                raw,
                "retained command ignored: commands must be published with retain=false "
                "(it has been cleared from the broker)",
                topic=topic,
            )
            await self._reply(client, name, reply)
            await client.publish(topic, b"", qos=1, retain=True)
        else:
            await self._reply(client, name, commands.handle(name, raw, topic=topic))
        self._status_dirty.set()

    async def _reply(self, client: aiomqtt.Client, name: str, reply: dict[str, Any]) -> None:
        """Publish a command's reply (``CommandProcessor`` renders a ``CommandReply``)."""
        try:
            await client.publish(f"{self.base}/cmd/{name}/result", dumps(reply), qos=1)
        except aiomqtt.MqttError:
            raise  # the link is down: reconnect
        except Exception as exc:  # e.g. a topic name too long for a reply topic
            log.warning("command reply not sent", command=name[:64], error=repr(exc))


class _AckedTelemetry:
    """How far the broker has acknowledged the telemetry rows: the backlog up to
    ``head``, and runs of live rows acknowledged ahead of it."""

    def __init__(self) -> None:
        #: Every row up to this seq is acknowledged (deleted from the buffer, or soon).
        self.head = 0
        #: Live rows acknowledged ahead of the backlog (first seq excluded, last included),
        #: kept across a reconnect so the backlog replay skips them instead of repeating.
        self.ahead: list[tuple[int, int]] = []

    def past_ahead(self, after: int) -> int:
        """``after``, moved past a run of live rows already acknowledged ahead of it."""
        for lo, hi in self.ahead:
            if lo <= after < hi:
                after = hi
        return after

    def is_ahead(self, seq: int) -> bool:
        return any(lo < seq <= hi for lo, hi in self.ahead)

    def advance(self, seq: int) -> None:
        """The backlog is acknowledged up to ``seq``; live rows acknowledged ahead of it
        join the head once it reaches them."""
        self.head = max(self.head, seq)
        while self.ahead and self.ahead[0][0] <= self.head:
            self.head = max(self.head, self.ahead.pop(0)[1])

    def keep_ahead(self, split: int, live_acked: int) -> None:
        """A link failed with the backlog (up to ``split``) unfinished: remember the live
        rows acknowledged above it, up to ``live_acked``."""
        self.ahead.append((split, live_acked))


class _Flight:
    """Publishes awaiting their PUBACK for one run of rows, oldest first."""

    def __init__(self) -> None:
        self.tasks: deque[tuple[int, asyncio.Task[None]]] = deque()
        #: The last row of this run whose publish (and every earlier one) is acknowledged.
        self.acked: int | None = None
        self.count = 0

    def settle(self) -> None:
        """Take the acknowledged head off; raise the first failure in order."""
        while self.tasks and self.tasks[0][1].done():
            seq, task = self.tasks[0]
            # A failed publish ends the session here, and stays the head: nothing after
            # it counts as acknowledged, so it and what follows are sent again.
            task.result()
            self.tasks.popleft()
            self.acked = seq
            self.count += 1


class _ReplayRun:
    """One connection's replay: the backlog (rows up to ``split``, found at connect) and
    the live rows above it, each its own in-order flight, sharing one window."""

    def __init__(
        self, uplink: Uplink, client: aiomqtt.Client, *, split: int, acked: _AckedTelemetry
    ) -> None:
        self.up = uplink
        self.client = client
        self.topic = f"{uplink.base}/telemetry"
        self.split = split
        #: The uplink's acknowledgements: this run advances them.
        self.acked = acked
        self.backlog = _Flight()
        self.live = _Flight()
        self.backlog_sent = acked.head
        self.live_sent = max(split, acked.head)
        self.backlog_done = self.backlog_sent >= split

    def _in_flight(self) -> int:
        return len(self.backlog.tasks) + len(self.live.tasks)

    async def serve(self) -> None:
        buffer = self.up.buffer
        while True:
            raise_if_cancelling()
            buffer.samples_ready.clear()
            await self.up.send_schemas(self.client)
            sent = await self._send_live()
            if not self.backlog_done:
                sent += await self._send_backlog()
            await self._record()
            if sent == 0:
                if self._in_flight():
                    await self._wait_head()
                else:
                    await wait_event(buffer.samples_ready, IDLE_WAIT_S)

    async def _send_live(self) -> int:
        # Behind a backlog, a share per round; alone, as much as the window takes.
        limit = LIVE_SHARE if not self.backlog_done else self.up.cfg.batch_size
        room = self.up.window() - self._in_flight()
        if room <= 0 and not self.backlog_done:
            room = 1  # the share is guaranteed: one over the window rather than none
        elif room <= 0:
            # A full window is not "nothing to send": wait for room, then fetch. Fetching
            # none instead counted as idle once the window drained, and rows already on
            # disk waited for the next commit (IDLE_WAIT_S when none came: issue 13).
            await self._wait_head()
            room = self.up.window() - self._in_flight()
        rows = await self.up.buffer.fetch(after_seq=self.live_sent, limit=min(limit, room))
        await self._publish(self.live, rows)
        if rows:
            self.live_sent = rows[-1][0]
        return len(rows)

    async def _send_backlog(self) -> int:
        after = self.acked.past_ahead(self.backlog_sent)  # acknowledged on an earlier link
        rows = await self.up.buffer.fetch(after_seq=after, limit=self.up.cfg.batch_size)
        rows = [r for r in rows if r[0] <= self.split and not self.acked.is_ahead(r[0])]
        if not rows:
            self.backlog_sent = self.split
            if not self.backlog.tasks:
                self._merge()
            return 0
        await self._publish(self.backlog, rows)
        self.backlog_sent = rows[-1][0]
        return len(rows)

    async def _publish(self, flight: _Flight, rows: list[Fetched]) -> None:
        for seq, _, payload in rows:
            while self._in_flight() >= self.up.window() and flight.tasks:
                await self._wait_head()
            task = asyncio.create_task(self.client.publish(self.topic, payload, qos=1))
            flight.tasks.append((seq, task))

    async def _wait_head(self) -> None:
        heads = [f.tasks[0][1] for f in (self.backlog, self.live) if f.tasks]
        await asyncio.wait(heads, return_when=asyncio.FIRST_COMPLETED)
        self._settle()

    def _settle(self) -> None:
        self.backlog.settle()
        self.live.settle()
        if self.backlog.acked is not None:
            self.acked.advance(self.backlog.acked)
        if self.backlog_sent >= self.split and not self.backlog.tasks:
            self._merge()

    def _merge(self) -> None:
        """The backlog is through: the live rows acknowledged so far join the head, and
        from now on the live flight is the only one."""
        if not self.backlog_done:
            self.backlog_done = True
            self.acked.advance(self.split)
        if self.live.acked is not None:
            self.acked.advance(self.live.acked)  # also drops ranges it has passed

    def _count(self) -> int:
        count = self.backlog.count + self.live.count
        self.backlog.count = self.live.count = 0
        self.up.published += count
        return count

    async def _record(self) -> None:
        """Count what was acknowledged and delete it from the buffer."""
        try:
            self._settle()
        finally:  # a failed head still leaves what was acknowledged before it counted
            count = self._count()
        if count:
            await self.up.buffer.delete_upto(self.acked.head)

    async def close(self) -> None:
        """The link failed (or the session ends): keep what was acknowledged, remember
        live rows acknowledged ahead of the backlog, drop the rest of the window."""
        pending = [t for f in (self.backlog, self.live) for _, t in f.tasks]
        with contextlib.suppress(BaseException):
            self._settle()
        await cancel_and_wait(pending)
        for task in pending:  # failed with the link: retrieved, so none is reported again
            if not task.cancelled():
                task.exception()
        if not self.backlog_done and self.live.acked is not None:
            self.acked.keep_ahead(self.split, self.live.acked)
        if self._count():
            with contextlib.suppress(Exception):  # else the next session deletes them
                await self.up.buffer.delete_upto(self.acked.head)

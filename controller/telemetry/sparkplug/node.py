"""The Sparkplug B 3.0 edge node: the MQTT session, births, data, commands, the primary host.

One session per MQTT connection:

1. bdSeq +1 (persisted), CONNECT with clean start and NDEATH (bdSeq, QoS 1) as the Will;
2. subscribe to NCMD (QoS 1) and, with a primary host, to its STATE; wait for it online;
3. NBIRTH (seq 0, QoS 0): every metric with name, alias, datatype, properties, value;
4. NDATA (QoS 0, seq +1): live samples by exception, interleaved with the buffer's
   backlog as historical metrics (``is_historical``, original timestamps, oldest first);
   alarm events from the buffer's alarm stream, historical if raised before this birth;
5. an offline STATE of the host (not older than its online one): NDEATH, disconnect, and
   a new session; an orderly stop: the samples already taken and the alarm events go out,
   then NDEATH, then DISCONNECT (MQTT 5: with reason 0x04, so the broker sends the Will too,
   as Sparkplug 3.0 asks).

The SQLite buffer stays the only queue, for samples and alarm events alike. NDATA is QoS 0
as the spec requires, so a row is dropped from the buffer only after an UNSUBSCRIBE round
trip on the same connection: the broker answers it after it has routed every PUBLISH sent
before (MQTT keeps order on a connection). A session that ends first leaves its
unconfirmed rows in the buffer; the next session sends them as historical data (a host may
see a value twice, never miss one; alarm events carry their own ``seq`` to tell).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller import __version__
from controller.aio import cancel_and_wait, raise_if_cancelling, wait_any, wait_event
from controller.config.schema import StationConfig
from controller.logs import get_logger
from controller.state.dump import to_json
from controller.state.models import AlarmEvent, CommandEvent, StationStatus
from controller.telemetry.buffer import SampleBuffer
from controller.telemetry.commands import CommandProcessor, Invalid, loads_bounded
from controller.telemetry.encoding import dumps
from controller.telemetry.sparkplug.backlog import AlarmRow, Backlog, Row, StoredSample
from controller.telemetry.sparkplug.metrics import (
    ALARM_EVENT,
    BDSEQ,
    COMMAND_RESULT,
    REBIRTH,
    Catalogue,
    ReportByException,
    Value,
    encode,
    long_form_values,
    sample_values,
    status_values,
)
from controller.telemetry.sparkplug.ncmd import MAX_NCMD_BYTES, NcmdHandler
from controller.telemetry.sparkplug.session import BdSeqStore, SeqCounter
from controller.telemetry.uplink import (
    READ_LIMIT_BYTES,
    Backoff,
    CredentialsError,
    TlsFilesError,
    _limit_reads,
    _quiet_queue_full,
    check_tls_files,
    read_credentials,
)

log = get_logger(__name__)

NAMESPACE = "spBv1.0"
IDLE_POLL_S = 0.25
#: Live rows looked at per round; more wait for the next round (after a historical batch).
LIVE_ROWS = 200
#: How often the rows already sent live are confirmed (one UNSUBSCRIBE round trip, ~10
#: bytes each way) and dropped from the buffer. Longer saves bytes; shorter resends less
#: as historical data after a link loss.
CONFIRM_LIVE_S = 15.0
#: Command results waiting for the next NDATA (replies of this session, not stored).
RESULT_QUEUE = 1000
#: Alarm events per NDATA; each batch is confirmed (one round trip) and dropped.
ALARM_BATCH = 50
#: An orderly stop gives the samples already taken and the alarm events this long to go
#: out (and be confirmed) before NDEATH.
FINAL_FLUSH_S = 2.0
NDATA_TOPIC_ALIAS = 1
#: MQTT 5 DISCONNECT reason "Disconnect with Will Message".
DISCONNECT_WITH_WILL = 0x04
#: MQTT 5: the broker may not send us more than this (an NCMD, a STATE, with headers).
MAX_PACKET_BYTES = MAX_NCMD_BYTES + 1024


class HostOffline(Exception):
    """The primary host said it is offline: this session ends with an NDEATH."""


class SparkplugNode:
    """The station as a Sparkplug B edge node (``uplink.scheme: sparkplug``)."""

    def __init__(
        self,
        station: StationConfig,
        *,
        buffer: SampleBuffer,
        status: Callable[[], StationStatus | Mapping[str, Any]],
        commands: CommandProcessor | None,
        manual: Callable[[], Mapping[str, bool]] = dict,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = station.uplink
        self.spb = station.uplink.sparkplug
        self.site = station.site.id
        self.site_name = station.site.name
        self.node_id = self.spb.edge_node_id or station.site.id
        self.backlog = Backlog(buffer)
        self.status = status
        self.manual = manual
        self.clock = clock
        self.catalogue = Catalogue.for_station(station, self.spb)
        self.ncmd = NcmdHandler(self.catalogue, commands, clock=clock)
        self.bdseq = BdSeqStore(Path(station.buffer.path).parent / "sparkplug-bdseq")
        self.seq = SeqCounter()
        self.rbe = ReportByException(self.catalogue, self.spb.max_interval_s)
        group = f"{NAMESPACE}/{self.spb.group_id}"
        self.topics = {
            kind: f"{group}/{kind}/{self.node_id}" for kind in ("NBIRTH", "NDEATH", "NDATA", "NCMD")
        }
        host = self.spb.primary_host_id
        self.state_topic = f"{NAMESPACE}/STATE/{host}" if host else None
        self.connected = False
        self.born = False
        self.host_online = host is None
        self.published = 0
        self.historical_sent = 0
        self.births = 0
        self.replaying = False
        self.reconnects = 0
        #: MQTT 5 topic alias for NDATA: the broker's maximum (0: none), and whether this
        #: connection has sent the topic with its alias yet.
        self._alias_max = 0
        self._alias_sent = False
        self.last_error: str | None = None
        #: The newest STATE timestamp taken, and that of the last online one (-1: none yet).
        self._state_ts = -1
        self._online_ts = -1
        self._host_up = asyncio.Event()
        self._host_down = asyncio.Event()
        self._rebirth = asyncio.Event()
        self._wake = asyncio.Event()
        self._results: deque[tuple[int, str]] = deque(maxlen=RESULT_QUEUE)
        self._current: dict[str, Value] = {}
        # Where this session's birth split the streams, and how far each has been sent.
        self._split = 0
        self._history = 0
        self._live = 0
        self._alarm_split = 0
        self._alarms_sent = 0
        #: The buffer may hold alarm events not sent in this session (looked up only then:
        #: a query per round per station adds up in a fleet).
        self._alarms_due = True

    # -- API for the daemon (as the JSON Uplink's) -------------------------------------------

    def publish_alarm(self, event: AlarmEvent | CommandEvent | Mapping[str, Any]) -> None:
        """An alarm event: stored in the buffer (durable, numbered, in order) and sent as
        ``Alarms/Last Event`` (its JSON) with its own time; one raised before this
        session's birth (host away, link down, the node restarted) goes out as historical
        data."""
        body = to_json(event) if isinstance(event, (AlarmEvent, CommandEvent)) else dict(event)
        self.backlog.append_alarm(body)
        self._alarms_due = True
        self._wake.set()

    def notify_status_changed(self) -> None:
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "scheme": "sparkplug",
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "node": f"{self.spb.group_id}/{self.node_id}",
            "born": self.born,
            "host_online": self.host_online,
            "bdseq": self.bdseq.current,
            "published": self.published,
            "historical_sent": self.historical_sent,
            "replaying": self.replaying,
            "births": self.births,
            "reconnects": self.reconnects,
            "backlog": self.backlog.backlog(),
            "last_error": self.last_error,
        }

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- connection ---------------------------------------------------------------------------

    def _death(self, bdseq: int) -> bytes:
        return encode(self.catalogue, [(BDSEQ, bdseq, self._now_ms())], seq=None,
                      ts_ms=self._now_ms(), birth=True)  # fmt: skip

    def _client(self, bdseq: int) -> aiomqtt.Client:
        username, password = read_credentials(self.cfg.credentials_file)
        check_tls_files(self.cfg.tls)
        tls = None
        if self.cfg.tls is not None:
            tls = aiomqtt.TLSParameters(ca_certs=self.cfg.tls.ca_file,
                                        certfile=self.cfg.tls.cert_file,
                                        keyfile=self.cfg.tls.key_file)  # fmt: skip
        v5 = self.cfg.protocol == "5"
        properties = None
        if v5:
            # Session Expiry Interval left at 0: with clean start the broker keeps no
            # session for us, as Sparkplug requires; the buffer is the queue.
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.MaximumPacketSize = MAX_PACKET_BYTES
        mqtt_log = aiomqtt_logger()
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=username,
            password=password,
            identifier=self.cfg.client_id or f"boosterd-spb-{self.node_id}",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else True,
            # paho refuses a clean_start of its own choosing under 3.1.1 (clean_session is it).
            clean_start=True if v5 else paho_mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=self.cfg.keepalive_s,
            tls_params=tls,
            timeout=self.cfg.timeout_s,
            properties=properties,
            max_queued_incoming_messages=100,
            logger=mqtt_log,
            will=aiomqtt.Will(self.topics["NDEATH"], self._death(bdseq), qos=1, retain=False),
        )
        client.pending_calls_threshold = 50
        _limit_reads(client, READ_LIMIT_BYTES)
        if v5:
            self._learn_topic_alias_maximum(client)
        return client

    def _learn_topic_alias_maximum(self, client: aiomqtt.Client) -> None:
        """Read the broker's Topic Alias Maximum from its CONNACK (aiomqtt keeps no CONNACK
        properties): above 0, NDATA is sent under a topic alias."""
        paho = client._client
        inner = paho.on_connect
        self._alias_max = 0

        def on_connect(*args: Any) -> None:
            properties = args[4] if len(args) > 4 else None
            self._alias_max = int(getattr(properties, "TopicAliasMaximum", 0) or 0)
            if inner is not None:
                inner(*args)

        paho.on_connect = on_connect

    async def run(self, stop: asyncio.Event) -> None:
        """Sessions until ``stop``: reconnect with back-off and jitter after a loss."""
        backoff = Backoff(self.cfg.reconnect_max_s)
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            raise_if_cancelling()
            connected_at: float | None = None
            bdseq = self.bdseq.peek()
            try:
                async with self._client(bdseq) as client:
                    self.bdseq.commit(bdseq)
                    self.connected = True
                    connected_at = loop.time()
                    log.info("sparkplug connected", broker=f"{self.cfg.host}:{self.cfg.port}",
                             node=self.topics["NBIRTH"], bdseq=bdseq)  # fmt: skip
                    await self._session(client, bdseq, stop)
                if stop.is_set():
                    return
                backoff.reset()  # the host went offline: a new session at once (after jitter)
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                backoff.link_lost(None if connected_at is None else loop.time() - connected_at)
                log.warning(
                    "sparkplug link down", error=str(exc), retry_s=round(backoff.current, 1)
                )
            except (CredentialsError, TlsFilesError) as exc:
                self.last_error = str(exc)
                log.error("sparkplug uplink cannot start", error=str(exc))
            finally:
                if self.connected:
                    self.reconnects += 1
                self.connected = False
                self.born = False
                self.replaying = False
            await wait_event(stop, backoff.next_delay())

    async def _session(self, client: aiomqtt.Client, bdseq: int, stop: asyncio.Event) -> None:
        self.ncmd.session = bdseq
        self._alias_sent = False  # aliases live as long as the connection
        self._host_up.clear()
        self._host_down.clear()
        self.host_online = self.state_topic is None
        await self._subscribe(client)
        listener = asyncio.create_task(self._listen(client), name="sparkplug-listen")
        worker: asyncio.Task[None] | None = None
        try:
            if self.state_topic is not None:
                await self._wait_for_host(listener, stop)
            if not stop.is_set():
                worker = asyncio.create_task(self._work(client, bdseq, stop), name="sparkplug-data")
                await self._until_ended(listener, worker, stop)
        finally:
            await cancel_and_wait([t for t in (listener, worker) if t is not None])
        # Orderly stop, or the host went away: say so ourselves, then DISCONNECT.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(3.0):
                await client.publish(self.topics["NDEATH"], self._death(bdseq), qos=1)
        if self.cfg.protocol == "5":
            _disconnect_with_will(client)
        why = "stopping" if stop.is_set() else "primary host offline"
        log.info("sparkplug NDEATH sent", reason=why, bdseq=bdseq)

    async def _until_ended(
        self, listener: asyncio.Task[None], worker: asyncio.Task[None], stop: asyncio.Event
    ) -> None:
        """Until the link fails (raised here), the host goes offline, or we stop; on a
        stop, the worker first sends what is pending (it watches ``stop`` too)."""
        ender = asyncio.create_task(self._host_down.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([listener, worker, ender, stopper],
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if stop.is_set() and not worker.done() and not self._host_down.is_set():
                await asyncio.wait([listener, worker], timeout=FINAL_FLUSH_S,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            await cancel_and_wait([ender, stopper])
        for task in (listener, worker):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _wait_for_host(self, listener: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Until the primary host is online or we stop; a link lost meanwhile raises."""
        waiter = asyncio.create_task(wait_any((self._host_up, stop), None))
        try:
            await asyncio.wait([listener, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([waiter])
        if listener.done():
            listener.result()  # the link's error, if that is what ended it
            raise aiomqtt.MqttError("the MQTT message stream ended while waiting for the host")

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        topics = [self.topics["NCMD"]] + ([self.state_topic] if self.state_topic else [])
        for topic in topics:
            if self.cfg.protocol == "5":
                # Retain As Published: a retained NCMD is seen as such and refused.
                await client.subscribe(
                    topic, options=SubscribeOptions(qos=1, retainAsPublished=True)
                )
            else:
                await client.subscribe(topic, qos=1)

    # -- births and data ------------------------------------------------------------------------

    async def _birth(self, client: aiomqtt.Client, bdseq: int) -> None:
        now = self._now_ms()
        newest = await self.backlog.newest()
        if newest is not None:
            self._current.update(row_values(newest[0], newest[2]))
        self._current.update(self._status_values())
        values: dict[str, Value] = {d.name: self._current.get(d.name) for d in self.catalogue.defs}
        values.update({BDSEQ: bdseq, REBIRTH: False, "Node Info/Site Name": self.site_name,
                       "Node Info/Version": __version__, "Buffer/Backlog": self.backlog.backlog(),
                       COMMAND_RESULT: values.get(COMMAND_RESULT) or "",
                       ALARM_EVENT: values.get(ALARM_EVENT) or ""})  # fmt: skip
        payload = encode(self.catalogue, ((n, v, now) for n, v in values.items()),
                         seq=self.seq.birth(), ts_ms=now, birth=True)  # fmt: skip
        await client.publish(self.topics["NBIRTH"], payload, qos=0)
        self.rbe.reset(values, now)
        self.born = True
        self.births += 1
        self.published += 1
        log.info("sparkplug NBIRTH sent", bdseq=bdseq, metrics=len(values), bytes=len(payload))

    def _status_values(self) -> dict[str, Value]:
        try:
            return status_values(self.status(), self.manual())
        except Exception as exc:  # a status bug must not stop the data
            log.warning("sparkplug status values unavailable", error=repr(exc))
            return {}

    async def _data(self, client: aiomqtt.Client, payload: bytes) -> None:
        if self._alias_max < 1:
            await client.publish(self.topics["NDATA"], payload, qos=0)
        else:
            # MQTT 5 topic alias: the 32-odd bytes of the NDATA topic once per connection,
            # then two (a third of a typical NDATA on the wire). Subscribers see the topic.
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.TopicAlias = NDATA_TOPIC_ALIAS
            topic = "" if self._alias_sent else self.topics["NDATA"]
            await client.publish(topic, payload, qos=0, properties=properties)
            self._alias_sent = True
        self.published += 1

    async def _work(self, client: aiomqtt.Client, bdseq: int, stop: asyncio.Event) -> None:
        # Alarm events raised before this birth are history (the host did not have them).
        self._alarm_split = self.backlog.last_alarm_seq()
        self._alarms_sent = 0  # the buffer skips those confirmed in earlier sessions
        self._alarms_due = True
        self._rebirth.clear()  # this birth carries everything a rebirth asked before it
        await self._birth(client, bdseq)
        # Everything in the buffer now is history; what is appended from here on is live.
        self._split = self.backlog.last_seq()
        self._history, self._live = 0, self._split
        confirmed_at = time.monotonic()
        while True:
            raise_if_cancelling()
            if stop.is_set():
                await self._final(client)
                return
            if self._rebirth.is_set():
                self._rebirth.clear()
                await self._birth(client, bdseq)
            self._wake.clear()
            sent = await self._send_live(client)
            sent += await self._send_alarms(client)
            await self._send_results(client)
            self.replaying = self._history < self._split
            if self._history < self._split:
                sent += await self._send_history(client)
            elif self._live > self._history and time.monotonic() - confirmed_at >= CONFIRM_LIVE_S:
                await self._confirm(client, self._live)
                self._history = self._live
                confirmed_at = time.monotonic()
            if not sent:
                await wait_any((self._wake, stop), IDLE_POLL_S)

    async def _final(self, client: aiomqtt.Client) -> None:
        """Orderly stop: the alarm events, the samples already taken (live, by exception)
        and, as time allows, the rest of the backlog go out and are confirmed, so the next
        start does not send them again (what the stop's time cuts off stays buffered)."""
        await self.backlog.flush()  # what waits in memory, fetchable now
        while await self._send_alarms(client):
            pass
        while await self._send_live(client, drain=True):
            pass
        await self._send_results(client)
        while self._history < self._split and await self._send_history(client):
            pass
        if self._history >= self._split and self._live > self._history:
            await self._confirm(client, self._live)  # (else the backlog holds them anyway)
            self._history = self._live

    async def _send_live(self, client: aiomqtt.Client, *, drain: bool = False) -> int:
        """The live rows after ``_live`` (up to LIVE_ROWS) by exception; returns the NDATA
        count (with ``drain``: the rows looked at, so a caller loops until none are left)."""
        after = self._live
        rows = await self.backlog.rows_after(after, LIVE_ROWS)
        sent = 0
        for seq, ts_ms, sample in rows:
            values = row_values(seq, sample)
            values.update(self._status_values())
            values["Buffer/Backlog"] = self.backlog.backlog()
            self._current.update(values)
            changed = self.rbe.changes(values, ts_ms)
            changed.pop("Telemetry/Sample", None)
            if changed:
                # The sample's seq rides along so a host can match data to the station's log.
                changed["Telemetry/Sample"] = seq
                payload = encode(self.catalogue, ((n, v, ts_ms) for n, v in changed.items()),
                                 seq=self.seq.next(), ts_ms=ts_ms)  # fmt: skip
                await self._data(client, payload)
                sent += 1
            self._live = seq
        return len(rows) if drain else sent

    async def _send_alarms(self, client: aiomqtt.Client) -> int:
        """One batch of alarm events from the buffer, oldest first, each with its own time:
        historical if raised before this birth, live after. Confirmed, then dropped."""
        if not self._alarms_due:
            return 0
        self._alarms_due = False  # an event appended meanwhile sets it again
        try:
            rows = await self.backlog.alarms_after(self._alarms_sent, ALARM_BATCH)
            if rows:
                await self._publish_alarms(client, rows)
        except BaseException:
            self._alarms_due = True
            raise
        if len(rows) == ALARM_BATCH:
            self._alarms_due = True  # more may wait
        return len(rows)

    async def _publish_alarms(self, client: aiomqtt.Client, rows: list[AlarmRow]) -> None:
        old = [r for r in rows if r[0] <= self._alarm_split]
        new = [r for r in rows if r[0] > self._alarm_split]
        for batch, historical in ((old, True), (new, False)):
            if batch:
                payload = encode(self.catalogue, _alarm_items(batch), seq=self.seq.next(),
                                 ts_ms=self._now_ms(), historical=historical)  # fmt: skip
                await self._data(client, payload)
        for _, ts, text in new:
            self._current[ALARM_EVENT] = text
            self.rbe.changes({ALARM_EVENT: text}, ts)
        self._alarms_sent = rows[-1][0]
        await self._routed(client)
        await self.backlog.confirm_alarms_upto(self._alarms_sent)

    async def _send_results(self, client: aiomqtt.Client) -> None:
        """Command results, each with its own time, in one NDATA."""
        taken = list(self._results)
        if not taken:
            return
        # Taken before the publish: what arrives while it is awaited waits for the next round.
        self._results.clear()
        items = [(COMMAND_RESULT, text, ts) for ts, text in taken]
        payload = encode(self.catalogue, items, seq=self.seq.next(), ts_ms=self._now_ms())
        try:
            await self._data(client, payload)
        except BaseException:
            self._results.extendleft(reversed(taken))  # not sent: first in the next session
            raise
        for _, text, ts in items:
            self._current[COMMAND_RESULT] = text
            self.rbe.changes({COMMAND_RESULT: text}, ts)

    async def _send_history(self, client: aiomqtt.Client) -> int:
        """One batch of backlog rows as historical metrics (every value of every row)."""
        upto = self._split
        rows = await self.backlog.rows_after(self._history, self.spb.history_batch, upto=upto)
        if not rows:
            if self.backlog.committed_upto() >= upto:
                self._history = upto  # evicted by the buffer's caps: nothing left below
            return 0  # (else still in memory: fetchable after the next commit)
        payload = encode(self.catalogue, _history_items(rows), seq=self.seq.next(),
                         ts_ms=self._now_ms(), historical=True)  # fmt: skip
        await self._data(client, payload)
        last = rows[-1][0]
        await self._confirm(client, last)
        self._history = last
        self.historical_sent += len(rows)
        return len(rows)

    async def _routed(self, client: aiomqtt.Client) -> None:
        """Return once the broker has routed every PUBLISH sent before (module docstring)."""
        await client.unsubscribe(f"{self.topics['NCMD']}/confirm", timeout=self.cfg.timeout_s)

    async def _confirm(self, client: aiomqtt.Client, upto: int) -> None:
        """Wait until the broker has routed what we sent, then drop those rows."""
        await self._routed(client)
        await self.backlog.confirm_upto(upto)

    # -- the host's messages ------------------------------------------------------------------

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                topic = str(message.topic)
                payload = message.payload
                raw = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
                if topic == self.state_topic:
                    self._on_state(raw)
                elif topic == self.topics["NCMD"]:
                    self._on_ncmd(raw, topic, retained=bool(message.retain))
            except Exception as exc:  # a bug of ours: the next message must still be heard
                log.error("sparkplug message not handled", error=repr(exc), exc_info=exc)
            raise_if_cancelling()

    def _on_state(self, raw: bytes) -> None:
        try:
            state = loads_bounded(raw, max_depth=2)
            online, ts = state["online"], state["timestamp"]
            if not isinstance(online, bool) or isinstance(ts, bool) or not isinstance(ts, int):
                raise Invalid("'online' must be a Boolean and 'timestamp' an integer")
        except (Invalid, KeyError, TypeError) as exc:
            log.warning("primary host STATE ignored: not {online, timestamp} JSON",
                        topic=self.state_topic, error=str(exc))  # fmt: skip
            return
        if online:
            # Sparkplug 3.0: online only if not older than the last STATE taken (a stale
            # retained online must not bring a birth after a newer offline).
            if ts < self._state_ts:
                log.info("stale online STATE ignored", state_ts=ts, newest_ts=self._state_ts)
                return
            self._state_ts = self._online_ts = ts
            self.host_online = True
            self._host_down.clear()
            self._host_up.set()
            log.info("primary host online", host=self.spb.primary_host_id, state_ts=ts)
        elif ts >= self._online_ts:
            self._state_ts = max(self._state_ts, ts)
            self.host_online = False
            self._host_up.clear()
            self._host_down.set()
            log.warning("primary host offline", host=self.spb.primary_host_id, state_ts=ts)
        else:
            log.info("stale offline STATE ignored", state_ts=ts, online_ts=self._online_ts)

    def _on_ncmd(self, raw: bytes, topic: str, *, retained: bool) -> None:
        if not raw:
            return
        if retained:
            now = self._now_ms()
            reason = "retained NCMD ignored: commands must be published with retain=false"
            self._results.append((now, json.dumps({"metric": None, "ok": False, "error": reason})))
            self._wake.set()
            return
        outcome = self.ncmd.handle(raw, topic=topic)
        now = self._now_ms()
        for result in outcome.results:
            self._results.append((now, dumps(result)))
        if outcome.rebirth:
            log.info("sparkplug rebirth requested", topic=topic)
            self._rebirth.set()
        self._wake.set()


def _disconnect_with_will(client: aiomqtt.Client) -> None:
    """MQTT 5: the DISCONNECT that ends this session carries reason 0x04 (Disconnect with
    Will Message), so the broker publishes the NDEATH Will too (Sparkplug 3.0,
    tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50)."""
    paho = client._client
    plain = paho.disconnect
    reason = ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL)

    def disconnect(
        reasoncode: ReasonCode | None = None, properties: Properties | None = None
    ) -> MQTTErrorCode:
        return plain(reasoncode=reason, properties=properties)

    paho.disconnect = disconnect  # type: ignore[method-assign]


def _alarm_items(rows: list[AlarmRow]) -> list[tuple[str, Value, int]]:
    return [(ALARM_EVENT, text, ts_ms) for _, ts_ms, text in rows]


def _history_items(rows: list[Row]) -> list[tuple[str, Value, int]]:
    items: list[tuple[str, Value, int]] = []
    for seq, ts_ms, sample in rows:
        items += [(name, value, ts_ms) for name, value in row_values(seq, sample).items()]
    return items


def row_values(seq: int, sample: StoredSample) -> dict[str, Value]:
    """The metric values of a buffered sample (typed, or an older release's dict)."""
    if isinstance(sample, tuple):
        message, schema = sample
        return sample_values(seq, message, schema)
    return long_form_values(seq, sample)


def aiomqtt_logger() -> Any:
    import logging

    mqtt_log = logging.getLogger("mqtt")
    _quiet_queue_full(mqtt_log)
    return mqtt_log

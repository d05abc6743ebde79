"""A Sparkplug primary host for tests: a real MQTT client that records what the node sends,
checks the session rules as it goes, publishes its STATE, and writes NCMDs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb

U64 = (1 << 64) - 1


@dataclass
class Received:
    topic: str
    kind: str
    raw: bytes
    payload: pb.Payload
    qos: int
    retain: bool
    at: float


def metric_value(m: pb.Payload.Metric) -> Any:
    if m.is_null:
        return None
    kind = m.WhichOneof("value")
    return None if kind is None else getattr(m, kind)


@dataclass
class Host:
    """Subscribes to ``spBv1.0/<group>/#``; ``online()``/``offline()`` publish its STATE."""

    port: int
    group: str
    host_id: str = "scada"
    username: str | None = None
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    aliases: dict[int, str] = field(default_factory=dict)
    _client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _expected_seq: int | None = None
    _bdseq: int | None = None
    _dead_bdseq: int | None = None

    async def __aenter__(self) -> Host:
        self._client = aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"host-{self.group}", username=self.username
        )
        await self._stack.enter_async_context(self._client)
        await self._client.subscribe(f"spBv1.0/{self.group}/#", qos=1)
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.publish(f"spBv1.0/STATE/{self.host_id}", b"", retain=True)
        await self._stack.aclose()

    @property
    def client(self) -> aiomqtt.Client:
        assert self._client is not None
        return self._client

    async def state(self, online: bool, timestamp_ms: int | None = None) -> int:
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        body = json.dumps({"online": online, "timestamp": ts})
        await self.client.publish(f"spBv1.0/STATE/{self.host_id}", body, qos=1, retain=True)
        return ts

    async def ncmd(self, node: str, raw: bytes) -> None:
        await self.client.publish(f"spBv1.0/{self.group}/NCMD/{node}", raw, qos=1)

    async def write(self, node: str, name: str, datatype: int, value: Any) -> None:
        """An NCMD writing one metric by name."""
        p = pb.Payload(timestamp=int(time.time() * 1000))
        m = p.metrics.add(name=name, datatype=datatype)
        if datatype == pb.Boolean:
            m.boolean_value = bool(value)
        elif datatype == pb.String:
            m.string_value = str(value)
        elif datatype == pb.Float:
            m.float_value = float(value)
        elif datatype == pb.Double:
            m.double_value = float(value)
        else:
            m.long_value = int(value) & U64
        await self.ncmd(node, p.SerializeToString())

    async def _listen(self) -> None:
        async for message in self.client.messages:
            raw = message.payload if isinstance(message.payload, bytes) else b""
            topic = str(message.topic)
            kind = topic.split("/")[2] if topic.count("/") >= 3 else "?"
            try:
                payload = pb.Payload.FromString(raw)
            except Exception:
                payload = pb.Payload()
                if kind not in ("STATE", "NCMD"):
                    self.violations.append(f"{topic}: not a Sparkplug payload")
            rec = Received(topic, kind, raw, payload, message.qos, message.retain, time.time())
            self._check(rec)
            self.received.append(rec)

    def _check(self, rec: Received) -> None:
        """The session rules a host relies on: seq order, bdSeq, births before data."""
        p = rec.payload
        if rec.retain and rec.kind not in ("STATE",):
            self.violations.append(f"{rec.kind} retained")
        if rec.kind in ("NBIRTH", "NDATA") and not p.HasField("timestamp"):
            self.violations.append(f"{rec.kind} without a payload timestamp")
        if rec.kind == "NBIRTH":
            bd = [m for m in p.metrics if m.name == "bdSeq"]
            if len(bd) != 1 or bd[0].datatype != pb.Int64:
                self.violations.append("NBIRTH without an Int64 bdSeq")
            else:
                self._bdseq = bd[0].long_value
                if self._dead_bdseq is not None and self._bdseq == self._dead_bdseq:
                    self.violations.append(f"NBIRTH reuses the bdSeq {self._bdseq} of an NDEATH")
            if rec.qos != 0:
                self.violations.append(f"NBIRTH at QoS {rec.qos}")
            if len({m.alias for m in p.metrics}) != len(p.metrics):
                self.violations.append("NBIRTH aliases not unique")
            if p.seq != 0:
                self.violations.append(f"NBIRTH seq {p.seq}, not 0")
            for m in p.metrics:
                if not m.name or not m.datatype:
                    self.violations.append(f"birth metric without name or datatype: {m}")
                if m.HasField("alias"):
                    self.aliases[m.alias] = m.name
            self._expected_seq = 1
        elif rec.kind == "NDATA":
            if self._expected_seq is None:
                self.violations.append("NDATA before any NBIRTH")
            elif p.seq != self._expected_seq:
                self.violations.append(f"NDATA seq {p.seq}, expected {self._expected_seq}")
            self._expected_seq = (p.seq + 1) % 256
            if rec.qos != 0:
                self.violations.append(f"NDATA at QoS {rec.qos}")
            for m in p.metrics:
                if m.alias not in self.aliases:
                    self.violations.append(f"NDATA alias {m.alias} not in the birth")
        elif rec.kind == "NDEATH":
            bd = [m for m in p.metrics if m.name == "bdSeq"]
            if not bd:
                self.violations.append("NDEATH without bdSeq")
            else:
                self._dead_bdseq = bd[0].long_value
            if p.HasField("seq"):
                self.violations.append("NDEATH with a seq")
            if rec.qos != 1:
                self.violations.append(f"NDEATH at QoS {rec.qos}")
            self._expected_seq = None

    # -- queries ----------------------------------------------------------------------------

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    def values(self, name: str, *, historical: bool | None = None) -> list[tuple[int, Any]]:
        """(timestamp, value) of every metric ``name`` in births and data, in arrival order."""
        out = []
        for rec in self.received:
            if rec.kind not in ("NBIRTH", "NDATA"):
                continue
            for m in rec.payload.metrics:
                mname = m.name or self.aliases.get(m.alias, "")
                if mname != name:
                    continue
                if historical is not None and bool(m.is_historical) != historical:
                    continue
                out.append((m.timestamp, metric_value(m)))
        return out

    def last(self, name: str) -> Any:
        """The current value as a host keeps it: historical values do not update it."""
        vals = self.values(name, historical=False)
        return vals[-1][1] if vals else None


async def eventually(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Wait on ``condition`` without blocking the loop the host listens on."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)

"""The example ACL of docs/fleet.md on a real Mosquitto: a station can do its Sparkplug
session under its own ids and nothing under another station's."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from controller.telemetry.sparkplug import sparkplug_b_pb2 as pb
from tests.conftest import REPO
from tests.support.broker import Broker
from tests.support.sparkplug_host import Host, eventually
from tests.test_sparkplug_session import config, running


def acl_from_docs() -> str:
    text = (REPO / "docs" / "fleet.md").read_text()
    section = text.split("## Example Mosquitto ACL", 1)[1]
    match = re.search(r"```\n(.*?)```", section, re.S)
    assert match is not None, "docs/fleet.md lost its ACL example"
    return match.group(1)


@pytest.fixture
def acl_broker() -> Iterator[Broker]:
    # Mosquitto started as root reads the ACL as its own user: a world-readable place.
    where = Path(tempfile.mkdtemp(prefix="boosterd-acl-"))
    where.chmod(0o755)
    acl = where / "boosterd.acl"
    acl.write_text(acl_from_docs())
    acl.chmod(0o644)
    broker = Broker(extra_config=f"acl_file {acl}")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
        shutil.rmtree(where, ignore_errors=True)


@pytest.mark.asyncio
async def test_the_example_acl_lets_a_station_run_its_session_and_nothing_else(
    tmp_path: Path, acl_broker: Broker
) -> None:
    creds = tmp_path / "mqtt"
    creds.write_text("bs01-sukamaju:unused\n")
    cfg = config(tmp_path, acl_broker.port, "pdam", primary_host_id="scada")
    cfg = cfg.model_copy(
        update={"uplink": cfg.uplink.model_copy(update={"credentials_file": str(creds)})}
    )
    async with Host(acl_broker.port, "pdam", username="scada") as host:
        await host.state(True)
        async with running(cfg) as (_node, buffer):
            buffer.append({"mode": "auto", "state": "auto", "values": {}, "pumps": {}})
            await eventually(lambda: len(host.of("NBIRTH")) == 1, within=10, what="NBIRTH")
            # NCMD is readable by the station: its answer comes back.
            await host.write("bs01-sukamaju", "Control/Setpoint", pb.Float, 3.2)
            await eventually(lambda: bool(host.last("Node Control/Command Result")),
                             within=10, what="the command result")  # fmt: skip
            buffer.append({"mode": "auto", "state": "filling", "values": {}, "pumps": {}})
            await eventually(lambda: host.last("Control/State") == "filling", within=10,
                             what="live data")  # fmt: skip
            # The sample from before the birth went as history and was confirmed by the
            # UNSUBSCRIBE round trip, which needs no ACL entry: it left the buffer.
            await eventually(lambda: buffer.last_acked >= 1, within=10, what="confirmation")
            assert host.values("Telemetry/Sample", historical=True)
        # The same credentials cannot speak for another station.
        async with aiomqtt.Client("127.0.0.1", acl_broker.port, username="bs01-sukamaju",
                                  identifier="impostor") as impostor:  # fmt: skip
            await impostor.publish("spBv1.0/pdam/NDATA/bs02-other", b"forged", qos=1)
            await impostor.publish("spBv1.0/pdam/NDEATH/bs01-sukamaju", b"marker", qos=1)
        await eventually(lambda: any(r.raw == b"marker" for r in host.received), within=5,
                         what="the marker after the forged message")  # fmt: skip
        await asyncio.sleep(0)
        assert not any(r.raw == b"forged" for r in host.received)

"""The poll plan: which block reads, to which slave, how often, and what they cost on the wire.

Points of one slave, one register kind and one poll class are coalesced into the
fewest blocks (at most 125 registers, 2000 bits), bridging a gap of unused registers
when reading them costs less wire time than another transaction. A block is the unit
of scheduling: each has its poll class's period.

At poll time the blocks due together are coalesced once more, across poll classes,
by the same rule (``coalesce``): a slow block next to a fast one is read in the fast
block's request when both are due, so a full cycle costs one transaction per run of
nearby registers, not one per poll class.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from controller.config.schema import BusConfig, PointConfig, StationConfig
from drivers.modbus.timing import (
    DEFAULT_TURNAROUND_S,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    READ_REQUEST_BYTES,
    char_time_s,
    read_response_bytes,
    transaction_time_s,
)


@dataclass(frozen=True, slots=True)
class PlannedPoint:
    name: str
    config: PointConfig


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers (or bits) from ``start`` on one slave."""

    bus: str
    device: str
    slave_id: int
    kind: str
    start: int
    count: int
    period_s: float
    points: tuple[PlannedPoint, ...]

    @property
    def response_bytes(self) -> int:
        return read_response_bytes(self.kind, self.count)


@dataclass(frozen=True, slots=True)
class Read:
    """One transaction: ``count`` registers (or bits) from ``start``, serving the blocks
    whose indices are ``members`` (their points share its quality)."""

    slave_id: int
    kind: str
    start: int
    count: int
    members: tuple[int, ...]

    @property
    def response_bytes(self) -> int:
        return read_response_bytes(self.kind, self.count)


def coalesce(
    blocks: Sequence[Block],
    indices: Iterable[int],
    *,
    max_gap: int,
    apart: Collection[frozenset[int]] = (),
) -> list[Read]:
    """The fewest reads that cover ``blocks[i]`` for every i in ``indices``.

    Blocks of one slave and one kind merge when at most ``max_gap`` unused registers
    (16x as many bits) lie between them and the read stays within 125 registers (2000
    bits); overlapping blocks merge too. A pair of indices in ``apart`` never shares a
    read (a slave refused it). Reads come in the order of their first block.
    """
    groups: dict[tuple[int, str], list[int]] = {}
    for i in indices:
        b = blocks[i]
        groups.setdefault((b.slave_id, b.kind), []).append(i)
    reads: list[Read] = []
    for (slave_id, kind), members in groups.items():
        bits = kind in ("coil", "discrete")
        limit = MAX_READ_BITS if bits else MAX_READ_REGISTERS
        gap_ok = max_gap * (16 if bits else 1)
        members.sort(key=lambda i: (blocks[i].start, i))
        current: list[int] = []
        start = end = 0  # end is exclusive
        for i in members:
            b = blocks[i]
            b_end = b.start + b.count
            if (
                current
                and b.start - end <= gap_ok
                and max(end, b_end) - start <= limit
                and not any(frozenset((i, j)) in apart for j in current)
            ):
                current.append(i)
                end = max(end, b_end)
                continue
            if current:
                reads.append(Read(slave_id, kind, start, end - start, tuple(current)))
            current, start, end = [i], b.start, b_end
        if current:
            reads.append(Read(slave_id, kind, start, end - start, tuple(current)))
    reads.sort(key=lambda r: min(r.members))
    return reads


@dataclass(frozen=True, slots=True)
class BusPlan:
    name: str
    bus: BusConfig
    blocks: tuple[Block, ...]
    turnaround_s: float = DEFAULT_TURNAROUND_S
    #: unused registers a read may bridge (``max_gap_registers``, or less when cheaper)
    max_gap: int = 0

    def block_time_s(self, block: Block | Read) -> float:
        b = self.bus
        return transaction_time_s(
            baudrate=b.baudrate,
            bytesize=b.bytesize,
            parity=b.parity,
            stopbits=b.stopbits,
            response_bytes=block.response_bytes,
            turnaround_s=self.turnaround_s,
        )

    def reads(self, indices: Iterable[int]) -> list[Read]:
        """The reads a cycle makes when the blocks ``indices`` are due together."""
        return coalesce(self.blocks, indices, max_gap=self.max_gap)

    def wire_time_per_s(self) -> float:
        """Average seconds of wire time per second of operation (bus load, 1.0 = full)."""
        return sum(self.block_time_s(b) / b.period_s for b in self.blocks)

    def worst_cycle_s(self) -> float:
        """Wire time of a cycle in which every block is due at once (coalesced)."""
        return sum(self.block_time_s(r) for r in self.reads(range(len(self.blocks))))


@dataclass(frozen=True, slots=True)
class PollPlan:
    buses: tuple[BusPlan, ...]

    @property
    def transactions(self) -> int:
        return sum(len(b.blocks) for b in self.buses)


def _bridge_limit(bus: BusConfig, turnaround_s: float) -> int:
    """Largest gap (in registers) that is cheaper to read through than to skip."""
    char_s = char_time_s(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
    extra_transaction = transaction_time_s(
        baudrate=bus.baudrate,
        bytesize=bus.bytesize,
        parity=bus.parity,
        stopbits=bus.stopbits,
        request_bytes=READ_REQUEST_BYTES,
        response_bytes=5,
        turnaround_s=turnaround_s,
    )
    cheaper = int(extra_transaction / (2 * char_s))
    return min(bus.max_gap_registers, cheaper)


def build_plan(cfg: StationConfig, *, turnaround_s: float = DEFAULT_TURNAROUND_S) -> PollPlan:
    """Coalesce the station's points into block reads per bus."""
    bus_plans: list[BusPlan] = []
    for bus_name, bus in cfg.buses.items():
        blocks: list[Block] = []
        max_gap = _bridge_limit(bus, turnaround_s)
        for dev_name, dev in cfg.devices.items():
            if dev.bus != bus_name:
                continue
            groups: dict[tuple[str, str], list[PlannedPoint]] = {}
            for point_name, point in dev.points.items():
                groups.setdefault((point.kind, point.poll), []).append(
                    PlannedPoint(point_name, point)
                )
            for (kind, poll), members in groups.items():
                limit = MAX_READ_BITS if kind in ("coil", "discrete") else MAX_READ_REGISTERS
                gap_ok = max_gap * (16 if kind in ("coil", "discrete") else 1)
                members.sort(key=lambda p: p.config.address)
                period = cfg.poll_period_s(poll)
                current: list[PlannedPoint] = []
                start = end = 0  # end is exclusive
                for p in members:
                    p_start = p.config.address
                    p_end = p_start + p.config.register_count
                    if current and p_start - end <= gap_ok and max(end, p_end) - start <= limit:
                        current.append(p)
                        end = max(end, p_end)
                        continue
                    if current:
                        blocks.append(
                            Block(
                                bus_name,
                                dev_name,
                                dev.slave_id,
                                kind,
                                start,
                                end - start,
                                period,
                                tuple(current),
                            )
                        )
                    current, start, end = [p], p_start, p_end
                if current:
                    blocks.append(
                        Block(
                            bus_name,
                            dev_name,
                            dev.slave_id,
                            kind,
                            start,
                            end - start,
                            period,
                            tuple(current),
                        )
                    )
        bus_plans.append(BusPlan(bus_name, bus, tuple(blocks), turnaround_s, max_gap))
    return PollPlan(tuple(bus_plans))

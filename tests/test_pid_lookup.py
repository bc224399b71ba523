"""The PID-pointer-table lookup on its own."""

import pytest

from hdl.formats import ExitCause
from hdl.pid_lookup import PIDLookup
from sim.golden import Config
from sim.memory import Memory
from tb.amaranth_bfm import simulate, stream_put

TABLE = 0x8000
CFG = Config(last_pid_index=9, pid_table=TABLE)


def lookup(requests, memory, maxphyaddr=52):
    dut = PIDLookup(maxphyaddr=maxphyaddr)

    async def bench(ctx):
        ctx.set(dut.cfg.as_value(), CFG.as_bits())
        for dest in requests:
            # The interceptor compares T with the last index and sums the entry's address as
            # it decides the posting.
            await stream_put(ctx, dut.request, {
                "vector": 0x40, "dest": dest, "icr": dest,
                "in_range": dest <= CFG.last_pid_index,
                "entry_adr": (TABLE + 8 * (dest & 0xFFFF)) >> 3})
        for _ in range(6):
            await ctx.tick()
        assert not ctx.get(dut.busy)

    return simulate(dut, bench, memory=memory, sinks=("post", "exit"))


def test_valid_entry_gives_the_pid():
    memory = Memory()
    memory.write(TABLE + 8 * 9, 0x1234_5640 | 1)
    out = lookup([9], memory)
    assert [(p.pid_line << 6, p.vector, p.icr) for p in out["post"]] == [(0x1234_5640, 0x40, 9)]
    assert [a.adr << 3 for a in memory.log] == [TABLE + 8 * 9]


def test_out_of_range_exits_without_a_read():
    memory = Memory()
    out = lookup([10, 0xFFFF_FFFF], memory)
    assert [e.cause for e in out["exit"]] == [ExitCause.INDEX_RANGE] * 2 and memory.log == []


@pytest.mark.parametrize("entry", [0, 0x1000, 0x1003, 0x1021, 0x1001 | 1 << 40])
def test_invalid_entries(entry):
    memory = Memory()
    memory.write(TABLE, entry)
    out = lookup([0], memory, maxphyaddr=40)
    assert [e.cause for e in out["exit"]] == [ExitCause.ENTRY_INVALID]


def test_bus_error():
    out = lookup([3], Memory(error_at={0}))
    assert [(e.cause, e.icr) for e in out["exit"]] == [(ExitCause.BUS_ERROR, 3)]

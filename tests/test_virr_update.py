"""The virtual-IRR update of a self-IPI on its own."""

from hdl.formats import ExitCause
from hdl.virr_update import VIRRUpdate
from sim.golden import Config
from sim.memory import Memory
from tb.amaranth_bfm import simulate, stream_put

VAPIC = 0x7000


def self_ipi(vectors, memory):
    dut = VIRRUpdate()

    async def bench(ctx):
        ctx.set(dut.cfg.as_value(), Config(vapic_page=VAPIC).as_bits())
        for v in vectors:
            # The interceptor sums the address of V's IRR register.
            await stream_put(ctx, dut.request, {"vector": v, "icr": v,
                                                "irr_adr": (VAPIC + 0x200 + 0x10 * (v >> 5)) >> 3})
        for _ in range(4):
            await ctx.tick()

    return simulate(dut, bench, memory=memory, sinks=("self_ipi", "exit"))


def test_sets_the_irr_bit_of_each_vector():
    memory = Memory()
    memory.write(VAPIC + 0x234, 0x5555_5555, size=4)       # neighbour of IRR word 3
    out = self_ipi([0x20, 0x21, 0x7F, 0xFF], memory)
    assert [int(v) for v in out["self_ipi"]] == [0x20, 0x21, 0x7F, 0xFF]
    assert memory.read(VAPIC + 0x210, 4) == 0b11
    assert memory.read(VAPIC + 0x230, 4) == 1 << 31
    assert memory.read(VAPIC + 0x270, 4) == 1 << 31
    assert memory.read(VAPIC + 0x234, 4) == 0x5555_5555
    assert all(a.lock and a.sel == 0x0F for a in memory.log)


def test_bus_error():
    out = self_ipi([0x30], Memory(error_at={1}))
    assert [e.cause for e in out["exit"]] == [ExitCause.BUS_ERROR] and out["self_ipi"] == []

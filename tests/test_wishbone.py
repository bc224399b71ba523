import random

import pytest
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl import wishbone


def test_signature_members():
    sig = wishbone.Signature(addr_width=30)
    assert sig.members["adr"] == Out(30) and sig.members["dat_r"] == In(64)
    assert set(sig.members) == {"cyc", "stb", "we", "adr", "sel", "dat_w", "dat_r", "ack",
                                "err", "lock"}
    assert sig == wishbone.Signature(addr_width=30) != wishbone.Signature(addr_width=31)


@pytest.mark.parametrize("bad", [0, -3, "8", None])
def test_signature_validation(bad):
    with pytest.raises(TypeError, match="Address width must be a positive integer"):
        wishbone.Signature(addr_width=bad)


@pytest.mark.parametrize("bad", [0, "2", None])
def test_arbiter_validation(bad):
    with pytest.raises(TypeError, match="Number of masters must be a positive integer"):
        wishbone.Arbiter(bad, addr_width=8)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_arbiter_never_switches_during_a_cycle_and_is_fair(n):
    """Random masters hold cyc for random bus cycles of several transfers; the arbiter must
    route each master's transfers to the bus unchanged, never switch a master out while its
    cyc is high, and serve every requester."""
    dut = wishbone.Arbiter(n, addr_width=8)
    rng = random.Random(n)
    served = [0] * n
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        remaining = [0] * n            # transfers left in each master's current bus cycle
        owner = None
        for cycle in range(600):
            for i, master in enumerate(dut.masters):
                if remaining[i] == 0 and rng.random() < 0.3:
                    remaining[i] = rng.randrange(1, 4)
                active = remaining[i] > 0
                ctx.set(master.cyc, active)
                ctx.set(master.stb, active)
                ctx.set(master.adr, i)
                ctx.set(master.lock, active)
                ctx.set(master.dat_w, 0x100 + i)
            ack = ctx.get(dut.bus.cyc) and rng.random() < 0.7
            ctx.set(dut.bus.ack, ack)
            ctx.set(dut.bus.dat_r, 0xAB)
            grant = ctx.get(dut.grant)
            if owner is not None and owner != grant:
                assert remaining[owner] == 0, f"cycle {cycle}: switched away from {owner}"
            if ctx.get(dut.bus.cyc):
                owner = grant
                assert ctx.get(dut.bus.adr) == grant
                assert ctx.get(dut.bus.dat_w) == 0x100 + grant and ctx.get(dut.bus.lock)
                for i, master in enumerate(dut.masters):
                    assert ctx.get(master.ack) == (ack and i == grant)
                    assert ctx.get(master.dat_r) == 0xAB
                if ack:
                    remaining[grant] -= 1
                    served[grant] += 1
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert all(count > 20 for count in served), served


def test_arbiter_grants_a_free_bus_without_delay():
    dut = wishbone.Arbiter(2, addr_width=8)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        ctx.set(dut.masters[1].cyc, 1)
        ctx.set(dut.masters[1].stb, 1)
        assert ctx.get(dut.grant) == 1 and ctx.get(dut.bus.cyc) == 1
        await ctx.tick()
        ctx.set(dut.masters[0].cyc, 1)     # master 1 still in its cycle: it keeps the bus
        assert ctx.get(dut.grant) == 1
        ctx.set(dut.masters[1].cyc, 0)     # ...and the moment it lets go, master 0 has it
        assert ctx.get(dut.grant) == 0

    sim.add_testbench(bench)
    sim.run()


def test_exclusive_arbiter_is_classic_only():
    with pytest.raises(ValueError, match="exclusive arbiter is classic only"):
        wishbone.Arbiter(2, addr_width=8, pipelined=True, exclusive=True)


def test_exclusive_arbiter_passes_the_one_requester_and_gates_answers_by_cyc():
    """One master at a time holds cyc: its request is the bus, only it sees ack and err, the
    grant and owner follow it; a lock without cyc still reaches the bus."""
    n = 3
    dut = wishbone.Arbiter(n, addr_width=8, exclusive=True)
    rng = random.Random(5)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        last = 0
        for cycle in range(300):
            holder = rng.choice([None, *range(n)])
            stray_lock = rng.randrange(n)
            for i, master in enumerate(dut.masters):
                ctx.set(master.cyc, i == holder)
                ctx.set(master.stb, i == holder)
                ctx.set(master.we, i == holder)
                ctx.set(master.adr, 0x10 + i)
                ctx.set(master.sel, 0x0F)
                ctx.set(master.dat_w, 0x100 + i)
                ctx.set(master.lock, i == holder or (holder is None and i == stray_lock))
            ack, err = rng.choice([(0, 0), (1, 0), (0, 1)])
            ctx.set(dut.bus.ack, ack)
            ctx.set(dut.bus.err, err)
            ctx.set(dut.bus.dat_r, cycle)
            assert ctx.get(dut.bus.lock) == 1, f"cycle {cycle}"
            if holder is None:
                assert ctx.get(dut.bus.cyc) == 0 and ctx.get(dut.grant) == last
            else:
                assert ctx.get(dut.bus.cyc) == ctx.get(dut.bus.stb) == ctx.get(dut.bus.we) == 1
                assert ctx.get(dut.bus.adr) == 0x10 + holder
                assert ctx.get(dut.bus.dat_w) == 0x100 + holder
                assert ctx.get(dut.bus.sel) == 0x0F
                assert ctx.get(dut.grant) == holder
                last = holder
            for i, master in enumerate(dut.masters):
                assert ctx.get(master.ack) == (ack and i == holder)
                assert ctx.get(master.err) == (err and i == holder)
                assert ctx.get(master.dat_r) == cycle
            await ctx.tick()
            assert ctx.get(dut.owner) == last

    sim.add_testbench(bench)
    sim.run()

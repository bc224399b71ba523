"""The shared testbench (`tb.testbench`) and its HDL helpers (`tb.testbench_top`) on Amaranth's
simulator, around a scripted stand-in for the unit whose ports the test drives itself: the
memory answers after the drawn wait, ``ready`` rises after the drawn stall, every protocol
rule the helpers check fails when broken, and FSM coverage sampled on changes only hits the
same bins as sampling every cycle."""

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from hdl import IPIVSystem, IPIVirtualizer, wishbone
from hdl.ipi_virtualizer import CoreSignature
from hdl.params import bus_addr_width
from sim.memory import Memory
from tb import fsm_coverage
from tb.amaranth_harness import STRESS_TIMINGS, Harness, stress_run
from tb.amaranth_testbench import _access
from tb.checker import ProtocolError
from tb.testbench import Layout, Testbench
from tb.testbench_top import TestbenchTop, layouts_for
from tb.timing import MAX_STALL, OutputStall, coin_run


class ScriptedUnit(wiring.Component):
    """The unit's ports and nothing behind them: the test drives its outputs."""

    def __init__(self):
        super().__init__({**CoreSignature().members,
                          "bus": Out(wishbone.Signature(addr_width=bus_addr_width(52)))})
        self.maxphyaddr = 52

    def elaborate(self, platform):
        return Module()


def simulate(script, **timing):
    """Run ``script(ctx, unit, bench)`` on a `ScriptedUnit` in its testbench top; the
    memory holds 0x1234 at word 0x10."""
    unit = ScriptedUnit()
    top = TestbenchTop(unit, coverage=False)
    memory = Memory()
    memory.write_word(0x10, 0x1234)
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def bench(ctx):
        read, write = _access(ctx, top)
        tb = Testbench(top.layouts, read, write, memory=memory, check=False, **timing)
        tb.reset_inputs(write)
        await script(ctx, unit, tb)
    sim.add_testbench(bench)
    sim.run()
    return memory


async def _read_request(ctx, unit, adr=0x10):
    for name, value in (("cyc", 1), ("stb", 1), ("adr", adr), ("we", 0), ("sel", 0xFF)):
        ctx.set(getattr(unit.bus, name), value)


def test_the_memory_answers_after_the_drawn_wait():
    seen = []

    async def script(ctx, unit, tb):
        await _read_request(ctx, unit)
        for _ in range(6):
            tb.wake()
            seen.append((ctx.get(unit.bus.ack), ctx.get(unit.bus.dat_r)))
            await ctx.tick()
    simulate(script, latency=3)
    assert [ack for ack, _ in seen] == [0, 0, 0, 1, 0, 0]
    assert seen[3][1] == 0x1234 and seen[4][1] != 0x1234      # data only with the ack


def test_ready_rises_after_the_drawn_stall():
    readies = []

    async def script(ctx, unit, tb):
        tb.cores[0].stalls[1].stall_at = lambda cycle: 4      # notify: a stall of 4 cycles
        ctx.set(unit.busy, 1)
        ctx.set(unit.notify.valid, 1)
        for _ in range(7):
            tb.wake()
            readies.append(ctx.get(unit.notify.ready))
            await ctx.tick()
            if readies[-1]:
                ctx.set(unit.notify.valid, 0)
    simulate(script)
    assert readies[:5] == [0, 0, 0, 0, 1]


async def _withdraw(ctx, unit, tb):
    await _read_request(ctx, unit)
    tb.wake()
    await ctx.tick()
    ctx.set(unit.bus.stb, 0)


async def _change(ctx, unit, tb):
    await _read_request(ctx, unit)
    tb.wake()
    await ctx.tick()
    ctx.set(unit.bus.adr, 0x11)


async def _stb_alone(ctx, unit, tb):
    ctx.set(unit.bus.stb, 1)


async def _offer(ctx, unit, tb):
    tb.cores[0].stalls[1].stall_at = lambda cycle: 3
    ctx.set(unit.busy, 1)
    ctx.set(unit.notify.valid, 1)
    tb.wake()
    await ctx.tick()


async def _drop(ctx, unit, tb):
    await _offer(ctx, unit, tb)
    ctx.set(unit.notify.valid, 0)


async def _overwrite(ctx, unit, tb):
    await _offer(ctx, unit, tb)
    ctx.set(unit.notify.payload.vector, 0x42)


async def _idle_offer(ctx, unit, tb):
    ctx.set(unit.gp.valid, 1)


@pytest.mark.parametrize("misbehave, message", [
    (_withdraw, "withdrew a transfer"),
    (_change, "changed its transfer"),
    (_stb_alone, "stb or lock high without cyc"),
    (_drop, "notify: valid dropped"),
    (_overwrite, "notify: payload changed"),
    (_idle_offer, "gp: valid high while busy is low"),
], ids=["withdraw", "change", "stb_without_cyc", "valid_dropped", "payload_changed",
        "valid_while_idle"])
def test_each_protocol_rule_fails_when_broken(misbehave, message):
    raised = []

    async def script(ctx, unit, tb):
        await misbehave(ctx, unit, tb)
        try:
            tb.wake()
            await ctx.tick()
            tb.wake()
        except ProtocolError as e:
            raised.append(str(e))
    simulate(script, latency=2)
    assert raised and message in raised[0], raised


def test_a_well_behaved_master_raises_nothing():
    async def script(ctx, unit, tb):
        await _read_request(ctx, unit)
        for _ in range(4):
            tb.wake()
            ack = ctx.get(unit.bus.ack)
            await ctx.tick()
            if ack:
                ctx.set(unit.bus.cyc, 0)
                ctx.set(unit.bus.stb, 0)
        assert tb.transfers == 1
    memory = simulate(script, latency=1)
    assert [a.adr for a in memory.log] == [0x10]


# -- the stall model drawn per transaction -------------------------------------------------------

def test_a_stall_is_drawn_only_when_something_can_stall():
    stall = OutputStall(random.Random(1))
    assert [stall.stall_at(c) for c in (0, 5, 9)] == [0, 0, 0]


def test_stalls_respect_the_cap_and_bursts_reach_long_stalls():
    stall = OutputStall(random.Random(2), backpressure=0.5, bursts=0.2)
    cycle, stalls = 0, []
    for _ in range(2000):
        s = stall.stall_at(cycle)
        stalls.append(s)
        cycle += s + 1 + cycle % 7
    assert max(stalls) <= MAX_STALL and max(stalls) > 20
    assert stall.longest <= MAX_STALL


def test_coin_run_counts_flips_up_to_its_cap():
    rng = random.Random(3)
    assert coin_run(rng, 0.0, 10) == 0
    runs = [coin_run(rng, 0.5, 4) for _ in range(400)]
    assert max(runs) == 4 and min(runs) == 0
    assert 0.7 < sum(runs) / len(runs) < 1.2         # about 1 - 2**-4 ... below the mean 1


def test_layout_packs_what_it_reads_back():
    layout = Layout([("a", 3), ("b", 8), ("c", 1)])
    value = layout.pack(a=5, b=0xAB, c=1)
    assert (layout.get(value, "a"), layout.get(value, "b"), layout.get(value, "c")) == \
        (5, 0xAB, 1)


# -- FSM coverage sampled on changes --------------------------------------------------------------

def _every_cycle(self, t, s):
    """The reference: sample the snapshot of the last cycle at every wake (Amaranth wakes every
    cycle)."""
    if t == 0:
        return                      # no cycle before this one
    for core in self.cores:
        self._sample(core, self._sample_args(core, self._snapshots[core.index]()))


def test_sampling_on_changes_hits_the_bins_of_sampling_every_cycle(monkeypatch):
    unit = IPIVirtualizer()
    hits = []
    for mode in ("changes", "every cycle"):
        sampler = fsm_coverage.Sampler(fsm_coverage.fsm_tables(unit), 1)
        if mode == "every cycle":
            monkeypatch.setattr(Testbench, "_cover", _every_cycle)
        for seed in range(len(STRESS_TIMINGS)):
            stress_run(seed, coverage=sampler)
        hits.append({name for name, n in sampler.hits.items() if n})
    assert hits[0] == hits[1] and len(hits[0]) > 100


@pytest.mark.parametrize("n_cores, maxphyaddr", [(None, 52), (None, 36), (3, 52), (2, 40)])
def test_the_cocotb_side_computes_the_layouts_of_the_built_top(n_cores, maxphyaddr):
    """`layouts_for` (no design built, inside cocotb) agrees with the top that is built."""
    dut = IPIVirtualizer(maxphyaddr=maxphyaddr) if n_cores is None else \
        IPIVSystem(n_cores, maxphyaddr=maxphyaddr)
    assert TestbenchTop(dut).layouts == layouts_for(n_cores, maxphyaddr)
    assert layouts_for(n_cores, maxphyaddr) != layouts_for(4, maxphyaddr)

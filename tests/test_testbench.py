"""The shared testbench (`tb.testbench`) and its HDL helpers (`tb.testbench_top`,
`tb.testbench_pipelined`) on Amaranth's simulator, around a scripted stand-in for the unit whose
ports the test drives itself: the memory answers after the drawn wait (pipelined: each request
after its drawn stall, the answers in order at their drawn cycles), ``ready`` rises after the
drawn stall, every protocol rule the helpers check fails when broken, and FSM coverage sampled
on changes only hits the same bins as sampling every cycle."""

import random
from operator import attrgetter

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
from tb.amaranth_harness import STRESS_TIMINGS, stress_run
from tb.amaranth_testbench import _access
from tb.checker import ProtocolError
from tb.pipelined_memory import PipelinedMemory
from tb.testbench import Layout, Testbench
from tb.testbench_pipelined import ANSWER_SLOTS
from tb.testbench_top import TestbenchTop, layouts_for
from tb.timing import MAX_STALL, OutputStall, coin_run


class ScriptedUnit(wiring.Component):
    """The unit's ports and nothing behind them: the test drives its outputs."""

    def __init__(self, bus="classic"):
        super().__init__({**CoreSignature().members,
                          "bus": Out(wishbone.Signature(addr_width=bus_addr_width(52),
                                                        pipelined=bus == "pipelined"))})
        self.maxphyaddr = 52
        self.bus_kind = bus

    def elaborate(self, platform):
        return Module()


def simulate(script, bus="classic", memory=None, **timing):
    """Run ``script(ctx, unit, bench)`` on a `ScriptedUnit` in its testbench top; the
    memory holds 0x1234 at word 0x10."""
    unit = ScriptedUnit(bus)
    top = TestbenchTop(unit, coverage=False)
    memory = Memory() if memory is None else memory
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


def _then_set(setup, signal, value):
    """A misbehaviour: ``setup``, then the unit's ``signal`` (a dotted path) set to ``value``."""
    async def misbehave(ctx, unit, tb):
        await setup(ctx, unit, tb)
        ctx.set(attrgetter(signal)(unit), value)
    return misbehave


def _protocol_errors(misbehave, *args, **kwargs):
    """The messages of the `ProtocolError` the testbench raises in the two cycles after
    ``misbehave`` (`simulate` with ``args``, ``kwargs``)."""
    raised = []

    async def script(ctx, unit, tb):
        await misbehave(ctx, unit, tb)
        try:
            tb.wake()
            await ctx.tick()
            tb.wake()
        except ProtocolError as e:
            raised.append(str(e))
    simulate(script, *args, **kwargs)
    return raised


async def _transfer_started(ctx, unit, tb):
    await _read_request(ctx, unit)
    tb.wake()
    await ctx.tick()


async def _stb_alone(ctx, unit, tb):
    ctx.set(unit.bus.stb, 1)


async def _offer(ctx, unit, tb):
    tb.cores[0].stalls[1].stall_at = lambda cycle: 3
    ctx.set(unit.busy, 1)
    ctx.set(unit.notify.valid, 1)
    tb.wake()
    await ctx.tick()


async def _idle_offer(ctx, unit, tb):
    ctx.set(unit.gp.valid, 1)


@pytest.mark.parametrize("misbehave, message", [
    (_then_set(_transfer_started, "bus.stb", 0), "withdrew a transfer"),
    (_then_set(_transfer_started, "bus.adr", 0x11), "changed its transfer"),
    (_stb_alone, "stb or lock high without cyc"),
    (_then_set(_offer, "notify.valid", 0), "notify: valid dropped"),
    (_then_set(_offer, "notify.payload.vector", 0x42), "notify: payload changed"),
    (_idle_offer, "gp: valid high while busy is low"),
], ids=["withdraw", "change", "stb_without_cyc", "valid_dropped", "payload_changed",
        "valid_while_idle"])
def test_each_protocol_rule_fails_when_broken(misbehave, message):
    raised = _protocol_errors(misbehave, latency=2)
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


# -- the pipelined memory (`tb.testbench_pipelined`) ----------------------------------------------

async def _present(ctx, unit, adr, *, we=0, lock=0):
    for name, value in (("cyc", 1), ("stb", 1), ("adr", adr), ("we", we), ("sel", 0xFF),
                        ("lock", lock)):
        ctx.set(getattr(unit.bus, name), value)


async def _requests(ctx, unit, tb, adrs, cycles):
    """Present ``adrs`` one after the other, each until taken, for ``cycles`` cycles; returns
    per cycle (stall, ack, err, dat_r)."""
    seen, k = [], 0
    ctx.set(unit.bus.cyc, 1)
    for _ in range(cycles):
        if k < len(adrs):
            await _present(ctx, unit, adrs[k])
        else:
            ctx.set(unit.bus.stb, 0)
        tb.wake()
        bus = unit.bus
        seen.append((ctx.get(bus.stall), ctx.get(bus.ack), ctx.get(bus.err), ctx.get(bus.dat_r)))
        taken = k < len(adrs) and not seen[-1][0]
        await ctx.tick()
        k += taken
    return seen


def test_the_pipelined_memory_takes_a_request_a_cycle_and_answers_in_order(monkeypatch):
    """Three requests back to back, nothing stalled: taken in cycles 0, 1, 2, answered in
    order 2 cycles later (latency 2), ``err`` for the word the memory refuses, garbage on
    ``dat_r`` outside the answers."""
    monkeypatch.setattr(PipelinedMemory, "stall", lambda self: 0)
    memory = Memory(error_words={0x12})
    memory.write_word(0x11, 0x5678)
    seen = []

    async def script(ctx, unit, tb):
        seen.extend(await _requests(ctx, unit, tb, [0x10, 0x11, 0x12], 7))
        assert tb.transfers == 3
    simulate(script, "pipelined", memory, latency=2)
    assert [s[0] for s in seen] == [0] * 7
    assert [(ack, err) for _, ack, err, _ in seen] == \
        [(0, 0), (0, 0), (1, 0), (1, 0), (0, 1), (0, 0), (0, 0)]
    assert seen[2][3] == 0x1234 and seen[3][3] == 0x5678 and seen[5][3] not in (0x1234, 0x5678)
    assert [a.adr for a in memory.log] == [0x10, 0x11, 0x12] and memory.log[2].error


def test_each_pipelined_request_waits_its_drawn_stall(monkeypatch):
    """The stall drawn for a request (at reset for the first, when the one before is taken
    for the others) keeps it waiting that many cycles; its answer comes ``latency`` cycles
    after it is taken."""
    stalls = iter([2, 1, 0])
    monkeypatch.setattr(PipelinedMemory, "stall", lambda self: next(stalls))
    seen = []

    async def script(ctx, unit, tb):
        seen.extend(await _requests(ctx, unit, tb, [0x10, 0x10], 7))
    simulate(script, "pipelined", latency=1)
    assert [s[0] for s in seen] == [1, 1, 0, 1, 0, 0, 0]
    assert [ack for _, ack, _, _ in seen] == [0, 0, 0, 1, 0, 1, 0]


async def _stalled(ctx, unit, tb):
    await _present(ctx, unit, 0x10)
    tb.wake()                            # cycle 0: the first request is taken
    await ctx.tick()
    await _present(ctx, unit, 0x11)      # the second, stalled (drawn 3)
    tb.wake()
    await ctx.tick()


async def _cyc_dropped(ctx, unit, tb):
    await _present(ctx, unit, 0x10)
    tb.wake()
    await ctx.tick()
    ctx.set(unit.bus.cyc, 0)
    ctx.set(unit.bus.stb, 0)


async def _lock_dropped(ctx, unit, tb):
    await _present(ctx, unit, 0x10, lock=1)
    tb.wake()
    await ctx.tick()
    ctx.set(unit.bus.stb, 0)
    ctx.set(unit.bus.lock, 0)


async def _lock_without_take(ctx, unit, tb):
    ctx.set(unit.bus.cyc, 1)
    ctx.set(unit.bus.lock, 1)


async def _too_many(ctx, unit, tb):
    for adr in range(0x10, 0x15):
        await _present(ctx, unit, adr)
        tb.wake()
        await ctx.tick()


@pytest.mark.parametrize("misbehave, stalls, message", [
    (_stb_alone, [], "stb or lock high without cyc"),
    (_then_set(_stalled, "bus.stb", 0), [0, 3], "withdrew a stalled request"),
    (_then_set(_stalled, "bus.adr", 0x12), [0, 3], "changed a stalled request"),
    (_cyc_dropped, [], "cyc fell with answers outstanding"),
    (_lock_dropped, [], "lock fell with a locked request's answer outstanding"),
    (_lock_without_take, [], "lock rose without a request taken"),
    (_too_many, [], f"more than {ANSWER_SLOTS} answers outstanding"),
], ids=["stb_without_cyc", "withdraw_stalled", "change_stalled", "cyc_dropped",
        "lock_dropped", "lock_without_take", "too_many_outstanding"])
def test_each_pipelined_protocol_rule_fails_when_broken(misbehave, stalls, message,
                                                        monkeypatch):
    stalls = iter(stalls)
    monkeypatch.setattr(PipelinedMemory, "stall", lambda self: next(stalls, 0))
    raised = _protocol_errors(misbehave, "pipelined", latency=10)
    assert raised and message in raised[0], raised


def test_an_err_answer_withdraws_a_stalled_request(monkeypatch):
    """The one way to withdraw a stalled request: the ``err`` of the one before arrives (the
    unit then issues nothing more), and a lock window may close with the last locked answer."""
    stalls = iter([0, 5])
    monkeypatch.setattr(PipelinedMemory, "stall", lambda self: next(stalls, 0))

    async def script(ctx, unit, tb):
        await _present(ctx, unit, 0x13, lock=1)        # refused: err 1 cycle later
        tb.wake()
        await ctx.tick()
        await _present(ctx, unit, 0x11, lock=1)        # stalled, then withdrawn at the err
        tb.wake()
        assert ctx.get(unit.bus.err) and ctx.get(unit.bus.stall)
        ctx.set(unit.bus.stb, 0)
        await ctx.tick()
        for name in ("cyc", "lock"):
            ctx.set(getattr(unit.bus, name), 0)
        tb.wake()
        await ctx.tick()
        tb.wake()
        assert tb.transfers == 1
    simulate(script, "pipelined", Memory(error_words={0x13}), latency=1)


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


def test_a_testbench_for_the_other_port_is_refused():
    with pytest.raises(ValueError, match="a pipelined unit in a top built for the classic port"):
        Testbench(layouts_for(None, 52), None, None, memory=Memory(), bus="pipelined")


@pytest.mark.parametrize("n_cores, maxphyaddr", [(None, 52), (None, 36), (3, 52), (2, 40)])
@pytest.mark.parametrize("bus", ["classic", "pipelined"])
def test_the_cocotb_side_computes_the_layouts_of_the_built_top(n_cores, maxphyaddr, bus):
    """`layouts_for` (no design built, inside cocotb) agrees with the top that is built."""
    dut = IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus) if n_cores is None else \
        IPIVSystem(n_cores, maxphyaddr=maxphyaddr, bus=bus)
    assert TestbenchTop(dut).layouts == layouts_for(n_cores, maxphyaddr, bus)
    assert layouts_for(n_cores, maxphyaddr, bus) != layouts_for(4, maxphyaddr, bus)
    other = {"classic": "pipelined", "pipelined": "classic"}[bus]
    assert layouts_for(n_cores, maxphyaddr, bus) != layouts_for(n_cores, maxphyaddr, other)


@pytest.mark.parametrize("bus", ["classic", "pipelined"])
def test_a_fall_of_busy_nobody_asked_for_is_kept_with_its_cycle_for_the_next_wake(bus):
    """Without ``wake_on_fall`` the fall of ``busy`` does not wake Python: the helper keeps it
    (``fell_before``) with its cycle (``fell_at``) for the next wake, and wakes at once for a
    second fall not yet reported; with ``wake_on_fall`` the fall wakes."""
    unit = ScriptedUnit(bus)
    top = TestbenchTop(unit, coverage=False)
    layout = Layout(top.layouts.status_fields)
    seen = []
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def fall(ctx):
        ctx.set(unit.busy, 1)
        await ctx.tick()
        ctx.set(unit.busy, 0)
        return ctx.get(top.cycle)

    async def bench(ctx):
        ctx.set(top.wake_on_fall, 0)
        first = await fall(ctx)
        seen.append(ctx.get(top.wake))
        await ctx.tick()
        status = ctx.get(top.status)
        seen.append((layout.get(status, "fell0"), layout.get(status, "fell_before0"),
                     ctx.get(top.fell_at[0]) == first))
        await fall(ctx)
        seen.append(ctx.get(top.wake))             # the first fall is still kept
        await ctx.tick()
        seen.append(layout.get(ctx.get(top.status), "fell_before0"))   # reported, so cleared
        ctx.set(top.wake_on_fall, 1)
        await fall(ctx)
        seen.append(ctx.get(top.wake))
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, (0, 1, True), 1, 0, 1]

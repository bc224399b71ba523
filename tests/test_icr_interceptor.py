"""The ICR-write interceptor on its own: #GP, vICR stores, classification."""

from dataclasses import replace

import pytest

from hdl.formats import ExitCause, ICRWriteKind as K
from hdl.icr_interceptor import ICRInterceptor
from sim.golden import Config, GoldenIPIVirtualizer, Outcome
from sim.memory import Memory
from tb.amaranth_bfm import simulate, stream_put

VAPIC = 0x4000
CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=3,
             pid_table=0x8000, vapic_page=VAPIC)
SINKS = ("gp", "exit", "post", "self_ipi")


def intercept(cfg, writes, memory=None, latency=0):
    dut = ICRInterceptor()
    memory = Memory() if memory is None else memory

    async def bench(ctx):
        ctx.set(dut.cfg.as_value(), cfg.as_bits())
        ctx.set(dut.accept, 1)
        for kind, value in writes:
            await stream_put(ctx, dut.icr, {"kind": kind, "data": value})
        for _ in range(12):
            await ctx.tick()
        assert not ctx.get(dut.busy)

    return simulate(dut, bench, memory=memory, latency=latency, sinks=SINKS), memory


def test_gp_without_store():
    out, memory = intercept(CFG, [(K.X2APIC_ICR, 0x2_0000_2071)])
    assert [int(v) for v in out["gp"]] == [0x2_0000_2071] and memory.log == []


@pytest.mark.parametrize("latency", [0, 2])
def test_x2apic_store_then_post(latency):
    out, memory = intercept(CFG, [(K.X2APIC_ICR, 0x2_0000_0071)], latency=latency)
    (post,) = out["post"]
    assert (post.vector, post.dest, post.icr) == (0x71, 2, 0x2_0000_0071)
    assert memory.read(VAPIC + 0x300) == 0x2_0000_0071 and len(memory.log) == 1


def test_xapic_reads_vicr_hi_and_leaves_neighbours():
    memory = Memory()
    memory.write(VAPIC + 0x304, 0xDEAD_BEEF, size=4)
    cfg = replace(CFG, x2apic=False)
    out, _ = intercept(cfg, [(K.XAPIC_ICR_HI, 0x0356_7890), (K.XAPIC_ICR_LO, 0x4071)], memory)
    (post,) = out["post"]
    assert (post.vector, post.dest, post.icr) == (0x71, 3, 0x0300_0000_0000_4071)
    assert memory.read(VAPIC + 0x304, 4) == 0xDEAD_BEEF
    assert memory.read(VAPIC + 0x310, 4) == 0x0300_0000


def test_classification_matches_the_golden_model():
    values = [0x2_0000_0071, 0x2_0000_0005, 0x2_0000_0871, 0x2_0000_1071, 0x2_0004_0071,
              0xFF_0000_0471]
    for cfg in (CFG, replace(CFG, ipiv=False)):
        out, _ = intercept(cfg, [(K.X2APIC_ICR, v) for v in values])
        causes = [e.cause for e in out["exit"]]
        golden = GoldenIPIVirtualizer()
        want = [golden.execute(cfg, Memory(), K.X2APIC_ICR, v).cause for v in values]
        # the interceptor decides all but the range and entry checks
        assert causes == [c for c in want if c not in (ExitCause.INDEX_RANGE,
                                                       ExitCause.ENTRY_INVALID, None)]


def test_self_ipi_and_senduipi():
    cfg = replace(CFG, x2apic=False)
    out, memory = intercept(cfg, [(K.XAPIC_ICR_LO, 0x4_0045), (K.SENDUIPI, 0x0100 << 32 | 0x46)])
    assert [(s.vector, s.icr) for s in out["self_ipi"]] == [(0x45, 0x4_0045)]
    assert [(p.vector, p.dest) for p in out["post"]] == [(0x46, 1)]
    assert memory.read(VAPIC + 0x310, 4) == 0x0100_0000


def test_bus_error_on_store():
    memory = Memory(error_at={0})
    out, _ = intercept(CFG, [(K.X2APIC_ICR, 0x2_0000_0071)], memory)
    assert [(e.cause, e.icr) for e in out["exit"]] == [(ExitCause.BUS_ERROR, 0x2_0000_0071)]
    assert out["post"] == []


def test_nothing_accepted_while_accept_is_low():
    dut = ICRInterceptor()

    async def bench(ctx):
        ctx.set(dut.accept, 0)
        ctx.set(dut.icr.valid, 1)
        for _ in range(5):
            assert not ctx.get(dut.icr.ready)
            await ctx.tick()
        assert not ctx.get(dut.busy)

    simulate(dut, bench)


@pytest.mark.parametrize("xapic", [False, True])
def test_post_carries_the_range_check(xapic):
    """T is compared with the last PID index (3) here, for the lookup: x2APIC T from the
    write (all 32 bits), xAPIC T from VICR_HI as it is read back."""
    cfg = replace(CFG, x2apic=not xapic)
    if xapic:
        writes = [(K.XAPIC_ICR_HI, 0x0300_0000), (K.XAPIC_ICR_LO, 0x4071),
                  (K.XAPIC_ICR_HI, 0x0400_0000), (K.XAPIC_ICR_LO, 0x4071)]
        expected = [(3, 1), (4, 0)]
    else:
        writes = [(K.X2APIC_ICR, 0x3_0000_0071), (K.X2APIC_ICR, 0x4_0000_0071),
                  (K.X2APIC_ICR, 0x1_0003_0000_0071)]
        expected = [(3, 1), (4, 0), (0x1_0003, 0)]
    out, _ = intercept(cfg, writes)
    assert [(p.dest, p.in_range) for p in out["post"]] == expected

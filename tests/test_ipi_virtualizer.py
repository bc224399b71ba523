"""`IPIVirtualizer` on Amaranth's simulator: the contract, every rule of ipiv.md §4, bus errors,
latency and back-pressure, and seeded random runs, all checked transfer by transfer against the
golden model."""

import random
from dataclasses import replace

import pytest
from amaranth.back import verilog
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hdl import IPIVirtualizer, IPIVSystem
from hdl.formats import (
    APICWriteExit, ExitCause, ICRWrite, ICRWriteKind as K, Notification, VMCSConfig,
)
from sim.golden import Config, Outcome
from sim.memory import Memory
from sim.scenarios import Request
from sim.stimulus import random_case
from tb.amaranth_harness import Harness

VAPIC, TABLE = 0x4000, 0x8000
PIDS = {1: 0x9000, 2: 0x9040, 3: 0x9080}          # T -> PID
CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=7,
             pid_table=TABLE, vapic_page=VAPIC)
XCFG = replace(CFG, x2apic=False)


def make_memory(on=(), sn=(), nv=0xF2):
    m = Memory()
    for t, pid in PIDS.items():
        m.write(TABLE + 8 * t, pid | 1)
        m.write(pid + 32, (0x0000_0100 * t) << 32 | nv << 16 | (t in sn) << 1 | (t in on))
    m.write(TABLE + 8 * 4, 0x9100)          # T = 4: valid bit clear
    m.write(TABLE + 8 * 5, 0x9141 | 1 << 52)   # T = 5: bit above MAXPHYADDR
    return m


def check(requests, memory=None, maxphyaddr=52, **harness_args):
    """Run on the RTL; the harness raises on any disagreement with the golden model."""
    memory = make_memory() if memory is None else memory
    run = Harness(IPIVirtualizer(maxphyaddr=maxphyaddr), memory, **harness_args).run(requests)
    assert run.grant_switches_in_cycle == 0
    check_locked_pid_writes(run)
    return run


def check_locked_pid_writes(run):
    """Every write outside the virtual-APIC page's ICR words is the second half of a locked
    read-modify-write of the same word: same lock bus cycle, preceded by its locked read."""
    log, locks = run.memory_log, run.lock_cycles
    for i, access in enumerate(log):
        if access.write and not access.error and access.lock:
            assert i > 0 and not log[i - 1].write and log[i - 1].adr == access.adr
            assert locks[i] is not None and locks[i] == locks[i - 1]
        elif access.write and not access.error:
            assert access.adr in {(VAPIC + 0x300) >> 3, (VAPIC + 0x310) >> 3} or \
                access.sel in (0x0F, 0xFF)


def x2(value, cfg=CFG):
    return Request(cfg, K.X2APIC_ICR, value)


def xapic(dest, low, cfg=XCFG):
    return [Request(cfg, K.XAPIC_ICR_HI, dest << 24), Request(cfg, K.XAPIC_ICR_LO, low)]


def outcomes(run):
    return [(r.outcome, r.cause) for r in run.results]


# -- the contract ----------------------------------------------------------------------------

def test_signature_matches_interface_md():
    dut = IPIVirtualizer()
    members = dut.signature.members
    assert members["cfg"] == In(VMCSConfig)
    assert members["icr"] == In(stream.Signature(ICRWrite))
    assert members["exit"] == Out(stream.Signature(APICWriteExit))
    assert members["notify"] == Out(stream.Signature(Notification))
    assert members["self_ipi"] == Out(stream.Signature(8))
    assert members["gp"] == Out(stream.Signature(64))
    assert members["busy"] == Out(1)
    bus = members["bus"].signature.members
    widths = {"cyc": 1, "stb": 1, "we": 1, "adr": 49, "sel": 8, "dat_w": 64, "lock": 1}
    for name, width in widths.items():
        assert bus[name] == Out(width), name
    for name, width in {"dat_r": 64, "ack": 1, "err": 1}.items():
        assert bus[name] == In(width), name
    assert IPIVirtualizer(maxphyaddr=36).signature.members["bus"].signature.members["adr"] == \
        Out(33)


@pytest.mark.parametrize("bad", [35, 53, 0, "52", 52.0, True, None])
def test_maxphyaddr_must_be_36_to_52(bad):
    with pytest.raises(ValueError, match=r"maxphyaddr must be an integer from 36 to 52, not"):
        IPIVirtualizer(maxphyaddr=bad)


@pytest.mark.parametrize("bad", [0, -1, 2.0, "2", True])
def test_system_core_count_validation(bad):
    with pytest.raises(ValueError, match="n_cores must be a positive integer"):
        IPIVSystem(bad)


@pytest.mark.parametrize("maxphyaddr", [36, 52])
def test_verilog_convert(maxphyaddr):
    text = verilog.convert(IPIVirtualizer(maxphyaddr=maxphyaddr), name="ipiv")
    assert "module ipiv" in text and "bus__lock" in text and "icr__payload" in text


def test_verilog_convert_system():
    text = verilog.convert(IPIVSystem(2), name="ipiv_system")
    assert "module ipiv_system" in text and "cores__1__notify__valid" in text


# -- every rule of ipiv.md §4 ----------------------------------------------------------------

@pytest.mark.parametrize("bit", [b for b in range(8, 32)])
@pytest.mark.parametrize("mode", ["x2apic", "xapic"])
def test_each_icr_bit(bit, mode):
    low = 0x71 | 1 << bit
    requests = [x2(0x2_0000_0000 | low)] if mode == "x2apic" else xapic(2, low)
    run = check(requests)
    result = run.results[-1]
    if bit == 14:
        assert result.outcome is Outcome.POSTED
    elif mode == "x2apic" and bit in {13, 16, 17} | set(range(20, 32)):
        assert result.outcome is Outcome.GP
    elif mode == "xapic" and bit == 18:
        assert result.outcome is Outcome.SELF_IPI
    else:
        assert result.cause is ExitCause.UNSUPPORTED


@pytest.mark.parametrize("vector", [0, 1, 14, 15, 16, 17, 0x7F, 0x80, 0xFF])
def test_vectors(vector):
    run = check([x2(0x2_0000_0000 | vector)] + xapic(3, vector))
    expected = Outcome.EXIT if vector < 16 else Outcome.POSTED
    assert [r.outcome for r in run.results] == [expected, Outcome.STORED, expected]


def test_destinations_and_entries():
    run = check([x2(t << 32 | 0x40) for t in (1, 7, 8, 0xFFFF_FFFF, 4, 5, 0, 6)])
    assert outcomes(run) == [
        (Outcome.POSTED, None), (Outcome.EXIT, ExitCause.ENTRY_INVALID),
        (Outcome.EXIT, ExitCause.INDEX_RANGE), (Outcome.EXIT, ExitCause.INDEX_RANGE),
        (Outcome.EXIT, ExitCause.ENTRY_INVALID), (Outcome.EXIT, ExitCause.ENTRY_INVALID),
        (Outcome.EXIT, ExitCause.ENTRY_INVALID), (Outcome.EXIT, ExitCause.ENTRY_INVALID)]


def test_xapic_broadcast_exits_even_in_range():
    run = check(xapic(0xFF, 0x40, replace(XCFG, last_pid_index=0x1FF)))
    assert run.results[-1].cause is ExitCause.BROADCAST


@pytest.mark.parametrize("maxphyaddr", [36, 40, 52])
def test_entry_bits_at_and_above_maxphyaddr(maxphyaddr):
    memory = make_memory()
    memory.write(TABLE + 8 * 6, 0x9041 | 1 << maxphyaddr)
    memory.write(TABLE + 8 * 7, 0x9041 | 1 << (maxphyaddr - 1))
    run = check([x2(6 << 32 | 0x40), x2(7 << 32 | 0x40)], memory, maxphyaddr=maxphyaddr)
    assert outcomes(run) == [(Outcome.EXIT, ExitCause.ENTRY_INVALID), (Outcome.POSTED, None)]


@pytest.mark.parametrize("bit", range(1, 6))
def test_entry_reserved_bits(bit):
    memory = make_memory()
    memory.write(TABLE + 8 * 6, 0x9041 | 1 << bit)
    run = check([x2(6 << 32 | 0x40)], memory)
    assert run.results[0].cause is ExitCause.ENTRY_INVALID


def test_on_and_sn_suppress_notification():
    run = check([x2(t << 32 | 0x40) for t in (1, 2, 3, 1)], make_memory(on={1}, sn={2}))
    assert [r.notify for r in run.results] == [None, None, (0xF2, 0x300), None]
    assert run.suppressed == 3 and run.posted == 4


def test_xapic_host_ndst():
    run = check([x2(3 << 32 | 0x40, replace(CFG, host_x2apic=False))])
    assert run.results[0].notify == (0xF2, 3)


def test_self_ipi():
    run = check([Request(XCFG, K.XAPIC_ICR_LO, 0x4_0045),
                 Request(replace(XCFG, vid=False), K.XAPIC_ICR_LO, 0x4_0046),
                 Request(replace(XCFG, ipiv=False), K.XAPIC_ICR_LO, 0x4_00F7)])
    assert outcomes(run) == [(Outcome.SELF_IPI, None), (Outcome.EXIT, ExitCause.UNSUPPORTED),
                             (Outcome.SELF_IPI, None)]
    assert [e.payload for e in run.events if e.stream == "self_ipi"] == [(0x45,), (0xF7,)]


def test_senduipi_both_modes():
    run = check([Request(CFG, K.SENDUIPI, 3 << 32 | 0x51),
                 Request(XCFG, K.SENDUIPI, 0x0200 << 32 | 0x52),
                 Request(XCFG, K.SENDUIPI, 0xFF00 << 32 | 0x53)])
    assert outcomes(run) == [(Outcome.POSTED, None), (Outcome.POSTED, None),
                             (Outcome.EXIT, ExitCause.BROADCAST)]


def test_gp_then_next_request():
    run = check([x2(2 << 32 | 0x2000 | 0x40), x2(2 << 32 | 0x40)])
    assert outcomes(run) == [(Outcome.GP, None), (Outcome.POSTED, None)]
    assert run.memory_log[0].write and run.memory_log[0].data == 2 << 32 | 0x40


def test_ipiv_disabled():
    run = check([x2(2 << 32 | 0x40, replace(CFG, ipiv=False))] +
                xapic(2, 0x40, replace(XCFG, ipiv=False)))
    assert [r.cause for r in run.results] == [ExitCause.DISABLED, None, ExitCause.DISABLED]


# -- bus errors ------------------------------------------------------------------------------

BUS_ERROR_CASES = {
    "x2apic post": ([x2(2 << 32 | 0x40)], 6),
    "xapic post": (xapic(2, 0x40), 8),
    "self-ipi": ([Request(XCFG, K.XAPIC_ICR_LO, 0x4_0045)], 4),
    "senduipi xapic": ([Request(XCFG, K.SENDUIPI, 0x0200 << 32 | 0x52)], 7),
    "suppressed post": ([x2(1 << 32 | 0x40)], 5),
}


@pytest.mark.parametrize("case", BUS_ERROR_CASES)
def test_bus_error_at_each_step(case):
    requests, transfers = BUS_ERROR_CASES[case]
    for step in range(transfers):
        memory = make_memory(on={1})
        memory.error_at = {step}
        run = check(requests + [x2(3 << 32 | 0x41)], memory, latency=step % 3)
        errors = [r for r in run.results if r.cause is ExitCause.BUS_ERROR]
        assert len(errors) == 1, (case, step)
        assert run.results[-1].outcome is Outcome.POSTED      # the unit carries on


# -- latency, wait states, back-pressure -----------------------------------------------------

MIX = [x2(1 << 32 | 0x40), x2(2 << 32 | 0x41), *xapic(3, 0x42), x2(9 << 32 | 0x40),
       x2(2 << 32 | 0x2000), Request(XCFG, K.XAPIC_ICR_LO, 0x4_0045), x2(3 << 32 | 0x43),
       x2(4 << 32 | 0x44), *xapic(0xFF, 0x45), x2(2 << 32 | 0x46)]


@pytest.mark.parametrize("latency", range(5))
@pytest.mark.parametrize("backpressure", [0.0, 0.6])
def test_latency_and_backpressure(latency, backpressure):
    run = check(MIX, latency=latency, backpressure=backpressure, seed=latency)
    assert {e.stream for e in run.events} == {"exit", "notify", "self_ipi", "gp"}
    if backpressure:
        assert any(e.taken_cycle > e.valid_cycle for e in run.events)


def test_random_wait_states():
    check(MIX * 3, latency=1, wait_states=0.5, backpressure=0.3, seed=7)


def test_latency_targets():
    """ipiv.md's goal: a virtualized IPI at most 2 cycles beyond its 6 transfers, and
    back-to-back IPIs with no idle bus cycle."""
    for latency in (0, 1, 4):
        memory = make_memory()
        run = check([x2(t << 32 | 0x40) for t in (1, 2, 3)], memory, latency=latency)
        accepted = [c for c, _ in run.accepted]
        notifies = [e.valid_cycle for e in run.events if e.stream == "notify"]
        per_transfer = latency + 1
        assert notifies[0] - accepted[0] <= 6 * per_transfer + 2
        assert accepted[1] - accepted[0] == 6 * per_transfer     # the bus never idles
        assert all(accepted[0] < c <= accepted[2] for c in run.bus_cycles[:1])
        assert len([c for c in run.bus_cycles if accepted[0] < c <= accepted[2]]) == \
            accepted[2] - accepted[0]


# -- seeded random runs against the golden model ---------------------------------------------

@pytest.mark.parametrize("seed", range(48))
def test_random(seed):
    rng = random.Random(seed)
    maxphyaddr = rng.choice([36, 39, 46, 52])
    case = random_case(rng, maxphyaddr=maxphyaddr, count=30, errors=rng.random() < 0.3)
    run = Harness(IPIVirtualizer(maxphyaddr=maxphyaddr), case.memory,
                  latency=rng.randrange(5), wait_states=rng.choice([0.0, 0.3]),
                  backpressure=rng.choice([0.0, 0.5]), seed=seed).run(case.requests)
    assert len(run.results) == len(case.requests)
    assert case.memory.written_words() <= case.allowed_words()
    assert run.grant_switches_in_cycle == 0
    log, locks = run.memory_log, run.lock_cycles
    for i, access in enumerate(log):
        if access.write and access.lock and not access.error:
            assert not log[i - 1].write and log[i - 1].adr == access.adr
            assert locks[i] == locks[i - 1] is not None

"""The directed suite: one family of cases per rule of ``docs/architecture.md`` §4 and
``docs/interface.md``, defined once as data (plain Python) and run on both simulator backends.

Each `DirectedCase` names its rule, lays out a small VM in a `Memory`, and lists ICR writes
with the outcome the *spec* gives for each (`Expect`, written from the spec text, not from
the golden model), optional memory ``checks``, and the memory timings to run it under. A
backend runs every case under each of its timings with `tb.checker.Checker` (which compares
every transfer and output with the golden model) and then calls `verify`, so a rule is checked
even if the golden model and the gateware shared a misreading:

- Amaranth's simulator: ``tests/test_ipi_virtualizer.py::test_directed``, one pytest item a
  case (`all_cases`);
- cocotb: ``tests/test_cocotb_unit.py::test_directed``, one simulator run a family
  (`FAMILIES`, `family`), through ``tb.cocotb.unit_tests.directed``.
"""

from dataclasses import dataclass, field, replace

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE,
    APIC_WRITE_QUALIFICATION_ICR, BUS_BYTES, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR,
    ICR_RESERVED_MASK, DeliveryMode, DestMode, ExitCause, ICRLow, ICRWriteKind as K, NotifyInfo,
    PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES, PIR_WORDS, POSTED_INTR_VECTOR, SEL_QWORD,
    SendUIPIData, Shorthand, TriggerMode, WRMSR_QUALIFICATION, X2APICICR, XAPICICRHigh,
    pid_pointer_entry,
)
from sim.golden import Config, GoldenIPIVirtualizer, Outcome
from sim.memory import Access, Memory
from sim.scenarios import Request
from sim.vm_layout import ndst_of, write_pid_pointer_entry, write_routing


__all__ = ["ANY", "Expect", "DirectedCase", "TIMINGS", "FAMILIES", "family", "all_cases",
           "case", "verify", "vm_memory", "low", "x2", "xapic", "VAPIC", "TABLE", "PIDS",
           "NDST", "CFG", "XCFG"]

VAPIC = 0x4000
TABLE = 0x8000
PIDS = {1: 0x9000, 2: 0x9040, 3: 0x9080}       # T -> PID (T = 0 has no vCPU: entry 0)
LAST = 7
CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=LAST,
             pid_table=TABLE, vapic_page=VAPIC)
XCFG = replace(CFG, x2apic=False)
NDST = {t: 0x10 + t for t in PIDS}             # physical APIC ID of the pCPU of each target

#: (memory latency, wait-state probability, back-pressure probability): an immediate memory,
#: a slow memory with back-pressure, random wait states with back-pressure.
TIMINGS = ((0, 0.0, 0.0), (4, 0.0, 0.4), (1, 0.35, 0.4))

ANY = "any"     # an `Expect` field that is not checked


@dataclass(frozen=True)
class Expect:
    """What the spec says one ICR write does; ``notify``/``vector`` `ANY`: not checked,
    None: must be absent."""
    outcome: Outcome
    cause: ExitCause | None = None
    notify: object = ANY
    vector: object = ANY
    reason: object = ANY        # of an exit: (basic exit reason, qualification)

    def mismatch(self, result):
        """A description of how ``result`` (a `sim.golden.Result`) differs, or None."""
        got = Expect(result.outcome, result.cause,
                     result.notify if self.notify != ANY else ANY,
                     result.vector if self.vector != ANY else ANY,
                     (result.reason, result.qualification) if self.reason != ANY else ANY)
        return None if got == self else f"spec: {self}, got {got}"


@dataclass
class DirectedCase:
    """One directed case: its unique ``name``, the ``rule`` it checks, the initial ``memory``,
    the ICR writes (`sim.scenarios.Request`), one `Expect` per write (or None: see
    ``checks``), the design's MAXPHYADDR, memory ``checks`` (callables(memory before, memory
    after, results) raising AssertionError) and the ``timings`` (of `TIMINGS`) to run it
    under."""
    name: str
    rule: str
    memory: Memory
    requests: list
    expect: list | None
    maxphyaddr: int = 52
    checks: list = field(default_factory=list)
    timings: tuple = TIMINGS

    def __post_init__(self):
        if self.expect is not None and len(self.requests) != len(self.expect):
            raise ValueError(f"{self.name}: {len(self.requests)} requests, "
                             f"{len(self.expect)} expectations")


def verify(case, results, before, after):
    """The spec's expectations of ``case`` on one run: ``results`` (golden `Result` per
    request, in order, as the checker resolved them), the memory ``before`` and ``after``."""
    assert len(results) == len(case.requests), \
        f"{case.name}: {len(results)} results for {len(case.requests)} requests"
    for k, (expect, result) in enumerate(zip(case.expect or [], results)):
        problem = expect.mismatch(result)
        assert problem is None, f"{case.name} ({case.rule}), request {k}: {problem}"
    for check in case.checks:
        check(before, after, results)


# -- building blocks ---------------------------------------------------------------------------

def _entry(t):
    """The byte address of entry ``t`` of the PID-pointer table."""
    return TABLE + PID_POINTER_ENTRY_BYTES * t


def vm_memory(*, on=(), sn=(), host_x2apic=True, nv=POSTED_INTR_VECTOR):
    """PID-pointer table with T = 1..3 valid, T = 4 valid bit clear, T = 5 a bit above
    MAXPHYADDR 52 set; PIDs with the given ON/SN; some VICR neighbours non-zero."""
    m = Memory()
    for t, pid in PIDS.items():
        write_pid_pointer_entry(m, TABLE, t, pid)
        write_routing(m, pid, on=int(t in on), sn=int(t in sn), nv=nv,
                      ndst=ndst_of(NDST[t], host_x2apic=host_x2apic))
    m.write(_entry(4), PIDS[1] + 0x100)                                 # valid bit clear
    m.write(_entry(5), pid_pointer_entry(PIDS[1] + 0x100) | 1 << 52)
    m.write(VAPIC + APIC_OFFSET_ICR_LO + 4, 0xA5A5_A5A5, size=4)   # bytes 304H..307H
    m.write(VAPIC + APIC_OFFSET_ICR_HI + 4, 0x5A5A_5A5A, size=4)   # bytes 314H..317H
    return m


def low(vector=0x40, **fields):
    return ICRLow.const({"vector": vector, **fields}).as_bits()


def x2(dest, icr_low, cfg=CFG):
    return Request(cfg, K.X2APIC_ICR, X2APICICR.const({"dest": dest}).as_bits() | icr_low)


def xapic(dest, icr_low, cfg=XCFG):
    return [Request(cfg, K.XAPIC_ICR_HI, XAPICICRHigh.const({"dest": dest}).as_bits()),
            Request(cfg, K.XAPIC_ICR_LO, icr_low)]


def self_ipi(vector, cfg=XCFG, **fields):
    return Request(cfg, K.XAPIC_ICR_LO, low(vector, shorthand=Shorthand.SELF, **fields))


POSTED = Expect(Outcome.POSTED)
QUIET = Expect(Outcome.POSTED, notify=None)       # posted, no notification
STORED = Expect(Outcome.STORED)
GP = Expect(Outcome.GP)


def _exit(cause):
    return Expect(Outcome.EXIT, cause)


# Basic exit reason and qualification of an APIC-write exit, and of the intercept's WRMSR exit.
APIC_WRITE = (EXIT_REASON_APIC_WRITE, APIC_WRITE_QUALIFICATION_ICR)
WRMSR = (EXIT_REASON_WRMSR, WRMSR_QUALIFICATION)
INTERCEPTED = Expect(Outcome.EXIT, ExitCause.DISABLED, reason=WRMSR)


def _notify(t):
    return Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[t]))


def _pir(memory, t):
    return sum(memory.read(PIDS[t] + BUS_BYTES * k) << (64 * k) for k in range(PIR_WORDS))


def _one(name, rule, memory, requests, expect, **kwargs):
    return [DirectedCase(name, rule, memory, requests, expect, **kwargs)]


# -- the rules -------------------------------------------------------------------------------

def icr_hi_store():
    """§4.1: a write to 310H stores value & 0xFF000000 in VICR_HI and does nothing else."""
    value = 0x1234_5678_ABCD_EF01
    def check(before, after, results):
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI, 4) == value & 0xFF00_0000
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI + 4, 4) == 0x5A5A_5A5A     # neighbours
        vicr_hi_word = (VAPIC + APIC_OFFSET_ICR_HI) // BUS_BYTES
        assert after.words.keys() - before.words.keys() <= {vicr_hi_word}
    return _one("icr_hi_store", "xAPIC write to 310H: stored masked, nothing else",
                vm_memory(), [Request(XCFG, K.XAPIC_ICR_HI, value)], [STORED], checks=[check])


def x2apic_gp():
    """§4.2: #GP if any of EAX bits 31:20, 17:16, 13 is set: no store, no exit, no transfer
    at all; the next (legal) write is handled as usual."""
    bits = [13, 16, 17] + list(range(20, 32))
    requests = [x2(2, low(0x40) | 1 << b) for b in bits] + [x2(2, low(0x41))]
    word = GoldenIPIVirtualizer().word(VAPIC + APIC_OFFSET_ICR_LO)
    def check(before, after, results):
        # the first transfer of the run is the store of the last (legal) write
        assert after.log[0] == Access(True, word, SEL_QWORD, requests[-1].value, False), \
            after.log[0]
        assert after.read(VAPIC + APIC_OFFSET_ICR_LO) == 2 << 32 | 0x41
    return _one("x2apic_gp", "x2APIC reserved ICR bits: #GP, nothing stored", vm_memory(),
                requests, [GP] * len(bits) + [POSTED], checks=[check])


def x2apic_store():
    """§4.2: the 64-bit value is stored at 300H; 310H is not written in x2APIC mode."""
    value = X2APICICR.const({"dest": 0x1_0000}).as_bits() | low(0x40, dest_mode=DestMode.LOGICAL)
    def check(before, after, results):
        assert after.read(VAPIC + APIC_OFFSET_ICR_LO) == value
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI, 8) == \
            before.read(VAPIC + APIC_OFFSET_ICR_HI, 8)
    return _one("x2apic_store", "x2APIC ICR write: 64-bit store at 300H only", vm_memory(),
                [Request(CFG, K.X2APIC_ICR, value)], [_exit(ExitCause.UNSUPPORTED)],
                checks=[check])


def senduipi():
    """§4.3: SENDUIPI acts as an ICR write with V = UPID.NV, T = UPID.NDST (xAPIC: bits
    15:8), storing x2APIC ``NDST << 32 | NV`` at 300H, xAPIC ``(NDST & 0xFF00) << 16`` at 310H
    and NV at 300H."""
    x2_value = SendUIPIData.const({"nv": 0x51, "ndst": 3}).as_bits() | 0xABCDEF << 8  # junk
    xa_value = SendUIPIData.const({"nv": 0x52, "ndst": 0x0201}).as_bits()
    bcast = SendUIPIData.const({"nv": 0x53, "ndst": 0xFF00}).as_bits()
    def check(before, after, results):
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI, 4) == 0xFF00 << 16
        assert after.read(VAPIC + APIC_OFFSET_ICR_LO, 4) == 0x53
        assert _pir(after, 3) >> 0x51 & 1 and _pir(after, 2) >> 0x52 & 1
    return _one("senduipi", "SENDUIPI in both APIC modes", vm_memory(),
                [Request(CFG, K.SENDUIPI, x2_value), Request(XCFG, K.SENDUIPI, xa_value),
                 Request(XCFG, K.SENDUIPI, bcast)],
                [_notify(3), _notify(2), _exit(ExitCause.BROADCAST)], checks=[check])


def _field_variants():
    """ICR low values that are not virtualizable (shorthand, trigger, bit 12, logical,
    delivery mode), each alone."""
    out = [("shorthand", low(0x40, shorthand=s)) for s in
           (Shorthand.ALL_INCLUDING_SELF, Shorthand.ALL_EXCLUDING_SELF)]
    out += [("level trigger", low(0x40, trigger=TriggerMode.LEVEL)),
            ("bit 12", low(0x40, delivery_status=1)),
            ("logical", low(0x40, dest_mode=DestMode.LOGICAL))]
    out += [(f"delivery {m.name}", low(0x40, delivery_mode=m)) for m in DeliveryMode
            if m is not DeliveryMode.FIXED]
    return out


def unsupported_fields():
    """§4: virtualized only if shorthand 00, edge, bit 12 = 0, physical, fixed; bit 14 is
    ignored. Each other field value exits (UNSUPPORTED), in both modes."""
    requests, expect = [], []
    for _, value in _field_variants():
        requests += [x2(2, value)] + xapic(2, value)
        expect += [_exit(ExitCause.UNSUPPORTED), STORED, _exit(ExitCause.UNSUPPORTED)]
    requests += [x2(2, low(0x42, level=1))] + xapic(3, low(0x43, level=1))
    expect += [POSTED, STORED, POSTED]
    return _one("unsupported_fields", "non-virtualizable ICR fields exit; the level bit is "
                "ignored", vm_memory(), requests, expect)


def _icr_bit_expect(mode, bit):
    """The spec's outcome of ICR low 0x71 with one more bit set (vector 71H, T = 2)."""
    if bit == 14:                                           # the level bit: ignored
        return POSTED
    if mode == "x2apic" and ICR_RESERVED_MASK >> bit & 1:   # §4.2
        return GP
    if mode == "xapic" and bit == 18:                       # shorthand self: a self-IPI
        return Expect(Outcome.SELF_IPI, vector=0x71)
    return _exit(ExitCause.UNSUPPORTED)


def icr_bits():
    """§4: each bit 31:8 of the ICR alone (vector 71H) in both modes: the level bit is
    ignored, x2APIC reserved bits #GP, the xAPIC self shorthand is a self-IPI, everything else
    exits (UNSUPPORTED). One case a bit, each under one of the timings in turn."""
    cases = []
    for mode in ("x2apic", "xapic"):
        for bit in range(8, 32):
            value = low(0x71) | 1 << bit
            requests = [x2(2, value)] if mode == "x2apic" else xapic(2, value)
            expect = [_icr_bit_expect(mode, bit)]
            if mode == "xapic":
                expect = [STORED] + expect
            cases.append(DirectedCase(f"icr_bits[{mode} bit {bit}]", f"ICR bit {bit} alone, "
                                      f"{mode}", vm_memory(), requests, expect,
                                      timings=(TIMINGS[bit % len(TIMINGS)],)))
    return cases


def x2apic_self_shorthand():
    """§4: in x2APIC mode a self-IPI through 830H (shorthand 01) is not this unit's: it exits."""
    return _one("x2apic_self_shorthand", "x2APIC ICR write with shorthand self exits",
                vm_memory(), [x2(0, low(0x40, shorthand=Shorthand.SELF))],
                [_exit(ExitCause.UNSUPPORTED)])


def xapic_reserved():
    """§4 [model decision]: in xAPIC mode reserved bits 31:20, 17:16, 13 make the write
    non-virtualizable (an exit, not a #GP)."""
    requests, expect = [], []
    for b in (b for b in range(32) if ICR_RESERVED_MASK >> b & 1):
        requests += xapic(2, low(0x40) | 1 << b)
        expect += [STORED, _exit(ExitCause.UNSUPPORTED)]
    return _one("xapic_reserved", "xAPIC reserved ICR bits exit", vm_memory(), requests, expect)


def illegal_vector():
    """§4 step 1: V < 16 exits (both modes), V >= 16 does not."""
    requests, expect = [], []
    for v in (0, 1, 14, 15, 16, 17, 0x7F, 0x80, 0xFF):
        requests += [x2(2, low(v))] + xapic(3, low(v))
        e = _exit(ExitCause.ILLEGAL_VECTOR) if v < 16 else POSTED
        expect += [e, STORED, e]
    return _one("illegal_vector", "vectors below 16 exit", vm_memory(), requests, expect)


def xapic_broadcast():
    """§4 [model decision]: xAPIC T = 0xFF is never virtualized, even within the table."""
    cfg = replace(XCFG, last_pid_index=0x1FF)
    return _one("xapic_broadcast", "xAPIC physical broadcast exits", vm_memory(),
                xapic(0xFF, low(0x40), cfg), [STORED, _exit(ExitCause.BROADCAST)])


def index_range():
    """§4 step 2: T > last PID-pointer index exits, and no entry is read; T is 32 bits wide in
    x2APIC mode (no aliasing of 0x1_0002 onto 2)."""
    def check(before, after, results):
        table_words = {_entry(t) // BUS_BYTES for t in range(16)}
        assert not [a for a in after.log if not a.write and a.adr in table_words
                    and (a.adr << 3) - TABLE > PID_POINTER_ENTRY_BYTES * LAST]
    requests = [x2(t, low(0x40)) for t in (LAST + 1, 0x1_0002, 0xFFFF_FFFF)] + \
        xapic(LAST + 1, low(0x41))
    return _one("index_range", "destination beyond the last index exits without a table read",
                vm_memory(), requests,
                [_exit(ExitCause.INDEX_RANGE)] * 3 + [STORED, _exit(ExitCause.INDEX_RANGE)],
                checks=[check])


def destinations():
    """§4 steps 2-3 in one run: a valid entry posts; the last index with an empty entry, T = 0,
    a clear valid bit and a bit above MAXPHYADDR exit ENTRY_INVALID; beyond the last index
    (by one, and all ones) INDEX_RANGE."""
    dests = (1, LAST, LAST + 1, 0xFFFF_FFFF, 4, 5, 0, 6)
    expect = [POSTED, _exit(ExitCause.ENTRY_INVALID), _exit(ExitCause.INDEX_RANGE),
              _exit(ExitCause.INDEX_RANGE)] + [_exit(ExitCause.ENTRY_INVALID)] * 4
    return _one("destinations", "destinations and entries in turn", vm_memory(),
                [x2(t, low(0x40)) for t in dests], expect)


def entry_invalid():
    """§2/§4 step 3: an entry is usable only if bits 5:0 == 000001b and no bit at or above
    MAXPHYADDR is set."""
    m = vm_memory()
    entries = [pid_pointer_entry(PIDS[1]) | 1 << bit for bit in range(1, 6)] + [PIDS[1], 0]
    requests, expect = [], []
    for i, entry in enumerate(entries):
        t = 8 + i
        m.write(_entry(t), entry)
        requests.append(x2(t, low(0x40), replace(CFG, last_pid_index=0x20)))
        expect.append(_exit(ExitCause.ENTRY_INVALID))
    requests += [x2(4, low(0x40)), x2(5, low(0x40)), x2(0, low(0x40))]
    expect += [_exit(ExitCause.ENTRY_INVALID)] * 3
    return _one("entry_invalid", "invalid PID-pointer entries exit", m, requests, expect)


def entry_maxphyaddr(maxphyaddr):
    """§2: a set bit MAXPHYADDR invalidates an entry, bit MAXPHYADDR - 1 does not (it is part
    of the PID address)."""
    def build():
        m = vm_memory()
        m.write(_entry(6), pid_pointer_entry(PIDS[1]) | 1 << maxphyaddr)
        m.write(_entry(7), pid_pointer_entry(PIDS[2]) | 1 << (maxphyaddr - 1))
        # T = 7's PID is at 9040H + bit MAXPHYADDR - 1: empty memory, so ON = SN = 0,
        # NV = NDST = 0
        return _one(f"entry_maxphyaddr_{maxphyaddr}", f"entry bits at and above MAXPHYADDR "
                    f"{maxphyaddr}", m, [x2(6, low(0x40)), x2(7, low(0x41))],
                    [_exit(ExitCause.ENTRY_INVALID), Expect(Outcome.POSTED, notify=(0, 0))],
                    maxphyaddr=maxphyaddr)
    return build


def pir_rmw():
    """§4 step 4: a locked RMW sets bit V of the PIR; only the word holding bit V changes, and a
    bit already set stays set."""
    m = vm_memory(on={1})
    m.write(PIDS[1] + 8, 0x8000_0000_0000_0001)
    def check(before, after, results):
        pir = _pir(after, 1)
        assert pir == (0x8000_0000_0000_0001 << 64) | 1 << 0x40 | 1 << 0x7F | 1 << 0xFF | 1 << 0x10
        for a in after.log:
            if a.write and a.lock:
                assert a.sel == SEL_QWORD
    return _one("pir_rmw", "PIR locked read-modify-write", m,
                [x2(1, low(v)) for v in (0x40, 0x7F, 0x40, 0xFF, 0x10)], [POSTED] * 5,
                checks=[check])


def notify_on_sn():
    """§4 steps 5-6: ON = 0 and SN = 0: set ON and notify NV at NDST; ON = 1 or SN = 1: change
    nothing."""
    def check(before, after, results):
        infos = {t: NotifyInfo.from_bits(after.read(PIDS[t] + PID_NOTIFY_INFO_OFFSET))
                 for t in PIDS}
        assert infos[1].on and not infos[2].on and infos[2].sn and infos[3].on
    return _one("notify_on_sn", "ON/SN decide the notification", vm_memory(on={1}, sn={2}),
                [x2(t, low(0x40)) for t in (1, 2, 3, 3)], [QUIET, QUIET, _notify(3), QUIET],
                checks=[check])


def ndst_xapic_host():
    """§3/§4 step 6: in an xAPIC host NDST holds the APIC ID in bits 15:8."""
    cfg = replace(CFG, host_x2apic=False)
    return _one("ndst_xapic_host", "NDST decoded for an xAPIC host", vm_memory(host_x2apic=False),
                [x2(3, low(0x40), cfg)] + xapic(2, low(0x41), replace(cfg, x2apic=False)),
                [_notify(3), STORED, _notify(2)])


def ipiv_disabled():
    """§4: with IPIv = 0 every ICR write that is not a virtualized self-IPI exits."""
    cfg, xcfg = replace(CFG, ipiv=False), replace(XCFG, ipiv=False)
    return _one("ipiv_disabled", "IPIv off: exits", vm_memory(),
                [x2(2, low(0x40), cfg)] + xapic(2, low(0x40), xcfg) + [self_ipi(0x45, xcfg)],
                [INTERCEPTED, STORED,
                 Expect(Outcome.EXIT, ExitCause.DISABLED, reason=APIC_WRITE),
                 Expect(Outcome.SELF_IPI, vector=0x45)])


def x2apic_intercept():
    """docs/interface.md, the x2APIC intercept: with IPIv = 0 an x2APIC ICR write is a WRMSR
    exit (reason 32, qualification 0, cause DISABLED, icr = the value) with no bus transfer and
    no #GP check, whatever the value; SENDUIPI in x2APIC mode is not intercepted (stored, then
    an APIC-write exit); with IPIv = 1 the same values are handled as usual."""
    off = replace(CFG, ipiv=False)
    values = [X2APICICR.const({"dest": 2}).as_bits() | low(0x40),     # virtualizable if on
              X2APICICR.const({"dest": 2}).as_bits() | low(0x40) | 1 << 13,   # #GP if on
              (1 << 64) - 1,
              low(0x30, dest_mode=DestMode.LOGICAL, shorthand=Shorthand.ALL_EXCLUDING_SELF)]
    uipi = SendUIPIData.const({"nv": 0x51, "ndst": 3}).as_bits()
    requests = [Request(off, K.X2APIC_ICR, v) for v in values] + \
        [Request(off, K.SENDUIPI, uipi), x2(2, low(0x41)), x2(2, low(0x42) | 1 << 13)]
    def check(before, after, results):
        assert [r.icr for r in results[:len(values)]] == values
        word = GoldenIPIVirtualizer().word(VAPIC + APIC_OFFSET_ICR_LO)
        # nothing before the SENDUIPI's store touched memory
        assert after.log[0] == Access(True, word, SEL_QWORD, 3 << 32 | 0x51, False), \
            after.log[0]
    return _one("x2apic_intercept", "x2APIC ICR write with IPIv off: WRMSR exit, nothing "
                "stored, no #GP", vm_memory(), requests,
                [INTERCEPTED] * len(values) +
                [Expect(Outcome.EXIT, ExitCause.DISABLED, reason=APIC_WRITE),
                 _notify(2), GP], checks=[check])


def self_ipis():
    """§4 self-IPI: xAPIC, shorthand self, fixed, edge, no reserved bits, V >= 16, with
    virtual-interrupt delivery: VIRR bit V set (word 200H + 10H*(V/32)), no exit; destination
    mode is ignored."""
    vs = (0x45, 0xF7, 0x20)
    def check(before, after, results):
        for v in vs:
            irr = APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * (v // 32)
            assert after.read(VAPIC + irr, 4) >> (v % 32) & 1
    requests = [self_ipi(v) for v in vs] + [
        self_ipi(0x46, replace(XCFG, vid=False)), self_ipi(0x0E),
        self_ipi(0x47, trigger=TriggerMode.LEVEL), self_ipi(0x48, reserved_13=1),
        self_ipi(0x49, dest_mode=DestMode.LOGICAL)]
    return _one("self_ipi", "virtualized self-IPI", vm_memory(), requests,
                [Expect(Outcome.SELF_IPI, vector=v) for v in vs] +
                [_exit(ExitCause.UNSUPPORTED)] * 4 + [Expect(Outcome.SELF_IPI, vector=0x49)],
                checks=[check])


def exit_priority():
    """docs/interface.md: with several causes the first of DISABLED, UNSUPPORTED, ILLEGAL_VECTOR,
    BROADCAST, INDEX_RANGE, ENTRY_INVALID is reported."""
    off = replace(XCFG, ipiv=False)
    requests = (xapic(0xFF, low(0x05, dest_mode=DestMode.LOGICAL), off) +
                xapic(0xFF, low(0x05, dest_mode=DestMode.LOGICAL)) +
                xapic(0xFF, low(0x05)) + [x2(LAST + 1, low(0x05))] + xapic(0xFF, low(0x40)) +
                [x2(LAST + 1, low(0x40)), x2(4, low(0x40))])
    return _one("exit_priority", "exit cause priority", vm_memory(), requests,
                [STORED, _exit(ExitCause.DISABLED), STORED, _exit(ExitCause.UNSUPPORTED),
                 STORED, _exit(ExitCause.ILLEGAL_VECTOR), _exit(ExitCause.ILLEGAL_VECTOR),
                 STORED, _exit(ExitCause.BROADCAST), _exit(ExitCause.INDEX_RANGE),
                 _exit(ExitCause.ENTRY_INVALID)])


def xapic_icr_lo_destination():
    """§4: xAPIC T = VICR_HI[31:24] as it is in the virtual-APIC page (written earlier)."""
    m = vm_memory()
    m.write(VAPIC + APIC_OFFSET_ICR_HI, 3 << 24, size=4)
    return _one("xapic_icr_lo_destination", "xAPIC destination from VICR_HI", m,
                [Request(XCFG, K.XAPIC_ICR_LO, low(0x40))] + xapic(2, low(0x41)),
                [_notify(3), STORED, _notify(2)])


BUS_ERROR_REQUESTS = {
    # name: (requests, transfers they make without errors)
    "x2apic_post": ([x2(2, low(0x40))], 6),
    "xapic_post": (xapic(2, low(0x40)), 8),
    "self_ipi": ([self_ipi(0x45)], 4),
    "senduipi_xapic": ([Request(XCFG, K.SENDUIPI,
                                SendUIPIData.const({"nv": 0x52, "ndst": 0x0200}).as_bits())], 7),
    "suppressed_post": ([x2(1, low(0x40))], 5),
}


def bus_error(name):
    """docs/interface.md: ``err`` at any transfer ends the request as an exit with cause BUS_ERROR
    carrying the ICR image; nothing else of it happens afterwards, and the unit carries on.
    One case a transfer."""
    requests, transfers = BUS_ERROR_REQUESTS[name]

    def check(before, after, results):
        errors = [r for r in results if r.cause is ExitCause.BUS_ERROR]
        assert len(errors) == 1, f"one BUS_ERROR exit expected, got {results}"
        assert results[-1].outcome is Outcome.POSTED, "the unit carries on after the error"

    def build():
        cases = []
        for step in range(transfers):
            m = vm_memory(on={1})
            m.error_at = {step}
            cases.append(DirectedCase(f"bus_error:{name}[transfer {step}]",
                                      f"bus error at transfer {step} of {name}", m,
                                      requests + [x2(3, low(0x41))], None, checks=[check]))
        return cases
    return build


#: family name -> builder of its cases; a family is one cocotb run (one design: one
#: MAXPHYADDR).
FAMILIES = {
    "icr_hi_store": icr_hi_store,
    "x2apic_gp": x2apic_gp,
    "x2apic_store": x2apic_store,
    "senduipi": senduipi,
    "unsupported_fields": unsupported_fields,
    "icr_bits": icr_bits,
    "x2apic_self_shorthand": x2apic_self_shorthand,
    "xapic_reserved": xapic_reserved,
    "illegal_vector": illegal_vector,
    "xapic_broadcast": xapic_broadcast,
    "index_range": index_range,
    "destinations": destinations,
    "entry_invalid": entry_invalid,
    **{f"entry_maxphyaddr_{m}": entry_maxphyaddr(m) for m in (36, 40, 52)},
    "pir_rmw": pir_rmw,
    "notify_on_sn": notify_on_sn,
    "ndst_xapic_host": ndst_xapic_host,
    "ipiv_disabled": ipiv_disabled,
    "x2apic_intercept": x2apic_intercept,
    "self_ipi": self_ipis,
    "exit_priority": exit_priority,
    "xapic_icr_lo_destination": xapic_icr_lo_destination,
    **{f"bus_error:{name}": bus_error(name) for name in BUS_ERROR_REQUESTS},
}


def family(name):
    """The cases of family ``name`` (fresh memories each call)."""
    return FAMILIES[name]()


def all_cases():
    """Every case of every family, in order (fresh memories each call)."""
    return [c for name in FAMILIES for c in family(name)]


def case(name):
    """The case called ``name``."""
    for c in all_cases():
        if c.name == name:
            return c
    raise KeyError(name)

"""Directed cases, one per rule of ``ipiv.md`` §4 and ``interface.md`` (plain Python).

Each case names its rule, lays out a small VM in a `Memory`, and lists ICR writes with the
outcome the *spec* gives for each (written from the spec text, not from the golden model), plus
optional memory checks. The cocotb test runs the case on the RTL through the scoreboard (which
compares every transfer with the golden model) and then checks these expectations, so a rule is
checked even if the golden model and the RTL shared a misreading.
"""

from dataclasses import dataclass, field, replace

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, DeliveryMode, DestMode,
    ExitCause, ICR_RESERVED_MASK, ICRLow, ICRWriteKind as K, NotifyInfo, PID_NOTIFY_INFO_OFFSET,
    POSTED_INTR_VECTOR, SendUIPIData, Shorthand, TriggerMode, X2APICICR, XAPICICRHigh,
    XAPICNDST,
)
from sim.golden import Config, Outcome
from sim.memory import Memory
from sim.scenarios import Request


__all__ = ["ANY", "Expect", "DirectedCase", "CASES", "ALL", "make_case", "VAPIC", "TABLE",
           "PIDS"]

VAPIC = 0x4000
TABLE = 0x8000
PIDS = {1: 0x9000, 2: 0x9040, 3: 0x9080}       # T -> PID (T = 0 has no vCPU: entry 0)
LAST = 7
CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=LAST,
             pid_table=TABLE, vapic_page=VAPIC)
XCFG = replace(CFG, x2apic=False)
NDST = {t: 0x10 + t for t in PIDS}             # physical APIC ID of the pCPU of each target


ANY = "any"     # an `Expect` field that is not checked


@dataclass(frozen=True)
class Expect:
    """What the spec says one ICR write does; ``notify``/``vector`` `ANY`: not checked,
    None: must be absent."""
    outcome: Outcome
    cause: ExitCause | None = None
    notify: object = ANY
    vector: object = ANY

    def mismatch(self, result):
        """A description of how ``result`` (a `sim.golden.Result`) differs, or None."""
        got = Expect(result.outcome, result.cause,
                     result.notify if self.notify != ANY else ANY,
                     result.vector if self.vector != ANY else ANY)
        return None if got == self else f"spec: {self}, got {got}"


@dataclass
class DirectedCase:
    """One directed case: ``rule`` (what it checks), the initial ``memory``, the ICR writes
    (`sim.scenarios.Request`), one `Expect` per write (or None), the design's MAXPHYADDR, and
    memory ``checks``."""
    rule: str
    memory: Memory
    requests: list
    expect: list                        # one `Expect` per request, or None (see ``checks``)
    maxphyaddr: int = 52
    # callables(memory before, memory after, results) that raise AssertionError
    checks: list = field(default_factory=list)

    def __post_init__(self):
        if self.expect is not None and len(self.requests) != len(self.expect):
            raise ValueError(f"{self.rule}: {len(self.requests)} requests, "
                             f"{len(self.expect)} expectations")


def vm_memory(*, on=(), sn=(), host_x2apic=True, nv=POSTED_INTR_VECTOR):
    """PID-pointer table with T = 1..3 valid, T = 4 valid bit clear, T = 5 a bit above
    MAXPHYADDR 52 set; PIDs with the given ON/SN; some VICR neighbours non-zero."""
    m = Memory()
    for t, pid in PIDS.items():
        m.write(TABLE + 8 * t, pid | 1)
        ndst = NDST[t] if host_x2apic else XAPICNDST.const({"apic_id": NDST[t]}).as_bits()
        m.write(pid + PID_NOTIFY_INFO_OFFSET, NotifyInfo.const(
            {"on": t in on, "sn": t in sn, "nv": nv, "ndst": ndst}).as_bits())
    m.write(TABLE + 8 * 4, PIDS[1] + 0x100)               # valid bit clear
    m.write(TABLE + 8 * 5, (PIDS[1] + 0x100) | 1 | 1 << 52)
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


POSTED = Expect(Outcome.POSTED)
QUIET = Expect(Outcome.POSTED, notify=None)       # posted, no notification
STORED = Expect(Outcome.STORED)


def _exit(cause):
    return Expect(Outcome.EXIT, cause)


def _pir(memory, t):
    return sum(memory.read(PIDS[t] + 8 * k) << (64 * k) for k in range(4))


# -- the rules -------------------------------------------------------------------------------

def case_icr_hi_store():
    """§4.1: a write to 310H stores value & 0xFF000000 in VICR_HI and does nothing else."""
    value = 0x1234_5678_ABCD_EF01
    def check(before, after, results):
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI, 4) == value & 0xFF00_0000
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI + 4, 4) == 0x5A5A_5A5A     # neighbours
        assert after.words.keys() - before.words.keys() <= {(VAPIC + 0x310) >> 3}
    return DirectedCase("xAPIC write to 310H: stored masked, nothing else",
                        vm_memory(), [Request(XCFG, K.XAPIC_ICR_HI, value)], [STORED],
                        checks=[check])


def case_x2apic_gp():
    """§4.2: #GP if any of EAX bits 31:20, 17:16, 13 is set (no store, no exit)."""
    bits = [13, 16, 17] + list(range(20, 32))
    requests = [x2(2, low(0x40) | 1 << b) for b in bits] + [x2(2, low(0x41))]
    def check(before, after, results):
        # the last write (legal) is the only store at 300H
        assert after.read(VAPIC + APIC_OFFSET_ICR_LO) == 2 << 32 | 0x41
    return DirectedCase("x2APIC reserved ICR bits: #GP, nothing stored", vm_memory(), requests,
                        [Expect(Outcome.GP)] * len(bits) + [Expect(Outcome.POSTED)],
                        checks=[check])


def case_x2apic_store():
    """§4.2: the 64-bit value is stored at 300H; 310H is not written in x2APIC mode."""
    value = X2APICICR.const({"dest": 0x1_0000}).as_bits() | low(0x40, dest_mode=DestMode.LOGICAL)
    def check(before, after, results):
        assert after.read(VAPIC + APIC_OFFSET_ICR_LO) == value
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI, 8) == before.read(VAPIC + 0x310, 8)
    return DirectedCase("x2APIC ICR write: 64-bit store at 300H only", vm_memory(),
                        [Request(CFG, K.X2APIC_ICR, value)], [_exit(ExitCause.UNSUPPORTED)],
                        checks=[check])


def case_senduipi():
    """§4.3: SENDUIPI acts as an ICR write with V = UPID.NV, T = UPID.NDST (xAPIC: bits
    15:8), storing x2APIC ``NDST << 32 | NV`` at 300H, xAPIC ``(NDST & 0xFF00) << 16`` at 310H
    and NV at 300H."""
    x2_value = SendUIPIData.const({"nv": 0x51, "ndst": 3}).as_bits() | 0xABCDEF << 8  # junk ignored
    xa_value = SendUIPIData.const({"nv": 0x52, "ndst": 0x0201}).as_bits()
    bcast = SendUIPIData.const({"nv": 0x53, "ndst": 0xFF00}).as_bits()
    def check(before, after, results):
        assert after.read(VAPIC + APIC_OFFSET_ICR_HI, 4) == 0xFF00 << 16
        assert after.read(VAPIC + APIC_OFFSET_ICR_LO, 4) == 0x53
        assert _pir(after, 3) >> 0x51 & 1 and _pir(after, 2) >> 0x52 & 1
    return DirectedCase("SENDUIPI in both APIC modes", vm_memory(),
                        [Request(CFG, K.SENDUIPI, x2_value), Request(XCFG, K.SENDUIPI, xa_value),
                         Request(XCFG, K.SENDUIPI, bcast)],
                        [Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[3])),
                         Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[2])),
                         _exit(ExitCause.BROADCAST)], checks=[check])


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


def case_unsupported_fields():
    """§4: virtualized only if shorthand 00, edge, bit 12 = 0, physical, fixed; bit 14 is
    ignored. Each other field value exits (UNSUPPORTED), in both modes."""
    variants = _field_variants()
    requests, expect = [], []
    for _, value in variants:
        requests += [x2(2, value)] + xapic(2, value)
        expect += [_exit(ExitCause.UNSUPPORTED), STORED, _exit(ExitCause.UNSUPPORTED)]
    requests += [x2(2, low(0x42, level=1))] + xapic(3, low(0x43, level=1))
    expect += [POSTED, STORED, POSTED]
    return DirectedCase("non-virtualizable ICR fields exit; the level bit is ignored",
                        vm_memory(), requests, expect)


def case_x2apic_self_shorthand():
    """§4: in x2APIC mode a self-IPI through 830H (shorthand 01) is not this unit's: it exits."""
    return DirectedCase("x2APIC ICR write with shorthand self exits", vm_memory(),
                        [x2(0, low(0x40, shorthand=Shorthand.SELF))],
                        [_exit(ExitCause.UNSUPPORTED)])


def case_xapic_reserved():
    """§4 [model decision]: in xAPIC mode reserved bits 31:20, 17:16, 13 make the write
    non-virtualizable (an exit, not a #GP)."""
    bits = [b for b in range(32) if ICR_RESERVED_MASK >> b & 1]
    requests, expect = [], []
    for b in bits:
        requests += xapic(2, low(0x40) | 1 << b)
        expect += [STORED, _exit(ExitCause.UNSUPPORTED)]
    return DirectedCase("xAPIC reserved ICR bits exit", vm_memory(), requests, expect)


def case_illegal_vector():
    """§4 step 1: V < 16 exits (both modes), V >= 16 does not."""
    requests, expect = [], []
    for v in (0, 1, 15, 16, 0xFF):
        requests += [x2(2, low(v))] + xapic(3, low(v))
        e = _exit(ExitCause.ILLEGAL_VECTOR) if v < 16 else POSTED
        expect += [e, STORED, e]
    return DirectedCase("vectors below 16 exit", vm_memory(), requests, expect)


def case_xapic_broadcast():
    """§4 [model decision]: xAPIC T = 0xFF is never virtualized, even within the table."""
    cfg = replace(XCFG, last_pid_index=0x1FF)
    return DirectedCase("xAPIC physical broadcast exits", vm_memory(), xapic(0xFF, low(0x40), cfg),
                        [STORED, _exit(ExitCause.BROADCAST)])


def case_index_range():
    """§4 step 2: T > last PID-pointer index exits, and no entry is read; T is 32 bits wide in
    x2APIC mode (no aliasing of 0x1_0002 onto 2)."""
    def check(before, after, results):
        table_words = {(TABLE + 8 * t) >> 3 for t in range(16)}
        assert not [a for a in after.log if not a.write and a.adr in table_words
                    and (a.adr << 3) - TABLE > 8 * LAST]
    requests = [x2(t, low(0x40)) for t in (LAST + 1, 0x1_0002, 0xFFFF_FFFF)] + \
        xapic(LAST + 1, low(0x41))
    return DirectedCase("destination beyond the last index exits without a table read",
                        vm_memory(), requests,
                        [_exit(ExitCause.INDEX_RANGE)] * 3 + [STORED, _exit(ExitCause.INDEX_RANGE)],
                        checks=[check])


def case_entry_invalid():
    """§2/§4 step 3: an entry is usable only if bits 5:0 == 000001b and no bit at or above
    MAXPHYADDR is set."""
    m = vm_memory()
    entries = [PIDS[1] | 1 | 1 << bit for bit in range(1, 6)] + [PIDS[1], 0]
    requests, expect = [], []
    for i, entry in enumerate(entries):
        t = 8 + i
        m.write(TABLE + 8 * t, entry)
        requests.append(x2(t, low(0x40), replace(CFG, last_pid_index=0x20)))
        expect.append(_exit(ExitCause.ENTRY_INVALID))
    requests += [x2(4, low(0x40)), x2(5, low(0x40)), x2(0, low(0x40))]
    expect += [_exit(ExitCause.ENTRY_INVALID)] * 3
    return DirectedCase("invalid PID-pointer entries exit", m, requests, expect)


def case_entry_maxphyaddr():
    """§2: with MAXPHYADDR 36, a set bit 36 invalidates an entry, bit 35 does not (and is part
    of the PID address, wrapping as the model decides)."""
    m = vm_memory()
    m.write(TABLE + 8 * 6, PIDS[1] | 1 | 1 << 36)
    m.write(TABLE + 8 * 7, PIDS[2] | 1 << 35 | 1)
    # T = 7's PID is at bit 35 + 9040H: empty memory, so ON = SN = 0, NV = NDST = 0
    return DirectedCase("entry bits at and above MAXPHYADDR", m,
                        [x2(6, low(0x40)), x2(7, low(0x41))],
                        [_exit(ExitCause.ENTRY_INVALID), Expect(Outcome.POSTED, notify=(0, 0))],
                        maxphyaddr=36)


def case_pir_rmw():
    """§4 step 4: a locked RMW sets bit V of the PIR; only the word holding bit V changes, and a
    bit already set stays set."""
    m = vm_memory(on={1})
    m.write(PIDS[1] + 8, 0x8000_0000_0000_0001)
    def check(before, after, results):
        pir = _pir(after, 1)
        assert pir == (0x8000_0000_0000_0001 << 64) | 1 << 0x40 | 1 << 0x7F | 1 << 0xFF | 1 << 0x10
        for a in after.log:
            if a.write and a.lock:
                assert a.sel == 0xFF
    return DirectedCase("PIR locked read-modify-write", m,
                        [x2(1, low(v)) for v in (0x40, 0x7F, 0x40, 0xFF, 0x10)], [POSTED] * 5,
                        checks=[check])


def case_notify_on_sn():
    """§4 steps 5-6: ON = 0 and SN = 0: set ON and notify NV at NDST; ON = 1 or SN = 1: change
    nothing."""
    def check(before, after, results):
        infos = {t: NotifyInfo.from_bits(after.read(PIDS[t] + 32)) for t in PIDS}
        assert infos[1].on and not infos[2].on and infos[2].sn and infos[3].on
    return DirectedCase("ON/SN decide the notification", vm_memory(on={1}, sn={2}),
                        [x2(t, low(0x40)) for t in (1, 2, 3, 3)],
                        [QUIET, QUIET, Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[3])),
                         QUIET], checks=[check])


def case_ndst_xapic_host():
    """§3/§4 step 6: in an xAPIC host NDST holds the APIC ID in bits 15:8."""
    cfg = replace(CFG, host_x2apic=False)
    return DirectedCase("NDST decoded for an xAPIC host", vm_memory(host_x2apic=False),
                        [x2(3, low(0x40), cfg)] + xapic(2, low(0x41), replace(cfg, x2apic=False)),
                        [Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[3])), STORED,
                         Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[2]))])


def case_ipiv_disabled():
    """§4: with IPIv = 0 every ICR write that is not a virtualized self-IPI exits."""
    cfg, xcfg = replace(CFG, ipiv=False), replace(XCFG, ipiv=False)
    return DirectedCase("IPIv off: exits", vm_memory(),
                        [x2(2, low(0x40), cfg)] + xapic(2, low(0x40), xcfg) +
                        [Request(xcfg, K.XAPIC_ICR_LO, low(0x45, shorthand=Shorthand.SELF))],
                        [_exit(ExitCause.DISABLED), STORED, _exit(ExitCause.DISABLED),
                         Expect(Outcome.SELF_IPI, vector=0x45)])


def case_self_ipi():
    """§4 self-IPI: xAPIC, shorthand self, fixed, edge, no reserved bits, V >= 16, with
    virtual-interrupt delivery: VIRR bit V set (word 200H + 10H*(V/32)), no exit."""
    vs = (0x45, 0xF7, 0x20)
    def check(before, after, results):
        for v in vs:
            assert after.read(VAPIC + APIC_OFFSET_IRR + 0x10 * (v // 32), 4) >> (v % 32) & 1
    self_low = lambda v, **f: low(v, shorthand=Shorthand.SELF, **f)
    requests = [Request(XCFG, K.XAPIC_ICR_LO, self_low(v)) for v in vs] + [
        Request(replace(XCFG, vid=False), K.XAPIC_ICR_LO, self_low(0x46)),
        Request(XCFG, K.XAPIC_ICR_LO, self_low(0x0E)),
        Request(XCFG, K.XAPIC_ICR_LO, self_low(0x47, trigger=TriggerMode.LEVEL)),
        Request(XCFG, K.XAPIC_ICR_LO, self_low(0x48, reserved_13=1)),
        Request(XCFG, K.XAPIC_ICR_LO, self_low(0x49, dest_mode=DestMode.LOGICAL))]
    return DirectedCase("virtualized self-IPI", vm_memory(), requests,
                        [Expect(Outcome.SELF_IPI, vector=v) for v in vs] +
                        [_exit(ExitCause.UNSUPPORTED), _exit(ExitCause.UNSUPPORTED),
                         _exit(ExitCause.UNSUPPORTED), _exit(ExitCause.UNSUPPORTED),
                         Expect(Outcome.SELF_IPI, vector=0x49)], checks=[check])


def case_exit_priority():
    """interface.md: with several causes the first of DISABLED, UNSUPPORTED, ILLEGAL_VECTOR,
    BROADCAST, INDEX_RANGE, ENTRY_INVALID is reported."""
    off = replace(XCFG, ipiv=False)
    requests = (xapic(0xFF, low(0x05, dest_mode=DestMode.LOGICAL), off) +
                xapic(0xFF, low(0x05, dest_mode=DestMode.LOGICAL)) +
                xapic(0xFF, low(0x05)) + [x2(LAST + 1, low(0x05))] + xapic(0xFF, low(0x40)) +
                [x2(LAST + 1, low(0x40)), x2(4, low(0x40))])
    return DirectedCase("exit cause priority", vm_memory(), requests,
                        [STORED, _exit(ExitCause.DISABLED), STORED, _exit(ExitCause.UNSUPPORTED),
                         STORED, _exit(ExitCause.ILLEGAL_VECTOR), _exit(ExitCause.ILLEGAL_VECTOR),
                         STORED, _exit(ExitCause.BROADCAST), _exit(ExitCause.INDEX_RANGE),
                         _exit(ExitCause.ENTRY_INVALID)])


def case_xapic_icr_lo_destination():
    """§4: xAPIC T = VICR_HI[31:24] as it is in the virtual-APIC page (written earlier)."""
    m = vm_memory()
    m.write(VAPIC + APIC_OFFSET_ICR_HI, 3 << 24, size=4)
    return DirectedCase("xAPIC destination from VICR_HI", m,
                        [Request(XCFG, K.XAPIC_ICR_LO, low(0x40))] + xapic(2, low(0x41)),
                        [Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[3])), STORED,
                         Expect(Outcome.POSTED, notify=(POSTED_INTR_VECTOR, NDST[2]))])


BUS_ERROR_REQUESTS = {
    # name: (requests, transfers they make without errors)
    "x2apic_post": ([x2(2, low(0x40))], 6),
    "xapic_post": (xapic(2, low(0x40)), 8),
    "self_ipi": ([Request(XCFG, K.XAPIC_ICR_LO, low(0x45, shorthand=Shorthand.SELF))], 4),
    "suppressed_post": ([x2(1, low(0x40))], 5),
}


def case_bus_error(name):
    """interface.md: ``err`` ends the request as an exit with cause BUS_ERROR carrying the ICR
    image; nothing else of it happens afterwards, and the unit carries on."""
    requests, transfers = BUS_ERROR_REQUESTS[name]

    def check(before, after, results):
        errors = [r for r in results if r.cause is ExitCause.BUS_ERROR]
        assert len(errors) == 1, f"one BUS_ERROR exit expected, got {results}"
        assert results[-1].outcome is Outcome.POSTED, "the unit carries on after the error"
    cases = []
    for step in range(transfers):
        m = vm_memory(on={1})
        m.error_at = {step}
        cases.append(DirectedCase(f"bus error at transfer {step} of {name}", m,
                                  requests + [x2(3, low(0x41))], None, checks=[check]))
    return cases


def make_case(name):
    """The named directed rule as a list of `DirectedCase` (bus errors: one per step)."""
    if name.startswith("bus_error:"):
        return case_bus_error(name.split(":", 1)[1])
    return [CASES[name]()]


CASES = {name[len("case_"):]: f for name, f in sorted(globals().items())
         if name.startswith("case_") and name != "case_bus_error"}
ALL = list(CASES) + [f"bus_error:{k}" for k in BUS_ERROR_REQUESTS]

"""Constrained-random stimulus for the unit: VMCS configurations, memory images and ICR writes.

Plain Python, shared by the Amaranth tests and the cocotb regression. Values are biased
towards the interesting corners (vectors below 16, destinations around the last index, 0xFF,
invalid entries, ON/SN set, reserved bits) and sometimes are plain garbage.
"""

from dataclasses import dataclass, replace

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE, BUS_BYTES,
    DeliveryMode, DestMode, FIRST_LEGAL_VECTOR, ICRLow, ICRWriteKind, NOTIFY_INFO_ON,
    NOTIFY_INFO_SN, NotifyInfo, PAGE_SIZE, PID_BYTES, PID_NOTIFY_INFO_OFFSET,
    PID_POINTER_ENTRY_BYTES, PID_POINTER_ENTRY_LOW_MASK, PID_POINTER_ENTRY_VALID, PIR_WORDS,
    SendUIPIData, Shorthand, TriggerMode, X2APIC_BROADCAST_ID, X2APICICR, XAPIC_BROADCAST_ID,
    XAPICICRHigh, XAPICNDST,
)
from .golden import Config
from .memory import Memory
from .scenarios import Request
from .vm_layout import allowed_words, ndst_of


__all__ = ["RandomCase", "random_case", "random_icr_low", "more_self_ipis", "dense_errors",
           "host_side", "with_barriers", "posting_bursts"]


@dataclass
class RandomCase:
    memory: Memory
    requests: list
    maxphyaddr: int
    pids: list          # PID addresses referenced by table entries
    vapic_pages: list   # virtual-APIC pages used by the configurations

    def allowed_words(self):
        """Word addresses the spec allows the unit to write for these requests."""
        return allowed_words(self.vapic_pages, self.pids, self.maxphyaddr)


_XAPIC_NDST_ID = XAPICNDST.const({"apic_id": 0xFF}).as_bits()     # NDST bits 15:8


def _address(rng, maxphyaddr, align):
    """A random nonzero byte address below 2**MAXPHYADDR, aligned to ``align`` bytes."""
    align_bits = align.bit_length() - 1
    return rng.randrange(1, 1 << (maxphyaddr - align_bits)) << align_bits


def random_icr_low(rng):
    """A 32-bit ICR low value, mostly well-formed, with each irregularity now and then."""
    r = rng.random()
    if r < 0.05:
        return rng.getrandbits(32)
    if r < 0.55:    # what IPIv virtualizes: fixed, physical, edge, no shorthand, V >= 16
        return ICRLow.const({"vector": rng.randrange(FIRST_LEGAL_VECTOR, 256),
                             "level": rng.getrandbits(1)}).as_bits()
    fields = {
        "vector": rng.randrange(FIRST_LEGAL_VECTOR) if rng.random() < 0.1 else rng.randrange(256),
        "delivery_mode": DeliveryMode.FIXED if rng.random() < 0.8 else
        rng.choice(list(DeliveryMode)),
        "dest_mode": DestMode.LOGICAL if rng.random() < 0.1 else DestMode.PHYSICAL,
        "shorthand": Shorthand.NONE if rng.random() < 0.75 else rng.choice(list(Shorthand)),
        "trigger": TriggerMode.LEVEL if rng.random() < 0.08 else TriggerMode.EDGE,
        "level": rng.getrandbits(1),
        "delivery_status": int(rng.random() < 0.05),
        "reserved_13": int(rng.random() < 0.03),
        "reserved_17_16": rng.getrandbits(2) if rng.random() < 0.03 else 0,
        "reserved_31_20": rng.getrandbits(12) if rng.random() < 0.03 else 0,
    }
    return ICRLow.const(fields).as_bits()


def random_case(rng, *, maxphyaddr=52, count=20, errors=False):
    """A random VM image and ``count`` ICR writes against it."""
    memory = Memory()
    table = _address(rng, maxphyaddr, PAGE_SIZE)
    last = rng.choice([0, 1, 3, 7, 15, rng.randrange(64), 0xFFFF])
    span = min(last + 3, 24)            # table entries written: around the last index
    pids = _random_table(rng, memory, table, span, maxphyaddr)
    vapic_pages = _random_vapic_pages(rng, memory, maxphyaddr)
    cfg = Config(ipiv=rng.random() < 0.85, vid=rng.random() < 0.85, x2apic=rng.random() < 0.5,
                 host_x2apic=rng.random() < 0.5, last_pid_index=last, pid_table=table,
                 vapic_page=vapic_pages[0])
    requests = []
    for _ in range(count):
        if rng.random() < 0.1:      # the hypervisor reprograms the VMCS between writes
            cfg = replace(cfg, ipiv=rng.random() < 0.85, vid=rng.random() < 0.85,
                          x2apic=rng.random() < 0.5, host_x2apic=rng.random() < 0.5,
                          vapic_page=rng.choice(vapic_pages))
        requests.append(_random_request(rng, cfg, span))
    if errors:
        memory.error_at = {rng.randrange(5 * count) for _ in range(rng.randrange(1, 4))}
    return RandomCase(memory, requests, maxphyaddr, pids, vapic_pages)


def _random_table(rng, memory, table, span, maxphyaddr):
    """Entries 0..span-1 of the PID-pointer table at ``table``: some missing, some sharing a
    PID, some unusable; each new PID gets a random NotifyInfo and PIR. Returns the PIDs."""
    pids = []
    for t in range(span):
        r = rng.random()
        if r < 0.08:
            continue                                    # entry 0: no vCPU
        if pids and rng.random() < 0.15:
            pid = rng.choice(pids)                      # two IDs sharing a PID
        else:
            pid = _address(rng, maxphyaddr, PID_BYTES)
        entry = pid | PID_POINTER_ENTRY_VALID
        if r > 0.92:                                    # valid clear or a reserved bit set
            entry ^= 1 << rng.randrange(0, PID_POINTER_ENTRY_LOW_MASK.bit_length())
        elif r > 0.86:
            entry |= 1 << rng.randrange(maxphyaddr, 64)  # a bit at or above MAXPHYADDR
        memory.write(table + PID_POINTER_ENTRY_BYTES * t, entry)
        if pid not in pids:
            pids.append(pid)
            _random_pid(rng, memory, pid)
    return pids


def _random_pid(rng, memory, pid):
    """A PID with ON and SN now and then, random NV/NDST, and some PIR words not empty."""
    info = {"on": int(rng.random() < 0.25), "sn": int(rng.random() < 0.2),
            "nv": rng.randrange(256), "ndst": rng.getrandbits(32),
            "reserved_15_2": rng.getrandbits(14) if rng.random() < 0.1 else 0}
    memory.write(pid + PID_NOTIFY_INFO_OFFSET, NotifyInfo.const(info).as_bits())
    for k in range(PIR_WORDS):
        if rng.random() < 0.3:
            memory.write(pid + BUS_BYTES * k, rng.getrandbits(64))


def _random_vapic_pages(rng, memory, maxphyaddr):
    """Two virtual-APIC pages with garbage in VICR_HI, in the upper half of the ICR's word and
    in the IRR registers."""
    vapic_pages = [_address(rng, maxphyaddr, PAGE_SIZE) for _ in range(2)]
    for vapic in vapic_pages:
        memory.write(vapic + APIC_OFFSET_ICR_HI, rng.getrandbits(32), size=4)
        memory.write(vapic + APIC_OFFSET_ICR_LO + 4, rng.getrandbits(32), size=4)
        for k in range(8):
            memory.write(vapic + APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * k, rng.getrandbits(32),
                         size=4)
    return vapic_pages


def _random_dest(rng, span, x2apic):
    """A destination: mostly a table entry written, else the broadcast ID or anything."""
    r = rng.random()
    if r < 0.75:
        return rng.randrange(span)
    if r < 0.85:
        return X2APIC_BROADCAST_ID if x2apic else XAPIC_BROADCAST_ID
    return rng.getrandbits(32 if x2apic else 8)


def _random_request(rng, cfg, span):
    """One ICR write in ``cfg``'s mode: SENDUIPI, x2APIC ICR, xAPIC ICR2 or ICR low, with
    bits the unit must ignore set now and then."""
    r = rng.random()
    if r < 0.12:
        nv = rng.randrange(256)
        if cfg.x2apic:
            ndst = _random_dest(rng, span, True)
        else:                                       # the APIC ID in bits 15:8, noise around it
            noise = rng.getrandbits(32) & ~_XAPIC_NDST_ID
            ndst = noise | XAPICNDST.const({"apic_id": _random_dest(rng, span, False)}).as_bits()
        value = SendUIPIData.const({"nv": nv, "ndst": ndst}).as_bits()
        if rng.random() < 0.2:
            value |= rng.getrandbits(24) << 8       # bits the unit must ignore
        return Request(cfg, ICRWriteKind.SENDUIPI, value)
    if cfg.x2apic:
        value = X2APICICR.const({"dest": _random_dest(rng, span, True)}).as_bits() | \
            random_icr_low(rng)
        return Request(cfg, ICRWriteKind.X2APIC_ICR, value)
    if r < 0.45:
        noisy = rng.random() < 0.3
        hi = XAPICICRHigh.const({"dest": _random_dest(rng, span, False)}).as_bits()
        if noisy:
            hi |= rng.getrandbits(24)               # VICR_HI's reserved bits 23:0
        if rng.random() < 0.05:
            hi |= rng.getrandbits(32) << 32         # upper data bits are not the ICR
        return Request(cfg, ICRWriteKind.XAPIC_ICR_HI, hi)
    value = random_icr_low(rng)
    if rng.random() < 0.05:
        value |= rng.getrandbits(32) << 32
    return Request(cfg, ICRWriteKind.XAPIC_ICR_LO, value)


def more_self_ipis(requests, rng, share=0.15):
    """`random_case` makes few well-formed self-IPIs: turn a ``share`` of the xAPIC ICR-low
    writes into them (vector and level random), so every path of the self-IPI is taken."""
    return [replace(r, value=ICRLow.const({"vector": rng.randrange(FIRST_LEGAL_VECTOR, 256),
                                           "shorthand": Shorthand.SELF,
                                           "level": rng.getrandbits(1)}).as_bits())
            if r.kind == ICRWriteKind.XAPIC_ICR_LO and rng.random() < share else r
            for r in requests]


def dense_errors(case, rng, per_transfer=1 / 40):
    """Bus errors at about ``per_transfer`` of the transfers of ``case`` (a request makes 2 to
    3 on average), denser than `random_case`'s own, so every transfer of every path meets one."""
    n = len(case.requests) * 3
    case.memory.error_at = {rng.randrange(n) for _ in range(max(1, int(n * per_transfer)))}


def host_side(pids, rng):
    """A barrier action (``on_barrier(request, *memories)``): the host handled each PID's
    notification (ON cleared, and sometimes the PIR taken), so later postings notify again;
    and each vCPU is running (SN clear) or preempted (SN set, one in five)."""
    def handle(request, *memories):
        take = rng.random() < 0.5
        preempted = {pid for pid in pids if rng.random() < 0.2}
        for memory in memories:
            for pid in pids:
                info = memory.read(pid + PID_NOTIFY_INFO_OFFSET) & \
                    ~NOTIFY_INFO_ON & ~NOTIFY_INFO_SN
                memory.write(pid + PID_NOTIFY_INFO_OFFSET,
                             info | NOTIFY_INFO_SN if pid in preempted else info)
                if take:
                    for k in range(PIR_WORDS):
                        memory.write(pid + BUS_BYTES * k, 0)
    return handle


def with_barriers(requests, rng, share=0.08):
    """Mark a ``share`` of the requests as barriers (the host side runs before them)."""
    return [replace(r, barrier=True) if rng.random() < share else r for r in requests]


#: One ICR field that makes a write ineligible (docs/architecture.md §4.4), each alone.
_ODD_FIELDS = ({"delivery_status": 1}, {"trigger": TriggerMode.LEVEL},
               {"dest_mode": DestMode.LOGICAL}, {"delivery_mode": DeliveryMode.NMI},
               {"shorthand": Shorthand.ALL_EXCLUDING_SELF}, {"vector": 7})


def posting_bursts(case, rng, *, bursts=None, length=(3, 7), odd=0.25):
    """Insert ``bursts`` (default one per 12 requests, at least 4) runs of back-to-back
    postings (each to another target with a usable PID-pointer entry, after a barrier) into
    ``case.requests``, so that notifications follow one another faster than a slow consumer
    takes them: the "previous notification still offered" path. Kinds: x2APIC, xAPIC (ICR2 +
    ICR-low), SENDUIPI, and in xAPIC mode self-IPIs (the same path of the VIRR update). A share
    ``odd`` of the ICR writes has one field that makes them ineligible (`_ODD_FIELDS`), so the
    eligibility rules are met between postings too."""
    requests = list(case.requests)
    if bursts is None:
        bursts = max(4, len(requests) // 12)
    for _ in range(bursts):
        if not requests:
            break
        at = rng.randrange(len(requests))
        cfg = replace(requests[at].cfg, ipiv=True)
        table, last, top = cfg.pid_table, cfg.last_pid_index, case.maxphyaddr
        usable = [t for t in range(min(last, 255) + 1)
                  if (case.memory.read(table + PID_POINTER_ENTRY_BYTES * t)
                      & PID_POINTER_ENTRY_LOW_MASK) == PID_POINTER_ENTRY_VALID
                  and not case.memory.read(table + PID_POINTER_ENTRY_BYTES * t) >> top]
        if not usable:
            continue
        burst = []
        for t in rng.sample(usable, min(len(usable), rng.randint(*length))):
            vector = rng.randrange(FIRST_LEGAL_VECTOR, 256)
            fields = {"vector": vector}
            if rng.random() < odd:
                fields.update(rng.choice(_ODD_FIELDS))
            r = rng.random()
            if not cfg.x2apic and r < 0.25:
                burst.append(Request(replace(cfg, vid=True), ICRWriteKind.XAPIC_ICR_LO,
                                     ICRLow.const({**fields, "shorthand": Shorthand.SELF}
                                                  ).as_bits()))
            elif r < 0.45:
                ndst = ndst_of(t, host_x2apic=cfg.x2apic)   # a UPID's NDST: as a PID's
                burst.append(Request(cfg, ICRWriteKind.SENDUIPI,
                                     SendUIPIData.const({"nv": vector, "ndst": ndst}).as_bits()))
            elif cfg.x2apic:
                burst.append(Request(cfg, ICRWriteKind.X2APIC_ICR, X2APICICR.const(
                    {"dest": t}).as_bits() | ICRLow.const(fields).as_bits()))
            else:
                burst += [Request(cfg, ICRWriteKind.XAPIC_ICR_HI,
                                  XAPICICRHigh.const({"dest": t}).as_bits()),
                          Request(cfg, ICRWriteKind.XAPIC_ICR_LO, ICRLow.const(fields).as_bits())]
        burst[0] = replace(burst[0], barrier=True)
        requests[at:at] = burst
    case.requests = requests
    return case

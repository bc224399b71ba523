"""Constrained-random stimulus for the unit: VMCS configurations, memory images and ICR writes.

Plain Python, shared by the Amaranth tests and the cocotb regression. Values are biased
towards the interesting corners (vectors below 16, destinations around the last index, 0xFF,
invalid entries, ON/SN set, reserved bits) and sometimes are plain garbage.
"""

import random
from dataclasses import dataclass, replace

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, DeliveryMode, DestMode,
    ICRLow, ICRWriteKind, NotifyInfo, PID_NOTIFY_INFO_OFFSET, SendUIPIData, Shorthand,
    TriggerMode, X2APICICR, XAPICICRHigh,
)
from .golden import Config
from .memory import Memory
from .scenarios import Request
from .vm_layout import allowed_words


__all__ = ["RandomCase", "random_case", "random_icr_low"]


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


def _address(rng, maxphyaddr, align_bits):
    return rng.randrange(1, 1 << (maxphyaddr - align_bits)) << align_bits


def random_icr_low(rng):
    """A 32-bit ICR low value, mostly well-formed, with each irregularity now and then."""
    r = rng.random()
    if r < 0.05:
        return rng.getrandbits(32)
    if r < 0.55:    # what IPIv virtualizes: fixed, physical, edge, no shorthand, V >= 16
        return ICRLow.const({"vector": rng.randrange(16, 256), "level": rng.getrandbits(1)}
                            ).as_bits()
    fields = {
        "vector": rng.randrange(16) if rng.random() < 0.1 else rng.randrange(256),
        "delivery_mode": DeliveryMode.FIXED if rng.random() < 0.8 else rng.choice(list(DeliveryMode)),
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
    table = _address(rng, maxphyaddr, 12)
    last = rng.choice([0, 1, 3, 7, 15, rng.randrange(64), 0xFFFF])
    span = min(last + 3, 24)
    pids = []
    for t in range(span):
        r = rng.random()
        if r < 0.08:
            continue                                    # entry 0: no vCPU
        if pids and rng.random() < 0.15:
            pid = rng.choice(pids)                      # two IDs sharing a PID
        else:
            pid = _address(rng, maxphyaddr, 6)
        entry = pid | 1
        if r > 0.92:
            entry ^= 1 << rng.randrange(0, 6)           # valid clear or a reserved bit set
        elif r > 0.86:
            entry |= 1 << rng.randrange(maxphyaddr, 64)  # a bit at or above MAXPHYADDR
        memory.write(table + 8 * t, entry)
        if pid not in pids:
            pids.append(pid)
            info = {"on": int(rng.random() < 0.25), "sn": int(rng.random() < 0.2),
                    "nv": rng.randrange(256), "ndst": rng.getrandbits(32),
                    "reserved_15_2": rng.getrandbits(14) if rng.random() < 0.1 else 0}
            memory.write(pid + PID_NOTIFY_INFO_OFFSET, NotifyInfo.const(info).as_bits())
            for k in range(4):
                if rng.random() < 0.3:
                    memory.write(pid + 8 * k, rng.getrandbits(64))

    vapic_pages = [_address(rng, maxphyaddr, 12) for _ in range(2)]
    for vapic in vapic_pages:
        memory.write(vapic + APIC_OFFSET_ICR_HI, rng.getrandbits(32), size=4)
        memory.write(vapic + APIC_OFFSET_ICR_LO + 4, rng.getrandbits(32), size=4)
        for k in range(8):
            memory.write(vapic + APIC_OFFSET_IRR + 0x10 * k, rng.getrandbits(32), size=4)
    cfg = Config(ipiv=rng.random() < 0.85, vid=rng.random() < 0.85, x2apic=rng.random() < 0.5,
                 host_x2apic=rng.random() < 0.5, last_pid_index=last, pid_table=table,
                 vapic_page=vapic_pages[0])

    def dest(x2apic):
        r = rng.random()
        if r < 0.75:
            return rng.randrange(span)
        if r < 0.85:
            return 0xFFFF_FFFF if x2apic else 0xFF
        return rng.getrandbits(32 if x2apic else 8)

    requests = []
    for _ in range(count):
        if rng.random() < 0.1:      # the hypervisor reprograms the VMCS between writes
            cfg = replace(cfg, ipiv=rng.random() < 0.85, vid=rng.random() < 0.85,
                          x2apic=rng.random() < 0.5, host_x2apic=rng.random() < 0.5,
                          vapic_page=rng.choice(vapic_pages))
        r = rng.random()
        if r < 0.12:
            value = SendUIPIData.const({"nv": rng.randrange(256), "ndst": dest(True)
                                        if cfg.x2apic else rng.getrandbits(32) & ~0xFF00 |
                                        dest(False) << 8}).as_bits()
            if rng.random() < 0.2:
                value |= rng.getrandbits(24) << 8       # bits the unit must ignore
            requests.append(Request(cfg, ICRWriteKind.SENDUIPI, value))
        elif cfg.x2apic:
            value = X2APICICR.const({"dest": dest(True)}).as_bits() | random_icr_low(rng)
            requests.append(Request(cfg, ICRWriteKind.X2APIC_ICR, value))
        elif r < 0.45:
            hi = XAPICICRHigh.const({"dest": dest(False)}).as_bits() | rng.getrandbits(24) \
                if rng.random() < 0.3 else XAPICICRHigh.const({"dest": dest(False)}).as_bits()
            if rng.random() < 0.05:
                hi |= rng.getrandbits(32) << 32         # upper data bits are not the ICR
            requests.append(Request(cfg, ICRWriteKind.XAPIC_ICR_HI, hi))
        else:
            value = random_icr_low(rng)
            if rng.random() < 0.05:
                value |= rng.getrandbits(32) << 32
            requests.append(Request(cfg, ICRWriteKind.XAPIC_ICR_LO, value))

    if errors:
        memory.error_at = {rng.randrange(5 * count) for _ in range(rng.randrange(1, 4))}
    return RandomCase(memory, requests, maxphyaddr, pids, vapic_pages)

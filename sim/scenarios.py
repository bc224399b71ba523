"""Named workloads for the unit: a small VM laid out in memory and a stream of ICR writes.

Plain Python (no simulator): the Amaranth harness and, later, the cocotb testbenches and the
KVM model use the same scenarios.
"""

import random
from dataclasses import dataclass, field, replace

from hdl.formats import (
    DeliveryMode, DestMode, ICRLow, ICRWriteKind, NotifyInfo, PID_NOTIFY_INFO_OFFSET,
    POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR, SendUIPIData, Shorthand, TriggerMode,
    XAPICICRHigh, XAPICNDST, X2APICICR, XAPIC_BROADCAST_ID,
)
from .golden import Config
from .memory import Memory


__all__ = ["Request", "VM", "build_vm", "SCENARIOS", "make_scenario", "deliver_pending",
           "guest_ipi", "icr_low"]


@dataclass(frozen=True)
class Request:
    """One ICR write to issue on core ``port`` with the VMCS state ``cfg``.

    ``barrier``: wait until the core is idle and its outputs drained before issuing it (the
    harness then lets the host side process pending notifications, see `deliver_pending`).
    """
    cfg: Config
    kind: ICRWriteKind
    value: int
    port: int = 0
    barrier: bool = False


@dataclass
class VM:
    """Where a VM's IPIv structures live in guest-physical memory."""
    memory: Memory
    pid_table: int
    max_vcpu_ids: int
    pids: dict = field(default_factory=dict)          # vCPU id -> PID address
    vapic_pages: dict = field(default_factory=dict)   # vCPU id -> virtual-APIC page

    def config(self, vcpu, *, x2apic, host_x2apic=True, ipiv=True, vid=True):
        return Config(ipiv=ipiv, vid=vid, x2apic=x2apic, host_x2apic=host_x2apic,
                      last_pid_index=self.max_vcpu_ids - 1, pid_table=self.pid_table,
                      vapic_page=self.vapic_pages[vcpu])


# How a target vCPU's PID is routed: (SN, NV) and whether it is counted as running.
TARGET_STATES = {
    "running": (0, POSTED_INTR_VECTOR),
    "preempted": (1, POSTED_INTR_VECTOR),
    "blocked": (0, POSTED_INTR_WAKEUP_VECTOR),
}


def build_vm(states, *, max_vcpu_ids=8, host_x2apic=True, base=0x10_0000):
    """Lay out a VM: PID-pointer table, one PID and one virtual-APIC page per vCPU.

    ``states`` maps vCPU id -> "running" / "preempted" / "blocked"; vCPU ``i`` runs (or last
    ran) on pCPU ``i + 1``. Table entries of vCPUs not in ``states`` stay 0 (invalid).
    """
    memory = Memory()
    vm = VM(memory, pid_table=base, max_vcpu_ids=max_vcpu_ids)
    for vcpu, state in states.items():
        if not 0 <= vcpu < max_vcpu_ids:
            raise ValueError(f"vCPU id {vcpu} outside 0..{max_vcpu_ids - 1}")
        sn, nv = TARGET_STATES[state]
        pid = base + 0x1_0000 + 64 * vcpu
        vapic = base + 0x2_0000 + 0x1000 * vcpu
        pcpu = vcpu + 1
        ndst = pcpu if host_x2apic else XAPICNDST.const({"apic_id": pcpu}).as_bits()
        memory.write(pid + PID_NOTIFY_INFO_OFFSET,
                     NotifyInfo.const({"sn": sn, "nv": nv, "ndst": ndst}).as_bits())
        memory.write(vm.pid_table + 8 * vcpu, pid | 1)
        vm.pids[vcpu] = pid
        vm.vapic_pages[vcpu] = vapic
    return vm


def deliver_pending(vm, *memories):
    """The host side between requests: every PID with ON set and SN clear had its notification
    handled (posted-interrupt processing or wakeup): clear ON and the PIR."""
    for memory in memories:
        for pid in vm.pids.values():
            info = memory.read(pid + PID_NOTIFY_INFO_OFFSET)
            if NotifyInfo.from_bits(info).on:
                memory.write(pid + PID_NOTIFY_INFO_OFFSET,
                             info & ~NotifyInfo.const({"on": 1}).as_bits())
                for w in range(4):
                    memory.write(pid + 8 * w, 0)


def icr_low(vector, *, mode=DeliveryMode.FIXED, dest_mode=DestMode.PHYSICAL,
            shorthand=Shorthand.NONE, trigger=TriggerMode.EDGE, level=1, **reserved):
    return ICRLow.const({"vector": vector, "delivery_mode": mode, "dest_mode": dest_mode,
                         "shorthand": shorthand, "trigger": trigger, "level": level,
                         **reserved}).as_bits()


# Kinds of IPI a guest sends, with weights: (name, weight).
MIX = [
    ("unicast", 50), ("out-of-range", 6), ("no-vcpu", 5), ("logical", 8), ("all-but-self", 5),
    ("nmi", 4), ("init", 3), ("illegal-vector", 3), ("self", 5), ("broadcast", 3),
    ("reserved", 3), ("senduipi", 5),
]


def _ipi(rng, vm, kind, sender, x2apic):
    """(delivery fields, destination) of one guest IPI of the named kind."""
    targets = [v for v in vm.pids if v != sender] or [sender]
    vector = rng.randrange(0x20, 0xF0)
    dest = rng.choice(targets)
    fields = {}
    if kind == "out-of-range":
        dest = rng.randrange(vm.max_vcpu_ids, 0xFF if not x2apic else 0x1_0000)
    elif kind == "no-vcpu":
        free = [v for v in range(vm.max_vcpu_ids) if v not in vm.pids]
        dest = rng.choice(free) if free else dest
    elif kind == "logical":
        fields["dest_mode"] = DestMode.LOGICAL
    elif kind == "all-but-self":
        fields["shorthand"] = Shorthand.ALL_EXCLUDING_SELF
    elif kind == "nmi":
        fields["mode"] = DeliveryMode.NMI
    elif kind == "init":
        fields["mode"], vector = DeliveryMode.INIT, 0
    elif kind == "illegal-vector":
        vector = rng.randrange(0, 16)
    elif kind == "self":
        fields["shorthand"] = Shorthand.SELF
    elif kind == "broadcast":
        dest = XAPIC_BROADCAST_ID if not x2apic else 0xFFFF_FFFF
    elif kind == "reserved":
        fields["reserved_13"] = 1
    return icr_low(vector, **fields), dest


def mixed_requests(vm, *, count, seed, sender=0):
    """A mix of virtualizable and non-virtualizable IPIs, half in x2APIC mode, half in xAPIC
    mode, with the host side handling notifications every few writes."""
    rng = random.Random(seed)
    names, weights = zip(*MIX)
    requests = []
    for i in range(count):
        x2apic = i < (count + 1) // 2
        cfg = vm.config(sender, x2apic=x2apic)
        kind = rng.choices(names, weights)[0]
        barrier = i % 6 == 5
        if kind == "senduipi":
            upid = SendUIPIData.const({"nv": rng.randrange(0x20, 0xF0), "ndst":
                                       rng.choice(list(vm.pids)) if x2apic else
                                       XAPICNDST.const({"apic_id": rng.choice(list(vm.pids))}
                                                       ).as_bits()}).as_bits()
            requests.append(Request(cfg, ICRWriteKind.SENDUIPI, upid, barrier=barrier))
            continue
        low, dest = _ipi(rng, vm, kind, sender, x2apic)
        requests += guest_ipi(cfg, low, dest, barrier=barrier)
    return requests


def guest_ipi(cfg, low, dest, *, barrier=False):
    """The ICR write(s) a guest makes for one IPI in ``cfg``'s APIC mode: x2APIC, one WRMSR;
    xAPIC, ICR2 (the destination) first, then ICR (which sends)."""
    if cfg.x2apic:
        return [Request(cfg, ICRWriteKind.X2APIC_ICR,
                        X2APICICR.const({"dest": dest}).as_bits() | low, barrier=barrier)]
    return [Request(cfg, ICRWriteKind.XAPIC_ICR_HI,
                    XAPICICRHigh.const({"dest": dest & 0xFF}).as_bits(), barrier=barrier),
            Request(cfg, ICRWriteKind.XAPIC_ICR_LO, low)]


def unicast_requests(vm, *, count, seed, sender=0, x2apic=True):
    """Only virtualizable unicast IPIs to the other vCPUs (x2APIC or xAPIC)."""
    rng = random.Random(seed)
    targets = [v for v in vm.pids if v != sender]
    cfg = vm.config(sender, x2apic=x2apic)
    requests = []
    for i in range(count):
        requests += guest_ipi(cfg, icr_low(rng.randrange(0x20, 0xF0)), rng.choice(targets),
                              barrier=i % 6 == 5)
    return requests


DEFAULT_STATES = {0: "running", 1: "running", 2: "preempted", 3: "blocked"}

SCENARIOS = {
    "mixed": ("4 vCPUs (running, running, preempted, blocked) in an 8-ID VM; a mix of "
              "virtualizable and non-virtualizable IPIs in x2APIC then xAPIC mode",
              lambda vm, count, seed: mixed_requests(vm, count=count, seed=seed)),
    "x2apic-unicast": ("only virtualizable x2APIC unicast IPIs",
                       lambda vm, count, seed: unicast_requests(vm, count=count, seed=seed)),
    "xapic-unicast": ("only virtualizable xAPIC unicast IPIs (ICR2 then ICR writes)",
                      lambda vm, count, seed: unicast_requests(vm, count=count, seed=seed,
                                                               x2apic=False)),
}


def make_scenario(name, *, count, seed):
    """Build the named scenario: returns (vm, requests)."""
    if name not in SCENARIOS:
        raise KeyError(name)
    vm = build_vm(DEFAULT_STATES)
    return vm, SCENARIOS[name][1](vm, count, seed)

"""Named workloads for the unit: a small VM laid out in memory and a stream of ICR writes.

Plain Python (no simulator): the golden model, both testbench backends (Amaranth's simulator
and cocotb), the experiments and the board host use the same scenarios. The VM itself is laid
out by `sim.vm_layout`.
"""

import random
from dataclasses import dataclass

from hdl.formats import (
    BUS_BYTES, DeliveryMode, DestMode, ICRLow, ICRWriteKind, NOTIFY_INFO_ON, NotifyInfo,
    PID_NOTIFY_INFO_OFFSET, PIR_WORDS, SendUIPIData, Shorthand, TriggerMode, X2APIC_BROADCAST_ID,
    XAPICICRHigh, XAPICNDST, X2APICICR, XAPIC_BROADCAST_ID,
)
from .arch_values import check_fits, hex_repr, pack
from .golden import Config
from .outcome_text import describe_states
from .vm_layout import VM, build_vm


__all__ = ["Request", "VM", "build_vm", "SCENARIOS", "make_scenario", "scenario_states",
           "deliver_pending", "guest_ipi", "icr_low"]


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

    def __repr__(self):
        return hex_repr(self, {"value"})


def deliver_pending(vm, *memories):
    """The host side between requests: every PID with ON set and SN clear had its notification
    handled (posted-interrupt processing or wakeup): clear ON and the PIR."""
    for memory in memories:
        for pid in vm.pids.values():
            info = memory.read(pid + PID_NOTIFY_INFO_OFFSET)
            if NotifyInfo.from_bits(info).on:
                memory.write(pid + PID_NOTIFY_INFO_OFFSET, info & ~NOTIFY_INFO_ON)
                for w in range(PIR_WORDS):
                    memory.write(pid + BUS_BYTES * w, 0)


def icr_low(vector, *, mode=DeliveryMode.FIXED, dest_mode=DestMode.PHYSICAL,
            shorthand=Shorthand.NONE, trigger=TriggerMode.EDGE, level=1, **reserved):
    """Bits 31:0 of an ICR (`hdl.formats.ICRLow`); other fields by name (``reserved_13=1``).
    A value that does not fit its field is a ValueError naming the field and its range."""
    return pack(ICRLow, {"vector": vector, "delivery_mode": mode, "dest_mode": dest_mode,
                         "shorthand": shorthand, "trigger": trigger, "level": level,
                         **reserved}, what="ICR")


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
        dest = XAPIC_BROADCAST_ID if not x2apic else X2APIC_BROADCAST_ID
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
    xAPIC, ICR2 (the destination) first, then ICR (which sends). ``low`` is bits 31:0 of the
    ICR; ``dest`` must fit the mode's destination field (32 bits x2APIC, 8 bits xAPIC)."""
    check_fits("ICR bits 31:0", low, ICRLow.as_shape().size)
    if cfg.x2apic:
        return [Request(cfg, ICRWriteKind.X2APIC_ICR,
                        pack(X2APICICR, {"dest": dest}, what="x2APIC ICR") | low,
                        barrier=barrier)]
    return [Request(cfg, ICRWriteKind.XAPIC_ICR_HI,
                    pack(XAPICICRHigh, {"dest": dest}, what="xAPIC ICR2"), barrier=barrier),
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
_STATES = describe_states(DEFAULT_STATES)

SCENARIOS = {
    "mixed": (f"virtualizable and non-virtualizable IPIs, x2APIC then xAPIC, in an 8-ID VM: "
              f"{_STATES}, and to IDs without a vCPU",
              lambda vm, count, seed: mixed_requests(vm, count=count, seed=seed)),
    "x2apic-unicast": (f"virtualizable x2APIC unicast IPIs only: {_STATES}",
                       lambda vm, count, seed: unicast_requests(vm, count=count, seed=seed)),
    "xapic-unicast": (f"virtualizable xAPIC unicast IPIs only (ICR2, then ICR): {_STATES}",
                      lambda vm, count, seed: unicast_requests(vm, count=count, seed=seed,
                                                               x2apic=False)),
}


def scenario_states(name):
    """The vCPU states (vCPU id -> "running" / "preempted" / "blocked") of a scenario's VM;
    every scenario sends from vCPU 0."""
    _check(name)
    return dict(DEFAULT_STATES)


def _check(name):
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (scenarios: {', '.join(SCENARIOS)})")


def make_scenario(name, *, count, seed):
    """Build the named scenario: returns (vm, requests); ValueError for an unknown name."""
    _check(name)
    vm = build_vm(DEFAULT_STATES)
    return vm, SCENARIOS[name][1](vm, count, seed)

"""Where a VM's IPIv structures live in guest-physical memory, built one way for every user.

The scenarios, the KVM model (`sim.kvm`) and the FPGA board's memory image all lay out the
PID-pointer table, the PIDs and the virtual-APIC pages through this module, so a table entry
is always built from `hdl.formats.PIDPointerEntry` and a PID's routing from
`hdl.formats.NotifyInfo` (docs/architecture.md §2, §3).
"""

from dataclasses import dataclass, field

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE, BUS_BYTES,
    NotifyInfo, PAGE_SIZE, PID_BYTES, PIR_WORDS,
    PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES, PIDPointerEntry,
    POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR, VMCSConfig, XAPICNDST, pid_pointer_entry,
)
from .arch_values import check_fields, check_fits, field_width, pack
from .golden import Config, GoldenIPIVirtualizer
from .memory import Memory


__all__ = ["VM", "TARGET_STATES", "build_vm", "write_pid_pointer_entry", "write_routing",
           "ndst_of", "allowed_words"]



def write_pid_pointer_entry(memory, pid_table, vcpu_id, pid):
    """Point entry ``vcpu_id`` of the table at ``pid`` (what KVM does at vCPU creation). The
    index must fit the last-PID-pointer-index field, the PID its entry's address field."""
    check_fits("PID-pointer table index", vcpu_id, field_width(VMCSConfig, "last_pid_index"))
    check_fields(PIDPointerEntry, {"pid_line": pid // PID_BYTES}, what="PID-pointer entry")
    memory.write(pid_table + PID_POINTER_ENTRY_BYTES * vcpu_id, pid_pointer_entry(pid))


def ndst_of(pcpu, *, host_x2apic):
    """PID.NDST for physical APIC ID ``pcpu``: the ID itself (x2APIC host, 32 bits) or in bits
    15:8 (xAPIC host, 8 bits); an ID that does not fit is a ValueError."""
    if host_x2apic:
        return check_fields(NotifyInfo, {"ndst": pcpu}, what="PID")["ndst"]
    return pack(XAPICNDST, {"apic_id": pcpu}, what="xAPIC NDST")


def write_routing(memory, pid, *, sn, nv, ndst, on=0):
    """Write a PID's NotifyInfo word (ON, SN, NV, NDST); each value must fit its field."""
    memory.write(pid + PID_NOTIFY_INFO_OFFSET,
                 pack(NotifyInfo, {"on": on, "sn": sn, "nv": nv, "ndst": ndst}, what="PID"))


def allowed_words(vapic_pages, pids, maxphyaddr=52):
    """The word addresses the spec lets the unit write (docs/interface.md, order of effects): the
    vICR words and the eight VIRR words of each virtual-APIC page, the PIR and NotifyInfo words
    of each PID (addresses wrap at MAXPHYADDR)."""
    word = GoldenIPIVirtualizer(maxphyaddr).word
    vapic_offsets = [APIC_OFFSET_ICR_LO, APIC_OFFSET_ICR_HI] + \
        [APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * k for k in range(8)]
    pid_offsets = [BUS_BYTES * k for k in range(PIR_WORDS)] + [PID_NOTIFY_INFO_OFFSET]
    return {word(page + off) for page in vapic_pages for off in vapic_offsets} | \
        {word(pid + off) for pid in pids for off in pid_offsets}


@dataclass
class VM:
    """A VM's IPIv structures: the PID-pointer table, a PID and a virtual-APIC page per vCPU."""
    memory: Memory
    pid_table: int
    max_vcpu_ids: int
    pids: dict = field(default_factory=dict)          # vCPU id -> PID address
    vapic_pages: dict = field(default_factory=dict)   # vCPU id -> virtual-APIC page

    def add_vcpu(self, vcpu, *, pid, vapic_page):
        """Record ``vcpu``'s PID and virtual-APIC page and point its table entry at the PID."""
        if not 0 <= vcpu < self.max_vcpu_ids:
            raise ValueError(f"vCPU id {vcpu} outside 0..{self.max_vcpu_ids - 1}")
        write_pid_pointer_entry(self.memory, self.pid_table, vcpu, pid)
        self.pids[vcpu] = pid
        self.vapic_pages[vcpu] = vapic_page

    def config(self, vcpu, *, x2apic, host_x2apic=True, ipiv=True, vid=True):
        """The unit's `Config` (VMCS state) while ``vcpu`` runs."""
        return Config(ipiv=ipiv, vid=vid, x2apic=x2apic, host_x2apic=host_x2apic,
                      last_pid_index=self.max_vcpu_ids - 1, pid_table=self.pid_table,
                      vapic_page=self.vapic_pages[vcpu])


# How a target vCPU's PID is routed: (SN, NV) (docs/architecture.md §6).
TARGET_STATES = {
    "running": (0, POSTED_INTR_VECTOR),
    "preempted": (1, POSTED_INTR_VECTOR),
    "blocked": (0, POSTED_INTR_WAKEUP_VECTOR),
}


def build_vm(states, *, max_vcpu_ids=8, host_x2apic=True, base=0x10_0000):
    """Lay out a VM at fixed addresses: the table at ``base``, PIDs at ``base + 0x10000``,
    virtual-APIC pages at ``base + 0x20000``.

    ``states`` maps vCPU id -> "running" / "preempted" / "blocked"; vCPU ``i`` runs (or last
    ran) on pCPU ``i + 1``. Table entries of vCPUs not in ``states`` stay 0 (invalid).
    """
    vm = VM(Memory(), pid_table=base, max_vcpu_ids=max_vcpu_ids)
    for vcpu, state in states.items():
        sn, nv = TARGET_STATES[state]
        pid = base + 0x1_0000 + PID_BYTES * vcpu
        vm.add_vcpu(vcpu, pid=pid, vapic_page=base + 0x2_0000 + PAGE_SIZE * vcpu)
        write_routing(vm.memory, pid, sn=sn, nv=nv,
                      ndst=ndst_of(vcpu + 1, host_x2apic=host_x2apic))
    return vm

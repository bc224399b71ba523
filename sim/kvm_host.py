"""The physical machine under the KVM model (`sim.kvm`): its pCPUs, the physical IPIs that
carry posted-interrupt notifications and wakeups, and the host memory KVM allocates VM
structures in.

Model decisions: a pCPU's physical APIC ID is its index; the host's APIC mode (x2APIC or
xAPIC) decides how KVM writes it into PID.NDST (`sim.vm_layout.ndst_of`); memory allocation
never fails (no -ENOMEM paths).
"""

from collections import Counter

from hdl.formats import BUS_BYTES, PAGE_SIZE, POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR
from hdl.vmx import VMCSField
from .vm_layout import ndst_of


__all__ = ["Allocator", "PCPU", "Host"]


class Allocator:
    """Bump allocation of zeroed host-physical memory in a `Memory`."""

    def __init__(self, memory, base):
        self.memory = memory
        self.next = base

    def alloc(self, size, align=PAGE_SIZE):
        addr = -(-self.next // align) * align
        self.next = addr + size
        for word in range(addr // BUS_BYTES, -(-(addr + size) // BUS_BYTES)):
            self.memory.write_word(word, 0)
        return addr


class PCPU:
    """A physical CPU: which vCPU is loaded on it and its posted-interrupt wakeup list."""

    def __init__(self, index):
        self.index = index
        self.loaded = None
        self.wakeup_list = []
        self.interrupts = Counter()       # vectors received, for statistics

    def __repr__(self):
        running = "idle" if self.loaded is None else f"runs vCPU {self.loaded.vcpu_id}"
        return f"PCPU({self.index}, {running})"


class Host:
    """The physical machine: pCPUs and the delivery of physical (notification) IPIs."""

    def __init__(self, n_pcpus=4, *, x2apic=True):
        if isinstance(n_pcpus, bool) or not isinstance(n_pcpus, int) or n_pcpus < 1:
            raise ValueError(f"a host needs at least one pCPU, not n_pcpus={n_pcpus!r}")
        self.pcpus = [PCPU(i) for i in range(n_pcpus)]
        self.x2apic = x2apic

    def pcpu(self, index):
        """The pCPU with physical APIC ID ``index``; ValueError naming the range if none."""
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < len(self.pcpus):
            raise ValueError(f"no pCPU {index!r}: the host has pCPUs 0..{len(self.pcpus) - 1}")
        return self.pcpus[index]

    def ndst(self, pcpu):
        """How KVM writes pCPU ``pcpu``'s APIC ID into PID.NDST for this host mode."""
        return ndst_of(pcpu, host_x2apic=self.x2apic)

    def send_ipi(self, apic_id, vector):
        """A physical fixed IPI with ``vector`` arrives at the pCPU with ``apic_id``."""
        pcpu = self.pcpu(apic_id)
        pcpu.interrupts[vector] += 1
        vcpu = pcpu.loaded
        if vector == POSTED_INTR_VECTOR:
            if vcpu is not None and vcpu.in_guest and \
                    vcpu.vmcs.read16(VMCSField.POSTED_INTR_NV) == vector:
                vcpu.posted_interrupt_processing()
            # else: KVM's host handler does nothing; the PID's ON is seen at the next entry
        elif vector == POSTED_INTR_WAKEUP_VECTOR:
            if vcpu is not None and vcpu.in_guest:      # an external-interrupt VM exit
                vcpu.exit_guest()
                self.wakeup_handler(pcpu)
                vcpu.enter_guest()
            else:
                self.wakeup_handler(pcpu)

    def wakeup_handler(self, pcpu):
        """pi_wakeup_handler: wake every vCPU on this pCPU's list whose ON is set."""
        for vcpu in list(pcpu.wakeup_list):
            if vcpu.pi_on:
                vcpu.wake_up()

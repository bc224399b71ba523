"""One VM of the KVM model (``struct kvm``): the VM ioctls that shape IPI virtualization
(KVM_CAP_MAX_VCPU_ID, KVM_SET_BOOT_CPU_ID, KVM_CREATE_VCPU), its PID-pointer table, its
APICv inhibits and APIC map, and the delivery of the IPIs KVM emulates (x86.c, kvm_main.c,
vmx.c, lapic.c; 6.0 and 6.19 where they differ).
"""

import errno
from collections import Counter

from hdl.formats import PAGE_SIZE, PID_POINTER_ENTRY_BYTES
from .kvm_apic_map import (
    INHIBIT_APIC_ID_MODIFIED, INHIBIT_PHYSICAL_ID_ALIASED, deliver as _deliver,
    deliver_fast as _deliver_fast, recalculate_apic_map,
)
from .kvm_vcpu import VCPU
from .vm_layout import write_pid_pointer_entry


__all__ = ["KVMError", "VM", "KVM_MAX_VCPUS", "KVM_MAX_VCPU_IDS"]

KVM_MAX_VCPUS = 1024                   # CONFIG_KVM_MAX_NR_VCPUS default (6.19); fixed in 6.0
KVM_MAX_VCPU_IDS = 4 * KVM_MAX_VCPUS   # KVM_VCPU_ID_RATIO 4
# Inhibits that VMX honours (6.0 vmx_check_apicv_inhibit_reasons, 6.19 VMX_REQUIRED_APICV_
# INHIBITS); the model only ever raises these two and its own test toggles.
_VMX_INHIBITS = {"6.0": {INHIBIT_APIC_ID_MODIFIED},
                 "6.19": {INHIBIT_APIC_ID_MODIFIED, INHIBIT_PHYSICAL_ID_ALIASED}}


class KVMError(OSError):
    """An ioctl that fails (``errno`` as KVM returns it)."""

    def __init__(self, code, message):
        super().__init__(code, message)


def _order(size):
    """get_order(): log2 of the number of pages holding ``size`` bytes, rounded up."""
    pages = max(1, -(-size // PAGE_SIZE))
    return (pages - 1).bit_length()


class VM:
    """One VM (``struct kvm``): its vCPUs, its APIC map, its APICv inhibits and, lazily, its
    PID-pointer table.

    ``x2apic_format`` and ``x2apic_broadcast_quirk_disabled`` are the two flags of
    KVM_CAP_X2APIC_API (32-bit x2APIC IDs; no 0xFF-to-broadcast rewrite), off by default.
    """

    def __init__(self, kvm, *, irqchip_in_kernel=True):
        self.kvm = kvm
        self.irqchip_in_kernel = irqchip_in_kernel
        self.max_vcpu_ids = 0          # 0: not set yet
        self.max_vcpus = KVM_MAX_VCPUS
        self.created_vcpus = 0
        self.bsp_vcpu_id = 0
        self.vcpus = {}                # vcpu_id -> VCPU, in creation order (vcpu_idx)
        self.pid_table = None
        self.apicv_inhibits = set()    # VM-wide, as kvm->arch.apicv_inhibit_reasons
        self.x2apic_format = False
        self.x2apic_broadcast_quirk_disabled = False
        self.apic_map = None
        self.exits = Counter()         # (exit reason, qualification) -> count, all vCPUs

    def __repr__(self):
        table = "none" if self.pid_table is None else f"{self.pid_table:#x}"
        return f"VM(vCPUs {sorted(self.vcpus)}, PID-pointer table {table})"

    @property
    def memory(self):
        return self.kvm.memory

    @property
    def kernel(self):
        return self.kvm.kernel

    # -- ioctls -----------------------------------------------------------------------------
    def enable_cap_max_vcpu_id(self, max_vcpu_ids):
        """KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) (x86.c kvm_vm_ioctl_enable_cap): EINVAL above
        KVM_MAX_VCPU_IDS; setting the current value again is fine; otherwise settable only
        while unset (the first KVM_CREATE_VCPU sets the default). 6.19 also refuses a value
        not above the boot CPU id (KVM_SET_BOOT_CPU_ID)."""
        if isinstance(max_vcpu_ids, bool) or not isinstance(max_vcpu_ids, int) or \
                not 0 <= max_vcpu_ids <= KVM_MAX_VCPU_IDS:
            raise KVMError(errno.EINVAL, f"max vCPU IDs must be 0..{KVM_MAX_VCPU_IDS}, "
                                         f"not {max_vcpu_ids!r}")
        if self.kernel == "6.19" and self.bsp_vcpu_id > max_vcpu_ids:
            raise KVMError(errno.EINVAL, f"max vCPU IDs {max_vcpu_ids} below the boot CPU id "
                                         f"{self.bsp_vcpu_id}")
        if self.max_vcpu_ids == max_vcpu_ids:
            return
        if self.max_vcpu_ids:
            raise KVMError(errno.EINVAL, f"max vCPU IDs already {self.max_vcpu_ids} "
                                         f"(set once, and fixed by the first vCPU)")
        self.max_vcpu_ids = max_vcpu_ids

    def set_boot_cpu_id(self, vcpu_id):
        """KVM_SET_BOOT_CPU_ID (x86.c kvm_arch_vm_ioctl): EBUSY once a vCPU was created;
        6.19 also EINVAL above KVM_MAX_VCPU_IDS or above a max vCPU ID already set."""
        if self.created_vcpus:
            raise KVMError(errno.EBUSY, "vCPUs already created")
        if self.kernel == "6.19" and (vcpu_id > KVM_MAX_VCPU_IDS or (
                self.max_vcpu_ids and vcpu_id > self.max_vcpu_ids)):
            raise KVMError(errno.EINVAL, f"boot CPU id {vcpu_id} above the max vCPU IDs")
        self.bsp_vcpu_id = vcpu_id

    def create_vcpu(self, vcpu_id):
        """KVM_CREATE_VCPU (kvm_main.c kvm_vm_ioctl_create_vcpu, 6.0 and 6.19), checks in
        KVM's order: id >= KVM_MAX_VCPU_IDS -> EINVAL; the VM already created max_vcpus
        (KVM_MAX_VCPUS) vCPUs -> EINVAL; kvm_arch_vcpu_precreate: the max vCPU ID defaults
        to KVM_MAX_VCPU_IDS, id >= it -> EINVAL, vmx_vcpu_precreate allocates the PID-pointer
        table; then the vCPU is built (vmx_vcpu_create writes its table entry) and only then
        a duplicate id is found -> EEXIST. The duplicate's table entry write is not undone:
        the entry then points at the PID of the vCPU KVM just destroyed."""
        if isinstance(vcpu_id, bool) or not isinstance(vcpu_id, int) or vcpu_id < 0:
            raise KVMError(errno.EINVAL, f"vCPU id must be a non-negative integer, "
                                         f"not {vcpu_id!r}")
        if vcpu_id >= KVM_MAX_VCPU_IDS:
            raise KVMError(errno.EINVAL, f"vCPU id {vcpu_id} >= KVM_MAX_VCPU_IDS "
                                         f"{KVM_MAX_VCPU_IDS}")
        if self.created_vcpus >= self.max_vcpus:
            raise KVMError(errno.EINVAL, f"the VM already has {self.created_vcpus} vCPUs "
                                         f"(max {self.max_vcpus})")
        # kvm_arch_vcpu_precreate
        if not self.max_vcpu_ids:
            self.max_vcpu_ids = KVM_MAX_VCPU_IDS
        if vcpu_id >= self.max_vcpu_ids:
            raise KVMError(errno.EINVAL, f"vCPU id {vcpu_id} >= max vCPU IDs "
                                         f"{self.max_vcpu_ids}")
        self._alloc_pid_table()
        self.created_vcpus += 1
        vcpu = VCPU(self, vcpu_id)
        if vcpu.can_use_ipiv:
            write_pid_pointer_entry(self.memory, self.pid_table, vcpu_id, vcpu.pi_desc)
        if vcpu_id in self.vcpus:
            self.created_vcpus -= 1
            raise KVMError(errno.EEXIST, f"vCPU {vcpu_id} exists")
        self.vcpus[vcpu_id] = vcpu
        self.recalculate_apic_map()
        return vcpu

    def _alloc_pid_table(self):
        """vmx_alloc_ipiv_pid_table: once per VM, sized by max vCPU IDs, zeroed."""
        if not self.irqchip_in_kernel or not self.kvm.enable_ipiv or self.pid_table is not None:
            return
        self.pid_table = self.kvm.allocator.alloc(self.pid_table_bytes)

    @property
    def pid_table_bytes(self):
        return PAGE_SIZE << _order(self.max_vcpu_ids * PID_POINTER_ENTRY_BYTES)

    def pid_table_entry(self, vcpu_id):
        if self.pid_table is None:
            return None
        return self.memory.read(self.pid_table + PID_POINTER_ENTRY_BYTES * vcpu_id)

    # -- APICv inhibits and the APIC map ----------------------------------------------------
    def set_apicv_inhibit(self, reason, inhibit=True):
        """kvm_set_or_clear_apicv_inhibit: VM-wide; every vCPU refreshes its controls
        (vmx_refresh_apicv_exec_ctrl) when APICv's state changes."""
        before = bool(self.apicv_inhibits)
        (self.apicv_inhibits.add if inhibit else self.apicv_inhibits.discard)(reason)
        if before != bool(self.apicv_inhibits):
            for vcpu in self.vcpus.values():
                vcpu.refresh_apicv_exec_ctrl()

    def recalculate_apic_map(self):
        """kvm_recalculate_apic_map; in 6.19 it also sets or clears the PHYSICAL_ID_ALIASED
        and APIC_ID_MODIFIED inhibits (the ones VMX honours)."""
        self.apic_map, inhibits = recalculate_apic_map(self, self.kernel)
        for reason, inhibit in inhibits.items():
            if reason in _VMX_INHIBITS[self.kernel]:
                self.set_apicv_inhibit(reason, inhibit)

    # -- IPI emulation ----------------------------------------------------------------------
    def deliver_ipi(self, source, ipi, *, fast_only=False):
        """kvm_irq_delivery_to_apic for an IPI ``source`` (a VCPU) sends: the vCPUs that
        accepted it. ``fast_only``: kvm_irq_delivery_to_apic_fast alone; returns None when
        the fast path cannot handle the IPI."""
        self.recalculate_apic_map()
        if fast_only:
            handled, accepted = _deliver_fast(self, source, ipi, self.kernel)
            return accepted if handled else None
        return _deliver(self, source, ipi, self.kernel)

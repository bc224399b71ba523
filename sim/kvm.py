"""KVM's side of IPI virtualization, executable: VMs and vCPUs, the PID-pointer table, posted
interrupts across load/put/block/preempt/migrate, the APIC-write exit handler and the software
emulation of every IPI the processor does not virtualize (Linux 6.0: ``vmx/vmx.c``,
``vmx/posted_intr.c``, ``lapic.c``, ``x86.c``).

Everything lives in one `Memory` (``sim.memory``) that the gateware can share: PID-pointer
tables, PIDs and virtual-APIC pages are allocated in it, so `VCPU.unit_config` can program the
RTL and a hardware posting is seen by the model (and the other way round).

Model decisions (KVM does more, or the sources leave it open):

- Lowest-priority delivery picks ``targets[vector % len(targets)]`` (KVM's vector hashing, on
  by default), targets ordered by vCPU id.
- A fixed/lowest-priority IPI with a vector below 16 is not delivered and sets "send illegal
  vector" (ESR bit 5) in the sender, as the SDM describes for a real APIC.
- Physical APIC IDs of pCPUs are their index; the host's APIC mode decides NDST's format.
"""

import errno
from collections import Counter

from hdl.formats import (
    APICRegister as R, APIC_WRITE_QUALIFICATION_ICR, DeliveryMode, EXIT_REASON_APIC_WRITE,
    MSR_X2APIC_ICR, MSR_X2APIC_SELF_IPI, NotifyInfo, PID_BYTES, PID_NOTIFY_INFO_OFFSET,
    POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR, TriggerMode, XAPICNDST,
)
from hdl.vmx import PinBased as Pin, Primary as P, Secondary as S, Tertiary as T, \
    VMCSField as F
from .golden import Config
from .kvm_setup import ModuleParams, hardware_setup
from .lapic import APIC_ICR_BUSY, ESR_SEND_ILLEGAL_VECTOR, IPI, VirtualAPIC
from .memory import Memory
from .vmcs import VMCS, ControlsShadow
from .vmx_caps import VMXCapabilities, preset


__all__ = ["KVMError", "KVM", "VM", "VCPU", "Host", "PCPU", "KVM_MAX_VCPU_IDS",
           "PID_TABLE_ENTRY_VALID", "APICV_INHIBIT_APIC_ID_MODIFIED"]

KVM_MAX_VCPU_IDS = 4096
PID_TABLE_ENTRY_VALID = 1
PAGE_SIZE = 4096
APICV_INHIBIT_APIC_ID_MODIFIED = "APIC_ID_MODIFIED"
X2APIC_MSR_BASE = 0x800
_ON = NotifyInfo.const({"on": 1}).as_bits()
_SN = NotifyInfo.const({"sn": 1}).as_bits()


class KVMError(OSError):
    """An ioctl that fails (``errno`` as KVM returns it)."""

    def __init__(self, code, message):
        super().__init__(code, message)


def _order(size):
    """get_order(): log2 of the number of pages holding ``size`` bytes, rounded up."""
    pages = max(1, -(-size // PAGE_SIZE))
    return (pages - 1).bit_length()


class Allocator:
    """Bump allocation of zeroed host-physical memory in a `Memory`."""

    def __init__(self, memory, base):
        self.memory = memory
        self.next = base

    def alloc(self, size, align=PAGE_SIZE):
        addr = -(-self.next // align) * align
        self.next = addr + size
        for word in range(addr >> 3, (addr + size + 7) >> 3):
            self.memory.write_word(word, 0)
        return addr


class PCPU:
    """A physical CPU: which vCPU is loaded on it and its posted-interrupt wakeup list."""

    def __init__(self, index):
        self.index = index
        self.loaded = None
        self.wakeup_list = []
        self.interrupts = Counter()       # vectors received, for statistics


class Host:
    """The physical machine: pCPUs and the delivery of physical (notification) IPIs."""

    def __init__(self, n_pcpus=4, *, x2apic=True):
        self.pcpus = [PCPU(i) for i in range(n_pcpus)]
        self.x2apic = x2apic

    def ndst(self, pcpu):
        """How KVM writes pCPU ``pcpu``'s APIC ID into PID.NDST for this host mode."""
        return pcpu if self.x2apic else XAPICNDST.const({"apic_id": pcpu}).as_bits()

    def send_ipi(self, apic_id, vector):
        """A physical fixed IPI with ``vector`` arrives at the pCPU with ``apic_id``."""
        if not 0 <= apic_id < len(self.pcpus):
            raise ValueError(f"no pCPU with APIC ID {apic_id}")
        pcpu = self.pcpus[apic_id]
        pcpu.interrupts[vector] += 1
        vcpu = pcpu.loaded
        if vector == POSTED_INTR_VECTOR:
            if vcpu is not None and vcpu.in_guest and \
                    vcpu.vmcs.read16(F.POSTED_INTR_NV) == vector:
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


class KVM:
    """kvm_intel loaded on a host: capabilities, module parameters and their decisions.

    Parameters
    ----------
    msrs : sim.vmx_caps.MSRs, optional
        The CPU (default: the ``ipiv`` preset).
    params : ModuleParams
    n_pcpus : int
    host_x2apic : bool
    memory : Memory, optional
        Physical memory to allocate VM structures in (shared with the gateware).
    """

    def __init__(self, msrs=None, params=ModuleParams(), *, n_pcpus=4, host_x2apic=True,
                 memory=None, base=0x1000_0000):
        self.msrs = preset("ipiv") if msrs is None else msrs
        self.caps = VMXCapabilities(self.msrs)
        self.setup = hardware_setup(self.msrs, params)
        self.host = Host(n_pcpus, x2apic=host_x2apic)
        self.memory = Memory() if memory is None else memory
        self.allocator = Allocator(self.memory, base)
        self.vms = []

    @property
    def enable_apicv(self):
        return self.setup.enable_apicv

    @property
    def enable_ipiv(self):
        return self.setup.enable_ipiv

    def create_vm(self, *, irqchip_in_kernel=True):
        vm = VM(self, irqchip_in_kernel=irqchip_in_kernel)
        self.vms.append(vm)
        return vm


class VM:
    """One VM (``struct kvm``): its vCPUs and, lazily, its PID-pointer table."""

    def __init__(self, kvm, *, irqchip_in_kernel=True):
        self.kvm = kvm
        self.irqchip_in_kernel = irqchip_in_kernel
        self.max_vcpu_ids = 0          # 0: not set yet
        self.vcpus = {}
        self.pid_table = None
        self.exits = Counter()         # (exit reason, qualification) -> count, all vCPUs

    @property
    def memory(self):
        return self.kvm.memory

    # -- ioctls -----------------------------------------------------------------------------
    def enable_cap_max_vcpu_id(self, max_vcpu_ids):
        """KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID): settable once, before vCPUs exist."""
        if isinstance(max_vcpu_ids, bool) or not isinstance(max_vcpu_ids, int) or \
                not 0 <= max_vcpu_ids <= KVM_MAX_VCPU_IDS:
            raise KVMError(errno.EINVAL, f"max vCPU IDs must be 0..{KVM_MAX_VCPU_IDS}, "
                                         f"not {max_vcpu_ids!r}")
        if self.max_vcpu_ids == max_vcpu_ids:
            return
        if self.max_vcpu_ids:
            raise KVMError(errno.EINVAL, f"max vCPU IDs already {self.max_vcpu_ids} "
                                         f"(set once, and fixed by the first vCPU)")
        self.max_vcpu_ids = max_vcpu_ids

    def create_vcpu(self, vcpu_id):
        """KVM_CREATE_VCPU."""
        if isinstance(vcpu_id, bool) or not isinstance(vcpu_id, int) or vcpu_id < 0:
            raise KVMError(errno.EINVAL, f"vCPU id must be a non-negative integer, "
                                         f"not {vcpu_id!r}")
        # kvm_arch_vcpu_precreate
        if not self.max_vcpu_ids:
            self.max_vcpu_ids = KVM_MAX_VCPU_IDS
        if vcpu_id >= self.max_vcpu_ids:
            raise KVMError(errno.EINVAL, f"vCPU id {vcpu_id} >= max vCPU IDs "
                                         f"{self.max_vcpu_ids}")
        if vcpu_id in self.vcpus:
            raise KVMError(errno.EEXIST, f"vCPU {vcpu_id} exists")
        self._alloc_pid_table()
        vcpu = VCPU(self, vcpu_id)
        self.vcpus[vcpu_id] = vcpu
        if vcpu.can_use_ipiv:
            self.memory.write(self.pid_table + 8 * vcpu_id, vcpu.pi_desc | PID_TABLE_ENTRY_VALID)
        return vcpu

    def _alloc_pid_table(self):
        """vmx_alloc_ipiv_pid_table: once per VM, sized by max vCPU IDs, zeroed."""
        if not self.irqchip_in_kernel or not self.kvm.enable_ipiv or self.pid_table is not None:
            return
        self.pid_table = self.kvm.allocator.alloc(self.pid_table_bytes)

    @property
    def pid_table_bytes(self):
        return PAGE_SIZE << _order(self.max_vcpu_ids * 8)

    def pid_table_entry(self, vcpu_id):
        return self.memory.read(self.pid_table + 8 * vcpu_id) if self.pid_table is not None \
            else None

    # -- IPI emulation ----------------------------------------------------------------------
    def deliver_ipi(self, source, ipi):
        """kvm_irq_delivery_to_apic for an IPI ``source`` (a VCPU) sends."""
        if not source.apic.legal_vector(ipi):
            source.apic.write32(R.ESR, source.apic.read32(R.ESR) | ESR_SEND_ILLEGAL_VECTOR)
            return []
        targets = [v for _, v in sorted(self.vcpus.items()) if v.apic.matches(source.apic, ipi)]
        if ipi.delivery_mode is DeliveryMode.LOWEST_PRIORITY and targets:
            targets = [targets[ipi.vector % len(targets)]]
        for target in targets:
            target.accept_irq(ipi)
        return targets


class VCPU:
    """A vCPU (``struct vcpu_vmx``): VMCS, PID, virtual APIC and scheduling state."""

    def __init__(self, vm, vcpu_id):
        self.vm, self.kvm, self.vcpu_id = vm, vm.kvm, vcpu_id
        self.host = self.kvm.host
        alloc = self.kvm.allocator
        self.pi_desc = alloc.alloc(PID_BYTES, align=PID_BYTES)
        self.vapic_page = alloc.alloc(PAGE_SIZE)
        self.apic = VirtualAPIC(self.memory, self.vapic_page, vcpu_id)
        self.vmcs = VMCS()
        self.shadow = ControlsShadow(self.vmcs)
        self.apicv_inhibits = set()
        self.cpu = None                # pCPU it was last loaded on
        self.loaded = False
        self.in_guest = False
        self.blocking = False          # halted, waiting for an interrupt
        self.preempted = False
        self.legacy_x2apic_icr_path = False   # reproduce the pre-patch 32-bit exit path
        self.nmi_pending = 0
        self.smi_pending = False
        self.init_pending = False
        self.sipi_vector = None
        self.taken = []                # vectors the guest took (acknowledged), in order
        self.exits = Counter()
        self.init_vmcs()
        self.reset()

    @property
    def memory(self):
        return self.vm.memory

    # -- KVM's predicates -------------------------------------------------------------------
    @property
    def lapic_in_kernel(self):
        return self.vm.irqchip_in_kernel

    @property
    def apicv_active(self):
        return self.kvm.enable_apicv and self.lapic_in_kernel and not self.apicv_inhibits

    @property
    def can_use_ipiv(self):
        return self.lapic_in_kernel and self.kvm.enable_ipiv

    @property
    def can_use_pi_wakeup(self):
        return self.can_use_ipiv

    # -- the PID ----------------------------------------------------------------------------
    @property
    def notify_info(self):
        return self.memory.read(self.pi_desc + PID_NOTIFY_INFO_OFFSET)

    def _set_notify_info(self, value):
        self.memory.write(self.pi_desc + PID_NOTIFY_INFO_OFFSET, value)

    @property
    def pi_on(self):
        return bool(NotifyInfo.from_bits(self.notify_info).on)

    @property
    def pi_sn(self):
        return bool(NotifyInfo.from_bits(self.notify_info).sn)

    @property
    def pi_nv(self):
        return NotifyInfo.from_bits(self.notify_info).nv

    @property
    def pi_ndst(self):
        return NotifyInfo.from_bits(self.notify_info).ndst

    def pir(self):
        return sum(self.memory.read(self.pi_desc + 8 * k) << (64 * k) for k in range(4))

    def _pir_take(self):
        """Read-and-clear the PIR (xchg of each word)."""
        pir = self.pir()
        for k in range(4):
            self.memory.write(self.pi_desc + 8 * k, 0)
        return pir

    def _update_notify_info(self, **fields):
        """A compare-and-swap update of NotifyInfo (the model is single-threaded, so the
        first try succeeds); other fields, ON included, keep their value."""
        info = NotifyInfo.from_bits(self.notify_info)
        values = {name: getattr(info, name) for name in ("on", "sn", "nv", "ndst")}
        values.update(fields)
        self._set_notify_info(NotifyInfo.const(values).as_bits())

    # -- VMCS -------------------------------------------------------------------------------
    def init_vmcs(self):
        cfg = self.kvm.setup.config
        self.shadow.set("pin", self._pin_controls())
        self.shadow.set("exec", cfg.cpu_based_exec_ctrl)
        if cfg.cpu_based_exec_ctrl & P.ACTIVATE_SECONDARY_CONTROLS:
            self.shadow.set("secondary_exec", self._secondary_controls())
        if cfg.cpu_based_exec_ctrl & P.ACTIVATE_TERTIARY_CONTROLS:
            self.shadow.set("tertiary_exec", self._tertiary_controls())
        self.shadow.set("vm_exit", cfg.vmexit_ctrl)
        self.shadow.set("vm_entry", cfg.vmentry_ctrl)
        if self.apicv_active:
            for field in (F.EOI_EXIT_BITMAP0, F.EOI_EXIT_BITMAP1, F.EOI_EXIT_BITMAP2,
                          F.EOI_EXIT_BITMAP3):
                self.vmcs.write64(field, 0)
            self.vmcs.write16(F.GUEST_INTR_STATUS, 0)
            self.vmcs.write16(F.POSTED_INTR_NV, POSTED_INTR_VECTOR)
            self.vmcs.write64(F.POSTED_INTR_DESC_ADDR, self.pi_desc)
        if self.can_use_ipiv:
            self.vmcs.write64(F.PID_POINTER_TABLE, self.vm.pid_table)
            self.vmcs.write16(F.LAST_PID_POINTER_INDEX, self.vm.max_vcpu_ids - 1)
        if cfg.cpu_based_exec_ctrl & P.TPR_SHADOW:
            self.vmcs.write64(F.VIRTUAL_APIC_PAGE_ADDR, self.vapic_page)
            self.vmcs.write32(F.TPR_THRESHOLD, 0)

    def _pin_controls(self):
        pin = self.kvm.setup.config.pin_based_exec_ctrl
        return pin if self.apicv_active else pin & ~Pin.POSTED_INTR

    def _secondary_controls(self):
        second = self.kvm.setup.config.cpu_based_2nd_exec_ctrl
        second &= ~S.VIRTUALIZE_X2APIC_MODE        # set when the guest enables x2APIC
        if not self.apicv_active:
            second &= ~(S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY)
        return second

    def _tertiary_controls(self):
        # IPI virtualization relies on APICv: off while APICv is inhibited.
        third = self.kvm.setup.config.cpu_based_3rd_exec_ctrl
        if not self.kvm.enable_ipiv or not self.apicv_active:
            third &= ~T.IPI_VIRT
        return third

    def reset(self):
        """vCPU reset: notifications go to POSTED_INTR_VECTOR, suppressed until loaded."""
        self._update_notify_info(nv=POSTED_INTR_VECTOR, sn=1)

    def dump_vmcs(self):
        return self.vmcs.dump()

    def unit_config(self):
        """The gateware's `VMCSConfig` for this vCPU, read from its VMCS."""
        has = self.kvm.setup.config.cpu_based_exec_ctrl
        third = self.vmcs.read64(F.TERTIARY_VM_EXEC_CONTROL) \
            if has & P.ACTIVATE_TERTIARY_CONTROLS else 0
        second = self.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL)
        return Config(ipiv=bool(third & T.IPI_VIRT), vid=bool(second & S.VIRTUAL_INTR_DELIVERY),
                      x2apic=self.apic.x2apic, host_x2apic=self.host.x2apic,
                      last_pid_index=self.vmcs.read16(F.LAST_PID_POINTER_INDEX),
                      pid_table=self.vmcs.read64(F.PID_POINTER_TABLE),
                      vapic_page=self.vmcs.read64(F.VIRTUAL_APIC_PAGE_ADDR))

    # -- APIC mode and APICv inhibits -------------------------------------------------------
    def set_x2apic_mode(self, enabled):
        """The guest switches its APIC mode (vmx_set_virtual_apic_mode)."""
        self.apic.set_x2apic_mode(enabled)
        if self.kvm.setup.config.cpu_based_exec_ctrl & P.ACTIVATE_SECONDARY_CONTROLS:
            allowed = self.kvm.setup.config.cpu_based_2nd_exec_ctrl
            if enabled:
                self.shadow.clearbit("secondary_exec", S.VIRTUALIZE_APIC_ACCESSES)
                self.shadow.setbit("secondary_exec", allowed & S.VIRTUALIZE_X2APIC_MODE)
            else:
                self.shadow.clearbit("secondary_exec", S.VIRTUALIZE_X2APIC_MODE)
                self.shadow.setbit("secondary_exec", allowed & S.VIRTUALIZE_APIC_ACCESSES)

    def set_apicv_inhibit(self, reason, inhibit=True):
        (self.apicv_inhibits.add if inhibit else self.apicv_inhibits.discard)(reason)
        self.refresh_apicv_exec_ctrl()

    def refresh_apicv_exec_ctrl(self):
        self.shadow.set("pin", self._pin_controls())
        bits = S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY
        if self.apicv_active:
            self.shadow.setbit("secondary_exec", bits)
            if self.kvm.enable_ipiv:
                self.shadow.setbit("tertiary_exec", T.IPI_VIRT)
        else:
            self.shadow.clearbit("secondary_exec", bits)
            if self.kvm.enable_ipiv:
                self.shadow.clearbit("tertiary_exec", T.IPI_VIRT)

    def guest_write_xapic_id(self, apic_id):
        """A guest changing its xAPIC ID makes KVM inhibit APICv for the VM's vCPUs."""
        self.apic.set_xapic_id(apic_id)
        if apic_id != (self.vcpu_id & 0xFF):
            for vcpu in self.vm.vcpus.values():
                vcpu.set_apicv_inhibit(APICV_INHIBIT_APIC_ID_MODIFIED)

    def msr_intercepted(self, msr, *, write):
        """Does a guest RDMSR/WRMSR of x2APIC MSR ``msr`` exit (vmx_update_msr_bitmap_x2apic)?"""
        if not X2APIC_MSR_BASE <= msr <= 0x8FF:
            raise ValueError(f"{msr:#x} is not an x2APIC MSR")
        if not self.apic.x2apic:
            return True
        tpr = X2APIC_MSR_BASE + (R.TPR >> 4)
        if not self.apicv_active:
            return msr != tpr
        if not write:
            return msr == 0x839        # TMCCT: the timer count is emulated
        passthrough = {tpr, X2APIC_MSR_BASE + (R.EOI >> 4), MSR_X2APIC_SELF_IPI}
        if self.kvm.enable_ipiv:
            passthrough.add(MSR_X2APIC_ICR)
        return msr not in passthrough

    # -- scheduling (vmx_vcpu_pi_load / put, posted_intr.c) ---------------------------------
    def load(self, pcpu):
        """vcpu_load on pCPU ``pcpu``."""
        if self.loaded:
            raise RuntimeError(f"vCPU {self.vcpu_id} is already loaded")
        target = self.host.pcpus[pcpu]
        if target.loaded is not None:
            raise RuntimeError(f"pCPU {pcpu} already runs vCPU {target.loaded.vcpu_id}")
        self._pi_load(pcpu)
        self.cpu, self.loaded, self.preempted = pcpu, True, False
        target.loaded = self

    def _pi_load(self, pcpu):
        if not self.can_use_pi_wakeup:
            return
        if self.pi_nv != POSTED_INTR_WAKEUP_VECTOR and self.cpu == pcpu:
            # Neither vector nor destination changes: just clear SN if preemption set it.
            if self.pi_sn:
                self._update_notify_info(sn=0)
                self._pi_after_clear_sn()
            return
        if self.pi_nv == POSTED_INTR_WAKEUP_VECTOR and self.cpu is not None:
            self.host.pcpus[self.cpu].wakeup_list.remove(self)
        self._update_notify_info(ndst=self.host.ndst(pcpu), sn=0, nv=POSTED_INTR_VECTOR)
        self._pi_after_clear_sn()

    def _pi_after_clear_sn(self):
        # Postings made while SN was set left PIR bits without ON: make them visible.
        if self.pir():
            self._update_notify_info(on=1)

    def put(self):
        """vcpu_put (the vCPU leaves its pCPU, preempted or blocking or neither)."""
        if not self.loaded:
            raise RuntimeError(f"vCPU {self.vcpu_id} is not loaded")
        if self.in_guest:
            self.exit_guest()
        pcpu = self.host.pcpus[self.cpu]
        pcpu.loaded = None
        self.loaded = False
        self._pi_put()

    def _pi_put(self):
        if not self.can_use_pi_wakeup:
            return
        if self.blocking:
            self._pi_enable_wakeup_handler()
        if self.preempted:
            self._update_notify_info(sn=1)

    def _pi_enable_wakeup_handler(self):
        self.host.pcpus[self.cpu].wakeup_list.append(self)
        self._update_notify_info(nv=POSTED_INTR_WAKEUP_VECTOR)
        if self.pi_on:      # a posting raced with blocking: wake ourselves
            self.host.send_ipi(self.cpu, POSTED_INTR_WAKEUP_VECTOR)

    def enter_guest(self):
        """VM entry: pick up postings made while outside the guest."""
        if not self.loaded:
            raise RuntimeError(f"vCPU {self.vcpu_id} is not loaded")
        if self.kvm.enable_apicv and self.pi_on:      # vmx_sync_pir_to_irr
            self._update_notify_info(on=0)
            self._pir_to_irr(self._pir_take())
        self.in_guest = True
        self._sync_guest_intr_status()

    def exit_guest(self, reason=None, qualification=0):
        self.in_guest = False
        if reason is not None:
            self.exits[(reason, qualification)] += 1
            self.vm.exits[(reason, qualification)] += 1

    def preempt(self):
        """The host scheduler takes the pCPU away."""
        self.preempted = True
        self.put()

    def halt(self):
        """Guest HLT with interrupts enabled: block unless something is pending."""
        if self.in_guest:
            self.exit_guest()
        if self.has_pending_interrupt():
            self.enter_guest()          # kvm_vcpu_check_block: runnable, back to the guest
            return False
        self.blocking = True
        self.put()
        return True

    def has_pending_interrupt(self):
        return self.apic.deliverable() is not None or self.pi_on or \
            (self.pi_sn and self.pir() != 0)

    def wake_up(self):
        """kvm_vcpu_wake_up: a blocked vCPU becomes runnable (it is loaded later)."""
        self.blocking = False

    @property
    def asleep(self):
        return self.blocking and not self.loaded

    def migrate(self, pcpu):
        if self.loaded:
            self.put()
        self.load(pcpu)

    # -- posted interrupts ------------------------------------------------------------------
    def deliver_posted_interrupt(self, vector):
        """Software posting (vmx_deliver_posted_interrupt); returns True if a notification or
        wakeup was needed."""
        if not self.apicv_active:
            self.apic.accept_fixed(vector)
            self.kick()
            return True
        offset, bit = self.pi_desc + 8 * (vector // 64), 1 << (vector % 64)
        word = self.memory.read(offset)
        if word & bit:
            return False                       # already pending: coalesced
        self.memory.write(offset, word | bit)
        if self.pi_on:
            return False                       # a notification is already on its way
        self._update_notify_info(on=1)
        if self.in_guest:
            self.host.send_ipi(self.cpu, POSTED_INTR_VECTOR)
        else:
            self.wake_up()
        return True

    def posted_interrupt_processing(self):
        """What the CPU does when the notification vector arrives in guest mode."""
        self._update_notify_info(on=0)
        self._pir_to_irr(self._pir_take())
        self._sync_guest_intr_status()

    def _pir_to_irr(self, pir):
        for vector in range(256):
            if pir >> vector & 1:
                self.apic.accept_fixed(vector)

    def _sync_guest_intr_status(self):
        self.apic.deliverable()     # refreshes RVI from the IRR
        if self.apicv_active:
            self.vmcs.write16(F.GUEST_INTR_STATUS, self.apic.svi << 8 | self.apic.rvi)

    def kick(self):
        if self.blocking:
            self.wake_up()

    # -- the guest ----------------------------------------------------------------------------
    def take_interrupt(self):
        """The guest takes its highest deliverable interrupt (virtual-interrupt delivery)."""
        if not self.in_guest:
            raise RuntimeError(f"vCPU {self.vcpu_id} is not in guest mode")
        vector = self.apic.acknowledge()
        if vector is not None:
            self.taken.append(vector)
            self._sync_guest_intr_status()
        return vector

    def eoi(self):
        vector = self.apic.eoi()
        self._sync_guest_intr_status()
        return vector

    # -- APIC-write exits and IPI emulation -------------------------------------------------
    def handle_apic_write(self, qualification):
        """The APIC-write VM exit (reason 56): the write is done; emulate its side effect."""
        self.exit_guest(EXIT_REASON_APIC_WRITE, qualification)
        if qualification != APIC_WRITE_QUALIFICATION_ICR:
            raise ValueError(f"APIC-write exit for offset {qualification:#x} is not modelled")
        if self.apic.x2apic and not self.legacy_x2apic_icr_path:
            value = self.apic.read64(R.ICR) & ~APIC_ICR_BUSY
            targets = self.send_ipi(value & 0xFFFF_FFFF, value >> 32)
            self.apic.write64(R.ICR, value)
        else:
            # xAPIC (and, before the fix, x2APIC too): the 32-bit ICR with ICR2 at 310H,
            # which in x2APIC mode nobody wrote: the destination is lost.
            low = self.apic.read32(R.ICR) & ~APIC_ICR_BUSY
            targets = self.send_ipi(low, self.apic.read32(R.ICR2))
            self.apic.write32(R.ICR, low)
        if self.loaded:
            self.enter_guest()
        return targets

    def send_ipi(self, low, high):
        """kvm_apic_send_ipi: decode and deliver in software; returns the target vCPUs."""
        return self.vm.deliver_ipi(self, IPI.from_icr(low, high, x2apic=self.apic.x2apic))

    def accept_irq(self, ipi):
        """__apic_accept_irq."""
        mode = ipi.delivery_mode
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
            if ipi.trigger is TriggerMode.LEVEL and not ipi.level:
                return              # a level de-assert does nothing
            if ipi.trigger is TriggerMode.LEVEL:
                self.apic.set(R.TMR, ipi.vector)
            self.deliver_posted_interrupt(ipi.vector)
        elif mode is DeliveryMode.NMI:
            self.nmi_pending += 1
            self.kick()
        elif mode is DeliveryMode.SMI:
            self.smi_pending = True
            self.kick()
        elif mode is DeliveryMode.INIT:
            if ipi.trigger is TriggerMode.EDGE or ipi.level:
                self.init_pending = True
                self.kick()
        elif mode is DeliveryMode.STARTUP:
            self.sipi_vector = ipi.vector
            self.kick()
        # ExtINT and the reserved mode are not delivered as IPIs

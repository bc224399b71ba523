"""KVM's side of IPI virtualization, executable: VMs and vCPUs, the PID-pointer table, posted
interrupts across load/put/block/preempt/migrate, the APIC-write exit handler and the software
emulation of every IPI the processor does not virtualize, function by function as Linux 6.0
does it (``vmx/vmx.c``, ``vmx/posted_intr.c``, ``lapic.c``, ``x86.c``, ``virt/kvm/kvm_main.c``),
or as 6.19 does with ``KVM(..., kernel="6.19")`` (`sim.kvm_kernel`). The differences, with the
function and release they come from, are in the docstrings below and in
``/work/notes/kvm-fidelity.md``.

Everything lives in one `Memory` (``sim.memory``) that the gateware can share: PID-pointer
tables, PIDs and virtual-APIC pages are allocated in it, so `VCPU.unit_config` can program the
RTL and a hardware posting is seen by the model (and the other way round).

Model decisions (KVM does more, or the sources leave it open):

- Physical APIC IDs of pCPUs are their index; the host's APIC mode decides NDST's format.
- No assigned devices (VT-d posted interrupts unused), so ``vmx_needs_pi_wakeup`` is
  ``vmx_can_use_ipiv``; no nested guests; no Hyper-V SynIC; no userspace exits.
- The VMCS is the one right after KVM_CREATE_VCPU, before KVM_SET_CPUID2: the secondary
  controls that depend on guest CPUID (XSAVES, RDTSCP, INVPCID, WAITPKG) are off and
  RDRAND/RDSEED exiting on; PML, bus-lock detection, notify VM exits, MWAIT/HLT/PAUSE in guest
  are not enabled by the VM; Intel PT runs in system mode.
- Guest interrupts are enabled at HLT unless `VCPU.halt` is told otherwise
  (``vmx_interrupt_blocked``).
- Memory allocation never fails (no -ENOMEM paths).
"""

import errno
from collections import Counter

from hdl.formats import (
    APICRegister as R, APIC_WRITE_QUALIFICATION_ICR, DeliveryMode, EXIT_REASON_APIC_WRITE,
    DestMode, MSR_X2APIC_ICR, MSR_X2APIC_SELF_IPI, NotifyInfo, PID_BYTES,
    PID_NOTIFY_INFO_OFFSET, POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR, Shorthand,
    TriggerMode, XAPICNDST,
)
from hdl.vmx import PinBased as Pin, Primary as P, Secondary as S, Tertiary as T, \
    VMCSField as F, VMEntry as En, VMExit as Ex
from .golden import Config
from .kvm_apic_map import (
    INHIBIT_APIC_ID_MODIFIED, INHIBIT_PHYSICAL_ID_ALIASED, deliver as _deliver,
    deliver_fast as _deliver_fast, recalculate_apic_map,
)
from .kvm_kernel import DEFAULT_KERNEL, check_kernel
from .kvm_setup import ModuleParams, hardware_setup
from .lapic import APIC_ICR_BUSY, IPI, VirtualAPIC, X2APIC_BROADCAST
from .memory import Memory
from .vmcs import VMCS, ControlsShadow
from .vm_layout import write_pid_pointer_entry
from .vmx_caps import VMXCapabilities, preset


__all__ = ["KVMError", "KVM", "VM", "VCPU", "Host", "PCPU", "KVM_MAX_VCPU_IDS",
           "KVM_MAX_VCPUS", "APICV_INHIBIT_APIC_ID_MODIFIED", "EXIT_REASON_MSR_WRITE",
           "MSRWrite"]

KVM_MAX_VCPUS = 1024                   # CONFIG_KVM_MAX_NR_VCPUS default (6.19); fixed in 6.0
KVM_MAX_VCPU_IDS = 4 * KVM_MAX_VCPUS   # KVM_VCPU_ID_RATIO 4
PAGE_SIZE = 4096
APICV_INHIBIT_APIC_ID_MODIFIED = INHIBIT_APIC_ID_MODIFIED
EXIT_REASON_MSR_WRITE = 32
X2APIC_MSR_BASE = 0x800
X2APIC_ICR_RESERVED_BITS = 0xFFF0_0000 | 0x3_0000 | 1 << 13    # lapic.c, 6.19
PLE_GAP, PLE_WINDOW = 128, 4096        # kvm_intel defaults
INVALID_GPA = (1 << 64) - 1
# Inhibits that VMX honours (6.0 vmx_check_apicv_inhibit_reasons, 6.19 VMX_REQUIRED_APICV_
# INHIBITS); the model only ever raises these two and its own test toggles.
_VMX_INHIBITS = {"6.0": {INHIBIT_APIC_ID_MODIFIED},
                 "6.19": {INHIBIT_APIC_ID_MODIFIED, INHIBIT_PHYSICAL_ID_ALIASED}}
# lapic.c kvm_lapic_readable_reg_mask (6.19), x2APIC mode, no CMCI: one bit per register
# (offset >> 4): ID, LVR, TPR, PPR, LDR, SPIV, ISR/TMR/IRR x8, ESR, ICR, LVTT, LVTTHMR, LVTPC,
# LVT0, LVT1, LVTERR, TMICT, TMCCT, TDCR.
_READABLE_X2APIC = sum(1 << r for r in (
    0x2, 0x3, 0x8, 0xA, 0xD, 0xF, *range(0x10, 0x28), 0x28, 0x30, 0x32, 0x33, 0x34, 0x35,
    0x36, 0x37, 0x38, 0x39, 0x3E))
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
    kernel : str
        ``"6.0"`` (default) or ``"6.19"`` (`sim.kvm_kernel`); anything else is a ValueError.
    vector_hashing : bool
        The ``kvm.vector_hashing`` module parameter (default on): how lowest-priority IPIs
        pick their target.
    """

    def __init__(self, msrs=None, params=ModuleParams(), *, n_pcpus=4, host_x2apic=True,
                 memory=None, base=0x1000_0000, kernel=DEFAULT_KERNEL, vector_hashing=True):
        self.kernel = check_kernel(kernel)
        self.msrs = preset("ipiv") if msrs is None else msrs
        self.caps = VMXCapabilities(self.msrs)
        self.setup = hardware_setup(self.msrs, params, kernel=kernel)
        self.vector_hashing = vector_hashing
        self.host = Host(n_pcpus, x2apic=host_x2apic)
        self.memory = Memory() if memory is None else memory
        self.allocator = Allocator(self.memory, base)
        self.vms = []
        self._next_vpid = 1            # vmx_vpid_bitmap: 0 is the host's

    @property
    def enable_apicv(self):
        return self.setup.enable_apicv

    @property
    def enable_ipiv(self):
        return self.setup.enable_ipiv

    def allocate_vpid(self):
        """allocate_vpid: 0 (none) unless VPID is enabled."""
        if not self.setup.enable_vpid:
            return 0
        vpid, self._next_vpid = self._next_vpid, self._next_vpid + 1
        return vpid

    def create_vm(self, *, irqchip_in_kernel=True):
        vm = VM(self, irqchip_in_kernel=irqchip_in_kernel)
        self.vms.append(vm)
        return vm


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
        return PAGE_SIZE << _order(self.max_vcpu_ids * 8)

    def pid_table_entry(self, vcpu_id):
        return self.memory.read(self.pid_table + 8 * vcpu_id) if self.pid_table is not None \
            else None

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


class VCPU:
    """A vCPU (``struct vcpu_vmx``): VMCS, PID, virtual APIC and scheduling state."""

    def __init__(self, vm, vcpu_id):
        self.vm, self.kvm, self.vcpu_id = vm, vm.kvm, vcpu_id
        self.host = self.kvm.host
        alloc = self.kvm.allocator
        self.pi_desc = alloc.alloc(PID_BYTES, align=PID_BYTES)
        self.vapic_page = alloc.alloc(PAGE_SIZE)
        self.msr_bitmap = alloc.alloc(PAGE_SIZE)
        self.apic = VirtualAPIC(self.memory, self.vapic_page, vcpu_id)
        self.vmcs = VMCS()
        self.shadow = ControlsShadow(self.vmcs)
        self.vpid = self.kvm.allocate_vpid()
        self.cpu = None                # pCPU it was last loaded on
        self.loaded = False
        self.in_guest = False
        self.blocking = False          # halted, waiting for an interrupt
        self.preempted = False
        self.interrupts_blocked = False   # guest RFLAGS.IF = 0 / interrupt shadow at HLT
        self.legacy_x2apic_icr_path = False   # reproduce the pre-patch 32-bit exit path
        self.apic_arb_prio = 0         # lowest-priority arbitration count
        self.nmi_pending = 0
        self.smi_pending = False
        self.init_pending = False
        self.sipi_vector = None
        self.pv_unhalted = False       # set by a remote-read IPI (KVM's PV unhalt)
        self.gp_injected = 0           # #GPs KVM injected for emulated WRMSRs
        self.taken = []                # vectors the guest took (acknowledged), in order
        self.exits = Counter()
        self.ipi_paths = Counter()     # "fastpath" / "full" WRMSR 0x830 handling
        self.x2apic_msr_bitmap_mode = None
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
    def kernel(self):
        return self.kvm.kernel

    @property
    def apicv_inhibits(self):
        """The VM's APICv inhibit reasons (KVM's inhibits for VMX are VM-wide)."""
        return self.vm.apicv_inhibits

    @property
    def apicv_active(self):
        """kvm_vcpu_apicv_active."""
        return self.kvm.enable_apicv and self.lapic_in_kernel and not self.apicv_inhibits

    @property
    def can_use_ipiv(self):
        """vmx_can_use_ipiv: in-kernel LAPIC and enable_ipiv (whether or not APICv is
        inhibited right now)."""
        return self.lapic_in_kernel and self.kvm.enable_ipiv

    @property
    def ipiv_active(self):
        """IPIv is in use: tertiary bit 4 set in the VMCS (enable_ipiv and APICv active)."""
        return self.can_use_ipiv and self.apicv_active

    @property
    def can_use_pi_wakeup(self):
        """posted_intr.c vmx_needs_pi_wakeup (no assigned devices: no VT-d PI)."""
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
        """init_vmcs (vmx.c, 6.0; 6.19 differs where the helpers below say)."""
        setup = self.kvm.setup
        cfg = setup.config
        if setup.cpu_has_vmx_msr_bitmap:
            self.vmcs.write64(F.MSR_BITMAP, self.msr_bitmap)
        self.vmcs.write64(F.VMCS_LINK_POINTER, INVALID_GPA)
        self.shadow.set("pin", self._pin_controls())
        self.shadow.set("exec", self._exec_controls())
        if setup.cpu_has_secondary_exec_ctrls:
            self.shadow.set("secondary_exec", self._secondary_controls())
        if setup.cpu_has_tertiary_exec_ctrls:
            self.shadow.set("tertiary_exec", self._tertiary_controls())
        if self.kvm.enable_apicv and self.lapic_in_kernel:
            # enable_apicv, not "APICv active": the fields are there for when an inhibit goes
            for field in (F.EOI_EXIT_BITMAP0, F.EOI_EXIT_BITMAP1, F.EOI_EXIT_BITMAP2,
                          F.EOI_EXIT_BITMAP3):
                self.vmcs.write64(field, 0)
            self.vmcs.write16(F.GUEST_INTR_STATUS, 0)
            self.vmcs.write16(F.POSTED_INTR_NV, POSTED_INTR_VECTOR)
            self.vmcs.write64(F.POSTED_INTR_DESC_ADDR, self.pi_desc)
        if self.can_use_ipiv:
            self.vmcs.write64(F.PID_POINTER_TABLE, self.vm.pid_table)
            self.vmcs.write16(F.LAST_PID_POINTER_INDEX, self.vm.max_vcpu_ids - 1)
        if cfg.cpu_based_2nd_exec_ctrl & S.PAUSE_LOOP_EXITING:
            self.vmcs.write32(F.PLE_GAP, PLE_GAP)
            self.vmcs.write32(F.PLE_WINDOW, PLE_WINDOW)   # written at the first entry in KVM
        self.vmcs.write32(F.PAGE_FAULT_ERROR_CODE_MASK, 0)
        self.vmcs.write32(F.PAGE_FAULT_ERROR_CODE_MATCH, 0)
        self.vmcs.write32(F.CR3_TARGET_COUNT, 0)
        self.shadow.set("vm_exit", self._vmexit_controls())
        self.shadow.set("vm_entry", self._vmentry_controls())
        if self.vpid:
            self.vmcs.write16(F.VIRTUAL_PROCESSOR_ID, self.vpid)
        if cfg.cpu_based_exec_ctrl & P.TPR_SHADOW:
            self.vmcs.write64(F.VIRTUAL_APIC_PAGE_ADDR,
                              self.vapic_page if self.lapic_in_kernel else 0)
            self.vmcs.write32(F.TPR_THRESHOLD, 0)
        self.update_msr_bitmap_x2apic()

    def _pin_controls(self):
        """vmx_pin_based_exec_ctrl."""
        setup = self.kvm.setup
        pin = setup.config.pin_based_exec_ctrl
        if not self.apicv_active:
            pin &= ~Pin.POSTED_INTR
        if not setup.enable_vnmi:
            pin &= ~Pin.VIRTUAL_NMIS
        if not setup.enable_preemption_timer:
            pin &= ~Pin.VMX_PREEMPTION_TIMER
        return pin

    def _exec_controls(self):
        """vmx_exec_control: 6.0 starts from a config that already lost the CR8/CR3/INVLPG
        exits; 6.19 drops them here and also the controls it keeps only for nesting."""
        setup = self.kvm.setup
        exec_ = setup.config.cpu_based_exec_ctrl
        tpr_shadow = bool(exec_ & P.TPR_SHADOW) and self.lapic_in_kernel
        cr8 = P.CR8_LOAD_EXITING | P.CR8_STORE_EXITING
        cr3 = P.CR3_LOAD_EXITING | P.CR3_STORE_EXITING | P.INVLPG_EXITING
        if self.kernel == "6.0":
            if not tpr_shadow:
                exec_ = (exec_ & ~P.TPR_SHADOW) | cr8
            if not setup.enable_ept:
                exec_ |= cr3
            return int(exec_)
        exec_ &= ~(P.RDTSC_EXITING | P.USE_IO_BITMAPS | P.MONITOR_TRAP_FLAG | P.PAUSE_EXITING |
                   P.INTR_WINDOW_EXITING | P.NMI_WINDOW_EXITING)
        if not tpr_shadow:
            exec_ &= ~P.TPR_SHADOW
        exec_ = exec_ & ~cr8 if exec_ & P.TPR_SHADOW else exec_ | cr8
        if setup.enable_ept:
            exec_ &= ~cr3
        return int(exec_)

    def _secondary_controls(self):
        """vmx_secondary_exec_control, for a vCPU before KVM_SET_CPUID2 (guest CPUID empty)."""
        setup = self.kvm.setup
        second = setup.config.cpu_based_2nd_exec_ctrl
        second &= ~(S.PT_USE_GPA | S.PT_CONCEAL_VMX)             # PT in system mode
        if not (setup.flexpriority_enabled and self.lapic_in_kernel):
            second &= ~S.VIRTUALIZE_APIC_ACCESSES
        if not self.vpid:
            second &= ~S.ENABLE_VPID
        if not setup.enable_ept:
            second &= ~(S.ENABLE_EPT | S.EPT_VIOLATION_VE)
        if not setup.enable_unrestricted_guest:
            second &= ~S.UNRESTRICTED_GUEST
        if not self.apicv_active:
            second &= ~(S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY)
        second &= ~S.VIRTUALIZE_X2APIC_MODE        # set when the guest enables x2APIC
        if self.kernel == "6.19":
            second &= ~S.ENABLE_VMFUNC
        second &= ~(S.DESC | S.SHADOW_VMCS | S.ENABLE_PML)
        # guest CPUID empty: the opt-in features off, RDRAND/RDSEED exiting stays
        second &= ~(S.XSAVES | S.ENABLE_RDTSCP | S.ENABLE_INVPCID | S.ENABLE_USR_WAIT_PAUSE)
        second &= ~(S.BUS_LOCK_DETECTION | S.NOTIFY_VM_EXITING)
        return int(second)

    def _tertiary_controls(self):
        """vmx_tertiary_exec_control: IPI virtualization relies on APICv, so it is off while
        APICv is inhibited."""
        third = self.kvm.setup.config.cpu_based_3rd_exec_ctrl
        if not self.kvm.enable_ipiv or not self.apicv_active:
            third &= ~T.IPI_VIRT
        return third

    def _vmexit_controls(self):
        """vmx_vmexit_ctrl (6.19 vmx_get_initial_vmexit_ctrl)."""
        exit_ = self.kvm.setup.config.vmexit_ctrl
        if self.kernel == "6.19":
            exit_ &= ~(Ex.SAVE_IA32_PAT | Ex.SAVE_IA32_EFER | Ex.SAVE_VMX_PREEMPTION_TIMER)
        exit_ &= ~(Ex.PT_CONCEAL_PIP | Ex.CLEAR_IA32_RTIT_CTL)
        return int(exit_ & ~(Ex.LOAD_IA32_PERF_GLOBAL_CTRL | Ex.LOAD_IA32_EFER))

    def _vmentry_controls(self):
        """vmx_vmentry_ctrl (6.19 vmx_get_initial_vmentry_ctrl, which also drops IA-32e)."""
        entry = self.kvm.setup.config.vmentry_ctrl
        entry &= ~(En.PT_CONCEAL_PIP | En.LOAD_IA32_RTIT_CTL)
        entry &= ~(En.LOAD_IA32_PERF_GLOBAL_CTRL | En.LOAD_IA32_EFER)
        if self.kernel == "6.19":
            entry &= ~En.IA32E_MODE
        return int(entry)

    def reset(self):
        """vCPU reset: notifications go to POSTED_INTR_VECTOR, suppressed until loaded."""
        self._update_notify_info(nv=POSTED_INTR_VECTOR, sn=1)

    def dump_vmcs(self):
        """dump_vmcs's control state (vmx.c dump_vmcs): secondary/tertiary fields are read
        only if the CPU has those controls (vmcs_config), else printed as 0."""
        setup = self.kvm.setup
        return self.vmcs.dump(has_secondary=setup.cpu_has_secondary_exec_ctrls,
                              has_tertiary=setup.cpu_has_tertiary_exec_ctrls)

    def unit_config(self):
        """The gateware's `VMCSConfig` for this vCPU, read from its VMCS."""
        setup = self.kvm.setup
        third = self.vmcs.read64(F.TERTIARY_VM_EXEC_CONTROL) \
            if setup.cpu_has_tertiary_exec_ctrls else 0
        second = self.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) \
            if setup.cpu_has_secondary_exec_ctrls else 0
        return Config(ipiv=bool(third & T.IPI_VIRT), vid=bool(second & S.VIRTUAL_INTR_DELIVERY),
                      x2apic=self.apic.x2apic, host_x2apic=self.host.x2apic,
                      last_pid_index=self.vmcs.read16(F.LAST_PID_POINTER_INDEX),
                      pid_table=self.vmcs.read64(F.PID_POINTER_TABLE),
                      vapic_page=self.vmcs.read64(F.VIRTUAL_APIC_PAGE_ADDR))

    # -- APIC mode and APICv inhibits -------------------------------------------------------
    def set_x2apic_mode(self, enabled):
        """The guest switches its APIC mode (lapic.c kvm_lapic_set_base: the x2APIC ID and
        LDR, or the xAPIC ID, are rewritten and the APIC map recalculated; then vmx.c
        vmx_set_virtual_apic_mode and vmx_update_msr_bitmap_x2apic)."""
        self.apic.set_x2apic_mode(enabled)
        self.vm.recalculate_apic_map()
        setup = self.kvm.setup
        if not self.lapic_in_kernel or not (setup.flexpriority_enabled or
                                            setup.cpu_has_vmx_virtualize_x2apic_mode):
            return
        second = self.shadow.get("secondary_exec")
        second &= ~(S.VIRTUALIZE_APIC_ACCESSES | S.VIRTUALIZE_X2APIC_MODE)
        if enabled and setup.cpu_has_vmx_virtualize_x2apic_mode:
            second |= S.VIRTUALIZE_X2APIC_MODE
        elif not enabled and setup.flexpriority_enabled:
            second |= S.VIRTUALIZE_APIC_ACCESSES
        self.shadow.set("secondary_exec", int(second))
        self.update_msr_bitmap_x2apic()

    def set_apicv_inhibit(self, reason, inhibit=True):
        """Set or clear an APICv inhibit: VM-wide in KVM (kvm_set_apicv_inhibit takes the
        VM), so every vCPU of the VM follows."""
        self.vm.set_apicv_inhibit(reason, inhibit)

    def refresh_apicv_exec_ctrl(self):
        """vmx_refresh_apicv_exec_ctrl."""
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
        self.update_msr_bitmap_x2apic()

    def guest_write_xapic_id(self, apic_id):
        """A guest write to the xAPIC ID register (lapic.c kvm_lapic_reg_write APIC_ID).

        6.0 (kvm_lapic_xapic_id_updated): if the new xAPIC ID differs from the *full* vCPU
        id, APIC_ID_MODIFIED is set for the whole VM and never cleared (so vCPU 256 writing
        back its own truncated ID 0 inhibits too). 6.19: the APIC-map recalculation compares
        with the vCPU id truncated to 8 bits, and clears the inhibit again once no vCPU has
        a modified ID; it can also find physical-ID aliasing (PHYSICAL_ID_ALIASED)."""
        if self.apic.x2apic:
            return                     # read-only in x2APIC mode: the write is ignored
        self.apic.set_xapic_id(apic_id)
        if self.kernel == "6.0" and self.apic.xapic_id != self.vcpu_id:
            self.vm.set_apicv_inhibit(APICV_INHIBIT_APIC_ID_MODIFIED)
        self.vm.recalculate_apic_map()

    def guest_write_ldr(self, value):
        """kvm_lapic_reg_write APIC_LDR (xAPIC only; bits 31:24 kept)."""
        if not self.apic.x2apic:
            self.apic.write32(R.LDR, value & 0xFF00_0000)
            self.vm.recalculate_apic_map()

    def guest_write_dfr(self, value):
        """kvm_lapic_reg_write APIC_DFR (xAPIC only; bits 27:0 read as 1)."""
        if not self.apic.x2apic:
            self.apic.write32(R.DFR, value | 0x0FFF_FFFF)
            self.vm.recalculate_apic_map()

    def guest_write_spiv(self, value):
        """kvm_lapic_reg_write APIC_SPIV (bits 9:0 kept; software enable is bit 8)."""
        self.apic.write32(R.SVR, value & 0x3FF)
        self.vm.recalculate_apic_map()

    def update_msr_bitmap_x2apic(self):
        """vmx_update_msr_bitmap_x2apic: the mode (x2APIC virtualization on, with APICv
        active) the MSR bitmap for 0x800-0x8FF follows."""
        if not self.kvm.setup.cpu_has_vmx_msr_bitmap:
            self.x2apic_msr_bitmap_mode = None
            return
        mode = 0
        if self.kvm.setup.cpu_has_secondary_exec_ctrls and \
                self.shadow.get("secondary_exec") & S.VIRTUALIZE_X2APIC_MODE:
            mode = 1
            if self.kvm.enable_apicv and self.apicv_active:
                mode |= 2
        self.x2apic_msr_bitmap_mode = mode

    def msr_intercepted(self, msr, *, write):
        """Does a guest RDMSR/WRMSR of x2APIC MSR ``msr`` exit (vmx.c
        vmx_update_msr_bitmap_x2apic)?

        Without x2APIC virtualization every x2APIC MSR access exits. With it, TPR is passed
        through both ways. With APICv active too: writes to EOI and SELF IPI pass, and ICR
        (0x830, both ways) passes only with enable_ipiv, so while IPIv is not active a WRMSR
        0x830 is a WRMSR exit; TMCCT (0x839) always exits. Reads: 6.0 passes every read of
        0x800-0x8FF but TMCCT; 6.19 passes only reads of the registers
        kvm_lapic_readable_reg_mask names (not 0x840 and above, not write-only or reserved
        ones)."""
        if not X2APIC_MSR_BASE <= msr <= 0x8FF:
            raise ValueError(f"{msr:#x} is not an x2APIC MSR")
        self.update_msr_bitmap_x2apic()
        mode = self.x2apic_msr_bitmap_mode
        if not mode:
            return True
        tpr = X2APIC_MSR_BASE + (R.TPR >> 4)
        if msr == tpr:
            return False
        if not mode & 2:
            return True
        tmcct = X2APIC_MSR_BASE + 0x39
        if msr == tmcct:
            return True
        if msr == MSR_X2APIC_ICR and self.kvm.enable_ipiv:
            return False
        if write:
            return msr not in (X2APIC_MSR_BASE + (R.EOI >> 4), MSR_X2APIC_SELF_IPI)
        if self.kernel == "6.0":
            return False
        return not (msr < 0x840 and _READABLE_X2APIC >> (msr - X2APIC_MSR_BASE) & 1)

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
        """posted_intr.c vmx_vcpu_pi_load (6.0 = 6.19): runs whenever APICv is enabled and
        the LAPIC is in the kernel, IPIv or not and inhibited or not, so NDST and SN stay
        up to date."""
        if not (self.kvm.enable_apicv and self.lapic_in_kernel):
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
        """posted_intr.c vmx_vcpu_pi_put, only when a blocked vCPU can be the target of
        posted interrupts (vmx_needs_pi_wakeup: IPIv usable; no VT-d PI in the model).

        6.0: a vCPU blocking with interrupts enabled gets the wakeup handler; a preempted one
        gets SN (both, if preempted while blocking). 6.19: the wakeup handler only when
        blocking with interrupts enabled and not preempted; every other put sets SN."""
        if not self.can_use_pi_wakeup:
            return
        wakeup = self.blocking and not self.interrupts_blocked
        if self.kernel == "6.0":
            if wakeup:
                self._pi_enable_wakeup_handler()
            if self.preempted:
                self._update_notify_info(sn=1)
        elif wakeup and not self.preempted:
            self._pi_enable_wakeup_handler()
        else:
            self._update_notify_info(sn=1)

    def _pi_enable_wakeup_handler(self):
        """pi_enable_wakeup_handler: on this pCPU's wakeup list, NV = wakeup vector, and a
        self-IPI with it if ON was already set."""
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

    def halt(self, *, interrupts_enabled=True):
        """Guest HLT: block unless something is pending. ``interrupts_enabled`` False is a
        HLT with RFLAGS.IF = 0 (vmx_interrupt_blocked): no wakeup handler at put."""
        if self.in_guest:
            self.exit_guest()
        if self.has_pending_interrupt():
            self.enter_guest()          # kvm_vcpu_check_block: runnable, back to the guest
            return False
        self.blocking = True
        self.interrupts_blocked = not interrupts_enabled
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

    # -- APIC-write and WRMSR exits, IPI emulation -----------------------------------------
    def handle_apic_write(self, qualification):
        """The APIC-write VM exit (reason 56, trap-like: the write is done), handled by
        lapic.c kvm_apic_write_nodecode. Returns the vCPUs that accepted the IPI.

        xAPIC (6.0 = 6.19): kvm_lapic_reg_write(ICR): busy cleared, the IPI sent with ICR2
        as destination, the 32-bit ICR written back.
        x2APIC, 6.0: the 64-bit vICR is sent as it is (low half, high half as destination);
        nothing is written back and the busy bit stays (kvm_apic_send_ipi ignores it).
        x2APIC, 6.19: kvm_x2apic_icr_write: busy cleared, sent, the 64-bit value written
        back (a value with reserved bits set is refused: nothing sent, KVM only warns).
        ``legacy_x2apic_icr_path``: the generic 32-bit path before the seed series' patch 4,
        which in x2APIC mode takes the destination from the never-written ICR2."""
        self.exit_guest(EXIT_REASON_APIC_WRITE, qualification)
        if qualification != APIC_WRITE_QUALIFICATION_ICR:
            raise ValueError(f"APIC-write exit for offset {qualification:#x} is not modelled")
        if self.apic.x2apic and not self.legacy_x2apic_icr_path:
            value = self.apic.read64(R.ICR)
            if self.kernel == "6.0":
                targets = self.send_ipi(value & 0xFFFF_FFFF, value >> 32)
            else:
                targets, _ = self.x2apic_icr_write(value)
        else:
            low = self.apic.read32(R.ICR) & ~APIC_ICR_BUSY
            targets = self.send_ipi(low, self.apic.read32(R.ICR2))
            self.apic.write32(R.ICR, low)
        if self.loaded:
            self.enter_guest()
        return targets

    def x2apic_icr_write(self, value, *, fast=False):
        """lapic.c kvm_x2apic_icr_write (6.19: __kvm_x2apic_icr_write): returns (accepting
        vCPUs, status) with status "ok", "gp" (6.19: a reserved bit set, the caller injects
        #GP) or "fallback" (6.19 fast mode: the fast APIC map cannot deliver it)."""
        if self.kernel == "6.19" and value & X2APIC_ICR_RESERVED_BITS:
            return [], "gp"
        value &= ~APIC_ICR_BUSY
        low, high = value & 0xFFFF_FFFF, value >> 32
        if fast:
            targets = self.vm.deliver_ipi(self, IPI.from_icr(low, high, x2apic=True),
                                          fast_only=True)
            if targets is None:
                return [], "fallback"
        else:
            targets = self.send_ipi(low, high)
        self.apic.write64(R.ICR, value)
        return targets, "ok"

    def handle_wrmsr(self, msr, value):
        """A WRMSR VM exit (basic reason 32, qualification 0) for x2APIC MSR ``msr``: what
        KVM does when the MSR bitmap intercepts WRMSR 0x830 (IPIv not active for the vCPU).
        Nothing was stored by the processor; KVM emulates the whole write. Returns an
        `MSRWrite`.

        6.0 (x86.c handle_fastpath_set_x2apic_icr_irqoff, then handle_wrmsr ->
        kvm_x2apic_msr_write): in x2APIC mode a fixed, physical, no-shorthand IPI to a
        destination other than 0xFFFFFFFF takes the fastpath right after the exit; anything
        else the full WRMSR path; both call kvm_x2apic_icr_write (busy cleared, IPI sent,
        64-bit value stored at 300H). No reserved-bit check: nothing raises #GP. A WRMSR to
        0x830 while the vCPU is not in x2APIC mode (or without an in-kernel LAPIC) is a #GP.
        6.19 (__handle_fastpath_wrmsr, kvm_x2apic_icr_write_fast): every ICR write tries the
        fastpath, which delivers only through the fast APIC map; reserved bits 31:20, 17:16
        and 13 make both paths fail with #GP; otherwise the full path as in 6.0."""
        if msr != MSR_X2APIC_ICR:
            raise ValueError(f"WRMSR exit for MSR {msr:#x} is not modelled")
        self.exit_guest(EXIT_REASON_MSR_WRITE, 0)
        value &= (1 << 64) - 1
        result = self._emulate_wrmsr_icr(value)
        if result.gp:
            self.gp_injected += 1
        self.ipi_paths[result.path] += 1
        if self.loaded:
            self.enter_guest()
        return result

    def _emulate_wrmsr_icr(self, value):
        if not (self.lapic_in_kernel and self.apic.x2apic):
            return MSRWrite("full", True, [])
        low = value & 0xFFFF_FFFF
        if self.kernel == "6.0":
            f = IPI.from_icr(low, value >> 32, x2apic=True)
            fast = (f.shorthand is Shorthand.NONE and f.dest_mode is DestMode.PHYSICAL and
                    f.delivery_mode is DeliveryMode.FIXED and f.dest != X2APIC_BROADCAST)
            targets, _ = self.x2apic_icr_write(value)
            return MSRWrite("fastpath" if fast else "full", False, targets)
        targets, status = self.x2apic_icr_write(value, fast=True)
        if status == "ok":
            return MSRWrite("fastpath", False, targets)
        targets, status = self.x2apic_icr_write(value)
        return MSRWrite("full", status == "gp", targets)

    def send_ipi(self, low, high):
        """lapic.c kvm_apic_send_ipi: decode (the busy bit is ignored) and deliver through
        kvm_irq_delivery_to_apic; returns the vCPUs that accepted the IPI."""
        return self.vm.deliver_ipi(self, IPI.from_icr(low, high, x2apic=self.apic.x2apic))

    def accept_irq(self, ipi):
        """lapic.c __apic_accept_irq (6.0 = 6.19): True if the interrupt was accepted.

        Lowest priority counts an arbitration point, then is fixed delivery: a level
        de-assert or a software-disabled APIC drops it; TMR follows the trigger (set for
        level, cleared for edge); any vector, also below 16, is delivered. Remote read sets
        KVM's PV "unhalted" flag and kicks; SMI, NMI, INIT (not a level de-assert) and SIPI
        become pending events; ExtINT and the reserved mode are not delivered."""
        mode = ipi.delivery_mode
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
            if mode is DeliveryMode.LOWEST_PRIORITY:
                self.apic_arb_prio += 1
            if ipi.trigger is TriggerMode.LEVEL and not ipi.level:
                return False
            if not self.apic.sw_enabled:
                return False
            level = ipi.trigger is TriggerMode.LEVEL
            if self.apic.test(R.TMR, ipi.vector) != level:
                (self.apic.set if level else self.apic.clear)(R.TMR, ipi.vector)
            self.deliver_posted_interrupt(ipi.vector)
            return True
        if mode is DeliveryMode.RESERVED_3:          # APIC_DM_REMRD
            self.pv_unhalted = True
            self.kick()
            return True
        if mode is DeliveryMode.NMI:
            self.nmi_pending += 1
            self.kick()
            return True
        if mode is DeliveryMode.SMI:
            self.smi_pending = True
            self.kick()
            return True
        if mode is DeliveryMode.INIT:
            if ipi.trigger is TriggerMode.EDGE or ipi.level:
                self.init_pending = True
                self.kick()
                return True
            return False
        if mode is DeliveryMode.STARTUP:
            self.sipi_vector = ipi.vector
            self.kick()
            return True
        return False                                 # ExtINT


class MSRWrite:
    """What KVM did with an intercepted WRMSR 0x830: ``path`` "fastpath" or "full", ``gp``
    (a #GP was injected instead), ``targets`` (the vCPUs that accepted the IPI)."""
    __slots__ = ("path", "gp", "targets")

    def __init__(self, path, gp, targets):
        self.path, self.gp, self.targets = path, gp, targets

    def __repr__(self):
        return f"MSRWrite(path={self.path!r}, gp={self.gp}, targets={self.targets!r})"

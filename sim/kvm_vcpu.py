"""The vCPU of the KVM model (``struct vcpu_vmx``): its state, KVM's predicates on it, and what
the guest does with its APIC (take an interrupt, EOI, write ID/LDR/DFR/SPIV).

`VCPU` is assembled from one mixin per job, each in its own module:

- `sim.kvm_vcpu_controls.VMCSControls`: the VMCS controls, MSR interception, ``dump_vmcs``;
- `sim.kvm_vcpu_sched.Scheduling`: load/put, guest entry/exit, preemption, HLT, migration;
- `sim.kvm_posted_intr.PostedInterrupts`: the PID, its routing, software posting;
- `sim.kvm_exits.ExitHandlers`: the APIC-write and WRMSR exits and IPI emulation.

Model decisions: no assigned devices (VT-d posted interrupts unused), so
``vmx_needs_pi_wakeup`` is ``vmx_can_use_ipiv``; no nested guests, no Hyper-V SynIC, no
userspace exits; guest interrupts are enabled at HLT unless `halt` is told otherwise.
"""

from collections import Counter

from hdl.formats import APICRegister as R, PAGE_SIZE, PID_BYTES, POSTED_INTR_VECTOR
from .kvm_apic_map import INHIBIT_APIC_ID_MODIFIED
from .kvm_exits import ExitHandlers
from .kvm_posted_intr import PostedInterrupts
from .kvm_vcpu_controls import VMCSControls
from .kvm_vcpu_sched import Scheduling
from .lapic import VirtualAPIC
from .vmcs import VMCS, ControlsShadow


__all__ = ["VCPU", "APICV_INHIBIT_APIC_ID_MODIFIED"]

APICV_INHIBIT_APIC_ID_MODIFIED = INHIBIT_APIC_ID_MODIFIED


class VCPU(VMCSControls, Scheduling, PostedInterrupts, ExitHandlers):
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

    def __repr__(self):
        return f"VCPU({self.vcpu_id}, {self.state})"

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

    def reset(self):
        """vCPU reset: notifications go to POSTED_INTR_VECTOR, suppressed until loaded."""
        self._update_notify_info(nv=POSTED_INTR_VECTOR, sn=1)

    # -- APICv inhibits and the guest's APIC writes -----------------------------------------
    def set_apicv_inhibit(self, reason, inhibit=True):
        """Set or clear an APICv inhibit: VM-wide in KVM (kvm_set_apicv_inhibit takes the
        VM), so every vCPU of the VM follows."""
        self.vm.set_apicv_inhibit(reason, inhibit)

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

"""The VMCS controls of the KVM model's vCPU (``vmx/vmx.c``, 6.0; 6.19 where the helpers
say): what ``init_vmcs`` writes at KVM_CREATE_VCPU, how the controls follow the guest's APIC
mode and the VM's APICv inhibits, the x2APIC MSR interception, ``dump_vmcs`` and the
gateware's view of the VMCS (`unit_config`).

`VMCSControls` is a mixin of `sim.kvm_vcpu.VCPU`: it uses the vCPU's ``vmcs``, ``shadow``,
``kvm`` (its ``setup``: `sim.kvm_setup.KVMSetup`), ``apic`` and KVM's predicates.

Model decision: the VMCS is the one right after KVM_CREATE_VCPU, before KVM_SET_CPUID2: the
secondary controls that depend on guest CPUID (XSAVES, RDTSCP, INVPCID, WAITPKG) are off and
RDRAND/RDSEED exiting on; PML, bus-lock detection, notify VM exits, MWAIT/HLT/PAUSE in guest
are not enabled by the VM; Intel PT runs in system mode.
"""

from hdl.formats import APICRegister as R, MSR_X2APIC_ICR, MSR_X2APIC_SELF_IPI, \
    POSTED_INTR_VECTOR
from hdl.vmx import PinBased as Pin, Primary as P, Secondary as S, Tertiary as T, \
    VMCSField as F, VMEntry as En, VMExit as Ex
from .golden import Config


__all__ = ["VMCSControls", "X2APIC_MSR_BASE"]

X2APIC_MSR_BASE = 0x800
PLE_GAP, PLE_WINDOW = 128, 4096        # kvm_intel defaults
INVALID_GPA = (1 << 64) - 1
# lapic.c kvm_lapic_readable_reg_mask (6.19), x2APIC mode, no CMCI: one bit per register
# (offset >> 4): ID, LVR, TPR, PPR, LDR, SPIV, ISR/TMR/IRR x8, ESR, ICR, LVTT, LVTTHMR, LVTPC,
# LVT0, LVT1, LVTERR, TMICT, TMCCT, TDCR.
_READABLE_X2APIC = sum(1 << r for r in (
    0x2, 0x3, 0x8, 0xA, 0xD, 0xF, *range(0x10, 0x28), 0x28, 0x30, 0x32, 0x33, 0x34, 0x35,
    0x36, 0x37, 0x38, 0x39, 0x3E))


class VMCSControls:
    """The control fields of a vCPU's VMCS and the MSR bitmap, as KVM keeps them."""

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

    def dump_vmcs(self):
        """dump_vmcs's control state (vmx.c dump_vmcs): secondary/tertiary fields are read
        only if the CPU has those controls (vmcs_config), else printed as 0."""
        setup = self.kvm.setup
        return self.vmcs.dump(has_secondary=setup.cpu_has_secondary_exec_ctrls,
                              has_tertiary=setup.cpu_has_tertiary_exec_ctrls)

    def unit_config(self):
        """The gateware's `VMCSConfig` for this vCPU, read from its VMCS: what the processor
        uses when this vCPU's guest writes its ICR. A blocked (halted) vCPU runs no guest
        code, so it cannot send: RuntimeError."""
        if self.blocking:
            raise RuntimeError(f"vCPU {self.vcpu_id} is {self.state}: a halted guest writes "
                               f"no ICR (wake it with an interrupt and load it first)")
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

    # -- APIC mode, APICv inhibits, MSR interception ---------------------------------------
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

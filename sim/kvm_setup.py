"""What KVM (kvm_intel, Linux 6.0, the release that merged IPIv) decides from a CPU's VMX
capabilities: ``setup_vmcs_config`` and the parts of ``hardware_setup`` that matter for IPIv.

Facts from the kernel sources as merged (``arch/x86/kvm/vmx/vmx.c``, ``evmcs.h``): 64-bit host,
no SGX. Optional controls are kept when allowed, required ones must be allowed or setup fails
with EIO; the tertiary controls are adjusted by ``adjust_vmx_controls64(opt, msr) = opt &
rdmsr(msr)`` (optional only) and only if the adjusted primary controls kept bit 17.
"""

import errno
from dataclasses import dataclass, field

from hdl.vmx import PinBased as Pin, Primary as P, Secondary as S, Tertiary as T, \
    VMEntry as En, VMExit as Ex, VMXMSR


__all__ = ["SetupError", "ControlConfig", "ModuleParams", "KVMSetup", "adjust_vmx_controls",
           "adjust_vmx_controls64", "setup_vmcs_config", "hardware_setup",
           "EVMCS1_UNSUPPORTED"]


class SetupError(RuntimeError):
    """kvm_intel would refuse to load (``setup_vmcs_config`` returned -EIO)."""

    def __init__(self, message):
        super().__init__(message)
        self.errno = errno.EIO


# Required and optional controls of setup_vmcs_config (64-bit host).
PRIMARY_MIN = (P.HLT_EXITING | P.CR8_LOAD_EXITING | P.CR8_STORE_EXITING | P.CR3_LOAD_EXITING |
               P.CR3_STORE_EXITING | P.UNCOND_IO_EXITING | P.MOV_DR_EXITING |
               P.USE_TSC_OFFSETTING | P.MWAIT_EXITING | P.MONITOR_EXITING | P.INVLPG_EXITING |
               P.RDPMC_EXITING)
PRIMARY_OPT = (P.TPR_SHADOW | P.USE_MSR_BITMAPS | P.ACTIVATE_SECONDARY_CONTROLS |
               P.ACTIVATE_TERTIARY_CONTROLS)
SECONDARY_OPT = (S.VIRTUALIZE_APIC_ACCESSES | S.VIRTUALIZE_X2APIC_MODE | S.WBINVD_EXITING |
                 S.ENABLE_VPID | S.ENABLE_EPT | S.UNRESTRICTED_GUEST | S.PAUSE_LOOP_EXITING |
                 S.DESC | S.ENABLE_RDTSCP | S.ENABLE_INVPCID | S.APIC_REGISTER_VIRT |
                 S.VIRTUAL_INTR_DELIVERY | S.SHADOW_VMCS | S.XSAVES | S.RDSEED_EXITING |
                 S.RDRAND_EXITING | S.ENABLE_PML | S.TSC_SCALING | S.ENABLE_USR_WAIT_PAUSE |
                 S.PT_USE_GPA | S.PT_CONCEAL_VMX | S.ENABLE_VMFUNC | S.BUS_LOCK_DETECTION |
                 S.NOTIFY_VM_EXITING)
TERTIARY_OPT = T.IPI_VIRT
EXIT_MIN = Ex.SAVE_DEBUG_CONTROLS | Ex.ACK_INTR_ON_EXIT | Ex.HOST_ADDR_SPACE_SIZE
EXIT_OPT = (Ex.LOAD_IA32_PERF_GLOBAL_CTRL | Ex.LOAD_IA32_PAT | Ex.LOAD_IA32_EFER |
            Ex.CLEAR_BNDCFGS | Ex.PT_CONCEAL_PIP | Ex.CLEAR_IA32_RTIT_CTL)
PIN_MIN = Pin.EXT_INTR_MASK | Pin.NMI_EXITING
PIN_OPT = Pin.VIRTUAL_NMIS | Pin.POSTED_INTR | Pin.VMX_PREEMPTION_TIMER
ENTRY_MIN = En.LOAD_DEBUG_CONTROLS
ENTRY_OPT = (En.LOAD_IA32_PERF_GLOBAL_CTRL | En.LOAD_IA32_PAT | En.LOAD_IA32_EFER |
             En.LOAD_BNDCFGS | En.LOAD_IA32_RTIT_CTL)

# Enlightened VMCS v1 (Hyper-V) has no field for these (Linux 6.0 evmcs.h).
EVMCS1_UNSUPPORTED = {
    "pin": Pin.POSTED_INTR | Pin.VMX_PREEMPTION_TIMER,
    "primary": P.ACTIVATE_TERTIARY_CONTROLS,
    "secondary": (S.VIRTUAL_INTR_DELIVERY | S.VIRTUALIZE_APIC_ACCESSES | S.APIC_REGISTER_VIRT |
                  S.ENABLE_PML | S.ENABLE_VMFUNC | S.SHADOW_VMCS | S.TSC_SCALING |
                  S.PAUSE_LOOP_EXITING),
    "exit": Ex.LOAD_IA32_PERF_GLOBAL_CTRL | Ex.SAVE_VMX_PREEMPTION_TIMER,
    "entry": En.LOAD_IA32_PERF_GLOBAL_CTRL,
}

MEMORY_TYPE_WB = 6
PAGE_SIZE = 4096


def adjust_vmx_controls(ctl_min, ctl_opt, msrs, msr):
    """Required|optional, masked by allowed-1, forced by allowed-0; EIO if a required bit
    cannot be set."""
    value = msrs.rdmsr(msr)
    low, high = value & 0xFFFF_FFFF, value >> 32
    ctl = ((int(ctl_min) | int(ctl_opt)) & high) | low
    if int(ctl_min) & ~ctl:
        missing = int(ctl_min) & ~ctl
        raise SetupError(f"required controls {missing:#010x} not allowed by MSR {int(msr):#x}")
    return ctl


def adjust_vmx_controls64(ctl_opt, msrs, msr):
    """Optional controls only: ``opt & rdmsr(msr)`` (every bit of the MSR is allowed-1)."""
    return int(ctl_opt) & msrs.rdmsr(msr)


@dataclass
class ControlConfig:
    """KVM's ``struct vmcs_config`` (the controls every vCPU starts from)."""
    pin_based_exec_ctrl: int = 0
    cpu_based_exec_ctrl: int = 0
    cpu_based_2nd_exec_ctrl: int = 0
    cpu_based_3rd_exec_ctrl: int = 0
    vmexit_ctrl: int = 0
    vmentry_ctrl: int = 0
    revision_id: int = 0
    size: int = 0


def setup_vmcs_config(msrs, *, evmcs=False):
    """The `ControlConfig` KVM computes for a CPU; raises `SetupError` where KVM fails."""
    cfg = ControlConfig()
    cpu = adjust_vmx_controls(PRIMARY_MIN, PRIMARY_OPT, msrs, VMXMSR.PROCBASED_CTLS)
    if cpu & P.TPR_SHADOW:      # CR8 accesses go to the TPR shadow instead
        cpu &= ~(P.CR8_LOAD_EXITING | P.CR8_STORE_EXITING)
    second = 0
    if cpu & P.ACTIVATE_SECONDARY_CONTROLS:
        second = adjust_vmx_controls(0, SECONDARY_OPT, msrs, VMXMSR.PROCBASED_CTLS2)
    if not cpu & P.TPR_SHADOW:
        second &= ~(S.APIC_REGISTER_VIRT | S.VIRTUALIZE_X2APIC_MODE | S.VIRTUAL_INTR_DELIVERY)
    if second & S.ENABLE_EPT:   # with EPT, CR3 and INVLPG need no exits
        cpu &= ~(P.CR3_LOAD_EXITING | P.CR3_STORE_EXITING | P.INVLPG_EXITING)
    third = 0
    if cpu & P.ACTIVATE_TERTIARY_CONTROLS:
        third = adjust_vmx_controls64(TERTIARY_OPT, msrs, VMXMSR.PROCBASED_CTLS3)
    vmexit = adjust_vmx_controls(EXIT_MIN, EXIT_OPT, msrs, VMXMSR.EXIT_CTLS)
    pin = adjust_vmx_controls(PIN_MIN, PIN_OPT, msrs, VMXMSR.PINBASED_CTLS)
    if not second & S.VIRTUAL_INTR_DELIVERY:
        pin &= ~Pin.POSTED_INTR
    vmentry = adjust_vmx_controls(ENTRY_MIN, ENTRY_OPT, msrs, VMXMSR.ENTRY_CTLS)

    basic = msrs.rdmsr(VMXMSR.BASIC)
    size = basic >> 32 & 0x1FFF
    if size > PAGE_SIZE:
        raise SetupError(f"VMCS size {size} exceeds a page")
    if basic >> 48 & 1:
        raise SetupError("VMCS restricted to 32-bit physical addresses on a 64-bit host")
    if basic >> 50 & 0xF != MEMORY_TYPE_WB:
        raise SetupError(f"VMCS memory type {basic >> 50 & 0xF} is not write-back")

    cfg.pin_based_exec_ctrl, cfg.cpu_based_exec_ctrl = int(pin), int(cpu)
    cfg.cpu_based_2nd_exec_ctrl, cfg.cpu_based_3rd_exec_ctrl = int(second), int(third)
    cfg.vmexit_ctrl, cfg.vmentry_ctrl = int(vmexit), int(vmentry)
    cfg.revision_id, cfg.size = basic & 0x7FFF_FFFF, size
    if evmcs:
        # Hyper-V's enlightened VMCS v1 has no tertiary field: no IPIv there.
        cfg.pin_based_exec_ctrl &= ~EVMCS1_UNSUPPORTED["pin"]
        cfg.cpu_based_exec_ctrl &= ~EVMCS1_UNSUPPORTED["primary"]
        cfg.cpu_based_2nd_exec_ctrl &= ~EVMCS1_UNSUPPORTED["secondary"]
        cfg.cpu_based_3rd_exec_ctrl = 0
        cfg.vmexit_ctrl &= ~EVMCS1_UNSUPPORTED["exit"]
        cfg.vmentry_ctrl &= ~EVMCS1_UNSUPPORTED["entry"]
    return cfg


@dataclass(frozen=True)
class ModuleParams:
    """kvm_intel module parameters that matter here (all read-only after load)."""
    enable_apicv: bool = True
    enable_ipiv: bool = True
    evmcs: bool = False           # running on Hyper-V with the enlightened VMCS


@dataclass
class KVMSetup:
    """The outcome of loading kvm_intel on a CPU."""
    config: ControlConfig
    params: ModuleParams
    enable_apicv: bool
    enable_ipiv: bool
    notes: list = field(default_factory=list)   # why a feature ended up off

    @property
    def cpu_has_tertiary_exec_ctrls(self):
        return bool(self.config.cpu_based_exec_ctrl & P.ACTIVATE_TERTIARY_CONTROLS)

    @property
    def cpu_has_vmx_ipiv(self):
        return bool(self.config.cpu_based_3rd_exec_ctrl & T.IPI_VIRT)

    @property
    def cpu_has_vmx_apicv(self):
        c = self.config
        return bool(c.cpu_based_2nd_exec_ctrl & S.APIC_REGISTER_VIRT and
                    c.cpu_based_2nd_exec_ctrl & S.VIRTUAL_INTR_DELIVERY and
                    c.pin_based_exec_ctrl & Pin.POSTED_INTR)


def hardware_setup(msrs, params=ModuleParams()):
    """Load kvm_intel on the CPU described by ``msrs`` (`MSRs`)."""
    config = setup_vmcs_config(msrs, evmcs=params.evmcs)
    setup = KVMSetup(config, params, enable_apicv=params.enable_apicv,
                     enable_ipiv=params.enable_ipiv)
    if setup.enable_apicv and not setup.cpu_has_vmx_apicv:
        setup.enable_apicv = False
        missing = []
        if not config.cpu_based_exec_ctrl & P.TPR_SHADOW:
            missing.append("TPR shadow")
        if not config.cpu_based_2nd_exec_ctrl & S.APIC_REGISTER_VIRT:
            missing.append("APIC-register virtualization")
        if not config.cpu_based_2nd_exec_ctrl & S.VIRTUAL_INTR_DELIVERY:
            missing.append("virtual-interrupt delivery")
        if not config.pin_based_exec_ctrl & Pin.POSTED_INTR:
            missing.append("posted interrupts")
        setup.notes.append("APICv off: no " + ", ".join(missing))
    elif not params.enable_apicv:
        setup.notes.append("APICv off: enable_apicv=0")
    if setup.enable_ipiv and not (setup.enable_apicv and setup.cpu_has_vmx_ipiv):
        setup.enable_ipiv = False
        if not setup.enable_apicv:
            setup.notes.append("IPIv off: needs APICv")
        if not setup.cpu_has_vmx_ipiv:
            setup.notes.append("IPIv off: " + (
                "eVMCS has no tertiary controls" if params.evmcs else
                "no tertiary controls" if not setup.cpu_has_tertiary_exec_ctrls else
                "tertiary control bit 4 not allowed"))
    elif not params.enable_ipiv:
        setup.notes.append("IPIv off: enable_ipiv=0")
    return setup


"""What KVM (kvm_intel) decides from a CPU's VMX capabilities: ``setup_vmcs_config`` and the
parts of ``hardware_setup`` that shape a vCPU's VMCS (``arch/x86/kvm/vmx/vmx.c``,
``capabilities.h``, ``evmcs.h`` / ``vmx_onhyperv.c``), for Linux 6.0 (default) or 6.19.

Facts from the sources (file:function, release):

- ``adjust_vmx_controls``: (required | optional) & allowed-1, | allowed-0; -EIO if a
  required bit ends up 0. ``adjust_vmx_controls64`` (tertiary): ``optional & rdmsr``; it is
  called only if the adjusted primary controls kept bit 17 (both releases).
- 6.0 clears CR8-load/store exiting when the TPR shadow is kept and CR3-load/store and INVLPG
  exiting when EPT is kept, inside ``setup_vmcs_config``; 6.19 keeps them in the config (the
  per-vCPU ``vmx_exec_control`` drops them later).
- Both read IA32_VMX_EPT_VPID_CAP with ``rdmsr_safe``; a non-zero EPT (VPID) capability
  without the "enable EPT" ("enable VPID") control is an inconsistent configuration: -EIO
  while ``error_on_inconsistent_vmcs_config`` (default on), else the capability is dropped.
- A VM-entry/VM-exit control pair of which only one half survived (PERF_GLOBAL_CTRL, PAT,
  EFER, BNDCFGS, RTIT_CTL; 6.19 also CET) is inconsistent the same way.
- IA32_VMX_BASIC: VMCS size > 4 KiB, the 32-bit-address bit (48) or a memory type other than
  WB (6) is -EIO.
- Hyper-V's enlightened VMCS v1: 6.0 removes a deny-list (``EVMCS1_UNSUPPORTED_*``) and zeroes
  the tertiary controls; 6.19 keeps an allow-list (``EVMCS1_SUPPORTED_*``), whose tertiary
  set is empty. Both leave no posted interrupts and no virtual-interrupt delivery, so no APICv
  and no IPIv on eVMCS.
- ``hardware_setup``: APICv off unless APIC-register virtualization, virtual-interrupt
  delivery and posted interrupts all survived; ``enable_ipiv`` off unless APICv is on and the
  tertiary config kept bit 4. In 6.0 ``enable_ipiv`` is a kvm_intel variable; in 6.19 it lives
  in common x86 code (``x86.c``, shared with AMD's AVIC) and is still a kvm_intel parameter.

Model decisions (the kernel reads the host, the model has only MSR values):

- 64-bit host; no SGX (6.0 never asks for ENCLS exiting, 6.19 drops it);
  ``CONFIG_KVM_INTEL_PROVE_VE`` off (6.19 drops EPT-violation #VE); the CPU has neither the
  broken-preemption-timer signature nor the PERF_GLOBAL_CTRL erratum (both are CPUID checks).
- ``hardware_setup``: the preemption timer is judged with ``tsc_khz`` unknown (the kernel's
  5 GHz fallback); Intel PT runs in system mode (the default ``pt_mode``).
"""

import errno
from dataclasses import dataclass, field

from hdl.formats import PAGE_SIZE
from hdl.vmx import PinBased as Pin, Primary as P, Secondary as S, Tertiary as T, \
    VMEntry as En, VMExit as Ex, VMXMSR
from .kvm_kernel import DEFAULT_KERNEL, check_kernel


__all__ = ["SetupError", "ControlConfig", "ModuleParams", "KVMSetup", "adjust_vmx_controls",
           "adjust_vmx_controls64", "setup_vmcs_config", "hardware_setup",
           "EVMCS1_UNSUPPORTED", "EVMCS1_SUPPORTED", "CONTROLS"]


class SetupError(RuntimeError):
    """kvm_intel would refuse to load (``setup_vmcs_config`` returned -EIO)."""

    def __init__(self, message):
        super().__init__(message)
        self.errno = errno.EIO


_PRIMARY_MIN_60 = (P.HLT_EXITING | P.CR8_LOAD_EXITING | P.CR8_STORE_EXITING |
                   P.CR3_LOAD_EXITING | P.CR3_STORE_EXITING | P.UNCOND_IO_EXITING |
                   P.MOV_DR_EXITING | P.USE_TSC_OFFSETTING | P.MWAIT_EXITING |
                   P.MONITOR_EXITING | P.INVLPG_EXITING | P.RDPMC_EXITING)
_SECONDARY_OPT_60 = (S.VIRTUALIZE_APIC_ACCESSES | S.VIRTUALIZE_X2APIC_MODE | S.WBINVD_EXITING |
                     S.ENABLE_VPID | S.ENABLE_EPT | S.UNRESTRICTED_GUEST |
                     S.PAUSE_LOOP_EXITING | S.DESC | S.ENABLE_RDTSCP | S.ENABLE_INVPCID |
                     S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY | S.SHADOW_VMCS |
                     S.XSAVES | S.RDSEED_EXITING | S.RDRAND_EXITING | S.ENABLE_PML |
                     S.TSC_SCALING | S.ENABLE_USR_WAIT_PAUSE | S.PT_USE_GPA |
                     S.PT_CONCEAL_VMX | S.ENABLE_VMFUNC | S.BUS_LOCK_DETECTION |
                     S.NOTIFY_VM_EXITING)
_EXIT_OPT_60 = (Ex.LOAD_IA32_PERF_GLOBAL_CTRL | Ex.LOAD_IA32_PAT | Ex.LOAD_IA32_EFER |
                Ex.CLEAR_BNDCFGS | Ex.PT_CONCEAL_PIP | Ex.CLEAR_IA32_RTIT_CTL)
_ENTRY_OPT_60 = (En.LOAD_IA32_PERF_GLOBAL_CTRL | En.LOAD_IA32_PAT | En.LOAD_IA32_EFER |
                 En.LOAD_BNDCFGS | En.PT_CONCEAL_PIP | En.LOAD_IA32_RTIT_CTL)
_PAIRS_60 = ((En.LOAD_IA32_PERF_GLOBAL_CTRL, Ex.LOAD_IA32_PERF_GLOBAL_CTRL),
             (En.LOAD_IA32_PAT, Ex.LOAD_IA32_PAT), (En.LOAD_IA32_EFER, Ex.LOAD_IA32_EFER),
             (En.LOAD_BNDCFGS, Ex.CLEAR_BNDCFGS),
             (En.LOAD_IA32_RTIT_CTL, Ex.CLEAR_IA32_RTIT_CTL))

# (required, optional) per control class and kernel (6.0: setup_vmcs_config's min/opt;
# 6.19: the KVM_REQUIRED_VMX_* / KVM_OPTIONAL_VMX_* macros of vmx.h).
CONTROLS = {
    "6.0": {
        "primary": (_PRIMARY_MIN_60, P.TPR_SHADOW | P.USE_MSR_BITMAPS |
                    P.ACTIVATE_SECONDARY_CONTROLS | P.ACTIVATE_TERTIARY_CONTROLS),
        "secondary": (0, _SECONDARY_OPT_60),
        "tertiary": (0, T.IPI_VIRT),
        "exit": (Ex.SAVE_DEBUG_CONTROLS | Ex.ACK_INTR_ON_EXIT | Ex.HOST_ADDR_SPACE_SIZE,
                 _EXIT_OPT_60),
        "pin": (Pin.EXT_INTR_MASK | Pin.NMI_EXITING,
                Pin.VIRTUAL_NMIS | Pin.POSTED_INTR | Pin.VMX_PREEMPTION_TIMER),
        "entry": (En.LOAD_DEBUG_CONTROLS, _ENTRY_OPT_60),
        "pairs": _PAIRS_60,
    },
    "6.19": {
        "primary": (_PRIMARY_MIN_60 | P.INTR_WINDOW_EXITING,
                    P.RDTSC_EXITING | P.TPR_SHADOW | P.USE_IO_BITMAPS | P.MONITOR_TRAP_FLAG |
                    P.USE_MSR_BITMAPS | P.NMI_WINDOW_EXITING | P.PAUSE_EXITING |
                    P.ACTIVATE_SECONDARY_CONTROLS | P.ACTIVATE_TERTIARY_CONTROLS),
        "secondary": (0, _SECONDARY_OPT_60 | S.ENCLS_EXITING | S.EPT_VIOLATION_VE),
        "tertiary": (0, T.IPI_VIRT),
        "exit": (Ex.SAVE_DEBUG_CONTROLS | Ex.ACK_INTR_ON_EXIT | Ex.HOST_ADDR_SPACE_SIZE,
                 _EXIT_OPT_60 | Ex.SAVE_IA32_PAT | Ex.SAVE_IA32_EFER |
                 Ex.SAVE_VMX_PREEMPTION_TIMER | Ex.LOAD_CET_STATE),
        "pin": (Pin.EXT_INTR_MASK | Pin.NMI_EXITING,
                Pin.VIRTUAL_NMIS | Pin.POSTED_INTR | Pin.VMX_PREEMPTION_TIMER),
        "entry": (En.LOAD_DEBUG_CONTROLS | En.IA32E_MODE, _ENTRY_OPT_60 | En.LOAD_CET_STATE),
        "pairs": _PAIRS_60 + ((En.LOAD_CET_STATE, Ex.LOAD_CET_STATE),),
    },
}

# Linux 6.0 evmcs.h: what enlightened VMCS v1 has no field for (removed from the config).
EVMCS1_UNSUPPORTED = {
    "pin": Pin.POSTED_INTR | Pin.VMX_PREEMPTION_TIMER,
    "primary": P.ACTIVATE_TERTIARY_CONTROLS,
    "secondary": (S.VIRTUAL_INTR_DELIVERY | S.VIRTUALIZE_APIC_ACCESSES | S.APIC_REGISTER_VIRT |
                  S.ENABLE_PML | S.ENABLE_VMFUNC | S.SHADOW_VMCS | S.TSC_SCALING |
                  S.PAUSE_LOOP_EXITING),
    "exit": Ex.LOAD_IA32_PERF_GLOBAL_CTRL | Ex.SAVE_VMX_PREEMPTION_TIMER,
    "entry": En.LOAD_IA32_PERF_GLOBAL_CTRL,
}

# Linux 6.19 hyperv_evmcs.h: what enlightened VMCS v1 can hold (the config keeps only these).
# Bits 1, 2, 4 (pin), 1, 4-6, 8, 13, 14, 26 (primary), 0-8, 10-11, 13-17 (exit) and 0-8, 12
# (entry) are the "always on without TRUE MSR" reserved-1 bits.
EVMCS1_SUPPORTED = {
    "pin": 0x16 | Pin.EXT_INTR_MASK | Pin.NMI_EXITING | Pin.VIRTUAL_NMIS,
    "primary": (0x0401_E172 | P.HLT_EXITING | P.CR3_LOAD_EXITING | P.CR3_STORE_EXITING |
                P.UNCOND_IO_EXITING | P.MOV_DR_EXITING | P.USE_TSC_OFFSETTING |
                P.MWAIT_EXITING | P.MONITOR_EXITING | P.INVLPG_EXITING | P.RDPMC_EXITING |
                P.INTR_WINDOW_EXITING | P.CR8_LOAD_EXITING | P.CR8_STORE_EXITING |
                P.RDTSC_EXITING | P.TPR_SHADOW | P.USE_IO_BITMAPS | P.MONITOR_TRAP_FLAG |
                P.USE_MSR_BITMAPS | P.NMI_WINDOW_EXITING | P.PAUSE_EXITING |
                P.ACTIVATE_SECONDARY_CONTROLS),
    "secondary": (S.VIRTUALIZE_X2APIC_MODE | S.WBINVD_EXITING | S.ENABLE_VPID | S.ENABLE_EPT |
                  S.UNRESTRICTED_GUEST | S.DESC | S.ENABLE_RDTSCP | S.ENABLE_INVPCID |
                  S.XSAVES | S.RDSEED_EXITING | S.RDRAND_EXITING | S.TSC_SCALING |
                  S.ENABLE_USR_WAIT_PAUSE | S.PT_USE_GPA | S.PT_CONCEAL_VMX |
                  S.BUS_LOCK_DETECTION | S.NOTIFY_VM_EXITING | S.ENCLS_EXITING),
    "tertiary": 0,
    "exit": (0x0003_6DFF | Ex.SAVE_DEBUG_CONTROLS | Ex.ACK_INTR_ON_EXIT |
             Ex.HOST_ADDR_SPACE_SIZE | Ex.LOAD_IA32_PERF_GLOBAL_CTRL | Ex.SAVE_IA32_PAT |
             Ex.LOAD_IA32_PAT | Ex.SAVE_IA32_EFER | Ex.LOAD_IA32_EFER | Ex.CLEAR_BNDCFGS |
             Ex.PT_CONCEAL_PIP | Ex.CLEAR_IA32_RTIT_CTL),
    "entry": (0x0000_11FF | En.LOAD_DEBUG_CONTROLS | En.IA32E_MODE |
              En.LOAD_IA32_PERF_GLOBAL_CTRL | En.LOAD_IA32_PAT | En.LOAD_IA32_EFER |
              En.LOAD_BNDCFGS | En.PT_CONCEAL_PIP | En.LOAD_IA32_RTIT_CTL),
}

MEMORY_TYPE_WB = 6
# IA32_VMX_EPT_VPID_CAP bits (arch/x86/include/asm/vmx.h); VPID bits counted from bit 32.
EPT_PAGE_WALK_4 = 1 << 6
EPT_MT_WB = 1 << 14
EPT_AD = 1 << 21
EPT_INVEPT_GLOBAL = 1 << 26
VPID_INVVPID = 1 << 0
VPID_INVVPID_SINGLE = 1 << 9
VPID_INVVPID_GLOBAL = 1 << 10


def adjust_vmx_controls(ctl_min, ctl_opt, msrs, msr):
    """Required|optional, masked by allowed-1, forced by allowed-0; EIO if a required bit
    cannot be set (vmx.c adjust_vmx_controls, 6.0 and 6.19)."""
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
    """KVM's ``struct vmcs_config`` (the controls every vCPU starts from) and the
    ``vmx_capability`` EPT/VPID words read with it."""
    pin_based_exec_ctrl: int = 0
    cpu_based_exec_ctrl: int = 0
    cpu_based_2nd_exec_ctrl: int = 0
    cpu_based_3rd_exec_ctrl: int = 0
    vmexit_ctrl: int = 0
    vmentry_ctrl: int = 0
    revision_id: int = 0
    size: int = 0
    ept_cap: int = 0
    vpid_cap: int = 0


def _inconsistent(message, error_on_inconsistent):
    if error_on_inconsistent:
        raise SetupError(f"inconsistent VMX capabilities: {message}")


def setup_vmcs_config(msrs, *, evmcs=False, kernel=DEFAULT_KERNEL,
                      error_on_inconsistent_vmcs_config=True):
    """The `ControlConfig` KVM computes for a CPU; raises `SetupError` where KVM returns -EIO
    (vmx.c setup_vmcs_config, 6.0 / 6.19)."""
    check_kernel(kernel)
    ctl = CONTROLS[kernel]
    strict = error_on_inconsistent_vmcs_config
    cfg = ControlConfig()
    cpu = adjust_vmx_controls(*ctl["primary"], msrs, VMXMSR.PROCBASED_CTLS)
    if kernel == "6.0" and cpu & P.TPR_SHADOW:   # CR8 accesses go to the TPR shadow instead
        cpu &= ~(P.CR8_LOAD_EXITING | P.CR8_STORE_EXITING)
    second = 0
    if cpu & P.ACTIVATE_SECONDARY_CONTROLS:
        second = adjust_vmx_controls(*ctl["secondary"], msrs, VMXMSR.PROCBASED_CTLS2)
    if kernel == "6.19":
        second &= ~S.EPT_VIOLATION_VE            # CONFIG_KVM_INTEL_PROVE_VE is off
    if not cpu & P.TPR_SHADOW:
        second &= ~(S.APIC_REGISTER_VIRT | S.VIRTUALIZE_X2APIC_MODE | S.VIRTUAL_INTR_DELIVERY)
    caps = msrs.rdmsr_safe(VMXMSR.EPT_VPID_CAP) or 0     # rdmsr_safe: absent reads 0
    ept, vpid = caps & 0xFFFF_FFFF, caps >> 32
    if kernel == "6.0" and second & S.ENABLE_EPT:   # with EPT, CR3 and INVLPG need no exits
        cpu &= ~(P.CR3_LOAD_EXITING | P.CR3_STORE_EXITING | P.INVLPG_EXITING)
    elif not second & S.ENABLE_EPT and ept:
        _inconsistent(f"EPT capabilities {ept:#x} without the 'enable EPT' control", strict)
        ept = 0
        second &= ~S.EPT_VIOLATION_VE
    if not second & S.ENABLE_VPID and vpid:
        _inconsistent(f"VPID capabilities {vpid:#x} without the 'enable VPID' control", strict)
        vpid = 0
    if kernel == "6.19":
        second &= ~S.ENCLS_EXITING               # the host has no SGX
    third = 0
    if cpu & P.ACTIVATE_TERTIARY_CONTROLS:
        third = adjust_vmx_controls64(ctl["tertiary"][1], msrs, VMXMSR.PROCBASED_CTLS3)
    vmexit = adjust_vmx_controls(*ctl["exit"], msrs, VMXMSR.EXIT_CTLS)
    pin = adjust_vmx_controls(*ctl["pin"], msrs, VMXMSR.PINBASED_CTLS)
    if not second & S.VIRTUAL_INTR_DELIVERY:
        pin &= ~Pin.POSTED_INTR
    vmentry = adjust_vmx_controls(*ctl["entry"], msrs, VMXMSR.ENTRY_CTLS)
    for n_ctrl, x_ctrl in ctl["pairs"]:
        if bool(vmentry & n_ctrl) == bool(vmexit & x_ctrl):
            continue
        _inconsistent(f"VM-entry control {int(n_ctrl):#x} is {int(bool(vmentry & n_ctrl))} "
                      f"but VM-exit control {int(x_ctrl):#x} is {int(bool(vmexit & x_ctrl))}",
                      strict)
        vmentry &= ~n_ctrl
        vmexit &= ~x_ctrl

    basic = msrs.rdmsr(VMXMSR.BASIC)
    size = basic >> 32 & 0x1FFF
    if size > PAGE_SIZE:
        raise SetupError(f"VMCS size {size} exceeds a page")
    if basic >> 48 & 1:
        raise SetupError("VMCS restricted to 32-bit physical addresses on a 64-bit host")
    if basic >> 50 & 0xF != MEMORY_TYPE_WB:
        raise SetupError(f"VMCS memory type {basic >> 50 & 0xF} is not write-back")
    if kernel == "6.19":
        msrs.rdmsr(VMXMSR.MISC)                  # 6.19 keeps IA32_VMX_MISC in the config

    cfg.pin_based_exec_ctrl, cfg.cpu_based_exec_ctrl = int(pin), int(cpu)
    cfg.cpu_based_2nd_exec_ctrl, cfg.cpu_based_3rd_exec_ctrl = int(second), int(third)
    cfg.vmexit_ctrl, cfg.vmentry_ctrl = int(vmexit), int(vmentry)
    cfg.revision_id, cfg.size = basic & 0xFFFF_FFFF, size
    cfg.ept_cap, cfg.vpid_cap = ept, vpid
    if evmcs:
        _evmcs_sanitize(cfg, kernel)
    return cfg


def _evmcs_sanitize(cfg, kernel):
    """evmcs_sanitize_exec_ctrls: 6.0 removes a deny-list, 6.19 keeps an allow-list."""
    names = (("pin", "pin_based_exec_ctrl"), ("primary", "cpu_based_exec_ctrl"),
             ("secondary", "cpu_based_2nd_exec_ctrl"), ("exit", "vmexit_ctrl"),
             ("entry", "vmentry_ctrl"))
    for key, attr in names:
        value = getattr(cfg, attr)
        if kernel == "6.0":
            value &= ~int(EVMCS1_UNSUPPORTED[key])
        else:
            value &= int(EVMCS1_SUPPORTED[key])
        setattr(cfg, attr, value)
    # 6.0 zeroes the tertiary config; 6.19's allow-list for it is empty: the same result.
    cfg.cpu_based_3rd_exec_ctrl &= EVMCS1_SUPPORTED["tertiary"]


@dataclass(frozen=True)
class ModuleParams:
    """kvm_intel module parameters that matter here (all read-only after load)."""
    enable_apicv: bool = True
    enable_ipiv: bool = True
    evmcs: bool = False           # running on Hyper-V with the enlightened VMCS
    error_on_inconsistent_vmcs_config: bool = True


@dataclass
class KVMSetup:
    """The outcome of loading kvm_intel on a CPU (hardware_setup's decisions)."""
    config: ControlConfig
    params: ModuleParams
    enable_apicv: bool
    enable_ipiv: bool
    kernel: str = DEFAULT_KERNEL
    flexpriority_enabled: bool = True
    enable_vpid: bool = True
    enable_ept: bool = True
    enable_ept_ad_bits: bool = True
    enable_unrestricted_guest: bool = True
    enable_vnmi: bool = True
    enable_pml: bool = True
    enable_preemption_timer: bool = True
    notes: list = field(default_factory=list)   # why a feature ended up off

    @property
    def cpu_has_tertiary_exec_ctrls(self):
        return bool(self.config.cpu_based_exec_ctrl & P.ACTIVATE_TERTIARY_CONTROLS)

    @property
    def cpu_has_secondary_exec_ctrls(self):
        return bool(self.config.cpu_based_exec_ctrl & P.ACTIVATE_SECONDARY_CONTROLS)

    @property
    def cpu_has_vmx_ipiv(self):
        return bool(self.config.cpu_based_3rd_exec_ctrl & T.IPI_VIRT)

    @property
    def cpu_has_vmx_apicv(self):
        """capabilities.h cpu_has_vmx_apicv (the TPR shadow is implied: without it the
        config has no APIC-register virtualization nor virtual-interrupt delivery)."""
        c = self.config
        return bool(c.cpu_based_2nd_exec_ctrl & S.APIC_REGISTER_VIRT and
                    c.cpu_based_2nd_exec_ctrl & S.VIRTUAL_INTR_DELIVERY and
                    c.pin_based_exec_ctrl & Pin.POSTED_INTR)

    @property
    def cpu_has_vmx_msr_bitmap(self):
        return bool(self.config.cpu_based_exec_ctrl & P.USE_MSR_BITMAPS)

    @property
    def cpu_has_vmx_virtualize_x2apic_mode(self):
        return bool(self.config.cpu_based_2nd_exec_ctrl & S.VIRTUALIZE_X2APIC_MODE)


def hardware_setup(msrs, params=ModuleParams(), *, kernel=DEFAULT_KERNEL):
    """Load kvm_intel on the CPU described by ``msrs`` (`MSRs`) (vmx.c hardware_setup)."""
    check_kernel(kernel)
    config = setup_vmcs_config(
        msrs, evmcs=params.evmcs, kernel=kernel,
        error_on_inconsistent_vmcs_config=params.error_on_inconsistent_vmcs_config)
    setup = KVMSetup(config, params, enable_apicv=params.enable_apicv,
                     enable_ipiv=params.enable_ipiv, kernel=kernel)
    c = config
    second, ept, vpid = c.cpu_based_2nd_exec_ctrl, c.ept_cap, c.vpid_cap
    setup.enable_vpid = bool(second & S.ENABLE_VPID and vpid & VPID_INVVPID and
                             vpid & (VPID_INVVPID_SINGLE | VPID_INVVPID_GLOBAL))
    setup.enable_ept = bool(second & S.ENABLE_EPT and ept & EPT_PAGE_WALK_4 and
                            ept & EPT_MT_WB and ept & EPT_INVEPT_GLOBAL)
    setup.enable_ept_ad_bits = bool(setup.enable_ept and ept & EPT_AD)
    setup.enable_unrestricted_guest = bool(setup.enable_ept and second & S.UNRESTRICTED_GUEST)
    setup.flexpriority_enabled = bool(c.cpu_based_exec_ctrl & P.TPR_SHADOW and
                                      second & S.VIRTUALIZE_APIC_ACCESSES)
    setup.enable_vnmi = bool(c.pin_based_exec_ctrl & Pin.VIRTUAL_NMIS)
    setup.enable_pml = bool(setup.enable_ept_ad_bits and second & S.ENABLE_PML)
    setup.enable_preemption_timer = bool(c.pin_based_exec_ctrl & Pin.VMX_PREEMPTION_TIMER)
    if setup.enable_preemption_timer:
        rate = msrs.rdmsr(VMXMSR.MISC) & 0x1F
        if (5_000_000_000 >> rate) > 0xFFFF_FFFF // 10:    # tsc_khz unknown: 5 GHz
            setup.enable_preemption_timer = False

    if setup.enable_apicv and not setup.cpu_has_vmx_apicv:
        setup.enable_apicv = False
        missing = []
        if not c.cpu_based_exec_ctrl & P.TPR_SHADOW:
            missing.append("TPR shadow")
        if not second & S.APIC_REGISTER_VIRT:
            missing.append("APIC-register virtualization")
        if not second & S.VIRTUAL_INTR_DELIVERY:
            missing.append("virtual-interrupt delivery")
        if not c.pin_based_exec_ctrl & Pin.POSTED_INTR:
            missing.append("posted interrupts")
        setup.notes.append("APICv off: no " + ", ".join(missing) +
                           (" (eVMCS)" if params.evmcs else ""))
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

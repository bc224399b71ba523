"""``ipiv vmxcap``: would kvm_intel enable IPIv on a CPU (the verdict, first), QEMU's
``scripts/kvm/vmxcap`` report for that CPU, then what it lacks.

The verdict is one paragraph: whether the CPU allows IPI virtualization and whether kvm_intel
(for the release and module parameters given) enables it, and why not.

Part 1 prints QEMU vmxcap's sections and rows, with QEMU's names and semantics (qemu/qemu
``scripts/kvm/vmxcap``), so it can be diffed against ``vmxcap`` run on the real machine:

- every MSR is read as QEMU reads ``/dev/cpu/0/msr``: one that cannot be read counts as 0, so
  all rows of an absent control MSR read "no" and its Hex line reads 0x0;
- nothing is gated: the secondary and tertiary sections are printed from MSRs 0x48B and 0x492
  whether or not the primary controls may activate them; the TRUE_* MSRs are read for pin,
  primary, exit and entry controls whatever IA32_VMX_BASIC[55] says;
- a control row is "default" (must be 1 in the legacy MSR, may be 0 and 1 by the TRUE MSR),
  "no", "forced", "yes", or "?" (must be 1 but not allowed to be 1);
- the tertiary section has only QEMU's bit 4 row ("Enable IPI virtualization"), allowed-1 in
  all 64 bits.

Part 2, after a separator line, is what QEMU does not print: the whole tertiary MSR decoded
(all bits with a name in the SDM), the secondary bits QEMU's table lacks, whether the CPU has
tertiary controls at all (primary bit 17 allowed-1), the ``vmx flags`` line of the selected
kernel and KVM's decisions for that kernel: the control words of ``vmcs_config`` (what
kvm_intel may use) beside those of a new vCPU's VMCS (what a vCPU runs with), which differ,
and differently in 6.0 and 6.19.
"""

import textwrap
from dataclasses import dataclass, replace

from hdl.vmx import SECONDARY, TERTIARY, VMXMSR
from .kvm import KVM
from .kvm_kernel import DEFAULT_KERNEL, check_kernel
from .kvm_setup import KVMSetup, ModuleParams, SetupError, hardware_setup
from .vmx_caps import MSRs, VMXCapabilities
from .vmx_flags import vmx_flags


__all__ = ["report", "report_json", "verdict", "warnings", "kvm_decision", "KVMDecision",
           "qemu_vmxcap", "QEMU_SECTIONS", "QEMU_HEADER", "SEPARATOR", "REPORT_PARTS",
           "MODULE_PARAMETERS", "CONTROL_WORDS"]

_COLUMN = 40
_WIDTH = 92                 # the verdict paragraph's width
_WORD = 20                  # the vmcs_config column of the control words
QEMU_HEADER = "=== QEMU's scripts/kvm/vmxcap ==="
SEPARATOR = "=== beyond QEMU's vmxcap (ipiv model) ==="
REPORT_PARTS = ("all", "summary", "qemu")
#: The kvm_intel module parameters `--param` sets (vmx.c module_param, 6.0 and 6.19).
MODULE_PARAMETERS = ("enable_apicv", "enable_ipiv", "error_on_inconsistent_vmcs_config")

# QEMU scripts/kvm/vmxcap, section by section: (kind, name, rows, MSR, TRUE MSR).
# "misc" rows: bit -> yes/no, (lo, hi) -> integer.
QEMU_SECTIONS = (
    ("misc", "Basic VMX Information", {
        (0, 30): "Revision", (32, 44): "VMCS size", 48: "VMCS restricted to 32 bit addresses",
        49: "Dual-monitor support", (50, 53): "VMCS memory type",
        54: "INS/OUTS instruction information", 55: "IA32_VMX_TRUE_*_CTLS support",
        56: "Skip checks on event error code"}, VMXMSR.BASIC, None),
    ("control", "pin-based controls", {
        0: "External interrupt exiting", 3: "NMI exiting", 5: "Virtual NMIs",
        6: "Activate VMX-preemption timer", 7: "Process posted interrupts"},
     VMXMSR.PINBASED_CTLS, VMXMSR.TRUE_PINBASED_CTLS),
    ("control", "primary processor-based controls", {
        2: "Interrupt window exiting", 3: "Use TSC offsetting", 7: "HLT exiting",
        9: "INVLPG exiting", 10: "MWAIT exiting", 11: "RDPMC exiting", 12: "RDTSC exiting",
        15: "CR3-load exiting", 16: "CR3-store exiting", 17: "Activate tertiary controls",
        19: "CR8-load exiting", 20: "CR8-store exiting", 21: "Use TPR shadow",
        22: "NMI-window exiting", 23: "MOV-DR exiting", 24: "Unconditional I/O exiting",
        25: "Use I/O bitmaps", 27: "Monitor trap flag", 28: "Use MSR bitmaps",
        29: "MONITOR exiting", 30: "PAUSE exiting", 31: "Activate secondary control"},
     VMXMSR.PROCBASED_CTLS, VMXMSR.TRUE_PROCBASED_CTLS),
    ("control", "secondary processor-based controls", {
        0: "Virtualize APIC accesses", 1: "Enable EPT", 2: "Descriptor-table exiting",
        3: "Enable RDTSCP", 4: "Virtualize x2APIC mode", 5: "Enable VPID",
        6: "WBINVD exiting", 7: "Unrestricted guest", 8: "APIC register emulation",
        9: "Virtual interrupt delivery", 10: "PAUSE-loop exiting", 11: "RDRAND exiting",
        12: "Enable INVPCID", 13: "Enable VM functions", 14: "VMCS shadowing",
        15: "Enable ENCLS exiting", 16: "RDSEED exiting", 17: "Enable PML",
        18: "EPT-violation #VE", 19: "Conceal non-root operation from PT",
        20: "Enable XSAVES/XRSTORS", 22: "Mode-based execute control (XS/XU)",
        23: "Sub-page write permissions", 24: "GPA translation for PT", 25: "TSC scaling",
        26: "User wait and pause", 28: "ENCLV exiting"}, VMXMSR.PROCBASED_CTLS2, None),
    ("allowed1", "tertiary processor-based controls", {4: "Enable IPI virtualization"},
     VMXMSR.PROCBASED_CTLS3, None),
    ("control", "VM-Exit controls", {
        2: "Save debug controls", 9: "Host address-space size",
        12: "Load IA32_PERF_GLOBAL_CTRL", 15: "Acknowledge interrupt on exit",
        18: "Save IA32_PAT", 19: "Load IA32_PAT", 20: "Save IA32_EFER", 21: "Load IA32_EFER",
        22: "Save VMX-preemption timer value", 23: "Clear IA32_BNDCFGS",
        24: "Conceal VM exits from PT", 25: "Clear IA32_RTIT_CTL"},
     VMXMSR.EXIT_CTLS, VMXMSR.TRUE_EXIT_CTLS),
    ("control", "VM-Entry controls", {
        2: "Load debug controls", 9: "IA-32e mode guest", 10: "Entry to SMM",
        11: "Deactivate dual-monitor treatment", 13: "Load IA32_PERF_GLOBAL_CTRL",
        14: "Load IA32_PAT", 15: "Load IA32_EFER", 16: "Load IA32_BNDCFGS",
        17: "Conceal VM entries from PT", 18: "Load IA32_RTIT_CTL"},
     VMXMSR.ENTRY_CTLS, VMXMSR.TRUE_ENTRY_CTLS),
    ("misc", "Miscellaneous data", {
        (0, 4): "VMX-preemption timer scale (log2)",
        5: "Store EFER.LMA into IA-32e mode guest control", 6: "HLT activity state",
        7: "Shutdown activity state", 8: "Wait-for-SIPI activity state",
        14: "PT in VMX operation", 15: "IA32_SMBASE support",
        (16, 24): "Number of CR3-target values", (25, 27): "MSR-load/store count recommendation",
        28: "IA32_SMM_MONITOR_CTL[2] can be set to 1",
        29: "VMWRITE to VM-exit information fields", 30: "Inject event with insn length=0",
        (32, 63): "MSEG revision identifier"}, VMXMSR.MISC, None),
    ("misc", "VPID and EPT capabilities", {
        0: "Execute-only EPT translations", 6: "Page-walk length 4", 7: "Page-walk length 5",
        8: "Paging-structure memory type UC", 14: "Paging-structure memory type WB",
        16: "2MB EPT pages", 17: "1GB EPT pages", 20: "INVEPT supported",
        21: "EPT accessed and dirty flags",
        22: "Advanced VM-exit information for EPT violations", 25: "Single-context INVEPT",
        26: "All-context INVEPT", 32: "INVVPID supported", 40: "Individual-address INVVPID",
        41: "Single-context INVVPID", 42: "All-context INVVPID",
        43: "Single-context-retaining-globals INVVPID"}, VMXMSR.EPT_VPID_CAP, None),
    ("misc", "VM Functions", {0: "EPTP Switching"}, VMXMSR.VMFUNC, None),
)


def _row(name, value):
    return f"  {name:<{_COLUMN}} {value}"


def _read(msrs, index):
    """QEMU's msr().read(index, 0): an MSR that cannot be read is 0 (not logged)."""
    return msrs.values.get(int(index), 0)


def _setting(mb1, cb1, tmb1, tcb1, has_true, bit):
    zero, one = not mb1 >> bit & 1, bool(cb1 >> bit & 1)
    true_zero, true_one = not tmb1 >> bit & 1, bool(tcb1 >> bit & 1)
    if has_true and true_zero and true_one and one and not zero:
        return "default"
    if zero and not one:
        return "no"
    if one and not zero:
        return "forced"
    if one and zero:
        return "yes"
    return "?"


def qemu_vmxcap(msrs):
    """The lines QEMU's vmxcap prints for these MSR values."""
    lines = []
    for kind, name, rows, msr, true_msr in QEMU_SECTIONS:
        lines.append(name)
        value = _read(msrs, msr)
        if kind == "misc":
            lines.append(f"  Hex: 0x{value:x}")
            for bits in sorted(rows, key=lambda k: k[0] if isinstance(k, tuple) else k):
                lo, hi = bits if isinstance(bits, tuple) else (bits, bits)
                v = value >> lo & ((1 << (hi - lo + 1)) - 1)
                lines.append(_row(rows[bits], str(v) if isinstance(bits, tuple)
                                  else ("yes" if v else "no")))
            continue
        if kind == "allowed1":
            mb1, cb1 = 0, value
        else:
            mb1, cb1 = value & 0xFFFF_FFFF, value >> 32
        tmb1 = tcb1 = 0
        if true_msr is not None:
            true = _read(msrs, true_msr)
            tmb1, tcb1 = true & 0xFFFF_FFFF, true >> 32
        for bit in sorted(rows):
            lines.append(_row(rows[bit], _setting(mb1, cb1, tmb1, tcb1, true_msr is not None,
                                                  bit)))
    return lines


@dataclass
class KVMDecision:
    """What kvm_intel makes of a CPU: its `KVMSetup` (None if it does not load, with the
    ``error``), and the control words of a new vCPU's VMCS (`sim.kvm`: init_vmcs right after
    KVM_CREATE_VCPU), which differ from ``vmcs_config`` and between releases."""
    params: ModuleParams
    kernel: str
    setup: KVMSetup | None = None
    error: str | None = None
    vcpu: dict | None = None


def kvm_decision(msrs, *, params=ModuleParams(), kernel=DEFAULT_KERNEL):
    """Load kvm_intel (with ``params``) on the CPU of ``msrs`` and create one vCPU."""
    try:
        setup = hardware_setup(msrs, params, kernel=kernel)
    except SetupError as e:
        return KVMDecision(params, kernel, error=str(e))
    vcpu = KVM(msrs, params, kernel=kernel, n_pcpus=1).create_vm().create_vcpu(0)
    return KVMDecision(params, kernel, setup, vcpu={
        attr: vcpu.shadow.get(shadow) for _, attr, shadow, _ in CONTROL_WORDS})


# (dump_vmcs's name, vmcs_config attribute, ControlsShadow name, hex digits)
CONTROL_WORDS = (
    ("PinBased", "pin_based_exec_ctrl", "pin", 8),
    ("CPUBased", "cpu_based_exec_ctrl", "exec", 8),
    ("SecondaryExec", "cpu_based_2nd_exec_ctrl", "secondary_exec", 8),
    ("TertiaryExec", "cpu_based_3rd_exec_ctrl", "tertiary_exec", 16),
    ("ExitControls", "vmexit_ctrl", "vm_exit", 8),
    ("EntryControls", "vmentry_ctrl", "vm_entry", 8),
)


def _cpu_sentence(caps):
    if caps.ipi_virtualization:
        return "The CPU allows IPI virtualization (IA32_VMX_PROCBASED_CTLS3 bit 4)"
    if not caps.tertiary_controls:
        return ("The CPU has no IPI virtualization: it has no tertiary controls "
                "(IA32_VMX_PROCBASED_CTLS bit 17 is not allowed-1)")
    if caps.procbased_ctls3 is None:
        return (f"The CPU has no IPI virtualization: MSR "
                f"{int(VMXMSR.PROCBASED_CTLS3):#x} cannot be read")
    return ("The CPU has tertiary controls but no IPI virtualization "
            "(IA32_VMX_PROCBASED_CTLS3 bit 4 is not allowed-1)")


def _params_text(params, *, changed_only=False):
    default = ModuleParams()
    shown = [f"{name}={'Y' if getattr(params, name) else 'N'}" for name in MODULE_PARAMETERS
             if not changed_only or getattr(params, name) != getattr(default, name)]
    return " ".join(shown) or "default parameters"


def verdict(msrs, decision):
    """The answer first, in one paragraph: would kvm_intel enable IPIv on this CPU, and why
    (or why not)."""
    caps = VMXCapabilities(MSRs(msrs.values))      # a fresh copy: no reads logged twice
    setup, kernel = decision.setup, decision.kernel
    where = f"Linux {kernel} kvm_intel ({_params_text(decision.params, changed_only=True)}" \
        + (", on Hyper-V eVMCS)" if decision.params.evmcs else ")")
    if setup is None:
        return (f"IPIv: NO. {where} does not load on this CPU: {decision.error}. "
                f"{_cpu_sentence(caps)}.")
    if setup.enable_ipiv:
        return (f"IPIv: YES. {_cpu_sentence(caps)} and {where} enables it, with APICv: a "
                f"guest's IPIs to other vCPUs (x2APIC WRMSR 0x830, xAPIC ICR writes) are "
                f"posted by the processor without a VM exit; only IPIs it cannot virtualize "
                f"(shorthands, logical destinations, NMI/INIT/SIPI, ...) exit.")
    exits = (f"Every IPI a guest sends in x2APIC mode is "
             f"{'a WRMSR exit (reason 32)' if setup.enable_apicv else 'a VM exit'} that KVM "
             f"emulates.")
    if not caps.ipi_virtualization:
        return f"IPIv: NO. {_cpu_sentence(caps)}, so {where} cannot enable it. {exits}"
    reasons = "; ".join(note for note in setup.notes if note.startswith(("IPIv", "APICv")))
    return (f"IPIv: NO. {_cpu_sentence(caps)}, but {where} does not enable it ({reasons}). "
            f"{exits}")


def report(msrs, *, evmcs=False, kernel=DEFAULT_KERNEL, params=ModuleParams(), part="all"):
    """The text report: the verdict paragraph, then QEMU vmxcap's output under
    `QEMU_HEADER`, then `SEPARATOR` and what QEMU lacks. ``part``: "all", "summary" (the
    verdict only) or "qemu" (QEMU's lines only, to diff with vmxcap on the real machine).
    Absent MSRs read by a plain rdmsr are in ``msrs.faults`` afterwards (`warnings`)."""
    check_kernel(kernel)
    if part not in REPORT_PARTS:
        raise ValueError(f"part must be one of {', '.join(REPORT_PARTS)}, not {part!r}")
    if part == "qemu":
        return "\n".join(qemu_vmxcap(msrs))
    decision = kvm_decision(msrs, params=replace(params, evmcs=evmcs or params.evmcs),
                            kernel=kernel)
    paragraph = textwrap.fill(verdict(msrs, decision), width=_WIDTH, break_on_hyphens=False)
    if part == "summary":
        return paragraph
    lines = [paragraph, "", QEMU_HEADER, *qemu_vmxcap(msrs), "", SEPARATOR]
    lines += _beyond_qemu(msrs, kernel)
    lines += _kvm_lines(decision)
    return "\n".join(lines)


def _beyond_qemu(msrs, kernel):
    """The tertiary controls in full, the secondary bits QEMU's table lacks, vmx flags."""
    caps = VMXCapabilities(msrs)
    lines = ["tertiary controls (IA32_VMX_PROCBASED_CTLS3, all bits allowed-1)"]
    if caps.tertiary is not None:
        lines += [_row(c.description, caps.tertiary.setting(c.bit)) for c in TERTIARY]
        others = caps.procbased_ctls3 & ~sum(c.mask for c in TERTIARY)
        if others:
            lines.append(_row("other allowed-1 bits", f"0x{others:x}"))
    elif not caps.tertiary_controls:
        lines.append("  not available: primary bit 17 (Activate tertiary controls) is not "
                     f"allowed-1, so MSR {int(VMXMSR.PROCBASED_CTLS3):#x} does not exist")
    else:
        lines.append(f"  not available: MSR {int(VMXMSR.PROCBASED_CTLS3):#x} cannot be read")
    if caps.secondary is not None:
        extra = [c for c in SECONDARY if c.bit in (30, 31)]
        lines.append("secondary controls QEMU does not list")
        lines += [_row(c.description, caps.secondary.setting(c.bit)) for c in extra]
    return lines + [f"Linux {kernel} vmx flags", "  " + " ".join(vmx_flags(msrs, kernel=kernel))]


def _kvm_lines(decision):
    """KVM's decisions: module parameters, APICv/IPIv, the control words of vmcs_config and
    of a new vCPU side by side, whether x2APIC ICR writes exit."""
    setup = decision.setup
    lines = [f"KVM (kvm_intel) decisions, Linux {decision.kernel}" +
             (" on Hyper-V eVMCS" if decision.params.evmcs else ""),
             _row("module parameters", _params_text(decision.params))]
    if setup is None:
        return lines + [f"  kvm_intel does not load: {decision.error}"]
    lines += [_row("enable_apicv", "yes" if setup.enable_apicv else "no"),
              _row("enable_ipiv", "yes" if setup.enable_ipiv else "no"),
              _row("control word", f"{'vmcs_config':<{_WORD}} a new vCPU's VMCS")]
    for name, attr, _, digits in CONTROL_WORDS:
        config = f"0x{getattr(setup.config, attr):0{digits}x}"
        lines.append(_row(f"  {name}", f"{config:<{_WORD}} 0x{decision.vcpu[attr]:0{digits}x}"))
    lines.append(_row("x2APIC ICR (MSR 0x830) writes exit", "no" if setup.enable_ipiv else
                      "yes (WRMSR exit, reason 32)"))
    return lines + [f"  note: {note}" for note in setup.notes] + [
        "  vmcs_config: the controls kvm_intel may use on this CPU (setup_vmcs_config); a new",
        "  vCPU's VMCS: what init_vmcs writes at KVM_CREATE_VCPU (xAPIC mode, before",
        "  KVM_SET_CPUID2); the two differ, and differently in 6.0 and 6.19."]


def warnings(msrs):
    """One line per absent MSR a plain rdmsr read (as 0) while the report was made: for
    standard error, not inside the report."""
    return [f"warning: MSR {index:#x} is absent; a plain rdmsr read it as 0"
            for index in dict.fromkeys(msrs.faults)]


def report_json(msrs, *, evmcs=False, kernel=DEFAULT_KERNEL, params=ModuleParams()):
    """The report as JSON-ready data (keys unchanged; ``kernel``, ``verdict``, ``params`` and
    ``kvm.vcpu`` added; the control words under ``kvm`` are vmcs_config's)."""
    check_kernel(kernel)
    caps = VMXCapabilities(msrs)
    decision = kvm_decision(msrs, params=replace(params, evmcs=evmcs or params.evmcs),
                            kernel=kernel)
    setup = decision.setup
    kvm = {"loads": setup is not None, "kernel": kernel}
    if setup is None:
        kvm.update({"error": decision.error, "enable_apicv": False, "enable_ipiv": False,
                    "cpu_based_3rd_exec_ctrl": 0})
    else:
        kvm.update({"enable_apicv": setup.enable_apicv, "enable_ipiv": setup.enable_ipiv,
                    **{attr: getattr(setup.config, attr) for _, attr, _, _ in CONTROL_WORDS},
                    "evmcs": decision.params.evmcs, "notes": setup.notes,
                    "vcpu": decision.vcpu})
    return {
        "kernel": kernel,
        "verdict": verdict(msrs, decision),
        "params": {name: getattr(decision.params, name) for name in MODULE_PARAMETERS},
        "tertiary_controls": caps.tertiary_controls,
        "procbased_ctls3": caps.procbased_ctls3,
        "ipi_virtualization": caps.ipi_virtualization,
        "vmx_flags": vmx_flags(msrs, kernel=kernel),
        "msrs_read": [f"{i:#x}" for i in dict.fromkeys(msrs.reads)],
        "msrs_absent_read_as_0": [f"{i:#x}" for i in dict.fromkeys(msrs.faults)],
        "kvm": kvm,
    }

"""``ipiv vmxcap``: a vmxcap-style report of what a CPU allows and what KVM decides."""

from hdl.vmx import VMXMSR
from .kvm_setup import ModuleParams, SetupError, hardware_setup
from .vmx_caps import VMXCapabilities


__all__ = ["report", "report_json"]

_COLUMN = 40


def _row(name, value):
    return f"  {name:<{_COLUMN}} {value}"


def _controls(caps):
    lines = [caps.title]
    for control in caps.table:
        lines.append(_row(control.description, caps.setting(control.bit)))
    return lines


def _kvm(msrs, evmcs):
    try:
        return hardware_setup(msrs, ModuleParams(evmcs=evmcs)), None
    except SetupError as e:
        return None, str(e)


def report(msrs, *, evmcs=False):
    """The text report (vmxcap's layout, plus the tertiary controls and KVM's decisions)."""
    caps = VMXCapabilities(msrs)
    lines = ["Basic VMX Information", f"  Hex: 0x{caps.basic:x}"]
    lines += [_row(name, value) for name, value in caps.basic_info()]
    lines += _controls(caps.pin) + _controls(caps.primary)
    if caps.secondary is not None:
        lines += _controls(caps.secondary)
    if caps.tertiary is not None:
        lines += _controls(caps.tertiary)
    else:
        lines += ["tertiary processor-based controls",
                  "  not available: primary bit 17 (Activate tertiary controls) is not "
                  f"allowed-1, so MSR {int(VMXMSR.PROCBASED_CTLS3):#x} was not read"
                  if not caps.tertiary_controls else
                  f"  not available: MSR {int(VMXMSR.PROCBASED_CTLS3):#x} is missing"]
    lines += _controls(caps.exit) + _controls(caps.entry)
    lines += ["Linux vmx flags", "  " + " ".join(caps.feature_words())]
    setup, error = _kvm(msrs, evmcs)
    lines.append("KVM (kvm_intel) decisions" + (" on Hyper-V eVMCS" if evmcs else ""))
    if setup is None:
        lines.append(f"  kvm_intel does not load: {error}")
        return "\n".join(lines + _warnings(msrs))
    c = setup.config
    lines += [
        _row("enable_apicv", "yes" if setup.enable_apicv else "no"),
        _row("enable_ipiv", "yes" if setup.enable_ipiv else "no"),
        _row("PinBased", f"0x{c.pin_based_exec_ctrl:08x}"),
        _row("CPUBased", f"0x{c.cpu_based_exec_ctrl:08x}"),
        _row("SecondaryExec", f"0x{c.cpu_based_2nd_exec_ctrl:08x}"),
        _row("TertiaryExec", f"0x{c.cpu_based_3rd_exec_ctrl:016x}"),
        _row("x2APIC ICR (MSR 0x830) writes exit", "no" if setup.enable_ipiv else "yes"),
    ]
    lines += [f"  note: {note}" for note in setup.notes]
    lines += _warnings(msrs)
    return "\n".join(lines)


def _warnings(msrs):
    return [f"warning: MSR {index:#x} is absent; a plain rdmsr read it as 0"
            for index in dict.fromkeys(msrs.faults)]


def report_json(msrs, *, evmcs=False):
    caps = VMXCapabilities(msrs)
    setup, error = _kvm(msrs, evmcs)
    kvm = {"loads": setup is not None}
    if setup is None:
        kvm.update({"error": error, "enable_apicv": False, "enable_ipiv": False,
                    "cpu_based_3rd_exec_ctrl": 0})
    else:
        c = setup.config
        kvm.update({
            "enable_apicv": setup.enable_apicv, "enable_ipiv": setup.enable_ipiv,
            "pin_based_exec_ctrl": c.pin_based_exec_ctrl,
            "cpu_based_exec_ctrl": c.cpu_based_exec_ctrl,
            "cpu_based_2nd_exec_ctrl": c.cpu_based_2nd_exec_ctrl,
            "cpu_based_3rd_exec_ctrl": c.cpu_based_3rd_exec_ctrl,
            "vmexit_ctrl": c.vmexit_ctrl, "vmentry_ctrl": c.vmentry_ctrl,
            "evmcs": evmcs, "notes": setup.notes,
        })
    return {
        "tertiary_controls": caps.tertiary_controls,
        "procbased_ctls3": caps.procbased_ctls3,
        "ipi_virtualization": caps.ipi_virtualization,
        "vmx_flags": caps.feature_words(),
        "msrs_read": [f"{i:#x}" for i in dict.fromkeys(msrs.reads)],
        "msrs_absent_read_as_0": [f"{i:#x}" for i in dict.fromkeys(msrs.faults)],
        "kvm": kvm,
    }

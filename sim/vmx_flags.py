"""The ``vmx flags`` line of ``/proc/cpuinfo``, as a given Linux release prints it.

How the kernel builds it (``arch/x86/kernel/cpu/feat_ctl.c`` init_vmx_capabilities, 6.0 and
6.19): five 32-bit words, printed bit by bit from word 0 bit 0 upwards, each set bit that has a
name.

- word 0 ("misc"): pin-based allowed-1 bits 15:0, bit 16 = INVVPID (VPID capability bit 0),
  bits 17/18/19 = EPT execute-only / A-D bits / 1-GB pages, (6.19: bit 20 = 5-level EPT),
  bits 31:28 = bits 35:32 of IA32_VMX_VMFUNC, and the synthetic bits 24 (flexpriority: TPR
  shadow and virtualize APIC accesses allowed) and 25 (apicv: TPR shadow, APIC-register
  virtualization, virtual-interrupt delivery and posted interrupts allowed). The VM functions
  come from the MSR's *high* half: feat_ctl.c reads it as ``rdmsr_safe(MSR_IA32_VMX_VMFUNC,
  &ign, &funcs)`` (line 53 in 6.0, line 54 in 6.19), so bit 0 (EPTP switching, the only VM
  function CPUs have) never shows: real Sapphire and Granite Rapids hosts print no
  ``eptp_switching``;
- word 1: primary allowed-1 bits; word 2: secondary allowed-1 bits;
- words 3 and 4: IA32_VMX_PROCBASED_CTLS3 bits 31:0 and 63:32.

The capability MSRs other than the primary and pin-based ones are read with ``rdmsr_safe``,
which reads an absent MSR as 0, and nothing is gated: the tertiary words come from MSR 0x492
whether or not primary bit 17 may be 1 (real CPUs fault on 0x492 without it, which then reads
as 0).

Which bits have a name (``arch/x86/include/asm/vmxfeatures.h``): in 6.0 a bit is shown unless
its comment starts with ``""``, under its quoted name or else its lower-cased macro name; in
6.19 only bits with a quoted name are shown. `NAMES` holds the result for each release.
"""

from hdl.vmx import VMXMSR
from .kvm_kernel import DEFAULT_KERNEL, check_kernel


__all__ = ["NAMES", "vmx_capability_words", "vmx_flags"]

_COMMON = {
    (0, 5): "vnmi", (0, 6): "preemption_timer", (0, 7): "posted_intr", (0, 16): "invvpid",
    (0, 17): "ept_x_only", (0, 18): "ept_ad", (0, 19): "ept_1gb", (0, 24): "flexpriority",
    (0, 25): "apicv", (0, 28): "eptp_switching",
    (1, 3): "tsc_offset", (1, 21): "vtpr", (1, 27): "mtf",
    (2, 0): "vapic", (2, 1): "ept", (2, 5): "vpid", (2, 7): "unrestricted_guest",
    (2, 8): "vapic_reg", (2, 9): "vid", (2, 10): "ple", (2, 14): "shadow_vmcs", (2, 17): "pml",
    (2, 22): "ept_mode_based_exec", (2, 25): "tsc_scaling", (2, 26): "usr_wait_pause",
    (2, 31): "notify_vm_exiting",
    (3, 4): "ipi_virt",
}

NAMES = {
    "6.0": dict(_COMMON),
    "6.19": {**_COMMON, (0, 20): "ept_5level", (2, 18): "ept_violation_ve"},
}


def _peek(msrs, index):
    """rdmsr/rdmsr_safe as feat_ctl.c sees it: absent reads 0 (not logged in ``msrs.reads``,
    which records what vmxcap and kvm_intel read)."""
    return msrs.values.get(int(index), 0)


def vmx_capability_words(msrs):
    """The five ``vmx_capability`` words feat_ctl.c fills in (word 0..4)."""
    primary = _peek(msrs, VMXMSR.PROCBASED_CTLS) >> 32
    secondary = _peek(msrs, VMXMSR.PROCBASED_CTLS2) >> 32
    tertiary = _peek(msrs, VMXMSR.PROCBASED_CTLS3)
    pin = _peek(msrs, VMXMSR.PINBASED_CTLS) >> 32
    funcs = _peek(msrs, VMXMSR.VMFUNC) >> 32      # the high half, as feat_ctl.c reads it
    caps = _peek(msrs, VMXMSR.EPT_VPID_CAP)
    ept, vpid = caps & 0xFFFF_FFFF, caps >> 32
    misc = (pin & 0xFFFF) | (vpid & 1) << 16 | (funcs & 0xF) << 28
    misc |= (ept & 1) << 17 | (ept >> 21 & 1) << 18 | (ept >> 17 & 1) << 19
    misc |= (ept >> 7 & 1) << 20        # the 5-level EPT bit (named in 6.19 only)
    if primary >> 21 & 1 and secondary & 1:
        misc |= 1 << 24                 # flexpriority
    if primary >> 21 & 1 and secondary >> 8 & 1 and secondary >> 9 & 1 and misc >> 7 & 1:
        misc |= 1 << 25                 # apicv
    return [misc, primary, secondary, tertiary & 0xFFFF_FFFF, tertiary >> 32]


def vmx_flags(msrs, *, kernel=DEFAULT_KERNEL):
    """The names ``/proc/cpuinfo`` shows on the ``vmx flags`` line, in its order."""
    names = NAMES[check_kernel(kernel)]
    words = vmx_capability_words(msrs)
    return [names[(w, b)] for w in range(5) for b in range(32)
            if words[w] >> b & 1 and (w, b) in names]

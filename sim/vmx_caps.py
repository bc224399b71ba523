"""A CPU's VMX capabilities, from its capability MSRs (0x480..0x492).

`MSRs` holds the raw values and reads them the way the kernel does: an MSR the CPU does not
have is never read successfully (`MSRs.rdmsr_safe` returns None and logs the attempt, like
``rdmsr_safe`` failing with #GP). `VMXCapabilities` decodes allowed-0/allowed-1 settings of
every control class; IA32_VMX_PROCBASED_CTLS2 is read only if primary bit 31 may be 1, and
IA32_VMX_PROCBASED_CTLS3 only if primary bit 17 ("activate tertiary controls") may be 1. All
64 bits of IA32_VMX_PROCBASED_CTLS3 are allowed-1 settings (there is no allowed-0 half).
"""

import re
from dataclasses import dataclass

from hdl.vmx import (
    PIN_BASED, PRIMARY, SECONDARY, TERTIARY, VM_ENTRY, VM_EXIT, VMXMSR, Primary, Secondary,
    Tertiary,
)
from .vmx_flags import vmx_flags


__all__ = ["MSRFileError", "MSRs", "ControlCaps", "VMXCapabilities", "PRESETS",
           "preset"]


class MSRFileError(ValueError):
    """A malformed MSR file (the message names the file and line)."""


class MSRs:
    """Capability MSR values of one CPU; absent indices fault when read."""

    def __init__(self, values, name="custom"):
        self.values = {int(k): int(v) & (1 << 64) - 1 for k, v in dict(values).items()}
        self.name = name
        self.reads = []         # every index the code tried to read, in order
        self.faults = []        # absent MSRs read with a plain rdmsr (read as 0)

    def rdmsr_safe(self, index):
        """The value, or None when the MSR does not exist (the kernel's rdmsr_safe failing)."""
        self.reads.append(int(index))
        return self.values.get(int(index))

    def rdmsr(self, index):
        """A plain rdmsr: an absent MSR faults, and the kernel's fixup makes it read 0."""
        value = self.rdmsr_safe(index)
        if value is None:
            self.faults.append(int(index))
            return 0
        return value

    @classmethod
    def parse(cls, text, source="<text>"):
        """Parse ``<index> <value>`` lines: hexadecimal numbers, ``0x`` optional (what the
        README's recipes print: ``rdmsr -c`` writes ``0x...``, plain ``rdmsr`` no prefix);
        ``#`` starts a comment. Every index must be a VMX capability MSR (`VMXMSR`)."""
        values = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                index, value = _parse_line(line, f"{source}:{lineno}")
                if index in values:
                    raise MSRFileError(f"{source}:{lineno}: MSR {index:#x} given twice")
                values[index] = value
        if not values:
            raise MSRFileError(f"{source}: no MSR values")
        return cls(values, name=source)

    @classmethod
    def from_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise MSRFileError(f"{path}: cannot read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise MSRFileError(f"{path}: not a text file") from None
        return cls.parse(text, source=str(path))


_VMX_MSRS = sorted(int(m) for m in VMXMSR)


def _parse_line(line, where):
    """(index, value) of one ``<index> <value>`` line, or `MSRFileError` naming ``where``."""
    parts = line.split()
    if len(parts) != 2 or not all(re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", p) for p in parts):
        raise MSRFileError(f"{where}: expected '<index> <value>' in hex, got {line!r}")
    index, value = (int(p, 16) for p in parts)
    if index >> 32:
        raise MSRFileError(f"{where}: MSR index {index:#x} does not fit in 32 bits")
    if index not in _VMX_MSRS:
        raise MSRFileError(f"{where}: MSR {index:#x} is not a VMX capability MSR "
                           f"({_VMX_MSRS[0]:#x}..{_VMX_MSRS[-1]:#x}; numbers are hex)")
    if value >> 64:
        raise MSRFileError(f"{where}: value does not fit in 64 bits")
    return index, value


def _ctl(must_be_1, may_be_1):
    """A 32/32 capability MSR value: allowed-0 settings low, allowed-1 settings high."""
    return (may_be_1 | must_be_1) << 32 | must_be_1


@dataclass
class ControlCaps:
    """Allowed settings of one control class."""
    title: str
    table: tuple
    allowed0: int           # bits that must be 1 (low half of the capability MSR)
    allowed1: int           # bits that may be 1 (high half; tertiary: all 64 bits)
    true_allowed0: int | None = None    # from the TRUE_* MSR, when IA32_VMX_BASIC[55] is set
    true_allowed1: int = 0

    @classmethod
    def from_msr(cls, title, table, value, true_value=None):
        return cls(title, table, value & 0xFFFF_FFFF, value >> 32,
                   None if true_value is None else true_value & 0xFFFF_FFFF,
                   0 if true_value is None else true_value >> 32)

    def allowed(self, mask):
        return self.allowed1 & mask == mask

    def setting(self, bit):
        """vmxcap's words (QEMU scripts/kvm/vmxcap Control.show): yes (may be 0 or 1), no
        (must be 0), forced (must be 1), default (must be 1 in the legacy MSR, may be 0 or 1
        by the TRUE MSR), ? (must be 1 but may not be 1: an inconsistent MSR)."""
        one = self.allowed1 >> bit & 1
        zero_ok = not self.allowed0 >> bit & 1
        if one and not zero_ok and self.true_allowed0 is not None and \
                not self.true_allowed0 >> bit & 1 and self.true_allowed1 >> bit & 1:
            return "default"
        if zero_ok and not one:
            return "no"
        if one and not zero_ok:
            return "forced"
        if one and zero_ok:
            return "yes"
        return "?"


class VMXCapabilities:
    """What a CPU allows, decoded from `MSRs` the way the kernel reads them."""

    def __init__(self, msrs):
        self.msrs = msrs
        self.basic = msrs.rdmsr(VMXMSR.BASIC)
        true = bool(self.basic >> 55 & 1)

        def read(msr, true_msr):
            return msrs.rdmsr(msr), (msrs.rdmsr_safe(true_msr) if true else None)

        self.pin = ControlCaps.from_msr("pin-based controls", PIN_BASED,
                                        *read(VMXMSR.PINBASED_CTLS, VMXMSR.TRUE_PINBASED_CTLS))
        self.primary = ControlCaps.from_msr(
            "primary processor-based controls", PRIMARY,
            *read(VMXMSR.PROCBASED_CTLS, VMXMSR.TRUE_PROCBASED_CTLS))
        self.secondary = None
        if self.primary.allowed(Primary.ACTIVATE_SECONDARY_CONTROLS):
            value = msrs.rdmsr_safe(VMXMSR.PROCBASED_CTLS2)
            if value is not None:
                self.secondary = ControlCaps.from_msr("secondary processor-based controls",
                                                      SECONDARY, value)
        # Tertiary controls exist only if the primary controls may activate them.
        self.tertiary_controls = self.primary.allowed(Primary.ACTIVATE_TERTIARY_CONTROLS)
        self.procbased_ctls3 = (msrs.rdmsr_safe(VMXMSR.PROCBASED_CTLS3)
                                if self.tertiary_controls else None)
        self.tertiary = None
        if self.procbased_ctls3 is not None:
            self.tertiary = ControlCaps("tertiary processor-based controls", TERTIARY, 0,
                                        self.procbased_ctls3)
        self.exit = ControlCaps.from_msr("VM-Exit controls", VM_EXIT,
                                         *read(VMXMSR.EXIT_CTLS, VMXMSR.TRUE_EXIT_CTLS))
        self.entry = ControlCaps.from_msr("VM-Entry controls", VM_ENTRY,
                                          *read(VMXMSR.ENTRY_CTLS, VMXMSR.TRUE_ENTRY_CTLS))
        self.ept_vpid = (msrs.rdmsr_safe(VMXMSR.EPT_VPID_CAP) if self.secondary and (
            self.secondary.allowed(Secondary.ENABLE_EPT) or
            self.secondary.allowed(Secondary.ENABLE_VPID)) else None)

    @property
    def ipi_virtualization(self):
        return bool(self.tertiary and self.tertiary.allowed(Tertiary.IPI_VIRT))

    def basic_info(self):
        b = self.basic
        return [
            ("Revision", str(b & 0x7FFF_FFFF)),
            ("VMCS size", str(b >> 32 & 0x1FFF)),
            ("VMCS restricted to 32 bit addresses", "yes" if b >> 48 & 1 else "no"),
            ("Dual-monitor support", "yes" if b >> 49 & 1 else "no"),
            ("VMCS memory type", str(b >> 50 & 0xF)),
            ("INS/OUTS instruction information", "yes" if b >> 54 & 1 else "no"),
            ("IA32_VMX_TRUE_*_CTLS support", "yes" if b >> 55 & 1 else "no"),
        ]

    def feature_words(self, *, kernel="6.0"):
        """The ``vmx flags`` Linux shows in /proc/cpuinfo (`sim.vmx_flags`: feat_ctl.c reads
        the MSRs itself, ungated, so this does not depend on what this object read)."""
        return vmx_flags(self.msrs, kernel=kernel)


# -- presets --------------------------------------------------------------------------------

def _preset(primary_may, secondary_may, ctls3=None, pin_may=0xFF):
    values = {
        VMXMSR.BASIC: 0x00DA_0400_0000_0004,     # rev 4, 1 KiB VMCS, WB, TRUE MSRs
        VMXMSR.PINBASED_CTLS: _ctl(0x16, pin_may),
        VMXMSR.TRUE_PINBASED_CTLS: _ctl(0x16, pin_may),
        VMXMSR.PROCBASED_CTLS: _ctl(0x0401_E172, primary_may),
        VMXMSR.TRUE_PROCBASED_CTLS: _ctl(0x0400_6172, primary_may),
        VMXMSR.EXIT_CTLS: _ctl(0x0003_6DFF, 0x03FF_FFFF),
        VMXMSR.TRUE_EXIT_CTLS: _ctl(0x0003_6DFB, 0x03FF_FFFF),
        VMXMSR.ENTRY_CTLS: _ctl(0x0000_11FF, 0x0007_FFFF),
        VMXMSR.TRUE_ENTRY_CTLS: _ctl(0x0000_11FB, 0x0007_FFFF),
        VMXMSR.MISC: 0x0000_0000_7004_C1E7,
        VMXMSR.CR0_FIXED0: 0x8000_0021, VMXMSR.CR0_FIXED1: 0xFFFF_FFFF,
        VMXMSR.CR4_FIXED0: 0x2000, VMXMSR.CR4_FIXED1: 0x0077_27FF,
        VMXMSR.VMCS_ENUM: 0x2E,
        VMXMSR.PROCBASED_CTLS2: _ctl(0, secondary_may),
        VMXMSR.EPT_VPID_CAP: 0x0000_0F01_0673_4141,
        VMXMSR.VMFUNC: 0x1,
    }
    if ctls3 is not None:
        values[VMXMSR.PROCBASED_CTLS3] = ctls3
    return values


_ALL_PRIMARY = 0xFFF9_FFFE                       # everything but bits 0, 17, 18
_APICV_SECONDARY = 0x0057_7FFF                   # incl. APIC-register virt., VID, PML

PRESETS = {
    "no-tertiary": ("a CPU without tertiary controls (primary bit 17 is allowed-0 only; "
                    "0x492 does not exist)", _preset(_ALL_PRIMARY, _APICV_SECONDARY)),
    "tertiary-no-ipiv": ("a CPU with tertiary controls but without IPI virtualization "
                         "(0x492 = LOADIWKEY exiting only)",
                         _preset(_ALL_PRIMARY | Primary.ACTIVATE_TERTIARY_CONTROLS,
                                 _APICV_SECONDARY, ctls3=Tertiary.LOADIWKEY_EXITING)),
    "ipiv": ("a CPU with IPI virtualization (Sapphire Rapids-like: tertiary controls with "
             "bit 4)", _preset(_ALL_PRIMARY | Primary.ACTIVATE_TERTIARY_CONTROLS,
                               _APICV_SECONDARY | Secondary.TSC_SCALING,
                               ctls3=Tertiary.LOADIWKEY_EXITING | Tertiary.IPI_VIRT)),
    "ipiv-no-vid": ("IPI virtualization allowed, but no virtual-interrupt delivery (so no "
                    "APICv)", _preset(_ALL_PRIMARY | Primary.ACTIVATE_TERTIARY_CONTROLS,
                                      _APICV_SECONDARY & ~Secondary.VIRTUAL_INTR_DELIVERY,
                                      ctls3=Tertiary.IPI_VIRT)),
}


def preset(name):
    """`MSRs` of a named preset; an unknown name is a ValueError listing the presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown CPU preset {name!r} (presets: {', '.join(PRESETS)})")
    return MSRs(PRESETS[name][1], name=name)

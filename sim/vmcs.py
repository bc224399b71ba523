"""A VMCS with the real field encodings and widths, KVM's controls shadows and ``dump_vmcs``.

Reads and writes are width-checked the way KVM's ``vmcs_read/write{16,32,64}`` helpers are
(a 16-bit accessor on a 32-bit field is a bug, and a value that does not fit is refused);
unwritten fields read as 0.
"""

from hdl.vmx import FieldWidth, PinBased, Primary, Secondary, VMCSField as F, field_width


__all__ = ["VMCSError", "VMCS", "ControlsShadow"]

_BITS = {FieldWidth.W16: 16, FieldWidth.W32: 32, FieldWidth.W64: 64, FieldWidth.NATURAL: 64}


class VMCSError(ValueError):
    """A VMCS access with the wrong width, or a value that does not fit the field."""


class VMCS:
    """One vCPU's VMCS: field encoding -> value."""

    def __init__(self):
        self.fields = {}

    def _check(self, encoding, bits):
        width = field_width(int(encoding))
        if bits is not None and _BITS[width] != bits:
            name = F(encoding).name if encoding in F._value2member_map_ else f"{encoding:#06x}"
            raise VMCSError(f"{bits}-bit access to {name}, a {_BITS[width]}-bit field")
        return _BITS[width]

    def write(self, encoding, value, bits=None):
        width = self._check(encoding, bits)
        if not 0 <= value < 1 << width:
            raise VMCSError(f"value {value:#x} does not fit field {int(encoding):#06x} "
                            f"({width} bits)")
        self.fields[int(encoding)] = value

    def read(self, encoding, bits=None):
        self._check(encoding, bits)
        return self.fields.get(int(encoding), 0)

    def write16(self, encoding, value): self.write(encoding, value, 16)
    def write32(self, encoding, value): self.write(encoding, value, 32)
    def write64(self, encoding, value): self.write(encoding, value, 64)
    def read16(self, encoding): return self.read(encoding, 16)
    def read32(self, encoding): return self.read(encoding, 32)
    def read64(self, encoding): return self.read(encoding, 64)

    def dump(self, *, has_secondary=None, has_tertiary=None):
        """The "Control State" part of KVM's ``dump_vmcs()``, line for line as Linux 6.0
        prints it (vmx.c dump_vmcs; 6.19 prints the same lines, plus #VE information the
        model never enables).

        ``has_secondary`` / ``has_tertiary``: whether the CPU has secondary / tertiary
        controls (KVM asks its vmcs_config, not the VMCS); by default the VMCS's own primary
        controls decide. Without them the field prints as 0.
        """
        pin = self.read32(F.PIN_BASED_VM_EXEC_CONTROL)
        cpu = self.read32(F.CPU_BASED_VM_EXEC_CONTROL)
        if has_secondary is None:
            has_secondary = bool(cpu & Primary.ACTIVATE_SECONDARY_CONTROLS)
        if has_tertiary is None:
            has_tertiary = bool(cpu & Primary.ACTIVATE_TERTIARY_CONTROLS)
        secondary = self.read32(F.SECONDARY_VM_EXEC_CONTROL) if has_secondary else 0
        tertiary = self.read64(F.TERTIARY_VM_EXEC_CONTROL) if has_tertiary else 0
        entry, exit_ = self.read32(F.VM_ENTRY_CONTROLS), self.read32(F.VM_EXIT_CONTROLS)
        lines = [
            "*** Control State ***",
            f"CPUBased=0x{cpu:08x} SecondaryExec=0x{secondary:08x} "
            f"TertiaryExec=0x{tertiary:016x}",
            f"PinBased=0x{pin:08x} EntryControls={entry:08x} ExitControls={exit_:08x}",
            f"ExceptionBitmap={self.read32(F.EXCEPTION_BITMAP):08x} "
            f"PFECmask={self.read32(F.PAGE_FAULT_ERROR_CODE_MASK):08x} "
            f"PFECmatch={self.read32(F.PAGE_FAULT_ERROR_CODE_MATCH):08x}",
            f"VMEntry: intr_info={self.read32(F.VM_ENTRY_INTR_INFO_FIELD):08x} "
            f"errcode={self.read32(F.VM_ENTRY_EXCEPTION_ERROR_CODE):08x} "
            f"ilen={self.read32(F.VM_ENTRY_INSTRUCTION_LEN):08x}",
            f"VMExit: intr_info={self.read32(F.VM_EXIT_INTR_INFO):08x} "
            f"errcode={self.read32(F.VM_EXIT_INTR_ERROR_CODE):08x} "
            f"ilen={self.read32(F.VM_EXIT_INSTRUCTION_LEN):08x}",
            f"        reason={self.read32(F.VM_EXIT_REASON):08x} "
            f"qualification={self.read(F.EXIT_QUALIFICATION):016x}",
            f"IDTVectoring: info={self.read32(F.IDT_VECTORING_INFO_FIELD):08x} "
            f"errcode={self.read32(F.IDT_VECTORING_ERROR_CODE):08x}",
            f"TSC Offset = 0x{self.read64(F.TSC_OFFSET):016x}",
        ]
        if secondary & Secondary.TSC_SCALING:
            lines.append(f"TSC Multiplier = 0x{self.read64(F.TSC_MULTIPLIER):016x}")
        if cpu & Primary.TPR_SHADOW:
            line = ""
            if secondary & Secondary.VIRTUAL_INTR_DELIVERY:
                status = self.read16(F.GUEST_INTR_STATUS)
                line = f"SVI|RVI = {status >> 8:02x}|{status & 0xFF:02x} "
            lines.append(line + f"TPR Threshold = 0x{self.read32(F.TPR_THRESHOLD):02x}")
            line = ""
            if secondary & Secondary.VIRTUALIZE_APIC_ACCESSES:
                line = f"APIC-access addr = 0x{self.read64(F.APIC_ACCESS_ADDR):016x} "
            lines.append(line + f"virt-APIC addr = 0x{self.read64(F.VIRTUAL_APIC_PAGE_ADDR):016x}")
        if pin & PinBased.POSTED_INTR:
            lines.append(f"PostedIntrVec = 0x{self.read16(F.POSTED_INTR_NV):02x}")
        if secondary & Secondary.ENABLE_EPT:
            lines.append(f"EPT pointer = 0x{self.read64(F.EPT_POINTER):016x}")
        if secondary & Secondary.PAUSE_LOOP_EXITING:
            lines.append(f"PLE Gap={self.read32(F.PLE_GAP):08x} "
                         f"Window={self.read32(F.PLE_WINDOW):08x}")
        if secondary & Secondary.ENABLE_VPID:
            lines.append(f"Virtual processor ID = 0x{self.read16(F.VIRTUAL_PROCESSOR_ID):04x}")
        return "\n".join(lines)


class ControlsShadow:
    """KVM's ``vmcs_controls_shadow``: the last value written to each control field, so a
    write that changes nothing is skipped. The tertiary shadow is 64 bits wide (written with
    a 64-bit VMCS write); the others are 32 bits."""

    FIELDS = {
        "pin": (F.PIN_BASED_VM_EXEC_CONTROL, 32),
        "exec": (F.CPU_BASED_VM_EXEC_CONTROL, 32),
        "secondary_exec": (F.SECONDARY_VM_EXEC_CONTROL, 32),
        "tertiary_exec": (F.TERTIARY_VM_EXEC_CONTROL, 64),
        "vm_entry": (F.VM_ENTRY_CONTROLS, 32),
        "vm_exit": (F.VM_EXIT_CONTROLS, 32),
    }

    def __init__(self, vmcs):
        self.vmcs = vmcs
        self.values = {}
        self.writes = 0        # VMCS writes actually done

    def set(self, name, value):
        encoding, bits = self.FIELDS[name]
        if self.values.get(name) != value:
            self.vmcs.write(encoding, value, bits)
            self.values[name] = value
            self.writes += 1

    def get(self, name):
        return self.values.get(name, 0)

    def setbit(self, name, mask):
        self.set(name, self.get(name) | int(mask))

    def clearbit(self, name, mask):
        self.set(name, self.get(name) & ~int(mask))

"""VMX architectural constants: capability MSRs, VM-execution/exit/entry control bits and VMCS
field encodings (Intel SDM Vol. 3, Appendices A and B; names as Linux spells them).

Each control is declared once, with its SDM description (what vmxcap prints) and, where Linux
shows it in ``/proc/cpuinfo``'s ``vmx flags``, its feature name. The flag enums are built from
these tables so the bit numbers exist in one place only.
"""

import enum


__all__ = [
    "VMXMSR", "ControlBit", "PIN_BASED", "PRIMARY", "SECONDARY", "TERTIARY", "VM_EXIT",
    "VM_ENTRY", "PinBased", "Primary", "Secondary", "Tertiary", "VMExit", "VMEntry",
    "VMCSField", "FieldWidth", "field_width",
]


class VMXMSR(enum.IntEnum):
    """VMX capability MSRs (SDM Vol. 3 Appendix A)."""
    BASIC = 0x480
    PINBASED_CTLS = 0x481
    PROCBASED_CTLS = 0x482
    EXIT_CTLS = 0x483
    ENTRY_CTLS = 0x484
    MISC = 0x485
    CR0_FIXED0 = 0x486
    CR0_FIXED1 = 0x487
    CR4_FIXED0 = 0x488
    CR4_FIXED1 = 0x489
    VMCS_ENUM = 0x48A
    PROCBASED_CTLS2 = 0x48B
    EPT_VPID_CAP = 0x48C
    TRUE_PINBASED_CTLS = 0x48D
    TRUE_PROCBASED_CTLS = 0x48E
    TRUE_EXIT_CTLS = 0x48F
    TRUE_ENTRY_CTLS = 0x490
    VMFUNC = 0x491
    PROCBASED_CTLS3 = 0x492


class ControlBit:
    """One control: its bit, Linux's macro suffix, the SDM's description, the cpuinfo name."""
    __slots__ = ("bit", "name", "description", "feature")

    def __init__(self, bit, name, description, feature=None):
        self.bit, self.name, self.description, self.feature = bit, name, description, feature

    @property
    def mask(self):
        return 1 << self.bit


def _table(*rows):
    return tuple(ControlBit(*row) for row in rows)


PIN_BASED = _table(
    (0, "EXT_INTR_MASK", "External interrupt exiting"),
    (3, "NMI_EXITING", "NMI exiting"),
    (5, "VIRTUAL_NMIS", "Virtual NMIs", "vnmi"),
    (6, "VMX_PREEMPTION_TIMER", "Activate VMX-preemption timer", "preemption_timer"),
    (7, "POSTED_INTR", "Process posted interrupts", "posted_intr"),
)

PRIMARY = _table(
    (2, "INTR_WINDOW_EXITING", "Interrupt window exiting"),
    (3, "USE_TSC_OFFSETTING", "Use TSC offsetting", "tsc_offset"),
    (7, "HLT_EXITING", "HLT exiting"),
    (9, "INVLPG_EXITING", "INVLPG exiting"),
    (10, "MWAIT_EXITING", "MWAIT exiting"),
    (11, "RDPMC_EXITING", "RDPMC exiting"),
    (12, "RDTSC_EXITING", "RDTSC exiting"),
    (15, "CR3_LOAD_EXITING", "CR3-load exiting"),
    (16, "CR3_STORE_EXITING", "CR3-store exiting"),
    (17, "ACTIVATE_TERTIARY_CONTROLS", "Activate tertiary controls"),
    (19, "CR8_LOAD_EXITING", "CR8-load exiting"),
    (20, "CR8_STORE_EXITING", "CR8-store exiting"),
    (21, "TPR_SHADOW", "Use TPR shadow", "vtpr"),
    (22, "NMI_WINDOW_EXITING", "NMI-window exiting"),
    (23, "MOV_DR_EXITING", "MOV-DR exiting"),
    (24, "UNCOND_IO_EXITING", "Unconditional I/O exiting"),
    (25, "USE_IO_BITMAPS", "Use I/O bitmaps"),
    (27, "MONITOR_TRAP_FLAG", "Monitor trap flag", "mtf"),
    (28, "USE_MSR_BITMAPS", "Use MSR bitmaps"),
    (29, "MONITOR_EXITING", "MONITOR exiting"),
    (30, "PAUSE_EXITING", "PAUSE exiting"),
    (31, "ACTIVATE_SECONDARY_CONTROLS", "Activate secondary control"),
)

SECONDARY = _table(
    (0, "VIRTUALIZE_APIC_ACCESSES", "Virtualize APIC accesses", "vapic"),
    (1, "ENABLE_EPT", "Enable EPT", "ept"),
    (2, "DESC", "Descriptor-table exiting"),
    (3, "ENABLE_RDTSCP", "Enable RDTSCP"),
    (4, "VIRTUALIZE_X2APIC_MODE", "Virtualize x2APIC mode"),
    (5, "ENABLE_VPID", "Enable VPID", "vpid"),
    (6, "WBINVD_EXITING", "WBINVD exiting"),
    (7, "UNRESTRICTED_GUEST", "Unrestricted guest", "unrestricted_guest"),
    (8, "APIC_REGISTER_VIRT", "APIC register emulation", "vapic_reg"),
    (9, "VIRTUAL_INTR_DELIVERY", "Virtual interrupt delivery", "vid"),
    (10, "PAUSE_LOOP_EXITING", "PAUSE-loop exiting", "ple"),
    (11, "RDRAND_EXITING", "RDRAND exiting"),
    (12, "ENABLE_INVPCID", "Enable INVPCID"),
    (13, "ENABLE_VMFUNC", "Enable VM functions"),
    (14, "SHADOW_VMCS", "VMCS shadowing", "shadow_vmcs"),
    (15, "ENCLS_EXITING", "Enable ENCLS exiting"),
    (16, "RDSEED_EXITING", "RDSEED exiting"),
    (17, "ENABLE_PML", "Enable PML", "pml"),
    (18, "EPT_VIOLATION_VE", "EPT-violation #VE", "ept_violation_ve"),
    (19, "PT_CONCEAL_VMX", "Conceal non-root operation from PT"),
    (20, "XSAVES", "Enable XSAVES/XRSTORS"),
    (22, "MODE_BASED_EPT_EXEC", "Mode-based execute control (XS/XU)", "ept_mode_based_exec"),
    (23, "SPP", "Sub-page write permissions"),
    (24, "PT_USE_GPA", "GPA translation for PT"),
    (25, "TSC_SCALING", "TSC scaling", "tsc_scaling"),
    (26, "ENABLE_USR_WAIT_PAUSE", "User wait and pause", "usr_wait_pause"),
    (28, "ENCLV_EXITING", "ENCLV exiting"),
    (30, "BUS_LOCK_DETECTION", "VMM bus-lock detection"),
    (31, "NOTIFY_VM_EXITING", "Instruction timeout", "notify_vm_exiting"),
)

TERTIARY = _table(
    (0, "LOADIWKEY_EXITING", "LOADIWKEY exiting"),
    (1, "HLAT", "Enable HLAT"),
    (2, "EPT_PAGING_WRITE", "Enable Paging-Write"),
    (3, "GUEST_PAGING_VERIFY", "Enable Guest Paging Verification"),
    (4, "IPI_VIRT", "IPI virtualization", "ipi_virt"),
    (6, "MSRLIST", "Enable MSR-list instructions"),
    (7, "SPEC_CTRL_VIRT", "Virtualize IA32_SPEC_CTRL"),
    (8, "APIC_TIMER_VIRT", "APIC-timer virtualization"),
)

VM_EXIT = _table(
    (2, "SAVE_DEBUG_CONTROLS", "Save debug controls"),
    (9, "HOST_ADDR_SPACE_SIZE", "Host address-space size"),
    (12, "LOAD_IA32_PERF_GLOBAL_CTRL", "Load IA32_PERF_GLOBAL_CTRL"),
    (15, "ACK_INTR_ON_EXIT", "Acknowledge interrupt on exit"),
    (18, "SAVE_IA32_PAT", "Save IA32_PAT"),
    (19, "LOAD_IA32_PAT", "Load IA32_PAT"),
    (20, "SAVE_IA32_EFER", "Save IA32_EFER"),
    (21, "LOAD_IA32_EFER", "Load IA32_EFER"),
    (22, "SAVE_VMX_PREEMPTION_TIMER", "Save VMX-preemption timer value"),
    (23, "CLEAR_BNDCFGS", "Clear IA32_BNDCFGS"),
    (24, "PT_CONCEAL_PIP", "Conceal VM exits from PT"),
    (25, "CLEAR_IA32_RTIT_CTL", "Clear IA32_RTIT_CTL"),
    (28, "LOAD_CET_STATE", "Load CET state"),
)

VM_ENTRY = _table(
    (2, "LOAD_DEBUG_CONTROLS", "Load debug controls"),
    (9, "IA32E_MODE", "IA-32e mode guest"),
    (10, "SMM", "Entry to SMM"),
    (11, "DEACT_DUAL_MONITOR", "Deactivate dual-monitor treatment"),
    (13, "LOAD_IA32_PERF_GLOBAL_CTRL", "Load IA32_PERF_GLOBAL_CTRL"),
    (14, "LOAD_IA32_PAT", "Load IA32_PAT"),
    (15, "LOAD_IA32_EFER", "Load IA32_EFER"),
    (16, "LOAD_BNDCFGS", "Load IA32_BNDCFGS"),
    (17, "PT_CONCEAL_PIP", "Conceal VM entries from PT"),
    (18, "LOAD_IA32_RTIT_CTL", "Load IA32_RTIT_CTL"),
    (20, "LOAD_CET_STATE", "Load CET state"),
)


def _flags(name, table):
    return enum.IntFlag(name, {c.name: c.mask for c in table})


PinBased = _flags("PinBased", PIN_BASED)
Primary = _flags("Primary", PRIMARY)
Secondary = _flags("Secondary", SECONDARY)
Tertiary = _flags("Tertiary", TERTIARY)
VMExit = _flags("VMExit", VM_EXIT)
VMEntry = _flags("VMEntry", VM_ENTRY)


class FieldWidth(enum.IntEnum):
    """Bits 14:13 of a VMCS field encoding."""
    W16 = 0
    W64 = 1
    W32 = 2
    NATURAL = 3


class VMCSField(enum.IntEnum):
    """VMCS field encodings (SDM Vol. 3 Appendix B) the model uses."""
    VIRTUAL_PROCESSOR_ID = 0x0000
    POSTED_INTR_NV = 0x0002
    LAST_PID_POINTER_INDEX = 0x0008
    GUEST_INTR_STATUS = 0x0810
    IO_BITMAP_A = 0x2000
    MSR_BITMAP = 0x2004
    TSC_OFFSET = 0x2010
    VIRTUAL_APIC_PAGE_ADDR = 0x2012
    APIC_ACCESS_ADDR = 0x2014
    POSTED_INTR_DESC_ADDR = 0x2016
    EPT_POINTER = 0x201A
    EOI_EXIT_BITMAP0 = 0x201C
    EOI_EXIT_BITMAP1 = 0x201E
    EOI_EXIT_BITMAP2 = 0x2020
    EOI_EXIT_BITMAP3 = 0x2022
    TSC_MULTIPLIER = 0x2032
    TERTIARY_VM_EXEC_CONTROL = 0x2034
    PID_POINTER_TABLE = 0x2042
    VMCS_LINK_POINTER = 0x2800
    PIN_BASED_VM_EXEC_CONTROL = 0x4000
    CPU_BASED_VM_EXEC_CONTROL = 0x4002
    EXCEPTION_BITMAP = 0x4004
    PAGE_FAULT_ERROR_CODE_MASK = 0x4006
    PAGE_FAULT_ERROR_CODE_MATCH = 0x4008
    CR3_TARGET_COUNT = 0x400A
    VM_EXIT_CONTROLS = 0x400C
    VM_ENTRY_CONTROLS = 0x4012
    VM_ENTRY_INTR_INFO_FIELD = 0x4016
    VM_ENTRY_EXCEPTION_ERROR_CODE = 0x4018
    VM_ENTRY_INSTRUCTION_LEN = 0x401A
    TPR_THRESHOLD = 0x401C
    SECONDARY_VM_EXEC_CONTROL = 0x401E
    PLE_GAP = 0x4020
    PLE_WINDOW = 0x4022
    VM_INSTRUCTION_ERROR = 0x4400
    VM_EXIT_REASON = 0x4402
    VM_EXIT_INTR_INFO = 0x4404
    VM_EXIT_INTR_ERROR_CODE = 0x4406
    IDT_VECTORING_INFO_FIELD = 0x4408
    IDT_VECTORING_ERROR_CODE = 0x440A
    VM_EXIT_INSTRUCTION_LEN = 0x440C
    EXIT_QUALIFICATION = 0x6400
    GUEST_RIP = 0x681E
    GUEST_RFLAGS = 0x6820


def field_width(encoding):
    """The `FieldWidth` of a field encoding; the high half of a 64-bit field (bit 0 set,
    "high" access type) is 32 bits wide."""
    width = FieldWidth((encoding >> 13) & 3)
    if width is FieldWidth.W64 and encoding & 1:
        return FieldWidth.W32
    return width

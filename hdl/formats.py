"""Architectural formats and constants of IPI virtualization, in one place.

Every bit position the project knows about is declared here, once, as an Amaranth layout or
shaped enum. The gateware uses the layouts as signal shapes; the Python models and the
testbenches use the same layouts to pack (``Layout.const({...}).as_bits()``) and unpack
(``Layout.from_bits(value)``) raw integers. VMX controls, capability MSRs and VMCS field
encodings are in ``hdl.vmx``. Sources: ``docs/architecture.md`` (the SDM's APIC
virtualization chapter, VMCS encodings, and the KVM series that enabled IPIv).
"""

import enum as py_enum

from amaranth.lib import data, enum


__all__ = [
    "DeliveryMode", "DestMode", "TriggerMode", "Shorthand", "ICRLow", "XAPICICRHigh",
    "XAPICICR", "X2APICICR", "NotifyInfo", "XAPICNDST", "PostedInterruptDescriptor",
    "PIDPointerEntry", "VMCSConfig", "ICRWriteKind", "ICRWrite", "SendUIPIData", "ExitCause",
    "APICWriteExit", "Notification", "APICRegister", "pid_pointer_entry", "pid_of_entry",
]


# --- The interrupt command register ------------------------------------------------------

class DeliveryMode(enum.Enum, shape=3):
    FIXED = 0
    LOWEST_PRIORITY = 1
    SMI = 2
    RESERVED_3 = 3
    NMI = 4
    INIT = 5
    STARTUP = 6
    EXTINT = 7


class DestMode(enum.Enum, shape=1):
    PHYSICAL = 0
    LOGICAL = 1


class TriggerMode(enum.Enum, shape=1):
    EDGE = 0
    LEVEL = 1


class Shorthand(enum.Enum, shape=2):
    NONE = 0
    SELF = 1
    ALL_INCLUDING_SELF = 2
    ALL_EXCLUDING_SELF = 3


class ICRLow(data.Struct):
    """Bits 31:0 of the ICR: VICR_LO (offset 300H) in xAPIC mode, EAX of WRMSR 0x830 in x2APIC."""
    vector: 8
    delivery_mode: DeliveryMode
    dest_mode: DestMode
    delivery_status: 1      # bit 12; x2APIC: reserved (must be 0 to virtualize)
    reserved_13: 1
    level: 1                # bit 14, assert/de-assert; ignored by IPIv
    trigger: TriggerMode    # bit 15
    reserved_17_16: 2
    shorthand: Shorthand    # bits 19:18
    reserved_31_20: 12


class XAPICICRHigh(data.Struct):
    """VICR_HI, offset 310H of the virtual-APIC page in xAPIC mode."""
    reserved_23_0: 24
    dest: 8


class XAPICICR(data.Struct):
    """The xAPIC vICR image as one 64-bit value: ``VICR_HI << 32 | VICR_LO``."""
    low: ICRLow
    high: XAPICICRHigh


class X2APICICR(data.Struct):
    """The 64-bit x2APIC ICR (EDX:EAX of WRMSR 0x830; stored at offset 300H)."""
    low: ICRLow
    dest: 32


# --- The posted-interrupt descriptor and the PID-pointer table ----------------------------

class NotifyInfo(data.Struct):
    """Bits 319:256 of the PID (bytes 32..39): the word the notification decision reads."""
    on: 1
    sn: 1
    reserved_15_2: 14
    nv: 8
    reserved_31_24: 8
    ndst: 32


class XAPICNDST(data.Struct):
    """NDST as an xAPIC host writes it: the 8-bit APIC ID in bits 15:8."""
    reserved_7_0: 8
    apic_id: 8
    reserved_31_16: 16


class PostedInterruptDescriptor(data.Struct):
    """The 64-byte, 64-byte-aligned posted-interrupt descriptor."""
    pir: 256
    notify_info: NotifyInfo
    reserved_511_320: 192


class PIDPointerEntry(data.Struct):
    """One 8-byte entry of the PID-pointer table; usable iff bits 5:0 == 000001b and nothing
    at or above MAXPHYADDR is set. The PID address is ``pid_line << 6``."""
    valid: 1
    reserved_5_1: 5
    pid_line: 58


# --- The unit's external contract (docs/interface.md) -----------------------------

class VMCSConfig(data.Struct):
    """VMCS-derived state of the running vCPU."""
    ipiv: 1             # tertiary control bit 4, effective
    vid: 1              # virtual-interrupt delivery
    x2apic: 1           # virtual x2APIC mode of this vCPU
    host_x2apic: 1      # how PID.NDST is decoded
    last_pid_index: 16
    pid_table: 64
    vapic_page: 64


class ICRWriteKind(enum.Enum, shape=2):
    XAPIC_ICR_LO = 0    # guest write to offset 300H of the APIC-access page
    XAPIC_ICR_HI = 1    # guest write to offset 310H
    X2APIC_ICR = 2      # WRMSR 0x830
    SENDUIPI = 3        # user-interrupt notification turned into a virtual ICR write


class ICRWrite(data.Struct):
    kind: ICRWriteKind
    data: 64


class SendUIPIData(data.Struct):
    """``ICRWrite.data`` of a SENDUIPI request: the UPID's NV and NDST."""
    nv: 8
    reserved_31_8: 24
    ndst: 32


class ExitCause(enum.Enum, shape=4):
    """Why an ICR write ended in an APIC-write VM exit (diagnostic, in priority order)."""
    DISABLED = 0
    UNSUPPORTED = 1
    ILLEGAL_VECTOR = 2
    BROADCAST = 3
    INDEX_RANGE = 4
    ENTRY_INVALID = 5
    BUS_ERROR = 6


class APICWriteExit(data.Struct):
    reason: 16
    qualification: 12
    cause: ExitCause
    icr: 64


class Notification(data.Struct):
    vector: 8
    dest: 32


# --- Constants ----------------------------------------------------------------------------

class APICRegister(py_enum.IntEnum):
    """Offsets of local-APIC registers in the (virtual-)APIC page; x2APIC MSR = 0x800 + off/16."""
    ID = 0x020
    LVR = 0x030
    TPR = 0x080
    PPR = 0x0A0
    EOI = 0x0B0
    LDR = 0x0D0
    DFR = 0x0E0
    SVR = 0x0F0
    ISR = 0x100         # 8 registers of 32 bits, 10H apart (as TMR and IRR)
    TMR = 0x180
    IRR = 0x200
    ESR = 0x280
    ICR = 0x300
    ICR2 = 0x310


EXIT_REASON_APIC_WRITE = 56
EXIT_REASON_WRMSR = 32             # x2APIC ICR write intercepted while IPIv is off
WRMSR_QUALIFICATION = 0            # WRMSR exits have no qualification
APIC_OFFSET_IRR = APICRegister.IRR
APIC_OFFSET_ICR_LO = APICRegister.ICR
APIC_OFFSET_ICR_HI = APICRegister.ICR2
APIC_WRITE_QUALIFICATION_ICR = APIC_OFFSET_ICR_LO
# APIC-access VM exit (no APICv): qualification bits 15:12 are the access type, 1 a linear
# write (SDM Vol. 3C, exit qualification for APIC-access VM exits; Linux's
# TYPE_LINEAR_APIC_INST_WRITE); bits 11:0 the offset in the APIC page.
APIC_ACCESS_LINEAR_WRITE = 1 << 12
APIC_REGISTER_STRIDE = 0x10        # 32-bit APIC registers are 16 bytes apart (IRR: 8 of them)
PAGE_SIZE = 0x1000                 # a 4-KByte page (virtual-APIC page, KVM's allocations)

MSR_X2APIC_ICR = 0x830
MSR_X2APIC_SELF_IPI = 0x83F
# Where an xAPIC's registers are in physical memory after reset (IA32_APIC_BASE; SDM Vol. 3A,
# "Local APIC Status and Location"); Linux's APIC_DEFAULT_PHYS_BASE.
APIC_DEFAULT_PHYS_BASE = 0xFEE0_0000

POSTED_INTR_VECTOR = 0xF2          # KVM's notification vector for a running vCPU
POSTED_INTR_WAKEUP_VECTOR = 0xF1   # KVM's wakeup vector for a blocked vCPU

FIRST_LEGAL_VECTOR = 16            # vectors 0..15 are illegal for fixed IPIs
XAPIC_BROADCAST_ID = 0xFF
X2APIC_BROADCAST_ID = 0xFFFF_FFFF
PID_BYTES = 64
PID_NOTIFY_INFO_OFFSET = 32
NOTIFY_INFO_ON = NotifyInfo.const({"on": 1}).as_bits()     # ON as a mask of the NotifyInfo word
NOTIFY_INFO_SN = NotifyInfo.const({"sn": 1}).as_bits()     # SN likewise
PID_POINTER_ENTRY_BYTES = 8
PID_POINTER_ENTRY_VALID = PIDPointerEntry.const({"valid": 1}).as_bits()
PID_POINTER_ENTRY_LOW_MASK = PIDPointerEntry.const({"valid": 1, "reserved_5_1": 0x1F}).as_bits()


def pid_pointer_entry(pid):
    """The PID-pointer-table entry that points at the PID at byte address ``pid`` (valid, as
    KVM writes it at vCPU creation). ``pid`` must be 64-byte aligned."""
    if pid % PID_BYTES:
        raise ValueError(f"a PID must be {PID_BYTES}-byte aligned, not {pid:#x}")
    return PIDPointerEntry.const({"valid": 1, "pid_line": pid // PID_BYTES}).as_bits()


def pid_of_entry(entry):
    """The PID byte address an entry points at (validity is not checked here)."""
    return PIDPointerEntry.from_bits(entry).pid_line * PID_BYTES


# The unit's output streams (docs/interface.md), in the order a request's effects are listed.
OUTPUT_STREAMS = ("exit", "notify", "self_ipi", "gp")

MAXPHYADDR_MIN = 36
MAXPHYADDR_MAX = 52
BUS_BYTES = 8                      # the unit's memory port is 64 bits wide
#: The memory port's kinds (docs/interface.md): Wishbone B4 classic, or B4 pipelined (``stall``).
BUS_KINDS = ("classic", "pipelined")
SEL_QWORD = (1 << BUS_BYTES) - 1   # byte select of a whole 64-bit word
SEL_DWORD = 0x0F                   # bytes 3:0: a 32-bit APIC register in its 8-byte word
# The PIR (bits 255:0 of the PID) in bus words.
PIR_WORDS = data.Layout.cast(PostedInterruptDescriptor)["pir"].width // (8 * BUS_BYTES)

# ICR bits that must be 0 (x2APIC: else #GP; xAPIC: else not virtualized [model decision]).
ICR_RESERVED_MASK = ICRLow.const(
    {"reserved_13": 1, "reserved_17_16": 0b11, "reserved_31_20": 0xFFF}).as_bits()
# ICR bits that must be 0 for IPIv: everything but the vector and the level bit.
ICR_IPIV_INELIGIBLE_MASK = 0xFFFF_FFFF & ~ICRLow.const({"vector": 0xFF, "level": 1}).as_bits()
# VICR_HI keeps only its destination byte.
XAPIC_ICR_HI_MASK = XAPICICRHigh.const({"dest": 0xFF}).as_bits()

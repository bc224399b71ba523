"""What the KVM tracepoints that describe an IPI say: their bodies, decoded, and written.

Formats (``TP_printk`` of ``arch/x86/kvm/trace.h``; the same in Linux 6.0 and 6.19 unless
said):

- ``kvm_apic_ipi``: ``dst %x vec %u (MODE|logical/physical|assert/de-assert|level/edge|
  dst/self/all/all-but-self)``, traced by ``kvm_apic_send_ipi`` (and, on 6.19, by the x2APIC
  ICR fastpath after its delivery). MODE is ``kvm_deliver_mode``: Fixed LowPrio SMI Res3 NMI
  INIT SIPI ExtINT.
- ``kvm_msr``: ``msr_write|msr_read %x = 0x%llx`` and `` (#GP)`` when it faulted; MSR 830 is
  the x2APIC ICR (EDX:EAX, destination in bits 63:32).
- ``kvm_apic``: ``apic_write|apic_read REG = 0x%llx``; ``APIC_ICR`` carries the 32-bit xAPIC
  ICR, or the whole 64-bit ICR when KVM emulates an x2APIC write (``kvm_x2apic_icr_write``);
  ``APIC_ICR2`` the xAPIC destination in bits 31:24 (or, on kernels before the 64-bit x2APIC
  ICR, the whole x2APIC destination).
- ``kvm_exit``: 6.0 ``vcpu %u reason %s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info
  0x%08x error_code 0x%08x``; 6.19 appends `` requests 0x%016llx``; older kernels print
  ``reason %s rip 0x%lx info %llx %llx`` without the vCPU. The reason is Linux's name of the
  VMX exit reason (``VMX_EXIT_REASONS``, ``arch/x86/include/uapi/asm/vmx.h``); info1 is the
  exit qualification (an APIC-write exit: the register's offset, 300 for the ICR).
- ``kvm_entry``: 6.0 ``vcpu %u, rip 0x%lx``; 6.19 appends `` intr_info 0x%08x error_code
  0x%08x`` (and ``[immediate exit]``).
- ``kvm_hypercall``: ``nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3 0x%lx`` (RAX, RBX, RCX, RDX,
  RSI as the guest left them, traced before a 32-bit guest's are truncated). ``nr 0xa`` is
  ``KVM_HC_SEND_IPI`` (``include/uapi/linux/kvm_para.h``: 10): the paravirtual send-IPI, with
  a0/a1 the low/high destination bitmap, a2 the lowest APIC ID, a3 the ICR
  (`sim.pv_send_ipi`).

ICR fields are encoded and decoded through `hdl.formats` (`ICRLow`, `X2APICICR`,
`XAPICICRHigh`). Text after a well-formed body (an annotation someone added) is ignored.
"""

import re
from dataclasses import dataclass

from hdl.formats import (
    MSR_X2APIC_ICR, MSR_X2APIC_SELF_IPI, DeliveryMode, DestMode, ICRLow, Shorthand, TriggerMode,
    X2APICICR, XAPICICRHigh,
)
from .kvm_kernel import DEFAULT_KERNEL, KERNELS, check_kernel


__all__ = ["DELIVERY_NAMES", "SHORTHAND_NAMES", "KVM_HC_SEND_IPI", "MSR_X2APIC_SELF_IPI",
           "EXIT_APIC_WRITE", "EXIT_MSR_WRITE", "EXIT_APIC_ACCESS", "EXIT_VMCALL",
           "IPIEvent", "ICRWrite", "ICR2Write", "Boundary", "Hypercall", "Other", "decode",
           "ipi_body", "exit_body", "entry_body", "icr_fields", "split_x2apic", "xapic_dest",
           "IPI_FIELDS",
           "KERNELS", "DEFAULT_KERNEL", "check_kernel"]

DELIVERY_NAMES = ("Fixed", "LowPrio", "SMI", "Res3", "NMI", "INIT", "SIPI", "ExtINT")
SHORTHAND_NAMES = ("dst", "self", "all", "all-but-self")
KVM_HC_SEND_IPI = 0xA
# Linux's names of the VMX exit reasons an IPI can show as (VMX_EXIT_REASONS).
EXIT_APIC_WRITE = "APIC_WRITE"       # an APIC-write exit (trap-like, after the write)
EXIT_MSR_WRITE = "MSR_WRITE"         # WRMSR; which MSR is not in kvm_exit, but in kvm_msr
EXIT_APIC_ACCESS = "APIC_ACCESS"     # a fault-like access to the APIC page (no APICv)
EXIT_VMCALL = "VMCALL"               # a hypercall (the PV send-IPI among them)

# The ICR fields kvm_apic_ipi prints: what two events must agree on to describe one write.
IPI_FIELDS = ICRLow.const({"vector": 0xFF, "delivery_mode": DeliveryMode.EXTINT,
                           "dest_mode": DestMode.LOGICAL, "level": 1,
                           "trigger": TriggerMode.LEVEL,
                           "shorthand": Shorthand.ALL_EXCLUDING_SELF}).as_bits()

_END = r"(?=\s|$)"
_IPI = re.compile(
    r"^dst (?P<dst>[0-9a-fA-F]+) vec (?P<vec>\d+) \((?P<mode>[^|()\s]+)\|"
    r"(?P<dm>logical|physical)\|(?P<level>assert|de-assert)\|(?P<trig>level|edge)\|"
    r"(?P<sh>[^|()\s]+)\)" + _END)
_MSR = re.compile(r"^msr_(?P<rw>read|write) (?P<idx>[0-9a-fA-F]+) = 0x(?P<val>[0-9a-fA-F]+)"
                  r"(?P<gp> \(#GP\))?" + _END)
_APIC = re.compile(r"^apic_(?P<rw>read|write) (?P<reg>\S+) = 0x(?P<val>[0-9a-fA-F]+)" + _END)
_EXIT = re.compile(r"^(?:vcpu (?P<vcpu>\d+) )?reason (?P<reason>\S+)(?: \S+)*?"
                   r" rip 0x(?P<rip>[0-9a-fA-F]+)(?P<rest>.*)$")
_ENTRY = re.compile(r"^vcpu (?P<vcpu>\d+)(?P<rest>.*)$")
_HEX = r"([0-9a-fA-F]+)"
_HYPERCALL = re.compile(r"^nr 0x(?P<nr>[0-9a-fA-F]+)(?P<args>" +
                        "".join(rf" a{i} 0x{_HEX}" for i in range(4)) + ")?" + _END)
_INFO1 = re.compile(rf"^ info1 0x{_HEX}\b")            # 6.0, 6.19
_INFO_OLD = re.compile(rf"^ info {_HEX} {_HEX}\b")      # older kernels
_REQUESTS = re.compile(r"\brequests 0x[0-9a-fA-F]+")
_ENTRY_619 = re.compile(r"\bintr_info 0x[0-9a-fA-F]+ error_code 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class IPIEvent:
    """``kvm_apic_ipi``: the low ICR fields it prints and the destination it computed."""
    low: int
    dest: int


@dataclass(frozen=True)
class ICRWrite:
    """An ICR value: ``kvm_msr msr_write 830`` (``source`` "kvm_msr", always x2APIC) or
    ``kvm_apic apic_write APIC_ICR`` ("kvm_apic"; 64 bits when KVM wrote the x2APIC ICR)."""
    value: int
    source: str


@dataclass(frozen=True)
class ICR2Write:
    """``kvm_apic apic_write APIC_ICR2``."""
    value: int


@dataclass(frozen=True)
class Boundary:
    """``kvm_exit`` / ``kvm_entry``: one exit ends and another begins; names the vCPU.
    ``kernel`` is the release whose format the body has (None: either, or older)."""
    event: str
    vcpu: int | None
    reason: str | None = None
    kernel: str | None = None
    info1: int | None = None       # kvm_exit's exit qualification, when printed


@dataclass(frozen=True)
class Hypercall:
    """``kvm_hypercall``: the number and, when printed, a0..a3."""
    nr: int
    args: tuple | None = None


@dataclass(frozen=True)
class Other:
    """A record that says nothing about ICR writes; ``label`` for the report."""
    label: str


def icr_fields(low):
    """The `ICRLow` view of a low ICR word."""
    return ICRLow.from_bits(low & 0xFFFF_FFFF)


def split_x2apic(value):
    """(low word, destination) of a 64-bit x2APIC ICR value."""
    v = X2APICICR.from_bits(value)
    return v.low.as_bits(), int(v.dest)


def _ipi(body):
    m = _IPI.match(body)
    if not m:
        raise ValueError("expected 'dst %x vec %u (mode|dest mode|level|trigger|shorthand)'")
    if m["mode"] not in DELIVERY_NAMES:
        raise ValueError(f"unknown delivery mode {m['mode']!r}")
    if m["sh"] not in SHORTHAND_NAMES:
        raise ValueError(f"unknown shorthand {m['sh']!r}")
    vector = int(m["vec"])
    if vector > 0xFF:
        raise ValueError(f"vector {vector} is not 0..255")
    dest = int(m["dst"], 16)
    if dest >> 32:
        raise ValueError(f"destination {dest:#x} is wider than 32 bits")
    low = ICRLow.const({
        "vector": vector, "delivery_mode": DeliveryMode(DELIVERY_NAMES.index(m["mode"])),
        "dest_mode": DestMode.LOGICAL if m["dm"] == "logical" else DestMode.PHYSICAL,
        "level": m["level"] == "assert",
        "trigger": TriggerMode.LEVEL if m["trig"] == "level" else TriggerMode.EDGE,
        "shorthand": Shorthand(SHORTHAND_NAMES.index(m["sh"])),
    }).as_bits()
    return IPIEvent(low, dest)


def _msr(body):
    m = _MSR.match(body)
    if not m:
        raise ValueError("expected 'msr_write|msr_read INDEX = 0xVALUE'")
    value, index = int(m["val"], 16), int(m["idx"], 16)
    if value >> 64:
        raise ValueError(f"MSR value {value:#x} is wider than 64 bits")
    if m["rw"] == "write" and index == MSR_X2APIC_ICR:
        if m["gp"]:
            return Other("kvm_msr (ICR write refused with #GP)")
        return ICRWrite(value, "kvm_msr")
    if m["rw"] == "write" and index == MSR_X2APIC_SELF_IPI:
        return Other("kvm_msr (x2APIC SELF_IPI write, not the ICR)")
    return Other("kvm_msr (not an ICR write)")


def _apic(body):
    m = _APIC.match(body)
    if not m:
        raise ValueError("expected 'apic_write|apic_read REGISTER = 0xVALUE'")
    value = int(m["val"], 16)
    if value >> 64:
        raise ValueError(f"APIC register value {value:#x} is wider than 64 bits")
    if m["rw"] == "write" and m["reg"] == "APIC_ICR":
        return ICRWrite(value, "kvm_apic")
    if m["rw"] == "write" and m["reg"] == "APIC_ICR2":
        if value >> 32:
            raise ValueError(f"APIC_ICR2 value {value:#x} is wider than 32 bits")
        return ICR2Write(value)
    if m["rw"] == "write" and m["reg"] == "APIC_EOI":
        return Other("kvm_apic (EOI)")
    return Other("kvm_apic (not an ICR write)")


def _exit(body):
    m = _EXIT.match(body)
    if not m:
        raise ValueError("expected '[vcpu N] reason REASON rip 0xRIP ...'")
    rest = m["rest"]
    kernel = None
    if m["vcpu"] is not None and " info1 0x" in rest:
        kernel = "6.19" if _REQUESTS.search(rest) else "6.0"
    info = _INFO1.match(rest) or _INFO_OLD.match(rest)
    return Boundary("kvm_exit", int(m["vcpu"]) if m["vcpu"] is not None else None,
                    m["reason"], kernel, int(info.group(1), 16) if info else None)


def _entry(body):
    m = _ENTRY.match(body)
    if not m:
        raise ValueError("expected 'vcpu N, rip 0xRIP ...'")
    rest = m["rest"]
    kernel = None
    if rest.startswith(", rip 0x"):
        kernel = "6.19" if _ENTRY_619.search(rest) else "6.0"
    return Boundary("kvm_entry", int(m["vcpu"]), None, kernel)


def _hypercall(body):
    m = _HYPERCALL.match(body)
    if not m:
        raise ValueError("expected 'nr 0xNR a0 0x... a1 ...'")
    args = tuple(int(v, 16) for v in m.groups()[2:]) if m["args"] else None
    return Hypercall(int(m["nr"], 16), args)


_DECODERS = {"kvm_apic_ipi": _ipi, "kvm_msr": _msr, "kvm_apic": _apic, "kvm_exit": _exit,
             "kvm_entry": _entry, "kvm_hypercall": _hypercall}


def decode(event, body):
    """The decoded event (`IPIEvent`, `ICRWrite`, `ICR2Write`, `Boundary`, `Hypercall` or
    `Other`); raises ValueError (one line) for a malformed body of a known event."""
    decoder = _DECODERS.get(event)
    if decoder is None:
        return Other(event)
    return decoder(body)


# -- writing: the same formats, for traces made from the co-simulation ------------------------

def ipi_body(low, dest):
    f = icr_fields(low)
    return (f"dst {dest:x} vec {f.vector} ({DELIVERY_NAMES[int(f.delivery_mode.value)]}|"
            f"{'logical' if f.dest_mode == DestMode.LOGICAL else 'physical'}|"
            f"{'assert' if f.level else 'de-assert'}|"
            f"{'level' if f.trigger == TriggerMode.LEVEL else 'edge'}|"
            f"{SHORTHAND_NAMES[int(f.shorthand.value)]})")


def exit_body(vcpu, reason, rip, info1=0, *, kernel=DEFAULT_KERNEL, intr_info=0):
    check_kernel(kernel)
    body = (f"vcpu {vcpu} reason {reason} rip {rip:#x} info1 {info1:#018x} info2 {0:#018x} "
            f"intr_info {intr_info:#010x} error_code {0:#010x}")
    return body + (f" requests {0:#018x}" if kernel == "6.19" else "")


def entry_body(vcpu, rip, *, kernel=DEFAULT_KERNEL):
    check_kernel(kernel)
    body = f"vcpu {vcpu}, rip {rip:#x}"
    return body + (f" intr_info {0:#010x} error_code {0:#010x}" if kernel == "6.19" else "")


def xapic_dest(icr2):
    """The destination byte of an xAPIC ICR2 value."""
    return int(XAPICICRHigh.from_bits(icr2 & 0xFFFF_FFFF).dest)

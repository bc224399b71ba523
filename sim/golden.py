"""Golden model of the IPI-virtualization unit (``docs/architecture.md`` §4, ``docs/interface.md``).

`GoldenIPIVirtualizer.execute` takes one ICR write and applies it to a `Memory` exactly as the
gateware does: the same bus transfers in the same order (so an injected bus error hits the same
step), and returns the `Result` (outcome, exit cause, vICR image, notification). The gateware
tests and the checker shared by both simulator backends (`tb.checker`) compare the RTL
against it, transfer by transfer.

Model decisions (the spec is silent; the gateware follows the same rules):

- xAPIC ICR-low writes read VICR_HI back from the virtual-APIC page after storing VICR_LO (the
  processor takes the destination from the page, not from a shadow copy).
- A self-IPI follows the SDM's self-IPI virtualization: bits 31:20, 17:16 and 13 zero,
  shorthand self, edge, fixed, vector >= 16; destination mode, bit 12 and the level bit are
  ignored. The VIRR is updated by a locked read-modify-write of its 32-bit word.
- The PIR word is always written back (``old | bit``) even when the bit was already set; the
  NotifyInfo word is written only when ON is set by it (ON = 0, SN = 0 before).
- A bus error ends the request; the exit's vICR image holds what was known by then
  (a VICR_HI not yet read is 0).
- Addresses: ``vapic_page`` and ``pid_table`` are used as byte addresses (bits 2:0 ignored by
  the word addressing); all addresses wrap at MAXPHYADDR.
"""

import enum
from dataclasses import dataclass, field, fields

from amaranth.lib import data

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_WRITE_QUALIFICATION_ICR,
    EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause, FIRST_LEGAL_VECTOR, WRMSR_QUALIFICATION,
    ICR_IPIV_INELIGIBLE_MASK, ICR_RESERVED_MASK, ICRLow, ICRWriteKind, NotifyInfo, PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES,
    PID_POINTER_ENTRY_LOW_MASK, PID_POINTER_ENTRY_VALID, SendUIPIData, pid_of_entry,
    Shorthand, DeliveryMode, TriggerMode, VMCSConfig, XAPIC_BROADCAST_ID, XAPIC_ICR_HI_MASK,
    XAPICNDST, XAPICICR, X2APICICR,
)
from hdl.params import check_maxphyaddr
from .memory import BusError, Memory


__all__ = ["Config", "Outcome", "Result", "GoldenIPIVirtualizer"]

_U32 = 0xFFFF_FFFF
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Config:
    """The `VMCSConfig` of the running vCPU, as Python values."""
    ipiv: bool = True
    vid: bool = True
    x2apic: bool = True
    host_x2apic: bool = True
    last_pid_index: int = 0
    pid_table: int = 0
    vapic_page: int = 0

    def as_bits(self):
        return data.Layout.cast(VMCSConfig).const(
            {f.name: int(getattr(self, f.name)) for f in fields(self)}).as_bits()

    @classmethod
    def from_bits(cls, value):
        view = VMCSConfig.from_bits(value)
        return cls(**{f.name: type(f.default)(getattr(view, f.name)) for f in fields(cls)})


class Outcome(enum.Enum):
    STORED = "stored"        # an xAPIC write to 310H: stored, nothing else
    GP = "gp"                # x2APIC #GP, nothing stored
    EXIT = "exit"            # VM exit: APIC write (56), or WRMSR (32) for the x2APIC intercept
    SELF_IPI = "self-ipi"    # virtualized self-IPI (VIRR updated)
    POSTED = "posted"        # virtualized IPI (PIR set; maybe a notification)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    icr: int = 0                         # vICR image (exit payload / #GP value)
    cause: ExitCause | None = None
    vector: int | None = None
    dest: int | None = None              # virtual destination T
    notify: tuple | None = None          # (vector, physical APIC ID)
    reason: int = EXIT_REASON_APIC_WRITE  # of an exit: 56, or 32 (WRMSR) for the intercept
    qualification: int = APIC_WRITE_QUALIFICATION_ICR

    @property
    def suppressed(self):
        """A posting that sent no notification (ON already set or SN set)."""
        return self.outcome is Outcome.POSTED and self.notify is None


@dataclass
class GoldenIPIVirtualizer:
    """What the processor does on a guest ICR write with the given VMCS state."""
    maxphyaddr: int = 52
    _adr_mask: int = field(init=False, repr=False)

    def __post_init__(self):
        check_maxphyaddr(self.maxphyaddr)
        self._adr_mask = (1 << (self.maxphyaddr - 3)) - 1

    def word(self, byte_addr):
        """The bus word address of a byte address (wrapping at MAXPHYADDR)."""
        return (byte_addr >> 3) & self._adr_mask

    # -- pure classification ----------------------------------------------------------------
    @staticmethod
    def is_self_ipi(cfg, icr_lo):
        low = ICRLow.from_bits(icr_lo & _U32)
        return bool(cfg.vid and not (icr_lo & ICR_RESERVED_MASK)
                    and low.shorthand == Shorthand.SELF and low.trigger == TriggerMode.EDGE
                    and low.delivery_mode == DeliveryMode.FIXED
                    and low.vector >= FIRST_LEGAL_VECTOR)

    @staticmethod
    def precheck(cfg, icr_lo, dest, xapic):
        """The exit cause decided from the ICR and VMCS alone, or None if IPIv may post."""
        if not cfg.ipiv:
            return ExitCause.DISABLED
        if icr_lo & ICR_IPIV_INELIGIBLE_MASK:
            return ExitCause.UNSUPPORTED
        if ICRLow.from_bits(icr_lo & _U32).vector < FIRST_LEGAL_VECTOR:
            return ExitCause.ILLEGAL_VECTOR
        if xapic and dest == XAPIC_BROADCAST_ID:
            return ExitCause.BROADCAST
        if dest > cfg.last_pid_index:
            return ExitCause.INDEX_RANGE
        return None

    def entry_valid(self, entry):
        return (entry & PID_POINTER_ENTRY_LOW_MASK) == PID_POINTER_ENTRY_VALID and \
            entry >> self.maxphyaddr == 0

    # -- one request -----------------------------------------------------------------------
    def execute(self, cfg, memory: Memory, kind, value):
        """Apply one ICR write (``kind``: `ICRWriteKind`, ``value``: its 64-bit data)."""
        kind = ICRWriteKind(kind)
        value &= _U64
        vapic = cfg.vapic_page
        lo_word = self.word(vapic + APIC_OFFSET_ICR_LO)
        hi_word = self.word(vapic + APIC_OFFSET_ICR_HI)
        xapic = kind in (ICRWriteKind.XAPIC_ICR_LO, ICRWriteKind.XAPIC_ICR_HI) or \
            (kind == ICRWriteKind.SENDUIPI and not cfg.x2apic)
        image = 0

        def exit_(cause):
            return Result(Outcome.EXIT, icr=image, cause=cause)

        try:
            # 1. The vICR store.
            if kind == ICRWriteKind.XAPIC_ICR_HI:
                hi = value & XAPIC_ICR_HI_MASK
                image = hi << 32
                memory.transfer(adr=hi_word, write=True, sel=0x0F, data=hi)
                return Result(Outcome.STORED, icr=image)
            if kind == ICRWriteKind.X2APIC_ICR:
                if not cfg.ipiv:
                    # KVM intercepts WRMSR 0x830 while IPIv is off: nothing is stored and
                    # the CPU makes no #GP check (docs/architecture.md §4.7).
                    return Result(Outcome.EXIT, icr=value, cause=ExitCause.DISABLED,
                                  reason=EXIT_REASON_WRMSR, qualification=WRMSR_QUALIFICATION)
                if value & ICR_RESERVED_MASK:
                    return Result(Outcome.GP, icr=value)
                image = value
                memory.transfer(adr=lo_word, write=True, sel=0xFF, data=image)
            elif kind == ICRWriteKind.SENDUIPI:
                upid = SendUIPIData.from_bits(value)
                if xapic:
                    ndst = XAPICNDST.from_bits(upid.ndst)
                    image = XAPICICR.const({"low": {"vector": upid.nv},
                                            "high": {"dest": ndst.apic_id}}).as_bits()
                    memory.transfer(adr=hi_word, write=True, sel=0x0F, data=image >> 32)
                    memory.transfer(adr=lo_word, write=True, sel=0x0F, data=image & _U32)
                else:
                    image = X2APICICR.const({"low": {"vector": upid.nv},
                                             "dest": upid.ndst}).as_bits()
                    memory.transfer(adr=lo_word, write=True, sel=0xFF, data=image)
            else:  # XAPIC_ICR_LO
                image = value & _U32
                memory.transfer(adr=lo_word, write=True, sel=0x0F, data=image)
                image |= (memory.transfer(adr=hi_word, write=False, sel=0x0F) & _U32) << 32

            # 2. Classification.
            icr_lo = image & _U32
            vector = ICRLow.from_bits(icr_lo).vector
            if kind == ICRWriteKind.XAPIC_ICR_LO and self.is_self_ipi(cfg, icr_lo):
                return self._self_ipi(cfg, memory, vector, image)
            dest = XAPICICR.from_bits(image).high.dest if xapic else X2APICICR.from_bits(image).dest
            cause = self.precheck(cfg, icr_lo, dest, xapic)
            if cause is not None:
                return exit_(cause)

            # 3. The PID-pointer entry.
            entry = memory.transfer(
                adr=self.word(cfg.pid_table + PID_POINTER_ENTRY_BYTES * dest), write=False)
            if not self.entry_valid(entry):
                return exit_(ExitCause.ENTRY_INVALID)
            pid = pid_of_entry(entry)

            # 4. Locked RMW of the PIR word holding bit V.
            pir_word = self.word(pid + 8 * (vector // 64))
            old = memory.transfer(adr=pir_word, write=False, lock=True)
            memory.transfer(adr=pir_word, write=True, data=old | 1 << (vector % 64), lock=True)

            # 5. Locked RMW of NotifyInfo: set ON iff ON = 0 and SN = 0.
            ni_word = self.word(pid + PID_NOTIFY_INFO_OFFSET)
            raw = memory.transfer(adr=ni_word, write=False, lock=True)
            info = NotifyInfo.from_bits(raw)
            if info.on or info.sn:
                return Result(Outcome.POSTED, icr=image, vector=vector, dest=dest)
            memory.transfer(adr=ni_word, write=True,
                            data=raw | NotifyInfo.const({"on": 1}).as_bits(), lock=True)

            # 6. The notification, NDST decoded by the host's APIC mode.
            phys = info.ndst if cfg.host_x2apic else XAPICNDST.from_bits(info.ndst).apic_id
            return Result(Outcome.POSTED, icr=image, vector=vector, dest=dest,
                          notify=(info.nv, phys))
        except BusError:
            return exit_(ExitCause.BUS_ERROR)

    def _self_ipi(self, cfg, memory, vector, image):
        irr_word = self.word(cfg.vapic_page + APIC_OFFSET_IRR + 0x10 * (vector // 32))
        old = memory.transfer(adr=irr_word, write=False, sel=0x0F, lock=True) & _U32
        memory.transfer(adr=irr_word, write=True, sel=0x0F, data=old | 1 << (vector % 32),
                        lock=True)
        return Result(Outcome.SELF_IPI, icr=image, vector=vector)

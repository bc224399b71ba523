"""Golden model of the IPI-virtualization unit (``docs/architecture.md`` §4, ``docs/interface.md``).

`GoldenIPIVirtualizer.execute` takes one ICR write and applies it to a `Memory` exactly as the
gateware does: the same bus transfers in the same order (so an injected bus error hits the same
step), and returns the `Result` (outcome, exit cause, vICR image, notification). The gateware
tests and the checker shared by both simulator backends (`tb.checker`) compare the RTL
against it, transfer by transfer.

It runs on every request a simulation checks, so it decodes raw values with shifts and masks
taken from the layouts of `hdl.formats` at import (`sim.golden_fields`), not through
``Layout.from_bits`` views, which cost far more per field (tests/test_golden_fields.py
compares the two).

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
- ``bus="pipelined"`` (docs/interface.md, "The pipelined memory port"): the same transfers in
  round trips; the only change of order is the PID's, both reads before both writes (PIR read,
  NotifyInfo read, PIR write, NotifyInfo write when notifying). Requests of a round trip are
  independent of each other's answers, so after an ``err`` the requests of the same round trip
  that the unit had already issued stand: `Result.stand` lists those that may follow.
- Addresses: ``vapic_page`` and ``pid_table`` are used as byte addresses (bits 2:0 ignored by
  the word addressing); all addresses wrap at MAXPHYADDR.
"""

import enum
from dataclasses import dataclass, field, fields

from amaranth.lib import data

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE,
    APIC_WRITE_QUALIFICATION_ICR, BUS_BYTES, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR,
    ExitCause, FIRST_LEGAL_VECTOR, ICR_IPIV_INELIGIBLE_MASK, ICR_RESERVED_MASK, ICRWriteKind,
    NOTIFY_INFO_ON, PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES, PID_POINTER_ENTRY_LOW_MASK,
    PID_POINTER_ENTRY_VALID, SEL_DWORD, SEL_QWORD, VMCSConfig, WRMSR_QUALIFICATION,
    XAPIC_BROADCAST_ID, XAPIC_ICR_HI_MASK,
)
from hdl.params import check_bus, check_maxphyaddr
from .arch_values import check_fields, hex_repr
from .golden_fields import (
    icr_destination, icr_vector, notify_decision, pid_address, self_ipi_form, senduipi_image,
)
from .memory import Access, BusError, Memory


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

    def __post_init__(self):
        check_fields(VMCSConfig, {f.name: getattr(self, f.name) for f in fields(self)},
                     what="VMCSConfig")

    def __repr__(self):
        return hex_repr(self, {"pid_table", "vapic_page"})

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
    # Pipelined bus, after an err: the rest of that round trip (`sim.memory.Access` each),
    # which the unit may have issued before the err came back (a prefix of it stands).
    stand: tuple = ()

    def __repr__(self):
        return hex_repr(self, {"icr", "vector", "qualification"},
                        notify=lambda n: f"({n[0]:#x}, {n[1]})")     # (vector, APIC ID)

    @property
    def suppressed(self):
        """A posting that sent no notification (ON already set or SN set)."""
        return self.outcome is Outcome.POSTED and self.notify is None


@dataclass
class GoldenIPIVirtualizer:
    """What the processor does on a guest ICR write with the given VMCS state."""
    maxphyaddr: int = 52
    bus: str = "classic"
    _adr_mask: int = field(init=False, repr=False)

    def __post_init__(self):
        check_maxphyaddr(self.maxphyaddr)
        check_bus(self.bus)
        self._adr_mask = (1 << (self.maxphyaddr - 3)) - 1

    def word(self, byte_addr):
        """The bus word address of a byte address (wrapping at MAXPHYADDR)."""
        return (byte_addr >> 3) & self._adr_mask

    # -- pure classification ----------------------------------------------------------------
    @staticmethod
    def is_self_ipi(cfg, icr_lo):
        return bool(cfg.vid and not (icr_lo & ICR_RESERVED_MASK) and self_ipi_form(icr_lo)
                    and icr_vector(icr_lo) >= FIRST_LEGAL_VECTOR)

    @staticmethod
    def precheck(cfg, icr_lo, dest, xapic):
        """The exit cause decided from the ICR and VMCS alone, or None if IPIv may post."""
        if not cfg.ipiv:
            return ExitCause.DISABLED
        if icr_lo & ICR_IPIV_INELIGIBLE_MASK:
            return ExitCause.UNSUPPORTED
        if icr_vector(icr_lo) < FIRST_LEGAL_VECTOR:
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
        """Apply one ICR write (``kind``: `ICRWriteKind`, ``value``: its 64-bit data): the
        x2APIC checks, the vICR store (step 1), then classification and delivery (steps 2-6).
        A bus error ends the request in an exit with the image known by then."""
        if type(kind) is not ICRWriteKind:      # an int (the enum's call is slow: only then)
            kind = ICRWriteKind(kind)
        value &= _U64
        if kind == ICRWriteKind.X2APIC_ICR:
            refused = self._x2apic_refusal(cfg, value)
            if refused is not None:
                return refused
        xapic = kind in (ICRWriteKind.XAPIC_ICR_LO, ICRWriteKind.XAPIC_ICR_HI) or \
            (kind == ICRWriteKind.SENDUIPI and not cfg.x2apic)
        image = self._written_image(kind, value, xapic)
        if self.bus == "pipelined":
            return self._execute_pipelined(cfg, memory, kind, image, xapic)
        try:
            image = self._store(cfg, memory, kind, image, xapic)
            if kind == ICRWriteKind.XAPIC_ICR_HI:
                return Result(Outcome.STORED, icr=image)
            return self._virtualize(cfg, memory, kind, image, xapic)
        except BusError:
            return Result(Outcome.EXIT, icr=image, cause=ExitCause.BUS_ERROR)

    @staticmethod
    def _x2apic_refusal(cfg, value):
        """An x2APIC ICR write that stores nothing: KVM intercepts WRMSR 0x830 while IPIv is off
        (a WRMSR exit, and the CPU makes no #GP check, docs/architecture.md §4.7); otherwise
        reserved bits set are a #GP. None if the write goes on."""
        if not cfg.ipiv:
            return Result(Outcome.EXIT, icr=value, cause=ExitCause.DISABLED,
                          reason=EXIT_REASON_WRMSR, qualification=WRMSR_QUALIFICATION)
        if value & ICR_RESERVED_MASK:
            return Result(Outcome.GP, icr=value)
        return None

    @staticmethod
    def _written_image(kind, value, xapic):
        """The vICR image the write itself gives: ICR2 keeps its destination byte, SENDUIPI
        builds the ICR from the UPID's NV and NDST (xAPIC: NDST bits 15:8). An xAPIC ICR-low
        write's VICR_HI half comes later, from the read-back."""
        if kind == ICRWriteKind.XAPIC_ICR_HI:
            return (value & XAPIC_ICR_HI_MASK) << 32
        if kind == ICRWriteKind.X2APIC_ICR:
            return value
        if kind == ICRWriteKind.SENDUIPI:
            return senduipi_image(value, xapic)
        return value & _U32                                 # XAPIC_ICR_LO

    def _store(self, cfg, memory, kind, image, xapic):
        """Step 1, the vICR store: x2APIC one 64-bit write at 300H; xAPIC 32-bit writes, ICR2
        (310H) before ICR (300H), and an ICR-low write reads VICR_HI back. Returns the image
        with the read-back's half."""
        lo_word = self.word(cfg.vapic_page + APIC_OFFSET_ICR_LO)
        hi_word = self.word(cfg.vapic_page + APIC_OFFSET_ICR_HI)
        if not xapic:
            memory.transfer(adr=lo_word, write=True, sel=SEL_QWORD, data=image)
            return image
        if kind != ICRWriteKind.XAPIC_ICR_LO:              # ICR2, or SENDUIPI's destination
            memory.transfer(adr=hi_word, write=True, sel=SEL_DWORD, data=image >> 32)
        if kind == ICRWriteKind.XAPIC_ICR_HI:
            return image
        memory.transfer(adr=lo_word, write=True, sel=SEL_DWORD, data=image & _U32)
        if kind == ICRWriteKind.XAPIC_ICR_LO:
            image |= (memory.transfer(adr=hi_word, write=False, sel=SEL_DWORD) & _U32) << 32
        return image

    def _classify(self, cfg, kind, image, xapic):
        """Step 2, classification of a stored ICR: its vector, whether it is a self-IPI (an
        xAPIC ICR low write only), and otherwise its destination and the exit cause decided
        from the ICR and VMCS alone (None: IPIv may post)."""
        icr_lo = image & _U32
        vector = icr_vector(icr_lo)
        if kind == ICRWriteKind.XAPIC_ICR_LO and self.is_self_ipi(cfg, icr_lo):
            return vector, True, None, None
        dest = icr_destination(image, xapic)
        return vector, False, dest, self.precheck(cfg, icr_lo, dest, xapic)

    def _virtualize(self, cfg, memory, kind, image, xapic):
        """Steps 2-6 for a stored ICR: a self-IPI, an exit, or a posting."""
        vector, self_ipi, dest, cause = self._classify(cfg, kind, image, xapic)
        if self_ipi:
            return self._self_ipi(cfg, memory, vector, image)
        if cause is not None:
            return Result(Outcome.EXIT, icr=image, cause=cause)
        # 3. The PID-pointer entry.
        entry = memory.transfer(
            adr=self.word(cfg.pid_table + PID_POINTER_ENTRY_BYTES * dest), write=False)
        if not self.entry_valid(entry):
            return Result(Outcome.EXIT, icr=image, cause=ExitCause.ENTRY_INVALID)
        pid = pid_address(entry)
        self._set_pir_bit(memory, pid, vector)
        notify = self._set_on(cfg, memory, pid)
        return Result(Outcome.POSTED, icr=image, vector=vector, dest=dest, notify=notify)

    def _set_pir_bit(self, memory, pid, vector):
        """Step 4: the locked read-modify-write of the PIR word holding bit V."""
        pir_word = self.word(pid + BUS_BYTES * (vector // 64))
        old = memory.transfer(adr=pir_word, write=False, lock=True)
        memory.transfer(adr=pir_word, write=True, data=old | 1 << (vector % 64), lock=True)

    def _set_on(self, cfg, memory, pid):
        """Step 5, the locked read-modify-write of NotifyInfo: set ON iff ON = 0 and SN = 0;
        then step 6, the notification (NV, physical APIC ID, NDST decoded by the host's APIC
        mode). None if suppressed."""
        ni_word = self.word(pid + PID_NOTIFY_INFO_OFFSET)
        raw = memory.transfer(adr=ni_word, write=False, lock=True)
        notify, target = notify_decision(raw, cfg.host_x2apic)
        if not notify:
            return None
        memory.transfer(adr=ni_word, write=True, data=raw | NOTIFY_INFO_ON, lock=True)
        return target

    def _self_ipi(self, cfg, memory, vector, image):
        """A virtualized self-IPI: the locked read-modify-write of the VIRR register of V."""
        irr = APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * (vector // 32)
        irr_word = self.word(cfg.vapic_page + irr)
        old = memory.transfer(adr=irr_word, write=False, sel=SEL_DWORD, lock=True) & _U32
        memory.transfer(adr=irr_word, write=True, sel=SEL_DWORD, data=old | 1 << (vector % 32),
                        lock=True)
        return Result(Outcome.SELF_IPI, icr=image, vector=vector)

    # -- the pipelined bus: round trips ---------------------------------------------------------
    def _trip(self, memory, requests):
        """One round trip: ``requests`` (`Access` each) in order; their answers (reads' data).
        On an err, `_TripError` carries the requests after the failing one."""
        answers = []
        for i, a in enumerate(requests):
            try:
                answers.append(memory.transfer(adr=a.adr, write=a.write, sel=a.sel,
                                               data=a.data, lock=a.lock))
            except BusError:
                raise _TripError(tuple(requests[i + 1:])) from None
        return answers

    def _stores(self, cfg, kind, image, xapic):
        """The vICR stores of a write, in order (`Access` each)."""
        lo = self.word(cfg.vapic_page + APIC_OFFSET_ICR_LO)
        hi = self.word(cfg.vapic_page + APIC_OFFSET_ICR_HI)
        if not xapic:
            return [Access(True, lo, SEL_QWORD, image, False)]
        stores = []
        if kind != ICRWriteKind.XAPIC_ICR_LO:
            stores.append(Access(True, hi, SEL_DWORD, image >> 32 & _U32, False))
        if kind != ICRWriteKind.XAPIC_ICR_HI:
            stores.append(Access(True, lo, SEL_DWORD, image & _U32, False))
        return stores

    def _execute_pipelined(self, cfg, memory, kind, image, xapic):
        try:
            return self._pipelined_path(cfg, memory, kind, image, xapic)
        except _TripError as e:
            return Result(Outcome.EXIT, icr=e.image if e.image is not None else image,
                          cause=ExitCause.BUS_ERROR, stand=e.stand)

    def _pipelined_path(self, cfg, memory, kind, image, xapic):
        stores = self._stores(cfg, kind, image, xapic)
        if kind == ICRWriteKind.XAPIC_ICR_HI:
            self._trip(memory, stores)
            return Result(Outcome.STORED, icr=image)
        if kind == ICRWriteKind.XAPIC_ICR_LO:
            hi = Access(False, self.word(cfg.vapic_page + APIC_OFFSET_ICR_HI), SEL_DWORD, 0,
                        False)
            image |= (self._trip(memory, stores + [hi])[-1] & _U32) << 32
        vector, self_ipi, dest, cause = self._classify(cfg, kind, image, xapic)
        if self_ipi:
            return self._pipelined_self_ipi(cfg, memory, vector, image)
        entry_read = Access(False, self.word(cfg.pid_table + PID_POINTER_ENTRY_BYTES * dest),
                            SEL_QWORD, 0, False)
        if kind == ICRWriteKind.XAPIC_ICR_LO:
            trip = [entry_read] if cause is None else []
        else:                       # the destination is known: the entry read goes with the stores
            trip = stores + ([entry_read] if cause is None else [])
        try:
            answers = self._trip(memory, trip)
        except _TripError as e:
            raise _TripError(e.stand, image) from None
        if cause is not None:
            return Result(Outcome.EXIT, icr=image, cause=cause)
        entry = answers[-1]
        if not self.entry_valid(entry):
            return Result(Outcome.EXIT, icr=image, cause=ExitCause.ENTRY_INVALID)
        try:
            notify = self._pipelined_post(cfg, memory, pid_address(entry), vector)
        except _TripError as e:
            raise _TripError(e.stand, image) from None
        return Result(Outcome.POSTED, icr=image, vector=vector, dest=dest, notify=notify)

    def _pipelined_post(self, cfg, memory, pid, vector):
        """The PID: both reads (locked), then the PIR write and, when ON = SN = 0, the
        NotifyInfo write (still locked); the notification, or None if suppressed."""
        pir = self.word(pid + BUS_BYTES * (vector // 64))
        ni = self.word(pid + PID_NOTIFY_INFO_OFFSET)
        old, raw = self._trip(memory, [Access(False, pir, SEL_QWORD, 0, True),
                                       Access(False, ni, SEL_QWORD, 0, True)])
        notify, target = notify_decision(raw, cfg.host_x2apic)
        writes = [Access(True, pir, SEL_QWORD, old | 1 << (vector % 64), True)]
        if notify:
            writes.append(Access(True, ni, SEL_QWORD, raw | NOTIFY_INFO_ON, True))
        self._trip(memory, writes)
        return target if notify else None

    def _pipelined_self_ipi(self, cfg, memory, vector, image):
        """The classic read-modify-write: two round trips of one request each, so nothing
        stands after an err."""
        try:
            return self._self_ipi(cfg, memory, vector, image)
        except BusError:
            raise _TripError((), image) from None

class _TripError(Exception):
    """A round trip ended in err: ``stand``, the requests after the failing one; ``image``, the
    vICR image known (None: the one the write itself gave)."""

    def __init__(self, stand, image=None):
        super().__init__(stand)
        self.stand = stand
        self.image = image

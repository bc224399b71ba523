"""What an ICR write becomes, decided from the vICR image and the VMCS alone
(docs/architecture.md §4): a virtualized self-IPI, an APIC-write exit with its cause, or an
IPIv posting to virtual destination T. Shared by both bus variants of the unit.

The verdict is registered as the write is taken (`EarlyVerdict`), off the bus's path: every
cause but BROADCAST reads bits 31:0 only, and of an xAPIC ICR-low write only VICR_HI, read
later, is unknown then; `late_verdict` adds its broadcast check when it arrives."""

from typing import NamedTuple

from amaranth import Cat, Mux, Signal
from amaranth.lib import data

from .formats import (
    DeliveryMode, ExitCause, FIRST_LEGAL_VECTOR, ICR_IPIV_INELIGIBLE_MASK, ICR_RESERVED_MASK,
    ICRLow, ICRWriteKind, Shorthand, TriggerMode, XAPIC_BROADCAST_ID, XAPICICR, XAPICICRHigh,
    X2APICICR,
)


__all__ = ["EarlyVerdict", "Verdict", "classify", "early_image", "late_in_range",
           "late_verdict", "virtual_destination"]


class Verdict(NamedTuple):
    """The classification of one image (each an Amaranth value)."""
    self_ipi: object        # a virtualized self-IPI
    must_exit: object       # an APIC-write exit, with ``cause``
    cause: object
    vector: object
    dest: object            # virtual destination T


def virtual_destination(image, *, xapic):
    """Virtual destination T of the vICR ``image``: the xAPIC destination byte (VICR_HI
    bits 31:24) or the x2APIC destination (bits 63:32)."""
    return Mux(xapic, XAPICICR(image).high.dest, X2APICICR(image).dest)


def classify(m, full, *, kind, xapic, cfg, ineligible_mask=ICR_IPIV_INELIGIBLE_MASK):
    """The `Verdict` of the image ``full`` (64 bits: x2APIC value or VICR_HI:VICR_LO) of a write
    of ``kind``; ``xapic``: the image uses the xAPIC formats. When several exit causes apply,
    the first of the contract's order is given."""
    low = ICRLow(full[:32])
    dest = virtual_destination(full, xapic=xapic)
    self_ipi = Signal()
    m.d.comb += self_ipi.eq(
        (kind == ICRWriteKind.XAPIC_ICR_LO) & cfg.vid
        & ((full[:32] & ICR_RESERVED_MASK) == 0) & (low.shorthand == Shorthand.SELF)
        & (low.trigger == TriggerMode.EDGE) & (low.delivery_mode == DeliveryMode.FIXED)
        & (low.vector >= FIRST_LEGAL_VECTOR))
    must_exit = Signal()
    cause = Signal(ExitCause)
    m.d.comb += must_exit.eq(1)
    with m.If(~cfg.ipiv):
        m.d.comb += cause.eq(ExitCause.DISABLED)
    with m.Elif((full[:32] & ineligible_mask) != 0):
        m.d.comb += cause.eq(ExitCause.UNSUPPORTED)
    with m.Elif(low.vector < FIRST_LEGAL_VECTOR):
        m.d.comb += cause.eq(ExitCause.ILLEGAL_VECTOR)
    with m.Elif(xapic & (dest == XAPIC_BROADCAST_ID)):
        m.d.comb += cause.eq(ExitCause.BROADCAST)
    with m.Else():
        m.d.comb += must_exit.eq(0)
    return Verdict(self_ipi, must_exit, cause, low.vector, dest)


class EarlyVerdict(data.Struct):
    """`classify`'s decision on a write as it is taken (register it, `early_image`), and
    whether T as then known is at most the last PID-pointer index."""
    self_ipi: 1
    must_exit: 1
    cause: ExitCause
    in_range: 1

    @staticmethod
    def of(verdict, cfg, in_range=None):
        """``verdict`` (a `Verdict`) under ``cfg`` as a value to assign to an `EarlyVerdict`;
        ``in_range``: its range check when computed apart (`hdl.icr_write.offered_in_range`),
        by default ``verdict.dest`` compared."""
        if in_range is None:
            in_range = verdict.dest <= cfg.last_pid_index
        return Cat(verdict.self_ipi, verdict.must_exit, verdict.cause, in_range)


def early_image(kind, image):
    """What a write's image is known to be when taken: an xAPIC ICR-low write's VICR_HI half
    is read later, so it counts as 0 (no broadcast) until then."""
    return Mux(kind == ICRWriteKind.XAPIC_ICR_LO, image[:32], image)


def late_verdict(m, early, full, *, kind, xapic, vicr_hi):
    """The `Verdict` of the image ``full`` from ``early`` (the `EarlyVerdict` of the same
    write): only an xAPIC ICR-low write's broadcast check reads VICR_HI (``vicr_hi``, as it
    arrives from the bus; ignored for other kinds), and BROADCAST comes last in the
    contract's order of causes."""
    dest = virtual_destination(full, xapic=xapic)
    late_broadcast = (kind == ICRWriteKind.XAPIC_ICR_LO) & \
        (XAPICICRHigh(vicr_hi).dest == XAPIC_BROADCAST_ID)
    must_exit, cause = Signal(), Signal(ExitCause)
    m.d.comb += [must_exit.eq(early.must_exit | late_broadcast),
                 cause.eq(Mux(early.must_exit, early.cause, ExitCause.BROADCAST))]
    return Verdict(early.self_ipi, must_exit, cause, ICRLow(full[:32]).vector, dest)


def late_in_range(early, vicr_hi, *, kind, cfg):
    """T is at most the last PID-pointer index: ``early``'s answer, but for an xAPIC ICR-low
    write, whose T is the 8 bits of VICR_HI (``vicr_hi``), compared as they arrive."""
    return Mux(kind == ICRWriteKind.XAPIC_ICR_LO,
               XAPICICRHigh(vicr_hi).dest <= cfg.last_pid_index, early.in_range)

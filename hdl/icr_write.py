"""What an ICR write gives the moment it is accepted (docs/architecture.md §4.1-§4.3, the
x2APIC intercept of docs/interface.md): its format, its vICR image before any read-back, and
whether it ends at once. Shared by both bus variants of the unit."""

from typing import NamedTuple

from amaranth import C, Cat, Module, Mux, Signal

from .exits import load_exit, preload_exit
from .formats import (
    EXIT_REASON_WRMSR, ExitCause, ICR_RESERVED_MASK, ICRWriteKind, SendUIPIData,
    WRMSR_QUALIFICATION, XAPIC_ICR_HI_MASK, XAPICNDST,
)


__all__ = ["AcceptedWrite", "accepted_write", "offered_in_range", "preload_refusals",
           "refuse"]


class AcceptedWrite(NamedTuple):
    """Combinational values of the write offered on ``icr``."""
    xapic: object           # the write uses the xAPIC formats
    image: object           # its vICR image (an ICR-low write's VICR_HI half comes later)
    starts_high: object     # its first store is the one at 310H (ICR2, xAPIC SENDUIPI)
    intercepted: object     # x2APIC while IPIv is off: a WRMSR exit, nothing stored
    gp: object              # x2APIC with reserved bits set: #GP, nothing stored


def accepted_write(m, write, cfg):
    """The `AcceptedWrite` of ``write`` (an `ICRWrite` view) under ``cfg``, formed in a
    submodule of ``m`` of its own: it depends only on the offered write and ``cfg``, so
    Amaranth's simulator need not re-run it with the rest of ``m``."""
    parent, m = m, Module()
    parent.submodules += m
    data, kind = write.data, write.kind
    upid = SendUIPIData(data)
    uipi = kind == ICRWriteKind.SENDUIPI
    x2 = kind == ICRWriteKind.X2APIC_ICR
    xapic, image = Signal(name="xapic"), Signal(64, name="image")
    m.d.comb += xapic.eq(Mux(uipi, ~cfg.x2apic, ~x2))
    with m.Switch(kind):
        with m.Case(ICRWriteKind.XAPIC_ICR_HI):
            m.d.comb += image.eq(Cat(C(0, 32), data[:32] & XAPIC_ICR_HI_MASK))
        with m.Case(ICRWriteKind.XAPIC_ICR_LO):
            m.d.comb += image.eq(data[:32])
        with m.Case(ICRWriteKind.X2APIC_ICR):
            m.d.comb += image.eq(data)
        with m.Case(ICRWriteKind.SENDUIPI):
            m.d.comb += image.eq(Mux(cfg.x2apic, Cat(upid.nv, C(0, 24), upid.ndst),
                                     Cat(upid.nv, C(0, 48), XAPICNDST(upid.ndst).apic_id)))
    return AcceptedWrite(
        xapic=xapic, image=image,
        starts_high=(kind == ICRWriteKind.XAPIC_ICR_HI) | (uipi & ~cfg.x2apic),
        intercepted=x2 & ~cfg.ipiv,
        gp=x2 & cfg.ipiv & ((data[:32] & ICR_RESERVED_MASK) != 0))


def offered_in_range(write, cfg):
    """Whether T of ``write``'s image as taken (`hdl.icr_classifier.early_image`: an xAPIC
    ICR-low write's counts as 0) is at most the last PID-pointer index: each format's T
    compared straight from ``data`` and the answer chosen by kind, so that no comparator
    waits on the image's multiplexers."""
    data, kind, last = write.data, write.kind, cfg.last_pid_index
    xapic_uipi = (kind == ICRWriteKind.SENDUIPI) & ~cfg.x2apic
    return Mux(kind == ICRWriteKind.XAPIC_ICR_HI, data[24:32] <= last,
               Mux(kind == ICRWriteKind.XAPIC_ICR_LO, 1,
                   Mux(xapic_uipi, XAPICNDST(SendUIPIData(data).ndst).apic_id <= last,
                       data[32:] <= last)))


def preload_refusals(m, write, *, exit_, gp):
    """Load the payloads `refuse` gives, offering nothing: a stage that offers no output while
    idle loads them with whatever is offered, so that only the valids wait on the
    handshake."""
    preload_exit(m, exit_, icr=write.data, reason=EXIT_REASON_WRMSR,
                 qualification=WRMSR_QUALIFICATION)
    m.d.sync += [exit_.p.cause.eq(ExitCause.DISABLED), gp.p.eq(write.data)]


def refuse(m, write, accepted, *, exit_, gp):
    """Offer the outcome of a write that stores nothing (`AcceptedWrite.intercepted`: the
    WRMSR exit; ``gp``: the #GP); returns the condition that it is one."""
    with m.If(accepted.intercepted):
        load_exit(m, exit_, cause=ExitCause.DISABLED, icr=write.data,
                  reason=EXIT_REASON_WRMSR, qualification=WRMSR_QUALIFICATION)
    with m.Elif(accepted.gp):
        m.d.sync += [gp.valid.eq(1), gp.p.eq(write.data)]
    return accepted.intercepted | accepted.gp

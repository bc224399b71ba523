"""The ICR-write interceptor: first stage of the IPI-virtualization unit.

It takes one `ICRWrite` at a time. An x2APIC write while IPIv is off never reaches the
virtual APIC: the hypervisor intercepts WRMSR 0x830 then, so it is a WRMSR exit (reason 32)
with no bus transfer and no #GP check (docs/interface.md, "the x2APIC intercept"). Otherwise
it raises #GP for an x2APIC write with reserved bits set, or stores the vICR image into the
virtual-APIC page (xAPIC ICR-low writes then read VICR_HI back, since the destination lives
there), and classifies the write (docs/architecture.md §4): a virtualized self-IPI, an IPIv
posting (handed to the PID-table lookup), or an APIC-write exit whose cause is decided from
the ICR and the VMCS alone. The range and entry checks happen in the lookup.
"""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit
from .faults import Fault, ICR_INTERCEPTOR_FAULTS, check_faults
from .formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APICWriteExit, DeliveryMode, EXIT_REASON_WRMSR,
    ExitCause,
    FIRST_LEGAL_VECTOR, ICR_IPIV_INELIGIBLE_MASK, ICR_RESERVED_MASK, ICRLow, ICRWrite,
    ICRWriteKind, SendUIPIData, Shorthand, TriggerMode, VMCSConfig, XAPIC_BROADCAST_ID,
    WRMSR_QUALIFICATION, XAPIC_ICR_HI_MASK, XAPICICR, XAPICNDST, X2APICICR,
)
from .params import bus_addr_width
from .requests import PostRequest, SelfIPIRequest


__all__ = ["ICRInterceptor"]

_SEL_32 = 0x0F
_SEL_64 = 0xFF


class ICRInterceptor(wiring.Component):
    """Accepts ICR writes, stores the vICR, and classifies them.

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR (36..52); the bus word address has ``maxphyaddr - 3`` bits.
    faults : collection of hdl.faults.Fault
        Test-only deliberate defects (default none: the real design). Allowed here: those of
        ``hdl.faults.ICR_INTERCEPTOR_FAULTS`` (eligibility, the #GP handshake; each documented
        in `hdl.faults.Fault`). Others are a `ValueError`.

    Members
    -------
    cfg : In(VMCSConfig)
    icr : In(stream.Signature(ICRWrite))
    accept : In(1)
        The later stages are free; a new write is taken only while this is high.
    gp : Out(stream.Signature(64))
    exit : Out(stream.Signature(APICWriteExit))
        Exits decided here (``DISABLED``, ``UNSUPPORTED``, ``ILLEGAL_VECTOR``, ``BROADCAST``;
        the WRMSR exit of an x2APIC write with IPIv off) and bus errors of the vICR store.
    post : Out(stream.Signature(PostRequest))
    self_ipi : Out(stream.Signature(SelfIPIRequest))
    bus : Out(wishbone.Signature)
    busy : Out(1)
    """

    def __init__(self, *, maxphyaddr=52, faults=frozenset()):
        self._addr_width = bus_addr_width(maxphyaddr)
        self._faults = check_faults(faults, ICR_INTERCEPTOR_FAULTS, "ICRInterceptor")
        super().__init__({
            "cfg": In(VMCSConfig),
            "icr": In(stream.Signature(ICRWrite)),
            "accept": In(1),
            "gp": Out(stream.Signature(64)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "post": Out(stream.Signature(PostRequest)),
            "self_ipi": Out(stream.Signature(SelfIPIRequest)),
            "bus": Out(wishbone.Signature(addr_width=self._addr_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self._addr_width
        cfg = self.cfg

        kind = Signal(ICRWriteKind)
        xapic = Signal()            # this request uses the xAPIC formats
        image = Signal(64)          # the vICR image: x2APIC value or VICR_HI << 32 | VICR_LO

        lo_adr = (cfg.vapic_page + APIC_OFFSET_ICR_LO)[3:3 + aw]
        hi_adr = (cfg.vapic_page + APIC_OFFSET_ICR_HI)[3:3 + aw]

        # Classification of the image; VICR_HI comes straight from the bus while it is read.
        reading_hi = Signal()
        full = Signal(64)
        m.d.comb += full.eq(Cat(image[:32], Mux(reading_hi, self.bus.dat_r[:32], image[32:])))
        low = ICRLow(full[:32])
        dest = Mux(xapic, XAPICICR(full).high.dest, X2APICICR(full).dest)

        is_self_ipi = Signal()
        m.d.comb += is_self_ipi.eq(
            (kind == ICRWriteKind.XAPIC_ICR_LO) & cfg.vid
            & ((full[:32] & ICR_RESERVED_MASK) == 0) & (low.shorthand == Shorthand.SELF)
            & (low.trigger == TriggerMode.EDGE) & (low.delivery_mode == DeliveryMode.FIXED)
            & (low.vector >= FIRST_LEGAL_VECTOR))

        faults = self._faults
        ineligible_mask = ICR_IPIV_INELIGIBLE_MASK
        if Fault.ELIGIBLE_LEVEL_TRIGGER in faults:
            ineligible_mask &= ~(1 << 15)
        if Fault.ELIGIBLE_BIT12 in faults:
            ineligible_mask &= ~(1 << 12)

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

        def decide():
            with m.If(is_self_ipi):
                m.d.sync += [
                    self.self_ipi.valid.eq(1),
                    self.self_ipi.p.vector.eq(low.vector),
                    self.self_ipi.p.icr.eq(full),
                ]
            with m.Elif(must_exit):
                load_exit(m, self.exit, cause=cause, icr=full)
            with m.Else():
                m.d.sync += [
                    self.post.valid.eq(1),
                    self.post.p.vector.eq(low.vector),
                    self.post.p.dest.eq(dest),
                    self.post.p.icr.eq(full),
                ]
            m.next = "OUTPUT"

        def bus_error():
            # The image as known so far: a VICR_HI whose read failed stays 0.
            load_exit(m, self.exit, cause=ExitCause.BUS_ERROR, icr=image)
            m.next = "OUTPUT"

        outputs = (self.gp, self.exit, self.post, self.self_ipi)
        for out in outputs:
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)
        if Fault.GP_WITHDRAWN in faults:
            m.d.sync += self.gp.valid.eq(0)

        data = self.icr.p.data
        upid = SendUIPIData(data)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.icr.ready.eq(self.accept)
                with m.If(self.icr.valid & self.accept):
                    m.d.sync += kind.eq(self.icr.p.kind)
                    with m.Switch(self.icr.p.kind):
                        with m.Case(ICRWriteKind.XAPIC_ICR_HI):
                            m.d.sync += [xapic.eq(1),
                                         image.eq(Cat(C(0, 32), data[:32] & XAPIC_ICR_HI_MASK))]
                            m.next = "STORE_HI"
                        with m.Case(ICRWriteKind.XAPIC_ICR_LO):
                            m.d.sync += [xapic.eq(1), image.eq(data[:32])]
                            m.next = "STORE_LO"
                        with m.Case(ICRWriteKind.X2APIC_ICR):
                            m.d.sync += [xapic.eq(0), image.eq(data)]
                            with m.If(~cfg.ipiv):
                                load_exit(m, self.exit, cause=ExitCause.DISABLED, icr=data,
                                          reason=EXIT_REASON_WRMSR,
                                          qualification=WRMSR_QUALIFICATION)
                                m.next = "OUTPUT"
                            with m.Elif((data[:32] & ICR_RESERVED_MASK) != 0):
                                m.d.sync += [self.gp.valid.eq(1), self.gp.p.eq(data)]
                                m.next = "OUTPUT"
                            with m.Else():
                                m.next = "STORE_LO"
                        with m.Case(ICRWriteKind.SENDUIPI):
                            m.d.sync += xapic.eq(~cfg.x2apic)
                            with m.If(cfg.x2apic):
                                m.d.sync += image.eq(Cat(upid.nv, C(0, 24), upid.ndst))
                                m.next = "STORE_LO"
                            with m.Else():
                                ndst = XAPICNDST(upid.ndst)
                                m.d.sync += image.eq(Cat(upid.nv, C(0, 48), ndst.apic_id))
                                m.next = "STORE_HI"

            with m.State("STORE_HI"):
                wishbone.drive(m, self.bus, adr=hi_adr, we=1, sel=_SEL_32, dat_w=image[32:])
                with m.If(self.bus.err):
                    bus_error()
                with m.Elif(self.bus.ack):
                    with m.If(kind == ICRWriteKind.XAPIC_ICR_HI):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "STORE_LO"

            with m.State("STORE_LO"):
                wishbone.drive(m, self.bus, adr=lo_adr, we=1, sel=Mux(xapic, _SEL_32, _SEL_64),
                               dat_w=Mux(xapic, image[:32], image))
                with m.If(self.bus.err):
                    bus_error()
                with m.Elif(self.bus.ack):
                    with m.If(kind == ICRWriteKind.XAPIC_ICR_LO):
                        m.next = "READ_HI"
                    with m.Else():
                        decide()

            with m.State("READ_HI"):
                m.d.comb += reading_hi.eq(1)
                wishbone.drive(m, self.bus, adr=hi_adr, sel=_SEL_32)
                with m.If(self.bus.err):
                    bus_error()
                with m.Elif(self.bus.ack):
                    m.d.sync += image.eq(full)
                    decide()

            with m.State("OUTPUT"):
                # Leave as the output is taken, so the next write can be accepted at once.
                taken = sum(out.valid & out.ready for out in outputs) != 0
                if Fault.GP_WITHDRAWN in faults:
                    taken = taken | self.gp.valid
                with m.If(taken):
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

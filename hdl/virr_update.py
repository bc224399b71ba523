"""The virtual-IRR update of a virtualized self-IPI.

Sets bit V of the virtual IRR (the 32-bit word at offset 200H + 10H*(V/32) of the
virtual-APIC page) with a locked read-modify-write, then offers V on ``self_ipi`` so the
consumer can raise RVI.
"""

from amaranth import C, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit
from .faults import Fault, VIRR_UPDATE_FAULTS, check_faults
from .formats import APIC_OFFSET_IRR, APICWriteExit, ExitCause, VMCSConfig
from .params import bus_addr_width
from .requests import SelfIPIRequest


__all__ = ["VIRRUpdate"]

_SEL_32 = 0x0F


class VIRRUpdate(wiring.Component):
    """Sets bit V of the virtual IRR and offers V on ``self_ipi``.

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR (36..52); the bus word address has ``maxphyaddr - 3`` bits.
    faults : collection of hdl.faults.Fault
        Test-only deliberate defects (default none: the real design). Allowed here: those of
        ``hdl.faults.VIRR_UPDATE_FAULTS`` (each documented in `hdl.faults.Fault`). Others are
        a `ValueError`.

    Members
    -------
    cfg : In(VMCSConfig)
    request : In(stream.Signature(SelfIPIRequest))
    self_ipi : Out(stream.Signature(8))
    exit : Out(stream.Signature(APICWriteExit))
        Bus errors only.
    bus : Out(wishbone.Signature)
    busy : Out(1)
    completing : Out(1)
        The update ends at this clock edge and its ``self_ipi`` is registered at the same edge.
    """

    def __init__(self, *, maxphyaddr=52, faults=frozenset()):
        self._addr_width = bus_addr_width(maxphyaddr)
        self._faults = check_faults(faults, VIRR_UPDATE_FAULTS, "VIRRUpdate")
        super().__init__({
            "cfg": In(VMCSConfig),
            "request": In(stream.Signature(SelfIPIRequest)),
            "self_ipi": Out(stream.Signature(8)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "bus": Out(wishbone.Signature(addr_width=self._addr_width)),
            "busy": Out(1),
            "completing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self._addr_width
        req = self.request.p
        bus = self.bus

        # IRR registers are 10H apart, so each sits in bits 31:0 of its 64-bit word.
        irr_adr = (self.cfg.vapic_page + APIC_OFFSET_IRR + Cat(C(0, 4), req.vector[5:8]))[3:3 + aw]
        if Fault.IRR_WRONG_WORD in self._faults:
            irr_adr = (self.cfg.vapic_page + APIC_OFFSET_IRR + 8 +
                       Cat(C(0, 4), req.vector[5:8]))[3:3 + aw]
        irr_bit = Signal(32)
        m.d.comb += irr_bit.eq(C(1, 32) << req.vector[:5])
        word = Signal(32)
        self_ipi_free = ~self.self_ipi.valid | self.self_ipi.ready

        for out in (self.self_ipi, self.exit):
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)

        def bus_error():
            m.d.comb += self.request.ready.eq(1)
            load_exit(m, self.exit, cause=ExitCause.BUS_ERROR, icr=req.icr)
            m.next = "OUTPUT"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.request.valid):
                    wishbone.drive(m, bus, adr=irr_adr, sel=_SEL_32, lock=1)
                    with m.If(bus.err):
                        bus_error()
                    with m.Elif(bus.ack):
                        m.d.sync += word.eq(bus.dat_r[:32])
                        m.next = "WRITE"

            with m.State("WRITE"):
                wishbone.drive(m, bus, adr=irr_adr, we=1, sel=_SEL_32, dat_w=word | irr_bit,
                               lock=1)
                with m.If(bus.err):
                    bus_error()
                with m.Elif(bus.ack):
                    m.d.comb += self.request.ready.eq(1)
                    m.d.sync += word.eq(req.vector)     # keep V for a delayed output
                    with m.If(self_ipi_free):
                        m.d.comb += self.completing.eq(1)
                        m.d.sync += [self.self_ipi.valid.eq(1), self.self_ipi.p.eq(req.vector)]
                        m.next = "IDLE"
                    with m.Else():
                        if Fault.SELF_IPI_OVERWRITTEN in self._faults:
                            m.d.comb += self.completing.eq(1)
                            m.d.sync += [self.self_ipi.valid.eq(1),
                                         self.self_ipi.p.eq(req.vector)]
                            m.next = "IDLE"
                        else:
                            m.next = "OFFER"

            with m.State("OFFER"):
                with m.If(self_ipi_free):
                    m.d.sync += [self.self_ipi.valid.eq(1), self.self_ipi.p.eq(word[:8])]
                    m.next = "IDLE"

            with m.State("OUTPUT"):
                with m.If(self.exit.ready):
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

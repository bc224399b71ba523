"""The virtual-IRR update of a virtualized self-IPI.

Sets bit V of the virtual IRR (the 32-bit word at offset 200H + 10H*(V/32) of the
virtual-APIC page) with a locked read-modify-write, then offers V on ``self_ipi`` so the
consumer can raise RVI.
"""

from amaranth import C, Cat, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit
from .formats import APIC_OFFSET_IRR, APICWriteExit, ExitCause, SEL_DWORD, VMCSConfig
from .fsm import transition_table
from .params import bus_addr_width
from .requests import SelfIPIRequest


__all__ = ["VIRRUpdate"]


class VIRRUpdate(wiring.Component):
    """Sets bit V of the virtual IRR and offers V on ``self_ipi``.

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR (36..52); the bus word address has ``maxphyaddr - 3`` bits.

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

    Attributes
    ----------
    state : Signal(VIRRUpdate.State)
        The stage's state register (public: the proofs, coverage and waves read it).
    word : Signal(32)
        The IRR word read (in ``WRITE``), then V (bits 7:0, in ``OFFER``).
    """

    class State(enum.Enum, shape=2):
        IDLE = 0                # (and the IRR read, presented with the request)
        WRITE = 1
        OFFER = 2               # waits for the self-IPI register
        OUTPUT = 3              # offers a bus-error exit

    #: Every (from, to) the state register can take; proven complete by ``ipiv prove
    #: invariants``.
    TRANSITIONS = transition_table(State, """
        IDLE   -> IDLE OUTPUT WRITE
        WRITE  -> WRITE OUTPUT IDLE OFFER
        OFFER  -> OFFER IDLE
        OUTPUT -> OUTPUT IDLE
    """)

    def __init__(self, *, maxphyaddr=52):
        self._addr_width = bus_addr_width(maxphyaddr)
        super().__init__({
            "cfg": In(VMCSConfig),
            "request": In(stream.Signature(SelfIPIRequest)),
            "self_ipi": Out(stream.Signature(8)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "bus": Out(wishbone.Signature(addr_width=self._addr_width)),
            "busy": Out(1),
            "completing": Out(1),
        })
        self.state = Signal(self.State, name="state")
        self.word = Signal(32, name="word")

    # -- the steps (hdl.mutants overrides some of them) -------------------------------------

    def irr_address(self, req):
        """IRR registers are 10H apart, so each sits in bits 31:0 of its 64-bit word."""
        return (self.cfg.vapic_page + APIC_OFFSET_IRR +
                Cat(C(0, 4), req.vector[5:8]))[3:3 + self._addr_width]

    def go(self, m, state):
        m.d.sync += self.state.eq(state)

    def bus_error(self, m):
        m.d.comb += self.request.ready.eq(1)
        load_exit(m, self.exit, cause=ExitCause.BUS_ERROR, icr=self.request.p.icr)
        self.go(m, self.State.OUTPUT)

    def offer(self, m):
        """The self-IPI register is free as the update ends: fill it, done."""
        m.d.comb += self.completing.eq(1)
        m.d.sync += [self.self_ipi.valid.eq(1), self.self_ipi.p.eq(self.request.p.vector)]
        self.go(m, self.State.IDLE)

    def wait_to_offer(self, m):
        """The previous self-IPI is still offered: wait for it in ``OFFER``."""
        self.go(m, self.State.OFFER)

    def read(self, m, irr_adr):
        with m.If(self.request.valid):
            wishbone.drive(m, self.bus, adr=irr_adr, sel=SEL_DWORD, lock=1)
            with m.If(self.bus.err):
                self.bus_error(m)
            with m.Elif(self.bus.ack):
                m.d.sync += self.word.eq(self.bus.dat_r[:32])
                self.go(m, self.State.WRITE)

    def write(self, m, irr_adr):
        req = self.request.p
        irr_bit = C(1, 32) << req.vector[:5]
        wishbone.drive(m, self.bus, adr=irr_adr, we=1, sel=SEL_DWORD, dat_w=self.word | irr_bit,
                       lock=1)
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            m.d.comb += self.request.ready.eq(1)
            m.d.sync += self.word.eq(req.vector)     # keep V for a delayed output
            with m.If(~self.self_ipi.valid | self.self_ipi.ready):
                self.offer(m)
            with m.Else():
                self.wait_to_offer(m)

    def elaborate(self, platform):
        m = Module()
        irr_adr = self.irr_address(self.request.p)
        for out in (self.self_ipi, self.exit):
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)

        S = self.State
        with m.Switch(self.state):
            with m.Case(S.IDLE):
                self.read(m, irr_adr)
            with m.Case(S.WRITE):
                self.write(m, irr_adr)
            with m.Case(S.OFFER):
                with m.If(~self.self_ipi.valid | self.self_ipi.ready):
                    m.d.sync += [self.self_ipi.valid.eq(1), self.self_ipi.p.eq(self.word[:8])]
                    self.go(m, S.IDLE)
            with m.Case(S.OUTPUT):
                with m.If(self.exit.ready):
                    self.go(m, S.IDLE)

        m.d.comb += self.busy.eq(self.state != S.IDLE)
        return m

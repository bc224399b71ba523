"""The virtual-IRR update of a virtualized self-IPI.

Sets bit V of the virtual IRR (the 32-bit word at offset 200H + 10H*(V/32) of the
virtual-APIC page) with a locked read-modify-write, then offers V on ``self_ipi`` so the
consumer can raise RVI.
"""

from amaranth import C, Signal
from amaranth.lib import enum, stream
from amaranth.lib.wiring import In, Out

from . import wishbone
from .formats import APICWriteExit, SEL_DWORD
from .fsm import transition_table
from .requests import SelfIPIRequest
from .stage import Stage


__all__ = ["VIRRUpdate"]


class VIRRUpdate(Stage):
    """Sets bit V of the virtual IRR and offers V on ``self_ipi``.

    A `hdl.stage.Stage`: see there for ``maxphyaddr``, ``cfg``, ``bus``, ``busy`` and
    ``state``.

    Members
    -------
    request : In(stream.Signature(SelfIPIRequest))
    self_ipi : Out(stream.Signature(8))
    exit : Out(stream.Signature(APICWriteExit))
        Bus errors only.
    completing : Out(1)
        The update ends at this clock edge and its ``self_ipi`` is registered at the same edge.

    Attributes
    ----------
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
        super().__init__({
            "request": In(stream.Signature(SelfIPIRequest)),
            "self_ipi": Out(stream.Signature(8)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "completing": Out(1),
        }, maxphyaddr=maxphyaddr)
        self.word = Signal(32, name="word")

    @property
    def outputs(self):
        return (self.self_ipi, self.exit)

    # -- the steps (hdl.mutants overrides some of them) -------------------------------------

    def irr_address(self, req):
        """IRR registers are 10H apart, so each sits in bits 31:0 of its 64-bit word (the
        interceptor sums the address, `SelfIPIRequest.irr_adr`)."""
        return req.irr_adr[:self._addr_width]

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

    def machine(self, m):
        irr_adr = self.irr_address(self.request.p)
        # Presented in every cycle: the unit's arbiter passes it on only with cyc, so it needs
        # no gate of its own.
        m.d.comb += self.bus.adr.eq(irr_adr)
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

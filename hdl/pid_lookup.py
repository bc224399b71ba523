"""The PID-pointer-table lookup: second stage of an IPIv posting.

Ends a posting whose virtual destination T is above the last PID-pointer index (compared by
the interceptor, `PostRequest.in_range`), reads the 8-byte entry at ``pid_table + 8*T``
(summed by the interceptor, `PostRequest.entry_adr`) and checks it (bits 5:0 == 000001b,
nothing at or above MAXPHYADDR);
hands the PID address on to the PID update unit or ends the request as an APIC-write exit
(``INDEX_RANGE``, ``ENTRY_INVALID``, ``BUS_ERROR``). No entry is read when T is out of range.
"""

from amaranth.lib import enum, stream
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit, preload_exit
from .formats import (
    APICWriteExit, ExitCause, PID_POINTER_ENTRY_LOW_MASK, PID_POINTER_ENTRY_VALID,
    PIDPointerEntry,
)
from .fsm import transition_table
from .params import check_maxphyaddr
from .requests import PIDPostRequest, PostRequest
from .stage import Stage


__all__ = ["PIDLookup"]


class PIDLookup(Stage):
    """Looks the destination up in the PID-pointer table.

    A `hdl.stage.Stage`: see there for ``cfg``, ``bus``, ``busy`` and ``state``.

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR (36..52): entries with a bit at or above it set are invalid.

    Members
    -------
    request : In(stream.Signature(PostRequest))
    post : Out(stream.Signature(PIDPostRequest))
    exit : Out(stream.Signature(APICWriteExit))
    """

    class State(enum.Enum, shape=1):
        IDLE = 0                # (and the entry read, presented with the request)
        OUTPUT = 1              # a posting or an exit offered

    #: Every (from, to) the state register can take; proven complete by ``ipiv prove
    #: invariants``.
    TRANSITIONS = transition_table(State, """
        IDLE   -> IDLE OUTPUT
        OUTPUT -> OUTPUT IDLE
    """)

    def __init__(self, *, maxphyaddr=52):
        self._maxphyaddr = check_maxphyaddr(maxphyaddr)
        super().__init__({
            "request": In(stream.Signature(PostRequest)),
            "post": Out(stream.Signature(PIDPostRequest)),
            "exit": Out(stream.Signature(APICWriteExit)),
        }, maxphyaddr=maxphyaddr)

    @property
    def outputs(self):
        return (self.post, self.exit)

    # -- the steps (hdl.mutants overrides some of them) -------------------------------------

    def in_range(self, req):
        """T is at most the last PID-pointer index (the interceptor compares them as it
        decides the posting, so that the entry read waits on no comparator)."""
        return req.in_range

    def entry_ok(self, entry):
        """Bits 5:0 are 000001b and nothing is set at or above MAXPHYADDR."""
        return ((entry & PID_POINTER_ENTRY_LOW_MASK) == PID_POINTER_ENTRY_VALID) & \
            (entry[self._maxphyaddr:] == 0)

    def hand_on(self, m, entry):
        """Hand the PID address of ``entry`` on to the PID update."""
        req = self.request.p
        m.d.sync += [self.post.valid.eq(1), self.post.p.vector.eq(req.vector),
                     self.post.p.pid_line.eq(PIDPointerEntry(entry).pid_line),
                     self.post.p.icr.eq(req.icr)]

    def entry_invalid(self, m, entry):
        load_exit(m, self.exit, cause=ExitCause.ENTRY_INVALID, icr=self.request.p.icr)

    def preload(self, m):
        """No output is offered in IDLE: load both payloads with the request, so that only
        ``valid`` and the exit's cause wait on the range check and the answer."""
        req = self.request.p
        preload_exit(m, self.exit, icr=req.icr)
        m.d.sync += [self.post.p.vector.eq(req.vector),
                     self.post.p.pid_line.eq(PIDPointerEntry(self.bus.dat_r).pid_line),
                     self.post.p.icr.eq(req.icr)]

    def look_up(self, m, entry_adr):
        """The bound check, then the entry read, presented with the request."""
        with m.If(~self.in_range(self.request.p)):
            self.end_with_exit(m, ExitCause.INDEX_RANGE)
        with m.Else():
            wishbone.drive(m, self.bus, adr=entry_adr)
            entry = self.bus.dat_r
            with m.If(self.bus.err):
                self.bus_error(m)
            with m.Elif(self.bus.ack):
                m.d.comb += self.request.ready.eq(1)
                with m.If(self.entry_ok(entry)):
                    self.hand_on(m, entry)
                with m.Else():
                    self.entry_invalid(m, entry)
                self.go(m, self.State.OUTPUT)

    def machine(self, m):
        entry_adr = self.request.p.entry_adr[:self._addr_width]     # summed by the interceptor
        # Presented in every cycle: the unit's arbiter passes it on only with cyc, so it needs
        # no gate of its own.
        m.d.comb += self.bus.adr.eq(entry_adr)
        S = self.State
        with m.Switch(self.state):
            with m.Case(S.IDLE):
                with m.If(self.request.valid):
                    self.preload(m)
                    self.look_up(m, entry_adr)
            with m.Case(S.OUTPUT):
                with m.If(self.output_taken()):
                    self.go(m, S.IDLE)

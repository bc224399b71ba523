"""One round trip on a Wishbone B4 pipelined port: up to `MAX_REQUESTS` requests issued back to
back, their answers collected in order.

The sequencer of the pipelined unit (`hdl.pipelined_sequencer`) offers, each cycle, the
requests of its current round trip (``count`` of them, in ``requests``). The issuer presents
them one after the other (a request is taken in a cycle with ``cyc & stb & ~stall``), counts
the answers (``ack`` or ``err``, one per request, in order) and says when the last one is in
(``done``). An ``err`` stops the issuing: no request is presented in or after the cycle it
arrives, and the round trip ends when every request taken has been answered
(docs/interface.md, "The pipelined memory port").

``lock`` is exact: high from the cycle the first locked request is taken until the answer
that ends the round trip, and further while ``keep_lock`` (the sequencer's next round trip is
locked too; ``cyc`` stays high meanwhile).
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .formats import BUS_BYTES


__all__ = ["PipelinedIssuer", "RoundTripSignature", "MAX_REQUESTS", "request_layout"]

#: Requests of one round trip at most (xAPIC SENDUIPI: two stores and the entry read).
MAX_REQUESTS = 3


def request_layout(addr_width):
    """One request: the bus fields a master presents with ``stb``."""
    return data.StructLayout({"adr": addr_width, "we": 1, "sel": BUS_BYTES,
                              "dat_w": 8 * BUS_BYTES, "lock": 1})


class RoundTripSignature(wiring.Signature):
    """The round trips a sequencer hands to the issuer (the sequencer's view).

    Members
    -------
    requests : Out(request_layout).array(MAX_REQUESTS)
        The current round trip's requests, held stable while it lasts.
    count : Out(range(MAX_REQUESTS + 1))
        How many of ``requests`` the current round trip has (0: none).
    keep_lock : Out(1)
        Keep ``cyc`` and ``lock`` high after this round trip ends (a locked one follows).
    answers : In(64).array(MAX_REQUESTS)
        Read data of each request, registered: there from the cycle after its answer (the
        answer arriving now is ``last``), so that no reader waits on the answer's steering.
    last : In(64)
        The read data of the answer arriving in this cycle (the bus's ``dat_r``): with
        ``done``, the last request's, which needs no steering by ``ack``.
    done : In(1)
        The round trip's last answer arrives in this cycle; the next round trip's requests
        may be presented in the next cycle.
    error : In(1)
        With ``done``: some request of this round trip was answered with ``err``.
    """

    def __init__(self, *, addr_width):
        super().__init__({
            "requests": Out(request_layout(addr_width)).array(MAX_REQUESTS),
            "count": Out(range(MAX_REQUESTS + 1)),
            "keep_lock": Out(1),
            "answers": In(8 * BUS_BYTES).array(MAX_REQUESTS),
            "last": In(8 * BUS_BYTES),
            "done": In(1),
            "error": In(1),
        })


class PipelinedIssuer(wiring.Component):
    """Issues one round trip's requests and collects their answers.

    Parameters
    ----------
    addr_width : int

    Members
    -------
    trip : In(RoundTripSignature)
    bus : Out(wishbone.Signature(pipelined=True))

    Attributes
    ----------
    issued, answered : Signal(range(MAX_REQUESTS + 1))
        Requests of this round trip taken, and answered (public: proofs and waves read them).
    erred : Signal(1)
        An ``err`` has been seen in this round trip.
    locked : Signal(1)
        The lock window is open (a locked request was taken and the window not yet closed).
    one_out : Signal(1)
        Exactly one request is outstanding (``answered + 1 == issued``).
    all_issued : Signal(1)
        Every request of the round trip is taken (``issued == trip.count``, nonzero).

    ``one_out`` and ``all_issued`` are the counters' comparisons registered a cycle ahead, so
    that ``done`` is one gate of the answer and registers (``count`` is held while a round
    trip lasts).
    """

    def __init__(self, *, addr_width):
        super().__init__({
            "trip": In(RoundTripSignature(addr_width=addr_width)),
            "bus": Out(wishbone.Signature(addr_width=addr_width, pipelined=True)),
        })
        self.issued = Signal(range(MAX_REQUESTS + 1), name="issued")
        self.answered = Signal(range(MAX_REQUESTS + 1), name="answered")
        self.erred = Signal(name="erred")
        self.locked = Signal(name="locked")
        self.one_out = Signal(name="one_out")
        self.all_issued = Signal(name="all_issued")

    # -- the steps (hdl.mutants overrides some of them) -------------------------------------

    def lock(self, taken, current):
        """``lock``: the window is open, or a locked request is taken in this cycle."""
        return self.locked | (taken & current.lock)

    def last_answer(self):
        """The answer arriving in this cycle ends the round trip: the one outstanding, and an
        ``err`` or every request taken (nothing is issued after an ``err``)."""
        bus = self.bus
        return self.one_out & (bus.err | (bus.ack & (self.erred | self.all_issued)))

    def slot_answered(self):
        """The request the arriving answer belongs to (in order: the oldest outstanding)."""
        return self.answered

    def elaborate(self, platform):
        m = Module()
        bus, trip = self.bus, self.trip
        outstanding = self.answered != self.issued
        answer = (bus.ack | bus.err) & outstanding
        stop = self.erred | (answer & bus.err)         # nothing is issued in or after an err
        present = (self.issued < trip.count) & ~stop
        flat = trip.requests[0].as_value()
        for i in range(1, MAX_REQUESTS):
            flat = Mux(self.issued == i, trip.requests[i].as_value(), flat)
        current = data.View(trip.requests[0].shape(), flat)      # the request presented
        taken = present & ~bus.stall

        m.d.comb += [
            bus.cyc.eq(present | outstanding | self.locked),
            bus.stb.eq(present),
            bus.adr.eq(current.adr), bus.we.eq(current.we), bus.sel.eq(current.sel),
            bus.dat_w.eq(current.dat_w),
            bus.lock.eq(self.lock(taken, current)),
            # Read with done only, when the arriving answer is the one outstanding.
            trip.error.eq(self.erred | bus.err),
            trip.last.eq(bus.dat_r),
            trip.done.eq(self.last_answer()),
        ]

        registers = [Signal(8 * BUS_BYTES, name=f"answer_{i}") for i in range(MAX_REQUESTS)]
        slot = self.slot_answered()
        for i, (reg, out) in enumerate(zip(registers, trip.answers)):
            with m.If(answer & (slot == i)):
                m.d.sync += reg.eq(bus.dat_r)
            m.d.comb += out.eq(reg)

        with m.If(trip.done):
            m.d.sync += [self.issued.eq(0), self.answered.eq(0), self.erred.eq(0),
                         self.locked.eq(trip.keep_lock & ~trip.error), self.one_out.eq(0),
                         self.all_issued.eq(0)]
        with m.Else():
            m.d.sync += self.one_out.eq(self.answered + answer + 1 == self.issued + taken)
            with m.If(taken):
                m.d.sync += [self.issued.eq(self.issued + 1),
                             self.all_issued.eq(self.issued + 1 == trip.count)]
                with m.If(current.lock):
                    m.d.sync += self.locked.eq(1)
            with m.If(answer):
                m.d.sync += self.answered.eq(self.answered + 1)
                with m.If(bus.err):
                    m.d.sync += self.erred.eq(1)
        return m

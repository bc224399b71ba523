"""The formal harness's pipelined memory: which answers a legal Wishbone B4 pipelined slave
may give (docs/interface.md, "The pipelined memory port").

- A request is taken in a cycle with ``cyc & stb & ~stall``; ``stall`` is free.
- Every answer (``ack`` or ``err``, never both) is for a request taken in an earlier cycle
  and not yet answered, in the order taken: never in the cycle a request is taken, never
  for a request not taken, and only while ``cyc`` is high. Any request may be answered with
  ``err``, after any number of wait states.
- With a latency bound (the ``completion`` check only), ``stall`` stays low and each request
  is answered at most ``latency`` cycles after it is taken (round trip R = latency + 1).

The memory keeps the requests outstanding (the address of each, for the witness
environment's read data, and its age, for the latency bound).
"""

from amaranth import Mux, Signal
from amaranth.hdl import Assume


__all__ = ["PipelinedMemory", "MAX_OUTSTANDING", "TRACKED"]

#: The outstanding count saturates here (a unit never has more than 3 requests outstanding,
#: which the invariants prove; up to this many the model is exact).
MAX_OUTSTANDING = 7
#: Outstanding requests whose address and age are kept.
TRACKED = 4


class PipelinedMemory:
    """The memory side of ``bus`` (built into ``m``): the assumptions above.

    Attributes (Amaranth values of the current cycle): ``take`` (a request is taken),
    ``answer`` (``ack`` or ``err``), ``outstanding`` (requests taken in earlier cycles and not
    answered before this one), ``answer_address`` and ``oldest_age`` (the word address of the
    request the next answer is for, and the cycles since it was taken).
    """

    def __init__(self, m, bus, *, latency=None):
        if latency is not None and latency < 1:
            raise ValueError(f"a pipelined memory answers at least 1 cycle after a request is "
                             f"taken, not {latency}")
        self.take = bus.cyc & bus.stb & ~bus.stall
        self.answer = bus.ack | bus.err
        self.outstanding = Signal(range(MAX_OUTSTANDING + 1), name="mem_outstanding")
        m.d.comb += [
            Assume(~(bus.ack & bus.err)),
            Assume(~self.answer | ((self.outstanding != 0) & bus.cyc)),
        ]
        after = self.outstanding - self.answer + self.take
        with m.If(after <= MAX_OUTSTANDING):
            m.d.sync += self.outstanding.eq(after)
        with m.Else():
            m.d.sync += self.outstanding.eq(MAX_OUTSTANDING)
        self._track(m, bus, latency)

    def _track(self, m, bus, latency):
        """Each outstanding request's address and age (cycles since it was taken), oldest
        first; with ``latency``, the oldest is answered by then and nothing stalls."""
        cap = (latency or 1) + 1
        adrs = [Signal(len(bus.adr), name=f"mem_adr_{i}") for i in range(TRACKED)]
        ages = [Signal(range(cap + 1), name=f"mem_age_{i}") for i in range(TRACKED)]
        self.answer_address, self.oldest_age = adrs[0], ages[0]
        slot = self.outstanding - self.answer       # where a request taken now goes
        for i in range(TRACKED):
            adr, age = (adrs[i], ages[i]) if i + 1 == TRACKED else \
                (Mux(self.answer, adrs[i + 1], adrs[i]), Mux(self.answer, ages[i + 1], ages[i]))
            with m.If(self.take & (slot == i)):
                m.d.sync += [adrs[i].eq(bus.adr), ages[i].eq(1)]
            with m.Else():
                m.d.sync += [adrs[i].eq(adr), ages[i].eq(Mux(age < cap, age + 1, age))]
        if latency is not None:
            m.d.comb += [
                Assume(~bus.stall),
                Assume(~((self.outstanding != 0) & (ages[0] >= latency)) | self.answer),
            ]

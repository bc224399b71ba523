"""Event counters that are read out one byte at a time by rotating them as one chain.

Rotating all counters by a byte per read step needs one multiplexer input per bit, where a
byte-wide read multiplexer over every counter would cost far more LUTs on an iCE40; after
``n * width / 8`` steps the counters hold their values again.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["EventCounters"]


class EventCounters(wiring.Component):
    """``n`` counters of ``width`` bits, each adding its own increment every cycle.

    Parameters
    ----------
    n : int
    width : int
        A multiple of 8.
    inc_width : int
        Width of each increment.

    Members
    -------
    inc : In(inc_width).array(n)
        Added every cycle (wrapping) unless ``clear`` or ``shift``.
    clear : In(1)
        Zero every counter.
    shift : In(1)
        Rotate the chain by one byte: counter 0's low byte leaves, counter ``k + 1``'s low
        byte moves to the top of counter ``k``, counter 0's low byte to the top of the last.
    byte : Out(8)
        Counter 0's low byte: with ``shift``, the counters leave byte by byte, counter 0
        first, each little-endian.
    """

    def __init__(self, n, *, width, inc_width):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, not {n!r}")
        if not isinstance(width, int) or width < 8 or width % 8:
            raise ValueError(f"width must be a positive multiple of 8, not {width!r}")
        self.n = n
        self.width = width
        super().__init__({
            "inc": In(inc_width).array(n),
            "clear": In(1),
            "shift": In(1),
            "byte": Out(8),
        })
        self.counts = [Signal(width, name=f"count{i}") for i in range(n)]

    def elaborate(self, platform):
        m = Module()
        w = self.width
        chain = Cat(*self.counts)
        rotated = Cat(chain[8:], chain[:8])
        m.d.comb += self.byte.eq(chain[:8])
        for i, count in enumerate(self.counts):
            with m.If(self.clear):
                m.d.sync += count.eq(0)
            with m.Elif(self.shift):
                m.d.sync += count.eq(rotated[w * i:w * (i + 1)])
            with m.Else():
                m.d.sync += count.eq(count + self.inc[i])
        return m

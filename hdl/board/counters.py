"""Event counters kept in a block RAM, with a small pending sum per counter in flip-flops.

Thirty-two flip-flops, an adder and a readout multiplexer per counter cost about 100 logic
cells each on an iCE40; here every counter only has a pending sum as wide as the events of
``n`` cycles can make it (a few bits), and one shared adder folds the pending sums into the
RAM, one counter per cycle in turn. Each pending sum is therefore emptied every ``n`` cycles
and cannot overflow. All sums are modulo ``2**width``; a counter whose pending sum would be
as wide as the counter (the digest's) keeps its whole sum in flip-flops instead and is never
folded, so the shared adder and the pending sum taken for it stay a few bits wide. A clear
zeroes the pending sums at once and the RAM words by the next round of folds, which write
the pending sums alone.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["EventCounters"]


class EventCounters(wiring.Component):
    """``n`` counters of ``width`` bits, each adding its own increment every cycle.

    Parameters
    ----------
    n : int
        At least 2.
    width : int
    inc_widths : int or sequence of int
        Width of each counter's increment (one for all, or one per counter).

    Members
    -------
    inc : In(...) per counter
        Added every cycle (wrapping) unless ``clear``. ``inc[i]`` has ``inc_widths[i]`` bits.
    clear : In(1)
        Zero every counter (the increments of this cycle are dropped).
    settled : Out(1)
        As of the previous cycle: ``n`` folds have passed since the last increment and the
        last clear, so every pending sum went to the RAM; with no new increments since,
        ``read_data`` gives the totals.
    read_en : In(1)
        Read counter ``read_addr`` (the folding waits this cycle: read only while no
        events come, as after a run).
    read_addr : In(range(n))
    read_data : Out(width)
        The counter read in the previous cycle (valid when ``settled`` held then).
    """

    def __init__(self, n, *, width, inc_widths):
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer of at least 2, not {n!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if isinstance(inc_widths, int):
            inc_widths = [inc_widths] * n
        inc_widths = list(inc_widths)
        if len(inc_widths) != n or any(not isinstance(w, int) or w < 1 for w in inc_widths):
            raise ValueError(f"inc_widths must be {n} positive integers, not {inc_widths!r}")
        self.n = n
        self.width = width
        self.inc_widths = inc_widths
        # Between two folds of a counter its pending sum takes the increments of n cycles.
        self.pending_widths = [min(width, ((2 ** w - 1) * n).bit_length()) for w in inc_widths]
        # Counters kept whole in flip-flops (their pending sum is the counter).
        self.in_flops = [i for i, pw in enumerate(self.pending_widths) if pw == width]
        super().__init__({
            **{f"inc{i}": In(w) for i, w in enumerate(inc_widths)},
            "clear": In(1),
            "settled": Out(1),
            "read_en": In(1),
            "read_addr": In(range(n)),
            "read_data": Out(width),
        })
        self.inc = [getattr(self, f"inc{i}") for i in range(n)]

    def elaborate(self, platform):
        m = Module()
        n, w = self.n, self.width
        # As in `VMMemory`: an asynchronous read port and a register, which Yosys merges into
        # a block RAM port; the fold never reads the word it writes in the same cycle.
        m.submodules.ram = ram = memory.Memory(shape=w, depth=n, init=[],
                                               attrs={"no_rw_check": 1})
        rd = ram.read_port(domain="comb")
        wr = ram.write_port()
        rdata = Signal(w)
        m.d.sync += rdata.eq(rd.data)

        pending = [Signal(pw, name=f"pending{i}") for i, pw in enumerate(self.pending_widths)]
        turn = Signal(range(n))         # the counter folded this cycle
        fold = Signal()                 # a fold step this cycle (not a read)
        # From a clear until the fold of the last counter: folds replace the RAM word (one
        # flag instead of a "cleared" bit per counter and its multiplexers).
        clearing = Signal()
        # The fold's second cycle: the counter's RAM word arrives, its pending sum was taken.
        taken = Signal(max((pw for i, pw in enumerate(self.pending_widths)
                            if i not in self.in_flops), default=1))
        taken_index = Signal(range(n))
        taken_clearing = Signal()
        taken_valid = Signal()

        m.d.comb += [
            fold.eq(~self.read_en & ~self.clear),
            rd.addr.eq(Mux(self.read_en, self.read_addr, turn)),
            wr.addr.eq(taken_index),
            wr.data.eq(Mux(taken_clearing, 0, rdata) + taken),
            wr.en.eq(taken_valid),
        ]
        # Folds since the last increment or clear (up to n): after n, each pending sum has
        # been taken and, a cycle later, written (cheaper than testing every pending sum). A
        # counter in flip-flops holds its total a cycle after each increment: not watched.
        quiet = Signal(range(n + 1))
        counting = Cat(*[inc for i, inc in enumerate(self.inc) if i not in self.in_flops]).any()
        with m.If(self.clear | counting):
            m.d.sync += quiet.eq(0)
        with m.Elif(fold & (quiet != n)):
            m.d.sync += quiet.eq(quiet + 1)
        # Registered: the increments come from deep in the units, the reader's decision must
        # not wait for them.
        m.d.sync += self.settled.eq((quiet == n) & ~self.clear & ~counting)
        m.d.sync += [
            taken_valid.eq(fold),
            taken_index.eq(turn),
            taken.eq(Array(Const(0) if i in self.in_flops else acc
                           for i, acc in enumerate(pending))[turn]),
            taken_clearing.eq(clearing),
        ]
        with m.If(self.clear):
            m.d.sync += [turn.eq(0), clearing.eq(1), taken_valid.eq(0)]
        with m.Elif(fold):
            m.d.sync += turn.eq(Mux(turn == n - 1, 0, turn + 1))
            with m.If(turn == n - 1):
                m.d.sync += clearing.eq(0)
        for i, (inc, acc) in enumerate(zip(self.inc, pending)):
            folded = 0 if i in self.in_flops else fold & (turn == i)
            with m.If(self.clear):
                m.d.sync += acc.eq(0)
            with m.Elif(folded):
                m.d.sync += acc.eq(inc)
            with m.Else():
                m.d.sync += acc.eq(acc + inc)
        self._read(m, rdata, pending)
        return m

    def _read(self, m, rdata, pending):
        """``read_data``: the RAM word read, or a counter kept in flip-flops (stable while
        nothing is counted)."""
        read_from = Signal(range(self.n))
        read_flops = Signal()
        m.d.sync += [read_from.eq(self.read_addr),
                     read_flops.eq(Cat(*[self.read_addr == i for i in self.in_flops]).any())]
        m.d.comb += self.read_data.eq(rdata)
        with m.If(read_flops):
            with m.Switch(read_from):
                for i in self.in_flops:
                    with m.Case(i):
                        m.d.comb += self.read_data.eq(pending[i])

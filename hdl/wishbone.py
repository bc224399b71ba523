"""Wishbone B4 classic with ``lock``: the bus signature, a transfer helper, and an arbiter.

Member names follow amaranth-soc's ``wishbone.Signature`` (``cyc stb we adr sel dat_w dat_r
ack err lock``); amaranth-soc itself is not on PyPI, so the few pieces needed live here.
"""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .formats import BUS_BYTES


__all__ = ["Signature", "drive", "Arbiter"]

DATA_WIDTH = 8 * BUS_BYTES


class Signature(wiring.Signature):
    """A 64-bit, byte-granular Wishbone master port with ``err`` and ``lock``.

    Parameters
    ----------
    addr_width : int
        Width of the word address ``adr`` (byte address >> 3).
    """

    def __init__(self, *, addr_width):
        if not isinstance(addr_width, int) or addr_width < 1:
            raise TypeError(f"Address width must be a positive integer, not {addr_width!r}")
        self._addr_width = addr_width
        super().__init__({
            "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_width),
            "sel": Out(BUS_BYTES), "dat_w": Out(DATA_WIDTH), "dat_r": In(DATA_WIDTH),
            "ack": In(1), "err": In(1), "lock": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    def __eq__(self, other):
        return isinstance(other, Signature) and other.addr_width == self.addr_width

    def __repr__(self):
        return f"wishbone.Signature(addr_width={self.addr_width})"


def drive(m, bus, *, adr, we=0, sel=(1 << BUS_BYTES) - 1, dat_w=0, lock=0):
    """Present one transfer on ``bus`` for as long as the enclosing condition holds.

    A master stays in the state that calls this until ``ack`` or ``err``; keeping ``lock``
    (and ``cyc``) high into the next state makes a locked read-modify-write.
    """
    m.d.comb += [
        bus.cyc.eq(1), bus.stb.eq(1), bus.we.eq(we), bus.adr.eq(adr), bus.sel.eq(sel),
        bus.dat_w.eq(dat_w), bus.lock.eq(lock),
    ]


class Arbiter(wiring.Component):
    """Round-robin arbiter of ``n`` Wishbone masters onto one bus.

    The grant is combinational (no cycle is lost when the bus is free) but ownership only
    changes while the owner's ``cyc`` is low, so a locked read-modify-write, or any bus
    cycle, is never split.

    Members
    -------
    masters : In(Signature).array(n)
    bus : Out(Signature)
    """

    def __init__(self, n, *, addr_width):
        if not isinstance(n, int) or n < 1:
            raise TypeError(f"Number of masters must be a positive integer, not {n!r}")
        self._n = n
        super().__init__({
            "masters": In(Signature(addr_width=addr_width)).array(n),
            "bus": Out(Signature(addr_width=addr_width)),
            "grant": Out(range(n)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self._n
        owner = Signal(range(n))
        request = [master.cyc for master in self.masters]

        # The owner keeps the bus while its cyc is high; otherwise the next requester after
        # it (round robin) takes it in the same cycle.
        m.d.comb += self.grant.eq(owner)
        with m.Switch(owner):
            for o in range(n):
                with m.Case(o):
                    for k in reversed(range(n)):
                        idx = (o + k) % n
                        with m.If(request[idx]):
                            m.d.comb += self.grant.eq(idx)
        m.d.sync += owner.eq(self.grant)

        with m.Switch(self.grant):
            for i, master in enumerate(self.masters):
                with m.Case(i):
                    m.d.comb += [
                        self.bus.cyc.eq(master.cyc), self.bus.stb.eq(master.stb),
                        self.bus.we.eq(master.we), self.bus.adr.eq(master.adr),
                        self.bus.sel.eq(master.sel), self.bus.dat_w.eq(master.dat_w),
                        self.bus.lock.eq(master.lock),
                        master.ack.eq(self.bus.ack), master.err.eq(self.bus.err),
                    ]
        for master in self.masters:
            m.d.comb += master.dat_r.eq(self.bus.dat_r)
        return m

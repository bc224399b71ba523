"""Wishbone B4 with ``lock``, classic or pipelined (``stall``): the bus signature, a transfer
helper, and an arbiter.

Member names follow amaranth-soc's ``wishbone.Signature`` (``cyc stb we adr sel dat_w dat_r
ack err lock``); amaranth-soc itself is not on PyPI, so the few pieces needed live here.
"""

import functools
import operator

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .formats import BUS_BYTES, SEL_QWORD


__all__ = ["Signature", "drive", "Arbiter"]

DATA_WIDTH = 8 * BUS_BYTES


class Signature(wiring.Signature):
    """A 64-bit, byte-granular Wishbone master port with ``err`` and ``lock``.

    Parameters
    ----------
    addr_width : int
        Width of the word address ``adr`` (byte address >> 3).
    pipelined : bool
        B4 pipelined mode: one more member, ``stall`` (In); a request is taken in a cycle with
        ``cyc & stb & ~stall`` and answered later, in order.
    """

    def __init__(self, *, addr_width, pipelined=False):
        if not isinstance(addr_width, int) or addr_width < 1:
            raise TypeError(f"Address width must be a positive integer, not {addr_width!r}")
        self._addr_width = addr_width
        self._pipelined = bool(pipelined)
        super().__init__({
            "cyc": Out(1), "stb": Out(1), "we": Out(1), "adr": Out(addr_width),
            "sel": Out(BUS_BYTES), "dat_w": Out(DATA_WIDTH), "dat_r": In(DATA_WIDTH),
            "ack": In(1), "err": In(1), "lock": Out(1),
            **({"stall": In(1)} if pipelined else {}),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def pipelined(self):
        return self._pipelined

    def __eq__(self, other):
        return isinstance(other, Signature) and other.addr_width == self.addr_width and \
            other.pipelined == self.pipelined

    def __repr__(self):
        return f"wishbone.Signature(addr_width={self.addr_width}, pipelined={self.pipelined})"


def drive(m, bus, *, adr, we=0, sel=SEL_QWORD, dat_w=0, lock=0):
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
    cycle, is never split. Pipelined masters keep ``cyc`` high while answers are outstanding,
    so the owner never changes then either; a master not granted sees ``stall``.

    With ``answers_later`` (classic) the slave promises never to answer in the cycle a request
    first appears (round trip R >= 2), and to take a write's ``dat_w`` only in a later cycle
    of the transfer (when it answers): the owner keeps the bus until the answer, so the
    answers and ``dat_w`` follow the registered owner, as pipelined answers do, and neither
    waits on the grant (no path from one master's ``cyc`` into another's ``ack``, nor from
    the grant into the write data). Cycle for cycle the same as without it, with such a
    slave.

    With ``exclusive`` (classic only) the masters promise never to hold ``cyc`` in the same
    cycle (the stages of one unit: one request in flight). Then the bus is the OR of the
    masters' outputs, each gated by its ``cyc``, and each master's ``ack``/``err`` by its own
    ``cyc``: no round-robin decision lies between a request and its answer. ``lock`` is not
    gated, so a ``lock`` without ``cyc`` still shows on the bus.

    Members
    -------
    masters : In(Signature).array(n)
    bus : Out(Signature)
    grant : Out(range(n))
        The master driving ``bus`` in this cycle.

    Attributes
    ----------
    owner : Signal(range(n))
        The arbiter's state: the master granted in the previous cycle (public: coverage and
        waves read it).
    """

    def __init__(self, n, *, addr_width, pipelined=False, exclusive=False, answers_later=False):
        if not isinstance(n, int) or n < 1:
            raise TypeError(f"Number of masters must be a positive integer, not {n!r}")
        if pipelined and exclusive:
            raise ValueError("An exclusive arbiter is classic only")
        if answers_later and (exclusive or pipelined):
            raise ValueError("answers_later is for a classic arbiter that is not exclusive")
        self._n = n
        self._pipelined = pipelined
        self._exclusive = exclusive
        self._answers_later = bool(answers_later)
        signature = Signature(addr_width=addr_width, pipelined=pipelined)
        super().__init__({
            "masters": In(signature).array(n),
            "bus": Out(signature),
            "grant": Out(range(n)),
        })
        self.owner = Signal(range(n), name="owner")

    def elaborate(self, platform):
        if self._exclusive:
            return self._elaborate_exclusive()
        m = Module()
        n = self._n
        owner = self.owner
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

        # Pipelined answers follow the registered owner: an answer only comes while its
        # master holds cyc, so the owner is the grant then, and the answer does not feed back
        # into the grant through the master (a combinational loop otherwise).
        answered = owner if self._pipelined or self._answers_later else self.grant
        written = owner if self._answers_later else self.grant
        with m.Switch(self.grant):
            for i, master in enumerate(self.masters):
                with m.Case(i):
                    m.d.comb += [
                        self.bus.cyc.eq(master.cyc), self.bus.stb.eq(master.stb),
                        self.bus.we.eq(master.we), self.bus.adr.eq(master.adr),
                        self.bus.sel.eq(master.sel), self.bus.lock.eq(master.lock),
                    ]
        with m.Switch(written):
            for i, master in enumerate(self.masters):
                with m.Case(i):
                    m.d.comb += self.bus.dat_w.eq(master.dat_w)
        with m.Switch(answered):
            for i, master in enumerate(self.masters):
                with m.Case(i):
                    m.d.comb += [master.ack.eq(self.bus.ack), master.err.eq(self.bus.err)]
        for i, master in enumerate(self.masters):
            m.d.comb += master.dat_r.eq(self.bus.dat_r)
            if self._pipelined:
                m.d.comb += master.stall.eq(Mux(self.grant == i, self.bus.stall, 1))
        return m

    def _elaborate_exclusive(self):
        m = Module()
        m.d.comb += self.grant.eq(self.owner)
        for i, master in enumerate(self.masters):
            with m.If(master.cyc):
                m.d.comb += self.grant.eq(i)
        m.d.sync += self.owner.eq(self.grant)
        bus = self.bus
        for name in ("cyc", "stb", "we", "adr", "sel", "dat_w"):
            field = getattr(bus, name)
            m.d.comb += field.eq(_or(Mux(master.cyc, getattr(master, name), 0)
                                     for master in self.masters))
        m.d.comb += bus.lock.eq(_or(master.lock for master in self.masters))
        for master in self.masters:
            m.d.comb += [master.ack.eq(bus.ack & master.cyc), master.err.eq(bus.err & master.cyc),
                         master.dat_r.eq(bus.dat_r)]
        return m


def _or(values):
    return functools.reduce(operator.or_, values)

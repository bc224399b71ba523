"""A component with every port between registers, for the Fmax of a unit alone.

The unit's ports outnumber any package's pins, and nextpnr-ice40 has no out-of-context mode
(nextpnr-ecp5's leaves every path through a port untimed). `RegisteredPorts` gives the unit
registers on all sides and three pins: every input comes from a register of a shift chain
fed by ``si``; every output is registered as it is, and the registered outputs are folded by
a pipelined XOR tree into ``so``, so no output can be optimized away. The place-and-route
then times every path of the unit as a system around it would see it: from a register
through the unit's logic to a register, including the paths from an input (``ack``,
``dat_r``, ``cfg``, ``icr``) and to an output. The added registers and the XOR tree have no
logic between registers deeper than one LUT, so they never set the Fmax.
"""

from amaranth import Cat, ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.lib.wiring import In


__all__ = ["RegisteredPorts"]

#: Inputs of each XOR of the output tree: one LUT4 per XOR.
FOLD = 4


class RegisteredPorts(Elaboratable):
    """``unit`` (a `wiring.Component`, clock domain ``sync``) between registers.

    Attributes
    ----------
    unit : wiring.Component
    si : Signal(1), In
        Shifted into the input chain every cycle.
    so : Signal(1), Out
        The XOR of every output, a few cycles late.
    rst : Signal(1), In
        Registered, then the ``sync`` reset of the unit and the wrapper.
    clk : Signal(1), In
        The clock of ``sync``.
    """

    def __init__(self, unit):
        self.unit = unit
        self.si = Signal()
        self.so = Signal()
        self.rst = Signal()
        self._sync = ClockDomain("sync")
        self.clk = self._sync.clk

    @property
    def ports(self):
        """The top-level ports, for `amaranth.back.rtlil.convert`."""
        return [self.clk, self.rst, self.si, self.so]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = self._sync
        m.domains.pins = pins = ClockDomain("pins", reset_less=True)
        m.d.comb += pins.clk.eq(sync.clk)
        m.d.pins += sync.rst.eq(self.rst)
        m.submodules.unit = unit = self.unit
        inputs, outputs = [], []
        for _, member, value in unit.signature.flatten(unit):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        chain = Signal(sum(len(v) for v in inputs))
        m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
        m.d.comb += Cat(*inputs).eq(chain)
        level = Signal(sum(len(v) for v in outputs))
        m.d.sync += level.eq(Cat(*outputs))
        while len(level) > 1:
            folded = Signal((len(level) + FOLD - 1) // FOLD)
            m.d.sync += folded.eq(Cat(level[i:i + FOLD].xor()
                                      for i in range(0, len(level), FOLD)))
            level = folded
        m.d.comb += self.so.eq(level)
        return m

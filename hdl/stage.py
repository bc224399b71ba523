"""What the classic unit's four stages share: the VMCS and memory ports, a state register,
and outputs that stay offered until they are taken."""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit
from .formats import ExitCause, VMCSConfig
from .params import bus_addr_width


__all__ = ["Stage"]


class Stage(wiring.Component):
    """A stage of the classic unit: a state machine over the subclass's ``State`` (with
    ``IDLE`` and ``OUTPUT``) behind a Wishbone master, whose outputs (``outputs``, ``exit``
    among them) each stay offered until taken.

    The subclass gives its own ports, its ``State`` and ``TRANSITIONS``, and the state machine
    (`machine`); the steps below are shared.

    Parameters
    ----------
    members : dict
        The stage's own ports (`wiring.Component`), besides those below.
    maxphyaddr : int
        MAXPHYADDR (36..52); the bus word address has ``maxphyaddr - 3`` bits.

    Members
    -------
    cfg : In(VMCSConfig)
    bus : Out(wishbone.Signature)
    busy : Out(1)
        The state is not ``IDLE``.

    Attributes
    ----------
    state : Signal(State)
        The stage's state register (public: the proofs, coverage and waves read it).
    """

    #: The output streams, in the subclass.
    outputs = ()

    def __init__(self, members, *, maxphyaddr):
        self._addr_width = bus_addr_width(maxphyaddr)
        super().__init__({
            "cfg": In(VMCSConfig),
            **members,
            "bus": Out(wishbone.Signature(addr_width=self._addr_width)),
            "busy": Out(1),
        })
        self.state = Signal(self.State, name="state")

    def machine(self, m):
        """Add the state machine (the subclass's) to ``m``."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        self.withdraw_outputs(m)
        self.machine(m)
        m.d.comb += self.busy.eq(self.state != self.State.IDLE)
        return m

    # -- steps every stage takes (hdl.mutants overrides some of them) -------------------------

    def go(self, m, state):
        m.d.sync += self.state.eq(state)

    def withdraw_outputs(self, m):
        """An output stays offered until it is taken."""
        for out in self.outputs:
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)

    def output_taken(self):
        return Cat(out.valid & out.ready for out in self.outputs).any()

    def end_with_exit(self, m, cause):
        """Take the ``request`` (of a stage fed by one) and offer its exit for ``cause``."""
        m.d.comb += self.request.ready.eq(1)
        load_exit(m, self.exit, cause=cause, icr=self.request.p.icr)
        self.go(m, self.State.OUTPUT)

    def bus_error(self, m):
        """The memory answered with an error: end with a ``BUS_ERROR`` exit."""
        self.end_with_exit(m, ExitCause.BUS_ERROR)

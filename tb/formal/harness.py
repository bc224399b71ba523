"""The formal harness: `IPIVirtualizer` in a free but legal environment, a monitor that
follows each request through the independent spec model (`tb.formal.spec`), the auxiliary
invariants that make the safety properties close by k-induction, and the properties as named
checks (tb/formal/README.md).

Environment (assumptions, shared by every check):

- ``cfg`` is free, but held stable from a request's acceptance while the unit is busy
  (``docs/interface.md``);
- the ``icr`` producer is free except for the stream rule: once ``valid``, it holds ``valid``
  and the payload until ``ready``;
- every output consumer drives ``ready`` freely: it may stall for any number of cycles;
- the memory answers with free read data and a free choice of ``ack`` or ``err``, only while
  ``cyc & stb`` and never both, after any number of wait states (``latency=None``) or at
  most ``latency`` cycles after the transfer began;
- for the ``completion`` check only, consumers take an output at most ``patience`` cycles
  after it is offered (a response bound needs one).

The monitor keeps the accepted request (kind, data, ``cfg``), the index of the transfer it is
at, and the data the bus returned (VICR_HI, the entry, the word of a read-modify-write,
NotifyInfo); the spec model turns these into the transfer expected next and the outcome due.
Counters of notifications (and self-IPIs) due but not yet taken, with their payloads, check
conservation. Auxiliary invariants (`_invariants`) tie the monitor to the stages' state
registers so that the safety checks close by k-induction. The ``invariants`` check proves
them (1-inductive); every other ``prove`` check and the covers assume them, as proven lemmas
(the covers show that they exclude none of the behaviours covered). They are documented in
``tb/formal/README.md``.

The pieces, one job each: `tb.formal.checks` (the named checks), `tb.formal.environment`
(assumptions, the witness environment), `tb.formal.monitor` (the request through the spec
model), `tb.formal.properties` (one function per check), `tb.formal.invariants`. Amaranth
0.5 has no ``Past``: every "previous cycle" value is a register (`environment.past`).
"""

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.asserts import AnySeq

from hdl import IPIVirtualizer

from ..timing import validate_cycles
from .checks import (
    BUSES, CHECKS, COVERS, Check, PIPELINED_CHECKS, PIPELINED_COVERS, checks_for, covers_for,
    completion_bounds, proven_together,
)
from .environment import (
    WITNESS_CFG, assume_icr_held, assume_memory, drive_free, witness_memory,
)
from .invariants import add_invariants
from .monitor import Monitor
from .pipelined_environment import PipelinedMemory
from .pipelined_invariants import add_pipelined_invariants
from .pipelined_monitor import PipelinedMonitor
from .pipelined_properties import PIPELINED_PROPERTIES
from .properties import PROPERTIES


__all__ = ["BUSES", "Check", "CHECKS", "COVERS", "FormalHarness", "PIPELINED_CHECKS",
           "PIPELINED_COVERS", "WITNESS_CFG", "checks_for", "completion_bounds", "covers_for",
           "proven_together", "witness_memory"]


class FormalHarness(Elaboratable):
    """`IPIVirtualizer` with a free environment and the properties of one check.

    Parameters
    ----------
    check : str
        A key of `checks_for(bus)` (`CHECKS` or `PIPELINED_CHECKS`).
    bus : str
        The unit's memory port, ``"classic"`` (default) or ``"pipelined"``: the pipelined
        unit runs against a legal pipelined memory (`PipelinedMemory`), its own monitor
        (`PipelinedMonitor`, the spec in the pipelined issue order), properties and
        invariants.
    faults : collection of hdl.faults.Fault
        Passed to the unit (mutation tests).
    maxphyaddr : int
        MAXPHYADDR of the unit (36, the smallest, keeps the solver fast).
    latency : int or None
        The memory answers at most this many cycles after a transfer begins (pipelined:
        after a request is taken, at least 1, and nothing stalls); None: any number of wait
        states (and stalls).
    patience : int
        For ``completion``: consumers take an output at most this many cycles after it is
        offered.
    invariants : bool
        Use the auxiliary invariants (default): asserted by the ``invariants`` check,
        assumed by the other ``prove`` checks and the covers. A mutation test runs its check
        as BMC without them, so that nothing assumed can hide the fault.
    witness : bool
        Pin ``cfg`` and the memory's contents to `WITNESS_CFG` and `witness_memory`, and
        leave only some ICR bits free (kind, vector, bits 19:11, a 3-bit destination);
        timing, stalls and errors stay free. A subset of the free environment, so a
        failure found here is a failure of the property; it lets BMC reach the deep
        counterexamples of the mutation tests (two postings under a stalled consumer) in
        seconds, where the free environment takes the solver minutes per step.
    bounds : (int, int) or None
        ``completion`` only: the cycles after acceptance by which the unit must be ready
        again and idle; default `completion_bounds`. A test shortens them by one to show the
        check fails (the bounds are tight).
    together : collection of str
        More checks whose properties this harness asserts besides ``check``'s, for one
        solver run of several proofs (`tb.formal.runner.run_together`): each must be a
        safety proof that adds no assumption of its own (`proven_together`).

    Attributes
    ----------
    dut : IPIVirtualizer
    clk : Signal
        The only port (Amaranth ties an unused clock to 0, which would freeze the design).
    """

    def __init__(self, check, *, bus="classic", faults=frozenset(), maxphyaddr=36,
                 latency=None, patience=1, invariants=True, witness=False, bounds=None,
                 together=()):
        if bus not in BUSES:
            raise ValueError(f"bus must be one of {', '.join(BUSES)}, not {bus!r}")
        checks = checks_for(bus)
        if check not in checks:
            raise ValueError(f"check must be one of {', '.join(checks)}, not {check!r}")
        together = tuple(name for name in together if name != check)
        alone = [name for name in (check, *together)
                 if together and name not in proven_together(bus)]
        if alone:
            raise ValueError(f"checks {alone} cannot share a run: only "
                             f"{', '.join(proven_together(bus))} can")
        if latency is not None:
            validate_cycles("latency", latency)
        validate_cycles("patience", patience)
        if check == "completion" and latency is None:
            raise ValueError("the completion check needs a latency bound")
        if bus == "pipelined" and latency == 0:
            raise ValueError("a pipelined memory answers at least 1 cycle after a request is "
                             "taken: latency must be at least 1")
        self.check = check
        self.together = together
        self.bus = bus
        self.bounds = bounds
        self.latency = latency
        self.patience = patience
        self.invariants = invariants
        self.witness = witness
        self.maxphyaddr = maxphyaddr
        self.dut = IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus, faults=faults)
        self._cd = ClockDomain("sync", reset_less=True)
        self.clk = self._cd.clk

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self._cd
        m.submodules.dut = dut = self.dut
        if self.bus == "pipelined":
            self._elaborate_pipelined(m, dut)
            return m
        drive_free(m, dut, witness=self.witness)
        active, answer, done = assume_memory(m, dut.bus, self.latency)
        assume_icr_held(m, dut.icr)
        monitor = Monitor(m, dut, maxphyaddr=self.maxphyaddr, active=active, answer=answer,
                          done=done)
        for name in (self.check, *self.together):
            PROPERTIES[name](m, dut, monitor, self)
        if self.invariants:
            add_invariants(m, dut, monitor, prove=(self.check == "invariants"))
        return m

    def _elaborate_pipelined(self, m, dut):
        memory = PipelinedMemory(m, dut.bus, latency=self.latency)
        drive_free(m, dut, witness=self.witness, read_address=memory.answer_address)
        m.d.comb += dut.bus.stall.eq(AnySeq(1))
        assume_icr_held(m, dut.icr)
        monitor = PipelinedMonitor(m, dut, maxphyaddr=self.maxphyaddr, memory=memory)
        for name in (self.check, *self.together):
            PIPELINED_PROPERTIES[name](m, dut, monitor, self)
        if self.invariants:
            add_pipelined_invariants(m, dut, monitor, prove=(self.check == "invariants"))

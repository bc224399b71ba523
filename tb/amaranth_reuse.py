"""One Amaranth `Simulator` per design, reused by the runs of `tb.amaranth_harness.Harness`.

Building a simulator (elaborating the testbench top and compiling it) costs far more than a
short run, and tests build a new DUT for every run. So the simulator of a design is kept,
keyed by what the design is made of (class, cores, MAXPHYADDR, memory port, faults, whether
the top samples coverage), and each run starts from `Simulator.reset()`: every signal and
memory back at its initial value, the clock and the testbench restarted. Runs on a reused
simulator are the runs a new one gives, cycle for cycle. The testbench is one coroutine that
runs the job of the current run (`Design.run`)."""

from collections import OrderedDict

from amaranth.sim import Simulator

from hdl.ipi_virtualizer import IPIVirtualizer
from hdl.ipiv_system import IPIVSystem
from .testbench_top import TestbenchTop


__all__ = ["Design", "design_key", "reused_design", "kept_designs", "forget_designs",
           "CAPACITY"]

#: Designs kept (least recently used dropped first): the directed suite's MAXPHYADDRs on both
#: memory ports fit.
CAPACITY = 8

_REUSABLE = (IPIVirtualizer, IPIVSystem)


def design_key(dut, coverage):
    """What the simulated design of ``dut`` depends on, or None for a DUT of another class
    (whose parameters are not known here: it gets a simulator of its own)."""
    if type(dut) not in _REUSABLE:
        return None
    units = getattr(dut, "units", [dut])
    return (type(dut), len(units), dut.maxphyaddr, units[0].bus_kind,
            tuple(frozenset(u.faults) for u in units), bool(coverage))


class Design:
    """The testbench top around a DUT and its simulator, run again and again."""

    def __init__(self, dut, coverage, clock_period):
        self.top = TestbenchTop(dut, coverage=coverage)
        self.sim = Simulator(self.top)
        self.sim.add_clock(clock_period)
        self._job = None
        self._fresh = True

        async def bench(ctx):
            await self._job(ctx, self.top)
        self.sim.add_testbench(bench)

    def run(self, job):
        """Run ``await job(ctx, top)`` to its end from the design's initial state.

        The reset comes before a run, not after it: `Simulator.reset` starts a new testbench
        coroutine at once, and one left behind by a last reset would never be awaited."""
        if not self._fresh:
            self.sim.reset()
        self._fresh = False
        self._job = job
        try:
            self.sim.run()
        finally:
            self._job = None


_designs = OrderedDict()


def reused_design(dut, coverage, clock_period):
    """The kept `Design` of ``dut``'s design (made on first use), or None if it is not reused
    (see `design_key`)."""
    key = design_key(dut, coverage)
    if key is None:
        return None
    design = _designs.pop(key, None)
    if design is None:
        design = Design(dut, coverage, clock_period)
    _designs[key] = design
    while len(_designs) > CAPACITY:
        _designs.popitem(last=False)
    return design


def kept_designs():
    """The keys of the designs kept, least recently used first."""
    return list(_designs)


def forget_designs(design=None):
    """Drop ``design`` (after a run that failed, so no later run sees what it left), or all."""
    for key, kept in list(_designs.items()):
        if design is None or kept is design:
            del _designs[key]

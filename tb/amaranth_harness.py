"""Run `IPIVirtualizer` / `IPIVSystem` on Amaranth's simulator, checked by `tb.checker`.

A unit or system, on either memory port, runs the testbench the cocotb backend runs too
(`tb.testbench` on the testbench top of `tb.testbench_top`, stepped by `tb.amaranth_testbench`):
the same seed gives the same run, cycle for cycle, on both backends. It answers the Wishbone
bus from a `sim.memory.Memory` (fixed latency, random wait states, injected errors; on the
pipelined port also stalls, `tb.pipelined_memory`), drives the ICR-write streams, applies
back-pressure on every output stream, and turns what it sees into the records of
`tb.checker.Checker` (writes accepted, bus transfers with their locked bus cycle, outputs
offered and taken, ``busy`` falling), each with its cycle. The checker compares them with the
golden model. Memory wait states and back-pressure follow the stall model of `tb.timing`
(coin flips, bursts of 0..50 cycles, the cap). With a `tb.fsm_coverage.Sampler` (pipelined:
`tb.fsm_coverage_pipelined.Sampler`) it also samples the state of every stage and of the
arbiters.

The simulator of a design is built once and reset between runs (`tb.amaranth_reuse`: the
same runs, without rebuilding it for every new DUT); a run that writes a VCD, or of a subclass
with its own `Harness._bench`, gets a new one."""

import random
from dataclasses import dataclass, field

from amaranth.sim import Simulator

from hdl.ipi_virtualizer import IPIVirtualizer
from sim.golden import Outcome
from sim.scenarios import Request
from sim.stimulus import (
    dense_errors, host_side, more_self_ipis, posting_bursts, random_case, with_barriers,
)
from .checker import Event, MismatchError, expected_events
from .amaranth_reuse import forget_designs, reused_design
from .amaranth_testbench import run_on_top
from .testbench_top import TestbenchTop
from .timing import validate_timing


__all__ = ["Request", "Event", "Run", "Harness", "expected_events", "MismatchError",
           "STRESS_TIMINGS", "stress_run"]

CLOCK_PERIOD = 10e-9


@dataclass
class Run:
    """What a run produced."""
    requests: list
    accepted: list = field(default_factory=list)     # (cycle, request index)
    events: list = field(default_factory=list)       # `tb.checker.Event`, in handshake order
    results: list = field(default_factory=list)      # golden `Result` per entry of ``accepted``
    cycles: int = 0
    bus_cycles: list = field(default_factory=list)   # cycles with ``cyc`` high
    memory_log: list = field(default_factory=list)   # the gateware's bus transfers
    # Per transfer in ``memory_log``: the id of the locked bus cycle it belongs to
    # (`tb.checker.LockTracker`), or None for an unlocked transfer.
    lock_cycles: list = field(default_factory=list)
    grant_switches_in_cycle: int = 0                 # arbiter switched while cyc high (bug)
    posted: int = 0                                  # postings completed (PIDUpdate pulses)
    suppressed: int = 0


class Harness:
    """Drives one DUT (an `IPIVirtualizer`, or an `IPIVSystem` through its ``cores``).

    Parameters
    ----------
    dut : IPIVirtualizer or IPIVSystem
    memory : Memory
        The memory the gateware sees (one core: the checker's shadow is a copy taken at `run`).
    latency, wait_states, backpressure, bursts
        The memory's timing and the outputs' back-pressure (see `tb.timing`).
    seed : int
    check : bool
        Check the run with `tb.checker.Checker` (every output and bus transfer against the
        golden model); False only records (``Run.results`` stays empty).
    on_barrier : callable(request, *memories) or None
        Called for a request with ``barrier`` once its core is idle, with the memory and (one
        core) the checker's shadow copy.
    allowed_words, compare_lock, locked_rmw
        See `tb.checker.Checker`.
    coverage : tb.fsm_coverage.Sampler, tb.fsm_coverage_pipelined.Sampler or None
        Sample the FSM states and transitions into it (one sampler may collect many runs; the
        one of the unit's bus variant).
    """

    def __init__(self, dut, memory, *, latency=0, wait_states=0.0, backpressure=0.0, seed=0,
                 check=True, on_barrier=None, allowed_words=None, compare_lock=True,
                 locked_rmw=True, bursts=0.0, coverage=None):
        validate_timing(latency, wait_states, backpressure, bursts)
        self.dut = dut
        self.ports = list(dut.cores) if hasattr(dut, "cores") else [dut]
        self.memory = memory
        self.latency = latency
        self.wait_states = wait_states
        self.backpressure = backpressure
        self.bursts = bursts
        self.coverage = coverage
        self.seed = seed
        self.check = check
        self.on_barrier = on_barrier
        units = getattr(dut, "units", [dut])
        self.pipelined = units[0].bus_kind == "pipelined"
        # the shared testbench (`tb.amaranth_testbench`)
        self.testbench_args = dict(
            maxphyaddr=dut.maxphyaddr, latency=latency, wait_states=wait_states,
            backpressure=backpressure, bursts=bursts, shadow=len(self.ports) == 1,
            allowed_words=allowed_words, on_barrier=self._barrier, compare_lock=compare_lock,
            locked_rmw=locked_rmw, fsm_coverage=coverage, bus=units[0].bus_kind)
        self.checker = None

    # -- the run ----------------------------------------------------------------------------
    def run(self, requests, *, vcd=None, gtkw=None, traces=(), max_cycles=None, progress=None):
        """Issue ``requests`` (a list of `Request`) and return the `Run`.

        Raises `MismatchError` (when checking) at the first disagreement with the golden
        model, and `TimeoutError` if the DUT stops making progress.
        """
        requests = list(requests)
        for r in requests:
            if not 0 <= r.port < len(self.ports):
                raise ValueError(f"request port {r.port} out of range")
        self.checker = None         # `run_on_top` makes it
        run = Run(requests)
        limit = max_cycles or 200 + 200 * (len(requests) + 1) * (self.latency + 2)

        async def job(ctx, top):
            await self._bench(ctx, top, run, limit, progress)
        design = None if vcd else self._reused_design()
        if design is None:
            self._run_new_simulator(job, vcd, gtkw, traces)
        else:
            try:
                design.run(job)
            except BaseException:
                forget_designs(design)
                raise
        if self.checker is not None:
            self.checker.finish(run.cycles, self.memory)
            run.results = [r.result for r in self.checker.in_order()]
            if self.pipelined:      # no posting pulses: count the checked outcomes
                run.posted = sum(r.outcome is Outcome.POSTED for r in run.results)
                run.suppressed = sum(r.suppressed for r in run.results)
        return run

    def _reused_design(self):
        """The kept simulator of this design (`tb.amaranth_reuse`), or None: a subclass with
        its own `_bench` may read the signals of its own DUT, so it gets a new simulator."""
        if type(self)._bench is not Harness._bench:
            return None
        return reused_design(self.dut, self.coverage is not None, CLOCK_PERIOD)

    def _run_new_simulator(self, job, vcd, gtkw, traces):
        top = TestbenchTop(self.dut, coverage=self.coverage is not None)
        sim = Simulator(top)
        sim.add_clock(CLOCK_PERIOD)

        async def bench(ctx):
            await job(ctx, top)
        sim.add_testbench(bench)
        if vcd:
            with sim.write_vcd(vcd, gtkw, traces=traces):
                sim.run()
        else:
            sim.run()

    def _barrier(self, request):
        if self.on_barrier is not None:
            shadow = self.checker.shadow if self.checker is not None else None
            self.on_barrier(request, self.memory, *([shadow] if shadow is not None else []))

    async def _bench(self, ctx, top, run, limit, progress):
        await run_on_top(self, ctx, top, run, limit, progress)


#: The bursty timings of `stress_run`, by seed: (latency, wait states, back-pressure, bursts).
STRESS_TIMINGS = ((0, 0.0, 0.3, 0.05), (1, 0.3, 0.3, 0.05), (2, 0.0, 0.5, 0.08),
                  (0, 0.2, 0.0, 0.05))


def stress_run(seed, *, faults=frozenset(), count=40, coverage=None, bus="classic"):
    """One constrained-random run on Amaranth's simulator with back-pressure and wait states in
    bursts (`STRESS_TIMINGS`), bus errors at one transfer in ten every other seed, extra
    self-IPIs, host-side barriers that clear ON and bursts of back-to-back postings (so
    notifications follow one another), checked by the checker.
    The same stimulus for every design: used for FSM coverage and to show every deliberate
    defect (``faults``) is caught. Returns the `Run`; raises `MismatchError` at the first
    disagreement."""
    rng = random.Random(seed)
    maxphyaddr = (52, 36, 46)[seed % 3]
    case = posting_bursts(random_case(rng, maxphyaddr=maxphyaddr, count=count), rng)
    if seed % 2:
        dense_errors(case, rng, per_transfer=1 / 10)
    requests = with_barriers(more_self_ipis(case.requests, rng, share=0.3), rng, share=0.15)
    latency, wait_states, backpressure, bursts = STRESS_TIMINGS[seed % len(STRESS_TIMINGS)]
    harness = Harness(IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus, faults=faults),
                      case.memory,
                      latency=latency, wait_states=wait_states, backpressure=backpressure,
                      bursts=bursts, seed=seed, allowed_words=case.allowed_words(),
                      on_barrier=host_side(case.pids, random.Random(seed + 1)),
                      coverage=coverage)
    return harness.run(requests)

"""`TB`: the testbench of one DUT (`IPIVirtualizer` or `IPIVSystem`) in cocotb.

It owns the clock and the reset, and runs the shared testbench `tb.testbench.Testbench` on the
testbench top (`tb.testbench_top`, generated around the DUT by `tb.verilog`): a simulator callback
sleeps until the top's ``wake_toggle`` changes (the falling edge of a cycle in which something
happens: a bus request, an ICR write taken, an output offered, ``busy`` falling, the agent
starting, a protocol error, a time-out) and hands that cycle to the testbench. Every random
choice comes from the seed, so every run is reproducible. What the testbench sees goes, as
records, to `tb.checker.Checker`, the checker the Amaranth backend (`tb.amaranth_harness`)
feeds too.
"""

import time

from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge

from sim.memory import Memory
from tb.checker import MismatchError, result_from_events
from tb.testbench import Testbench
from tb.testbench_top import layouts_for
from .bfm import TopAccess
from .common import design_bus
from .wake_callback import WakeCallback


__all__ = ["TB", "CLOCK_NS", "stop_clock"]

CLOCK_NS = 10
_clocks = {}        # the clock of each DUT (a top or an instance of a batch), started once


def stop_clock(dut):
    """Stop the clock of ``dut`` (a DUT no test drives any more costs the simulator nothing)."""
    clock = _clocks.pop(dut, None)
    if clock is not None:
        clock.stop()


class TB:
    """Clock, reset, the shared testbench and its wake-up loop for one DUT.

    Parameters
    ----------
    dut : cocotb handle of the top (`tb.testbench_top.TestbenchTop` around the DUT)
    n_cores : int or None
        None: an `IPIVirtualizer` inside; n: an `IPIVSystem(n)`.
    memory : sim.memory.Memory
        What the DUT's bus sees.
    maxphyaddr : int
    seed : int
        Seeds every random choice.
    latency, wait_states : memory timing (see `tb.timing`)
    backpressure : float
        Probability that an output's ``ready`` is low in a cycle (every output, every core).
    bursts : float
        Stall bursts of 0..50 cycles on the bus and every output (see `tb.timing`).
    fsm_coverage : tb.fsm_coverage.Sampler or None
        Sample the state registers of every stage and arbiter into it, each cycle.
    gap : float
        Probability of an idle cycle before each ICR write.
    shadow : bool
        Also run the golden model on a shadow copy of ``memory`` (single core, no agent).
    allowed_words : set or None
        Word addresses the unit may write.
    agent : optional software master (see `tb.cocotb.agent.SoftwareAgent`)
    on_resolved : callable(tb.checker.Resolved), e.g. coverage sampling
    on_barrier : callable(request, memories) for requests with ``barrier``
    compare_lock, locked_rmw : bool
        The checker's lock checks (see `tb.checker.Checker`; ``locked_rmw`` None: as
        ``compare_lock``). False only in the tests showing that another check catches a
        missing lock on its own.
    bus : str or None
        The DUT's memory port; None: the one of the design the runner built
        (`tb.cocotb.common.design_bus`). A pipelined memory answers ``latency`` cycles after
        it takes a request, at least 1, and stalls requests in bursts too.
    """

    def __init__(self, dut, *, n_cores=None, memory=None, maxphyaddr=52, seed=0, latency=0,
                 wait_states=0.0, backpressure=0.0, gap=0.0, shadow=False, allowed_words=None,
                 agent=None, on_resolved=None, on_barrier=None, compare_lock=True,
                 locked_rmw=None, bursts=0.0, fsm_coverage=None, bus=None):
        self.dut = dut
        self.n = 1 if n_cores is None else n_cores
        self.memory = Memory() if memory is None else memory
        self.seed = seed
        self.access = TopAccess(dut)
        self.on_barrier = on_barrier
        self.bus = design_bus() if bus is None else bus
        self.bench = Testbench(
            layouts_for(n_cores, maxphyaddr, self.bus), self.access.read, self.access.write,
            memory=self.memory, maxphyaddr=maxphyaddr, seed=seed, latency=latency,
            wait_states=wait_states, backpressure=backpressure, bursts=bursts, gap=gap,
            shadow=shadow, allowed_words=allowed_words, agent=agent, on_resolved=on_resolved,
            on_barrier=self._barrier, compare_lock=compare_lock, locked_rmw=locked_rmw,
            fsm_coverage=fsm_coverage, on_event=self._taken)
        self.checker = self.bench.checker
        self.agent = agent
        self.taken = [[] for _ in range(self.n)]     # `tb.checker.Event` per core, in order
        self.listeners = []                           # callables(core, stream, payload)
        self.error = None
        self.wall = 0.0
        self.cpu = 0.0              # CPU seconds of the run (the machine may be shared)
        self.python_s = 0.0         # wall time spent in `Testbench.wake` (the rest: simulator)
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()
        self._changed = Event()
        self._deadline = 0
        self._stop = False
        self._wake = WakeCallback(dut.wake_toggle, self._on_wake)
        self._ended = Event()
        self._until = None          # the condition a test waits for (`_wait`)
        self._last_cycle = None
        self.resolved = [[] for _ in range(self.n)]     # `tb.checker.Resolved` per core
        self.checker.listeners.append(lambda r: self.resolved[r.core].append(r))

    @property
    def cycle(self):
        return max(self.bench.cycle, 0)

    @property
    def accepted(self):
        return self.bench.accepted

    # -- set-up --------------------------------------------------------------------------------
    async def start(self, reset_cycles=2):
        """Start the clock, reset the DUT, then run the wake-up loop in the background."""
        if self.dut not in _clocks:
            # The C clock: a Python one would wake the interpreter twice a cycle.
            _clocks[self.dut] = Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi")
            _clocks[self.dut].start()
        else:   # a later TB on the same DUT
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        self.bench.reset_inputs(self.access.write)
        for _ in range(reset_cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self.bench.start_agent()
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()
        self._wake.start()

    # -- the loop -----------------------------------------------------------------------------
    def _on_wake(self):
        """One wake-up (called by the simulator, `WakeCallback`): hand the cycle to the
        testbench and tell a waiting test when its condition holds."""
        if self._stop:
            self._end()
            return
        start = time.perf_counter()
        try:
            self.bench.wake()
        except Exception as e:      # checker errors and testbench bugs alike end the run
            self.error = e
            self._end()
            return
        finally:
            self.python_s += time.perf_counter() - start
        if self._until is not None and (self._until() or
                                        self.bench.cycle + 1 >= self._deadline):
            self._changed.set()

    def _end(self):
        self._wake.cancel()
        self.wall = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._cpu0
        self._changed.set()
        self._ended.set()

    # -- callbacks from the testbench ------------------------------------------------------------
    def _taken(self, event):
        self.taken[event.port].append(event)
        for listener in self.listeners:
            listener(event.port, event.stream, event.payload)

    def _barrier(self, request):
        if self.on_barrier is not None:
            memories = [self.memory] + ([self.checker.shadow]
                                        if self.checker.shadow is not None else [])
            self.on_barrier(request, *memories)

    # -- for tests -----------------------------------------------------------------------------
    def submit(self, requests):
        """Queue ICR writes (`sim.scenarios.Request`, ``port`` = core)."""
        self.bench.submit(requests)
        if self.bench.cycle < 0:
            # right after `start`, at the falling edge of cycle 0: load them in this cycle,
            # as the Amaranth backend does (no wake has handled cycle 0 yet)
            self.bench.wake()
        else:
            self.bench.wake_at(self.bench.now() + 1)     # load them from the next cycle on

    async def _wait(self, until, max_cycles, what):
        """Sleep until ``until()`` holds (the loop checks it after each wake); raise the first
        error, or `TimeoutError` (``what``) after ``max_cycles`` more cycles."""
        deadline = self.bench.now() + max_cycles
        self.bench.wake_at(deadline)
        self._deadline = deadline
        self._until = until
        try:
            while True:
                self._raise()
                if until():
                    return
                if self.bench.cycle + 1 >= deadline or self._ended.is_set():
                    raise TimeoutError(what(max_cycles))
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._until = None

    async def wait_settled(self, max_cycles):
        """Wait until every write was accepted and every core is idle with nothing offered;
        raise the first checker error, or `TimeoutError` after ``max_cycles`` more cycles."""
        await self._wait(self.bench.settled, max_cycles, lambda n: (
            f"not settled after {n} cycles (cycle {self.cycle}); per core (queued, "
            f"presenting, busy): {self.bench.pending()}"))

    async def execute(self, core, request, max_cycles=2000):
        """Co-simulation: run one ICR write on ``core`` to completion and return the `Result`
        built from what the gateware did (the checker has checked it against the golden model
        by then)."""
        first = len(self.taken[core])
        self.submit([request])
        await self.wait_settled(max_cycles)
        events = self.taken[core][first:]
        if len(events) > 1:
            raise MismatchError(f"core {core}: one ICR write gave {events}")
        return result_from_events(request, events)

    async def post(self, core, request, max_cycles=2000):
        """Co-simulation: run one ICR write on ``core`` until the unit has resolved it (its
        transfers made; `tb.checker` has replayed them through the golden model) and, for an
        exit or #GP, until that was taken; return the `sim.golden.Result` of the replay.

        A notification is not waited for: the guest's write retires while the notification
        travels on, so the next write on the core may find it still offered (the checker sees
        the unit offer it, and its `tb.checker.DeliveryMonitor` bounds when it is taken)."""
        core_checker = self.checker.cores[core]
        first = len(self.resolved[core])
        self.submit([request])

        def done():
            return len(self.resolved[core]) > first and not core_checker.offered_exit_or_gp \
                and not any(s in ("exit", "gp") for s, _, _ in core_checker.expected)
        await self._wait(done, max_cycles, lambda n: (
            f"core {core}: request {request} not resolved after {n} cycles (cycle "
            f"{self.cycle})"))
        self._raise()
        (resolved,) = self.resolved[core][first:]
        return resolved.result

    async def finish(self, max_cycles=10000):
        """Settle, stop the loop and run the end-of-run checks."""
        await self.wait_settled(max_cycles)
        self._last_cycle = self.cycle       # the run's cycles (not the wake that ends it)
        self._stop = True
        self.bench.wake_at(self.bench.now() + 1)     # one more wake ends the loop
        if not self._ended.is_set():
            await self._ended.wait()
        self._raise()
        self.bench.flush()
        self.bench.finish_coverage(self._last_cycle)
        self.checker.finish(self._last_cycle, self.memory)

    async def run(self, requests, max_cycles=10000):
        """`start`, `submit` ``requests`` and `finish`; returns the `stats`. A run that
        fails leaves no loop behind (the next `TB` on the DUT starts afresh)."""
        await self.start()
        try:
            self.submit(requests)
            await self.finish(max_cycles)
        finally:
            self._wake.cancel()
        return self.stats()

    def _raise(self):
        if self.error is not None:
            raise self.error

    def stats(self):
        """Figures of the run so far (JSON-able)."""
        sb, bench = self.checker, self.bench
        counters = bench.counters()
        return {
            "cycles": self._last_cycle if self._last_cycle is not None else self.cycle,
            "wall_s": round(self.wall or time.perf_counter() - self._t0, 3),
            "cpu_s": round(self.cpu, 3), "python_s": round(self.python_s, 3),
            "icr_writes": bench.accepted,
            "checked": sum(c.resolved for c in sb.cores),
            "transfers": sb.transfers, "outcomes": dict(sb.outcomes),
            "events": sum(len(t) for t in self.taken),
            "output_stall_cycles": bench.offer_stalls,
            "agent_stall_cycles": counters["agent_stall_cycles"],
            "bus_busy_cycles": counters["cyc_cycles"],
            "longest_cyc_run": counters["longest_cyc_run"],
            "handovers_in_cyc": counters["handovers_in_cyc"],
            "locked_handovers": counters["locked_handovers"],
            "on_transitions": sb.delivery.transitions,
            "delivery_latencies": list(sb.delivery.latencies),
            "longest_output_stall": bench.longest_stall,
            "longest_transfer_wait": bench.longest_wait,
        }

"""`TB`: the testbench of one DUT (`IPIVirtualizer` or `IPIVSystem`) in cocotb.

It owns the clock, the reset and the bus-functional models of `tb.cocotb.bfm`, and steps them
all from one loop (``drive`` at the falling edge, ``sample`` at ReadOnly), so every run is
reproducible from its seed. What the models see goes, as records, to `tb.checker.Checker`, the
checker the Amaranth backend (`tb.amaranth_harness`) feeds too.
"""

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly

from hdl.formats import OUTPUT_STREAMS
from sim.memory import Memory
from tb.checker import Checker, MismatchError, OutputMonitors, ProtocolError, \
    result_from_events
from .bfm import CorePorts, ICRDriver, OutputPort, WishboneMemory


__all__ = ["TB", "CLOCK_NS"]

CLOCK_NS = 10
_clock_started = False


class TB:
    """Clock, reset, BFMs, checker and the cycle loop for one DUT.

    Parameters
    ----------
    dut : cocotb handle of the top
    n_cores : int or None
        None: an `IPIVirtualizer` top; n: an `IPIVSystem(n)` top.
    memory : sim.memory.Memory
        What the DUT's bus sees.
    maxphyaddr : int
    seed : int
        Seeds every random choice of the BFMs.
    latency, wait_states : memory timing (see `bfm.WishboneMemory`)
    backpressure : float
        Probability that an output's ``ready`` is low in a cycle (every output, every core).
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
    """

    def __init__(self, dut, *, n_cores=None, memory=None, maxphyaddr=52, seed=0, latency=0,
                 wait_states=0.0, backpressure=0.0, gap=0.0, shadow=False, allowed_words=None,
                 agent=None, on_resolved=None, on_barrier=None, compare_lock=True,
                 locked_rmw=None):
        self.dut = dut
        self.n = 1 if n_cores is None else n_cores
        self.memory = Memory() if memory is None else memory
        self.rng = random.Random(seed)
        self.seed = seed
        self.latency, self.wait_states, self.backpressure = latency, wait_states, backpressure
        self.checker = Checker(self.n, maxphyaddr=maxphyaddr,
                               shadow=self.memory.copy() if shadow else None,
                               allowed_words=allowed_words, on_resolved=on_resolved,
                               compare_lock=compare_lock,
                               locked_rmw=compare_lock if locked_rmw is None else locked_rmw)
        self.agent = agent
        self.on_barrier = on_barrier
        self.ports = [CorePorts(dut, "" if n_cores is None else f"cores__{i}__")
                      for i in range(self.n)]
        self.mem = WishboneMemory(dut, self.memory, self.rng, latency=latency,
                                  wait_states=wait_states, n_masters=self.n,
                                  on_transfer=self._transfer, agent=agent)
        self.drivers = [ICRDriver(p, self.rng, gap=gap,
                                  on_accept=lambda r, c, i=i: self._accepted(i, r, c),
                                  on_barrier=self._barrier)
                        for i, p in enumerate(self.ports)]
        self.outputs = [[OutputPort(name, p.streams[name], self.rng,
                                    backpressure=backpressure) for name in OUTPUT_STREAMS]
                        for p in self.ports]
        self.monitors = [OutputMonitors(i) for i in range(self.n)]
        self.busy = [1] * self.n
        self.taken = [[] for _ in range(self.n)]     # `tb.checker.Event` per core, in order
        self.listeners = []                           # callables(core, stream, payload)
        self.cycle = 0
        self.accepted = 0
        self.error = None
        self.wall = 0.0
        self._changed = Event()
        self._waiting = False
        self._deadline = 0
        self.last_accept = -1
        self._stop = False
        self._task = None

    # -- set-up --------------------------------------------------------------------------------
    async def start(self, reset_cycles=2):
        """Start the clock, reset the DUT, then run the cycle loop in the background."""
        global _clock_started
        if not _clock_started:
            # The C clock: the Python one costs two extra scheduler wake-ups per cycle.
            Clock(self.dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
            _clock_started = True
        else:   # a later TB on the same DUT: leave the previous one's ReadOnly phase
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        for p in self.ports:
            p.icr_valid.value = 0
        for outs in self.outputs:
            for out in outs:
                out.drive()
        self.mem.bus.ack.value = self.mem.ack = 0
        self.mem.bus.err.value = self.mem.err = 0
        for _ in range(reset_cycles):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self._t0 = time.perf_counter()
        self._task = cocotb.start_soon(self._loop())

    # -- the loop -----------------------------------------------------------------------------
    async def _loop(self):
        falling, readonly = FallingEdge(self.dut.clk), ReadOnly()
        try:
            while not self._stop:
                await falling
                self._drive()
                await readonly
                self._sample()
                self.cycle += 1
        except Exception as e:      # checker errors and testbench bugs alike end the run
            self.error = e
        finally:
            self.wall = time.perf_counter() - self._t0
            self._changed.set()

    def _drive(self):
        cycle = self.cycle
        for i, p in enumerate(self.ports):
            busy = int(p.busy.value)
            if not busy and self.busy[i]:
                self.checker.idle(i, cycle)
            self.busy[i] = busy
        self.mem.drive(cycle)
        for i, driver in enumerate(self.drivers):
            driver.drive(cycle, self.busy[i])
            if self.busy[i]:
                for out in self.outputs[i]:
                    out.drive()

    # An idle core (busy low) offers nothing, by the contract; its outputs are only looked at
    # every few cycles, to check just that, which saves most signal reads in multi-core runs.
    IDLE_CHECK_EVERY = 8

    def _sample(self):
        cycle, checker = self.cycle, self.checker
        spot_check = cycle % self.IDLE_CHECK_EVERY == 0
        for i, driver in enumerate(self.drivers):
            driver.sample(cycle)
            if not self.busy[i]:
                if spot_check:
                    for out in self.outputs[i]:
                        if int(out.valid.value):
                            raise ProtocolError(f"core {i}: {out.name}.valid high at cycle "
                                                f"{cycle} while busy is low")
                continue
            rising, taken = self.monitors[i].sample(cycle,
                                                    [out.observe() for out in self.outputs[i]])
            checker.outputs(i, cycle, rising, taken)
            for event in taken:
                self.taken[i].append(event)
                for listener in self.listeners:
                    listener(i, event.stream, event.payload)
        if self._waiting and (self._settled() or self.cycle + 1 >= self._deadline):
            self._changed.set()

    def _settled(self):
        # busy is sampled at the falling edge: a write accepted in this cycle is not seen yet
        return self.cycle > self.last_accept and all(d.idle for d in self.drivers) and \
            not any(self.busy) and \
            not any(m.offered for m in self.monitors)

    # -- callbacks from the BFMs ---------------------------------------------------------------
    def _transfer(self, master, access, lock_cycle):
        self.checker.transfer(master, access, lock_cycle)
        if self.agent is not None:
            self.agent.observe(master, access)

    def _accepted(self, core, request, cycle):
        self.accepted += 1
        self.last_accept = cycle
        self.checker.accepted(core, request, cycle)

    def _barrier(self, request):
        if self.on_barrier is not None:
            memories = [self.memory] + ([self.checker.shadow]
                                        if self.checker.shadow is not None else [])
            self.on_barrier(request, *memories)

    # -- for tests -----------------------------------------------------------------------------
    def submit(self, requests):
        """Queue ICR writes (`sim.scenarios.Request`, ``port`` = core)."""
        for r in requests:
            if not 0 <= r.port < self.n:
                raise ValueError(f"request port {r.port} out of range 0..{self.n - 1}")
            self.drivers[r.port].push(r)

    async def wait_settled(self, max_cycles):
        """Wait until every write was accepted and every core is idle with nothing offered;
        raise the first checker error, or `TimeoutError` after ``max_cycles`` more cycles."""
        self._deadline = self.cycle + max_cycles
        self._waiting = True
        try:
            while True:
                self._raise()
                if self._settled():
                    return
                if self.cycle + 1 >= self._deadline or self._task.done():
                    stuck = {i: (len(d.queue), d.presenting is not None, self.busy[i])
                             for i, d in enumerate(self.drivers)}
                    raise TimeoutError(f"not settled after {max_cycles} cycles (cycle "
                                       f"{self.cycle}); per core (queued, presenting, busy): "
                                       f"{stuck}")
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._waiting = False

    async def execute(self, core, request, max_cycles=2000):
        """Co-simulation: run one ICR write on ``core`` to completion and return the `Result`
        built from what the gateware did (the checker has checked it against the golden model
        by then)."""
        first = len(self.taken[core])
        self.drivers[core].push(request)
        await self.wait_settled(max_cycles)
        events = self.taken[core][first:]
        if len(events) > 1:
            raise MismatchError(f"core {core}: one ICR write gave {events}")
        return result_from_events(request, events)

    async def finish(self, max_cycles=10000):
        """Settle, stop the loop and run the end-of-run checks."""
        await self.wait_settled(max_cycles)
        self._stop = True
        await self._task
        self._raise()
        self.checker.finish(self.cycle, self.memory)

    async def run(self, requests, max_cycles=10000):
        """`start`, `submit` ``requests`` and `finish`; returns the `stats`."""
        await self.start()
        self.submit(requests)
        await self.finish(max_cycles)
        return self.stats()

    def _raise(self):
        if self.error is not None:
            raise self.error

    def stats(self):
        """Figures of the run so far (JSON-able)."""
        sb = self.checker
        stalls = sum(m.stalls for m in self.monitors)
        return {
            "cycles": self.cycle, "wall_s": round(self.wall or time.perf_counter() - self._t0, 3),
            "icr_writes": self.accepted, "checked": sum(c.resolved for c in sb.cores),
            "transfers": sb.transfers, "outcomes": dict(sb.outcomes),
            "events": sum(len(t) for t in self.taken), "output_stall_cycles": stalls,
            "agent_stall_cycles": self.mem.stalled, "bus_busy_cycles": self.mem.busy_cycles,
            "longest_cyc_run": self.mem.longest_cyc_run,
            "handovers_in_cyc": self.mem.handovers_in_cyc,
            "locked_handovers": self.mem.locked_handovers,
        }


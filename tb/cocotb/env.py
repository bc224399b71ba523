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
from tb.fsm_coverage import STAGES
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
    """

    def __init__(self, dut, *, n_cores=None, memory=None, maxphyaddr=52, seed=0, latency=0,
                 wait_states=0.0, backpressure=0.0, gap=0.0, shadow=False, allowed_words=None,
                 agent=None, on_resolved=None, on_barrier=None, compare_lock=True,
                 locked_rmw=None, bursts=0.0, fsm_coverage=None):
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
                                  wait_states=wait_states, bursts=bursts, n_masters=self.n,
                                  on_transfer=self._transfer, agent=agent)
        self.drivers = [ICRDriver(p, self.rng, gap=gap,
                                  on_accept=lambda r, c, i=i: self._accepted(i, r, c),
                                  on_barrier=self._barrier)
                        for i, p in enumerate(self.ports)]
        self.outputs = [[OutputPort(name, p.streams[name], self.rng,
                                    backpressure=backpressure, bursts=bursts)
                         for name in OUTPUT_STREAMS]
                        for p in self.ports]
        self.fsm_coverage = fsm_coverage
        self.probes = [_StateProbe(dut if n_cores is None else getattr(dut, f"core{i}"),
                                   fsm_coverage) for i in range(self.n)] \
            if fsm_coverage is not None else None
        self._system_grant = 0
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
        self._until = None
        self.resolved = [[] for _ in range(self.n)]     # `tb.checker.Resolved` per core
        self.checker.listeners.append(lambda r: self.resolved[r.core].append(r))

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
        if self.probes is not None:
            self._sample_coverage()
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
        elif self._until is not None and self._until():
            self._changed.set()

    def _settled(self):
        # busy is sampled at the falling edge: a write accepted in this cycle is not seen yet
        return self.cycle > self.last_accept and all(d.idle for d in self.drivers) and \
            not any(self.busy) and \
            not any(m.offered for m in self.monitors)

    # -- callbacks from the BFMs ---------------------------------------------------------------
    def _sample_coverage(self):
        cov = self.fsm_coverage
        if self.n > 1:
            if self.mem.grant is not None:
                self._system_grant = self.mem.grant
            cov.system_grant(self._system_grant)
        for i, (probe, driver) in enumerate(zip(self.probes, self.drivers)):
            request = driver.presenting
            kind = None if request is None else request.kind
            taken = request is not None and int(self.ports[i].icr_ready.value)
            outs = {out.name: out for out in self.outputs[i]}
            if not self.busy[i] and not taken:
                probe.idle(i, kind, outs)    # every stage idle: nothing to read
            else:
                probe.sample(i, kind, taken, outs)

    def _transfer(self, master, access, lock_cycle):
        self.checker.transfer(master, access, lock_cycle, self.cycle)
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

    async def post(self, core, request, max_cycles=2000):
        """Co-simulation: run one ICR write on ``core`` until the unit has resolved it (its
        transfers made; `tb.checker` has replayed them through the golden model) and, for an
        exit or #GP, until that was taken; return the `sim.golden.Result` of the replay.

        A notification is not waited for: the guest's write retires while the notification
        travels on, so the next write on the core may find it still offered (the checker sees
        the unit offer it, and its `tb.checker.DeliveryMonitor` bounds when it is taken)."""
        core_checker = self.checker.cores[core]
        first = len(self.resolved[core])
        self.drivers[core].push(request)

        def done():
            return len(self.resolved[core]) > first and not core_checker.offered_exit_or_gp \
                and not any(s in ("exit", "gp") for s, _, _ in core_checker.expected)
        deadline = self.cycle + max_cycles
        self._until = done
        try:
            while not done():
                self._raise()
                if self.cycle >= deadline or self._task.done():
                    raise TimeoutError(f"core {core}: request {request} not resolved after "
                                       f"{max_cycles} cycles (cycle {self.cycle})")
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._until = None
        self._raise()
        (resolved,) = self.resolved[core][first:]
        return resolved.result

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
            "on_transitions": sb.delivery.transitions,
            "delivery_latencies": list(sb.delivery.latencies),
            "longest_output_stall": max((o.stall.longest for outs in self.outputs
                                         for o in outs), default=0),
            "longest_transfer_wait": self.mem.timer.longest,
        }



class _StateProbe:
    """The handles `tb.fsm_coverage.Sampler` needs of one unit (the Verilog keeps Amaranth's
    instance names: ``interceptor``, ``lookup``, ``pid_update``, ``virr_update``, ``arbiter``,
    each FSM's register ``fsm_state``)."""

    def __init__(self, unit, sampler):
        self.sampler = sampler
        self.states = [getattr(getattr(unit, stage), "fsm_state") for stage in STAGES]
        arbiter = unit.arbiter
        self.grant, self.cyc, self.ack = arbiter.grant, arbiter.bus__cyc, arbiter.bus__ack
        self.post = unit.interceptor.post__valid
        self.self_ipi_req = unit.interceptor.self_ipi__valid
        self.lookup_post = unit.lookup.post__valid
        self.idle_states = [names.index("IDLE") for names in sampler.names]
        self.last_grant = 0

    def sample(self, core, kind, taken, outs):
        notify, self_ipi = outs["notify"], outs["self_ipi"]
        self.last_grant = int(self.grant.value)
        self.sampler.sample(
            core, [int(h.value) for h in self.states], self.last_grant, int(self.cyc.value),
            int(self.ack.value), kind, taken, int(self.post.value),
            int(self.self_ipi_req.value), int(self.lookup_post.value),
            (int(notify.valid.value), notify.ready), (int(self_ipi.valid.value), self_ipi.ready))

    def idle(self, core, kind, outs):
        self.sampler.sample(core, self.idle_states, self.last_grant, 0, 0, kind, False, 0, 0, 0,
                            (0, outs["notify"].ready), (0, outs["self_ipi"].ready))

"""Run `IPIVirtualizer` / `IPIVSystem` on Amaranth's simulator, checked by `tb.checker`.

A unit or system on the classic bus runs the testbench the cocotb backend runs too
(`tb.testbench` on the testbench top of `tb.testbench_top`, stepped by `tb.amaranth_testbench`):
the same seed gives the same run, cycle for cycle, on both backends. It answers the Wishbone
bus from a `sim.memory.Memory` (fixed latency, random wait states, injected errors), drives
the ICR-write streams, applies back-pressure on every output stream, and turns what it sees
into the records of `tb.checker.Checker` (writes accepted, bus transfers with their locked bus
cycle, outputs offered and taken, ``busy`` falling), each with its cycle. The checker
compares them with the golden model. Memory wait states and back-pressure follow the stall
model of `tb.timing` (coin flips, bursts of 0..50 cycles, the cap). With a
`tb.fsm_coverage.Sampler` it also samples the state of every stage and of the arbiters.

The pipelined bus (`tb.pipelined_memory`) still runs the per-cycle loop below, in which one
coroutine does everything each cycle, in a fixed order."""

import random
from dataclasses import dataclass, field

from amaranth.hdl import Value
from amaranth.sim import Simulator

from hdl.formats import ICRWriteKind, OUTPUT_STREAMS
from hdl.ipi_virtualizer import IPIVirtualizer
from sim.golden import Outcome
from sim.scenarios import Request
from sim.stimulus import (
    dense_errors, host_side, more_self_ipis, posting_bursts, random_case, with_barriers,
)
from .amaranth_bfm import answer_transfer
from .checker import (
    Checker, Event, LockTracker, MismatchError, OutputMonitors, ProtocolError, expected_events,
)
from .amaranth_testbench import run_on_top
from .pipelined_memory import PipelinedResponder
from .testbench_top import TestbenchTop
from .timing import OutputStall, TransferTimer, validate_timing


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
    coverage : tb.fsm_coverage.Sampler or None
        Sample the FSM states and transitions into it (one sampler may collect many runs).
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
        self.rng = random.Random(seed)
        self.seed = seed
        self.check = check
        self.on_barrier = on_barrier
        units = getattr(dut, "units", [dut])
        self.pipelined = units[0].bus_kind == "pipelined"
        # the shared testbench (`tb.amaranth_testbench`): classic bus
        self.testbench_args = dict(
            maxphyaddr=dut.maxphyaddr, latency=latency, wait_states=wait_states,
            backpressure=backpressure, bursts=bursts, shadow=len(self.ports) == 1,
            allowed_words=allowed_words, on_barrier=self._barrier, compare_lock=compare_lock,
            locked_rmw=locked_rmw, fsm_coverage=coverage, bus=units[0].bus_kind)
        self._top = None
        self.checker_args = dict(maxphyaddr=dut.maxphyaddr, allowed_words=allowed_words,
                                 compare_lock=compare_lock, locked_rmw=locked_rmw,
                                 bus=units[0].bus_kind)
        self.checker = None
        # Postings completed, counted by the classic PID update (the pipelined unit's are
        # counted from the checked results).
        self._pulses = [] if self.pipelined else \
            [(u.pid_update.posted, u.pid_update.suppressed) for u in units]

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
        self.checker = None
        # the classic bus runs on the testbench top (`run_on_top` makes the checker)
        self._top = None if self.pipelined else \
            TestbenchTop(self.dut, coverage=self.coverage is not None)
        if self.check and self._top is None:
            shadow = None
            if len(self.ports) == 1:
                shadow = self.memory.copy()
            self.checker = Checker(len(self.ports), shadow=shadow, **self.checker_args)
        run = Run(requests)
        limit = max_cycles or 200 + 200 * (len(requests) + 1) * (self.latency + 2)
        units = self.dut.units if hasattr(self.dut, "cores") else [self.dut]
        self._fsm_states = [[Value.cast(stage.state) for stage in unit.stages] for unit in units]
        sim = Simulator(self._top if self._top is not None else self.dut)
        sim.add_clock(CLOCK_PERIOD)
        async def bench(ctx):
            await self._bench(ctx, run, limit, progress)
        sim.add_testbench(bench)
        if vcd:
            with sim.write_vcd(vcd, gtkw, traces=traces):
                sim.run()
        else:
            sim.run()
        if self.checker is not None:
            self.checker.finish(run.cycles, self.memory)
            run.results = [r.result for r in self.checker.in_order()]
            if self.pipelined:      # no posting pulses: count the checked outcomes
                run.posted = sum(r.outcome is Outcome.POSTED for r in run.results)
                run.suppressed = sum(r.suppressed for r in run.results)
        return run

    def _barrier(self, request):
        if self.on_barrier is not None:
            shadow = self.checker.shadow if self.checker is not None else None
            self.on_barrier(request, self.memory, *([shadow] if shadow is not None else []))

    async def _bench(self, ctx, run, limit, progress):
        if self._top is not None:
            await run_on_top(self, ctx, self._top, run, limit, progress)
            return
        loop = _CycleLoop(self, ctx, run, progress)
        for port in self.ports:
            ctx.set(port.icr.valid, 0)
        while True:
            loop.idle_cores()
            grant = loop.memory()
            readies = loop.back_pressure()
            loop.icr_streams()
            taken = loop.records(grant, readies)
            if loop.finished(taken):
                break
            if loop.cycle >= limit:
                raise TimeoutError(f"no completion after {loop.cycle} cycles "
                                   f"({len(run.accepted)}/{len(run.requests)} accepted)")
            await ctx.tick()
            loop.cycle += 1
            for port in taken:
                ctx.set(port.icr.valid, 0)
        run.cycles = loop.cycle
        run.memory_log = self.memory.log

    def _pipelined_answer(self, ctx, responder, cycle):
        """The pipelined memory's answer due in this cycle, and ``stall``. The checker hears
        of a transfer when it is answered (the memory performed it when it was taken)."""
        bus = self.dut.bus
        answer = responder.answer(cycle)
        if answer is not None:
            ok, data, access, (grant, lock_cycle) = answer
            ctx.set(bus.ack if ok else bus.err, 1)
            if ok:
                ctx.set(bus.dat_r, data)
            if self.checker is not None:
                self.checker.transfer(grant or 0, access, lock_cycle, cycle)
        self._stall = responder.stall()
        ctx.set(bus.stall, self._stall)

    def _pipelined_take(self, ctx, responder, cycle, cyc, grant, lock_cycle, run):
        """The request taken in this cycle: performed and checked now, answered later."""
        bus = self.dut.bus
        if cyc and not self._stall and ctx.get(bus.stb):
            responder.take(cycle, adr=ctx.get(bus.adr), we=ctx.get(bus.we), sel=ctx.get(bus.sel),
                           dat_w=ctx.get(bus.dat_w), lock=ctx.get(bus.lock),
                           tag=(grant, lock_cycle))
            run.lock_cycles.append(lock_cycle)

    _NOTIFY = OUTPUT_STREAMS.index("notify")
    _SELF_IPI = OUTPUT_STREAMS.index("self_ipi")

    def _sample_coverage(self, ctx, coverage, p, unit, run, presenting, readies):
        kind = None if presenting is None else run.requests[presenting].kind
        if self.pipelined:          # `tb.fsm_coverage_pipelined.Sampler`
            seq = unit.sequencer
            coverage.sample(ctx.get(self._fsm_states[p][0]), ctx.get(Value.cast(seq.kind)),
                            None if kind is None else ICRWriteKind(kind).value,
                            (ctx.get(unit.notify.valid), readies[self._NOTIFY]),
                            (ctx.get(unit.self_ipi.valid), readies[self._SELF_IPI]))
            return
        coverage.sample(
            p, [ctx.get(s) for s in self._fsm_states[p]], ctx.get(unit.arbiter.grant),
            ctx.get(unit.bus.cyc), ctx.get(unit.bus.ack), kind,
            presenting is not None and ctx.get(unit.icr.ready),
            ctx.get(unit.interceptor.post.valid), ctx.get(unit.interceptor.self_ipi.valid),
            ctx.get(unit.lookup.post.valid),
            (ctx.get(unit.notify.valid), readies[self._NOTIFY]),
            (ctx.get(unit.self_ipi.valid), readies[self._SELF_IPI]))


class _CycleLoop:
    """One run of `Harness` on Amaranth's simulator, cycle by cycle, in a fixed order (so a run
    is reproducible from its seed): cores gone idle, the memory, back-pressure on the outputs,
    the ICR-write streams, then the records of what happens at the clock edge."""

    def __init__(self, harness, ctx, run, progress):
        self.h, self.ctx, self.run, self.progress = harness, ctx, run, progress
        ports, rng = harness.ports, harness.rng
        self.checker = harness.checker
        self.system = hasattr(harness.dut, "cores")     # transfers belong to the granted core
        self.queues = [[i for i, r in enumerate(run.requests) if r.port == p]
                       for p in range(len(ports))]
        self.presenting = [None] * len(ports)           # request index on the icr stream
        self.applied_cfg = [None] * len(ports)
        self.was_busy = [True] * len(ports)
        self.monitors = [OutputMonitors(p) for p in range(len(ports))]
        self.streams = [[(getattr(port, name), Value.cast(getattr(port, name).payload))
                         for name in OUTPUT_STREAMS] for port in ports]
        self.timer = TransferTimer(rng, harness.latency, harness.wait_states, harness.bursts)
        self.responder = PipelinedResponder(
            harness.memory, rng, latency=max(1, harness.latency),
            wait_states=harness.wait_states, bursts=harness.bursts) \
            if harness.pipelined else None
        self.stalls = [[OutputStall(rng, harness.backpressure, harness.bursts)
                        for _ in OUTPUT_STREAMS] for _ in ports]
        self.units = list(getattr(harness.dut, "units", [harness.dut]))
        self.cycle = 0
        self.locks = LockTracker()
        self.arbiters = [a for a in [getattr(harness.dut, "arbiter", None)] +
                         [getattr(u, "arbiter", None) for u in getattr(harness.dut, "units", [])]
                         if a is not None]
        self.last_grant = [None] * len(self.arbiters)

    def idle_cores(self):
        """A core whose busy fell at the last edge owes nothing more."""
        for p, port in enumerate(self.h.ports):
            busy = self.ctx.get(port.busy)
            if self.was_busy[p] and not busy and self.checker is not None:
                self.checker.idle(p, self.cycle)
            self.was_busy[p] = busy

    def memory(self):
        """The memory answers the transfer on the bus; returns the system arbiter's grant."""
        ctx, h, run, cycle = self.ctx, self.h, self.run, self.cycle
        bus, checker, responder = h.dut.bus, self.checker, self.responder
        ctx.set(bus.ack, 0)
        ctx.set(bus.err, 0)
        ctx.set(bus.dat_r, h.rng.getrandbits(64))     # garbage unless acked
        if responder is not None:
            h._pipelined_answer(ctx, responder, cycle)
        cyc = ctx.get(bus.cyc)
        if responder is not None:
            responder.check_cyc(cycle, cyc)
        if cyc:
            run.bus_cycles.append(cycle)
        elif checker is not None and (ctx.get(bus.lock) or ctx.get(bus.stb)):
            raise ProtocolError(f"cycle {cycle}: stb or lock high without cyc")
        grant = ctx.get(h.dut.arbiter.grant) if self.system else None
        lock_cycle = self.locks.step(cyc, ctx.get(bus.lock), grant)
        self._grant_switches()
        if responder is not None:
            h._pipelined_take(ctx, responder, cycle, cyc, grant, lock_cycle, run)
        elif self.timer.step(cyc and ctx.get(bus.stb)):
            answer_transfer(ctx, bus, h.memory)
            run.lock_cycles.append(lock_cycle)
            if checker is not None:
                checker.transfer(grant or 0, h.memory.log[-1], lock_cycle, cycle)
        return grant

    def _grant_switches(self):
        """Illegal: an arbiter's grant moved away from a master whose cyc is still high."""
        for i, arbiter in enumerate(self.arbiters):
            now, before = self.ctx.get(arbiter.grant), self.last_grant[i]
            if before is not None and now != before and \
                    self.ctx.get(arbiter.masters[before].cyc):
                self.run.grant_switches_in_cycle += 1
            self.last_grant[i] = now

    def back_pressure(self):
        """Output streams: random back-pressure; returns ``ready`` per core and stream."""
        readies = [[s.step() for s in port_stalls] for port_stalls in self.stalls]
        for p in range(len(self.h.ports)):
            for (stream, _), r in zip(self.streams[p], readies[p]):
                self.ctx.set(stream.ready, r)
        return readies

    def icr_streams(self):
        """Offer each core its next ICR write (after a barrier or a new cfg: once idle)."""
        ctx, run = self.ctx, self.run
        for p, port in enumerate(self.h.ports):
            if self.presenting[p] is not None or not self.queues[p]:
                continue
            req = run.requests[self.queues[p][0]]
            idle = not ctx.get(port.busy)
            if req.barrier or req.cfg != self.applied_cfg[p]:
                if not idle:
                    continue
                if req.barrier:
                    self.h._barrier(req)
            if req.cfg != self.applied_cfg[p]:
                ctx.set(port.cfg.as_value(), req.cfg.as_bits())
                self.applied_cfg[p] = req.cfg
            self.presenting[p] = self.queues[p].pop(0)
            ctx.set(port.icr.p.kind, req.kind)
            ctx.set(port.icr.p.data, req.value)
            ctx.set(port.icr.valid, 1)

    def records(self, grant, readies):
        """Records of what happens at this clock edge; returns the ports whose write is taken."""
        ctx, h, run, cycle, checker = self.ctx, self.h, self.run, self.cycle, self.checker
        taken = []
        if h.coverage is not None:
            if self.system:
                h.coverage.system_grant(grant)
            for p, unit in enumerate(self.units):
                h._sample_coverage(ctx, h.coverage, p, unit, run, self.presenting[p],
                                   readies[p])
        for p, port in enumerate(h.ports):
            if self.presenting[p] is not None and ctx.get(port.icr.ready):
                index = self.presenting[p]
                run.accepted.append((cycle, index))
                if checker is not None:
                    checker.accepted(p, run.requests[index], cycle)
                self.presenting[p] = None
                taken.append(port)
                if self.progress:
                    self.progress(len(run.accepted), len(run.requests))
            observed = []
            for (stream, payload), r in zip(self.streams[p], readies[p]):
                valid = ctx.get(stream.valid)
                observed.append((valid, ctx.get(payload) if valid else 0, r))
            rising, events = self.monitors[p].sample(cycle, observed)
            run.events.extend(events)
            if checker is not None:
                checker.outputs(p, cycle, rising, events)
        for posted, suppressed in h._pulses:
            run.posted += ctx.get(posted)
            run.suppressed += ctx.get(suppressed)
        return taken

    def finished(self, taken):
        return not taken and not any(self.queues) and \
            all(x is None for x in self.presenting) and \
            not any(self.ctx.get(port.busy) for port in self.h.ports)


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

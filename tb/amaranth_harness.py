"""Run `IPIVirtualizer` / `IPIVSystem` on Amaranth's simulator against the golden model.

One testbench coroutine does everything each cycle, in a fixed order, so runs are exactly
reproducible from a seed: it answers the Wishbone bus from a `sim.memory.Memory` (fixed
latency, random wait states, injected errors), drives the ICR-write streams, applies random
back-pressure on every output stream, records every handshake with its cycle, and checks each
accepted write against `GoldenIPIVirtualizer` running on its own copy of the memory.
"""

import random
from dataclasses import dataclass, field

from amaranth.sim import Simulator

from hdl.formats import APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE
from sim.golden import Config, GoldenIPIVirtualizer, Outcome
from .amaranth_bfm import answer_transfer
from sim.scenarios import Request


__all__ = ["Request", "Event", "Run", "Harness", "expected_events", "MismatchError"]

CLOCK_PERIOD = 10e-9
OUTPUT_STREAMS = ("exit", "notify", "self_ipi", "gp")


class MismatchError(AssertionError):
    """The gateware did something the golden model did not predict."""


@dataclass(frozen=True)
class Event:
    """One output handshake: ``stream`` is exit/notify/self_ipi/gp."""
    port: int
    stream: str
    payload: tuple
    valid_cycle: int     # first cycle ``valid`` was high for this payload
    taken_cycle: int     # cycle of the handshake


@dataclass
class Run:
    """What a run produced."""
    requests: list
    accepted: list = field(default_factory=list)     # (cycle, request index)
    events: list = field(default_factory=list)
    results: list = field(default_factory=list)      # golden `Result` per request
    cycles: int = 0
    bus_cycles: list = field(default_factory=list)   # cycles with ``cyc`` high
    memory_log: list = field(default_factory=list)   # the gateware's bus transfers
    # Per transfer in ``memory_log``: the id of the bus cycle with ``lock`` held it belongs
    # to (a new id each time ``cyc & lock`` rises), or None for an unlocked transfer.
    lock_cycles: list = field(default_factory=list)
    grant_switches_in_cycle: int = 0                 # arbiter switched while cyc high (bug)
    posted: int = 0                                  # postings completed (PIDUpdate pulses)
    suppressed: int = 0


def event_payload(stream, value):
    """A comparable tuple for an output payload (a `data.Const` or an int)."""
    if stream == "exit":
        return (value.reason, value.qualification, value.cause, value.icr)
    if stream == "notify":
        return (value.vector, value.dest)
    return (int(value),)


def expected_events(result):
    """The output events (stream, payload) the golden `Result` implies, in order."""
    if result.outcome is Outcome.EXIT:
        return [("exit", (EXIT_REASON_APIC_WRITE, APIC_WRITE_QUALIFICATION_ICR, result.cause,
                          result.icr))]
    if result.outcome is Outcome.GP:
        return [("gp", (result.icr,))]
    if result.outcome is Outcome.SELF_IPI:
        return [("self_ipi", (result.vector,))]
    if result.outcome is Outcome.POSTED and result.notify is not None:
        return [("notify", result.notify)]
    return []


class Harness:
    """Drives one DUT (an `IPIVirtualizer`, or an `IPIVSystem` through its ``cores``).

    Parameters
    ----------
    dut : IPIVirtualizer or IPIVSystem
    memory : Memory
        The memory the gateware sees; the golden model works on a copy taken at `run`.
    latency : int
        Cycles from ``stb`` to ``ack``/``err`` (0: in the same cycle).
    wait_states : float
        Probability of one more wait cycle, drawn again after each extra cycle.
    backpressure : float
        Probability that an output stream's ``ready`` is low in a cycle.
    seed : int
    check : bool
        Compare every output and (single core) every bus transfer with the golden model.
    """

    def __init__(self, dut, memory, *, latency=0, wait_states=0.0, backpressure=0.0, seed=0,
                 check=True, on_barrier=None):
        if not isinstance(latency, int) or latency < 0:
            raise ValueError(f"latency must be a non-negative integer, not {latency!r}")
        for name, p in (("wait_states", wait_states), ("backpressure", backpressure)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {p!r}")
        self.dut = dut
        self.ports = list(dut.cores) if hasattr(dut, "cores") else [dut]
        self.memory = memory
        self.latency = latency
        self.wait_states = wait_states
        self.backpressure = backpressure
        self.rng = random.Random(seed)
        self.check = check
        self.on_barrier = on_barrier
        self.golden = GoldenIPIVirtualizer(maxphyaddr=dut.maxphyaddr)
        self.golden_memory = None
        self._pulses = self._find_pulses()

    def _find_pulses(self):
        units = getattr(self.dut, "units", [self.dut])
        return [(u.pid_update.posted, u.pid_update.suppressed) for u in units]

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
        self.golden_memory = self.memory.copy()
        self.golden_memory.log = []
        run = Run(requests)
        limit = max_cycles or 200 + 200 * (len(requests) + 1) * (self.latency + 2)
        sim = Simulator(self.dut)
        sim.add_clock(CLOCK_PERIOD)
        async def bench(ctx):
            await self._bench(ctx, run, limit, progress)
        sim.add_testbench(bench)
        if vcd:
            with sim.write_vcd(vcd, gtkw, traces=traces):
                sim.run()
        else:
            sim.run()
        if self.check:
            self._final_checks(run)
        return run

    async def _bench(self, ctx, run, limit, progress):
        ports, rng, bus = self.ports, self.rng, self.dut.bus
        queues = [[i for i, r in enumerate(run.requests) if r.port == p]
                  for p in range(len(ports))]
        presenting = [None] * len(ports)        # request index on the icr stream
        applied_cfg = [None] * len(ports)
        expected = [[] for _ in ports]          # events the golden model predicts, in order
        offered = {}                            # (port, stream) -> (first valid cycle, payload)
        wait = None                             # cycles left before the bus responds
        cycle = 0
        lock_id, locked_before = 0, False
        arbiters = [self.dut.arbiter] + [u.arbiter for u in getattr(self.dut, "units", [])]
        last_grant = [None] * len(arbiters)

        for port in ports:
            ctx.set(port.icr.valid, 0)

        while True:
            # 1. The memory answers the transfer on the bus.
            ctx.set(bus.ack, 0)
            ctx.set(bus.err, 0)
            ctx.set(bus.dat_r, rng.getrandbits(64))     # garbage unless acked
            if ctx.get(bus.cyc):
                run.bus_cycles.append(cycle)
            locked = bool(ctx.get(bus.cyc) and ctx.get(bus.lock))
            if locked and not locked_before:
                lock_id += 1
            locked_before = locked
            for i, arbiter in enumerate(arbiters):
                # Illegal: the grant moved away from a master whose cyc is still high.
                grant, before = ctx.get(arbiter.grant), last_grant[i]
                if before is not None and grant != before and \
                        ctx.get(arbiter.masters[before].cyc):
                    run.grant_switches_in_cycle += 1
                last_grant[i] = grant
            if ctx.get(bus.cyc) and ctx.get(bus.stb):
                if wait is None:
                    wait = self.latency
                    while self.wait_states and rng.random() < self.wait_states:
                        wait += 1
                if wait == 0:
                    wait = None
                    run.lock_cycles.append(lock_id if locked else None)
                    answer_transfer(ctx, bus, self.memory)
                else:
                    wait -= 1
            else:
                wait = None

            # 2. Output streams: random back-pressure.
            for port in ports:
                for name in OUTPUT_STREAMS:
                    ready = not (self.backpressure and rng.random() < self.backpressure)
                    ctx.set(getattr(port, name).ready, ready)

            # 3. ICR-write streams.
            for p, port in enumerate(ports):
                if presenting[p] is None and queues[p]:
                    req = run.requests[queues[p][0]]
                    idle = not ctx.get(port.busy)
                    if req.barrier or req.cfg != applied_cfg[p]:
                        if not idle:
                            continue
                        if req.barrier and self.on_barrier is not None:
                            self.on_barrier(req, self.memory, self.golden_memory)
                    if req.cfg != applied_cfg[p]:
                        ctx.set(port.cfg.as_value(), req.cfg.as_bits())
                        applied_cfg[p] = req.cfg
                    presenting[p] = queues[p].pop(0)
                    ctx.set(port.icr.p.kind, req.kind)
                    ctx.set(port.icr.p.data, req.value)
                    ctx.set(port.icr.valid, 1)

            # 4. Record what happens at this clock edge.
            taken = []
            for p, port in enumerate(ports):
                if presenting[p] is not None and ctx.get(port.icr.ready):
                    index = presenting[p]
                    req = run.requests[index]
                    run.accepted.append((cycle, index))
                    result = self.golden.execute(req.cfg, self.golden_memory, req.kind, req.value)
                    run.results.append(result)
                    expected[p].extend(expected_events(result))
                    presenting[p] = None
                    taken.append(port)
                    if progress:
                        progress(len(run.accepted), len(run.requests))
                rising = []
                for name in OUTPUT_STREAMS:
                    stream, key = getattr(port, name), (p, name)
                    if not ctx.get(stream.valid):
                        if key in offered:
                            raise MismatchError(f"core {p}: {name}.valid dropped at cycle "
                                                f"{cycle} before the payload was taken")
                        continue
                    payload = event_payload(name, ctx.get(stream.p))
                    if key not in offered:
                        offered[key] = (cycle, payload)
                        rising.append((name, payload))
                    elif offered[key][1] != payload:
                        raise MismatchError(f"core {p}: {name} payload changed at cycle "
                                            f"{cycle} while valid")
                    if ctx.get(stream.ready):
                        run.events.append(Event(p, name, payload, offered.pop(key)[0], cycle))
                if rising and self.check:
                    self._check_offered(p, rising, expected[p], cycle)
            for posted, suppressed in self._pulses:
                run.posted += ctx.get(posted)
                run.suppressed += ctx.get(suppressed)

            done = not taken and not any(queues) and all(x is None for x in presenting) and \
                not any(ctx.get(port.busy) for port in ports)
            if done:
                break
            if cycle >= limit:
                raise TimeoutError(f"no completion after {cycle} cycles "
                                   f"({len(run.accepted)}/{len(run.requests)} accepted)")
            await ctx.tick()
            cycle += 1
            for port in taken:
                ctx.set(port.icr.valid, 0)
        run.cycles = cycle
        run.memory_log = self.memory.log
        self._leftover = expected

    @staticmethod
    def _check_offered(port, rising, expected, cycle):
        """Outputs must appear (``valid`` rise) in the order of the requests that caused them;
        what appears in one cycle may be in any order."""
        want = expected[:len(rising)]
        del expected[:len(rising)]
        if sorted(rising, key=repr) != sorted(want, key=repr):
            raise MismatchError(f"core {port}: at cycle {cycle} the gateware offers {rising}, "
                                f"the golden model expects {want or 'nothing'}")

    def _final_checks(self, run):
        missing = [(p, e) for p, exp in enumerate(self._leftover) for e in exp]
        if missing:
            raise MismatchError(f"events the golden model expects but the gateware never "
                                f"produced: {missing[:4]}")
        if len(self.ports) == 1:
            rtl, gold = self.memory.log, self.golden_memory.log
            for i, (a, b) in enumerate(zip(rtl, gold)):
                if a != b:
                    raise MismatchError(f"bus transfer {i}: gateware {a}, golden model {b}")
            if len(rtl) != len(gold):
                raise MismatchError(f"{len(rtl)} bus transfers, golden model {len(gold)}")
        if self.memory.words != self.golden_memory.words:
            diff = sorted(a for a in set(self.memory.words) | set(self.golden_memory.words)
                          if self.memory.read_word(a) != self.golden_memory.read_word(a))
            raise MismatchError(f"memory differs from the golden model at words "
                                f"{[hex(a) for a in diff[:8]]}")

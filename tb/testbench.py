"""The Python testbench both simulator backends share, woken once per transaction.

It drives and watches the gateware through the helpers of `tb.testbench_top.TestbenchTop`
and hands what it sees to `tb.checker.Checker` as records, each with its cycle. A backend
(`tb.amaranth_harness`, `tb.cocotb.env`) only provides access to the top's signals and calls
`Testbench.wake` when the top says something happens (cocotb: at the falling edge of such a
cycle; Amaranth: every cycle, after the clock edge). One wake costs one read of ``status``.

What it does per transaction, with the timing drawn in advance (`tb.timing`):

- a bus request is answered in the cycle it appears: the memory transfer is made then (that
  is where it takes effect, before anything later), and the helper acks it after the wait
  drawn for it. On the pipelined port, in the cycle it is taken: the transfer is made then,
  and the helper gives its answer in the cycle drawn for it and stalls the next request for
  the cycles drawn for that one (`tb.pipelined_memory`);
- an ICR write is loaded with the idle cycles drawn before it (coin flips with probability
  ``gap``); one whose ``cfg`` differs from the last, or with a ``barrier``, waits for ``busy``
  to fall;
- an output whose ``valid`` rose gets the stall its consumer's chain draws; the helper holds
  ``ready`` low that long and checks that ``valid`` and the payload are held;
- the software agent starts after the eligible cycles drawn for it and owns the memory for
  the cycles drawn then.

Records come out in cycle order, and within a cycle in the order a per-cycle loop sees them:
``busy`` fell, transfers completed, writes accepted, outputs offered then taken. A record is
handed to the checker once none before it can still turn up: at the end of the wake of its
cycle, or of the next wake when an ICR write may have been taken in that cycle (the handshake
is reported one cycle later). So a co-simulation sees a request resolved in the cycle the
unit offers its output, as a per-cycle loop would.
"""

import heapq
import random

from hdl.formats import OUTPUT_STREAMS
from sim.memory import BusError
from .checker import Checker, Event, ProtocolError, decode_event
from .codec import ICR_WRITE, pack_config
from .pipelined_memory import PipelinedMemory
from .testbench_top import (
    AGENT_WAIT_BITS, DELAY_BITS, STALL_BITS, STREAM_ERRORS, WAIT_BITS,
)
from .timing import MAX_STALL, OutputStall, coin_run, validate_timing, wait_cycles


__all__ = ["Testbench", "Layout"]

_IDLE, _TRANSFER, _ACCEPT, _OUTPUTS = range(4)       # the order of records within a cycle
_STALL_MASK = (1 << STALL_BITS) - 1
_REPLAYS = 4        # coverage: repeats of an unchanged cycle that can add a bin (see _cover)


class Layout:
    """``offset`` and ``mask`` of each field of a packed value ([(name, width)], LSB first)."""

    def __init__(self, fields):
        self.offset, self.mask, at = {}, {}, 0
        for name, width in fields:
            self.offset[name], self.mask[name] = at, (1 << width) - 1
            at += width

    def get(self, value, name):
        return value >> self.offset[name] & self.mask[name]

    def pack(self, **values):
        bits, offset, mask = 0, self.offset, self.mask
        for k, v in values.items():
            bits |= (v & mask[k]) << offset[k]
        return bits

    def getter(self, name):
        """``get(value, name)`` as a function of ``value`` (no lookups per call)."""
        offset, mask = self.offset[name], self.mask[name]
        return lambda value: value >> offset & mask


class _Core:
    """What the testbench keeps of one core."""

    def __init__(self, index, rng, backpressure, bursts):
        self.index = index
        self.queue = []             # requests not yet loaded, in order (popped from the front)
        self.head = 0
        self.presenting = None      # the request loaded on ``icr``, until taken
        self.valid_from = 0         # the cycle its ``valid`` rises
        self.waiting_idle = False   # the next request waits for busy to fall
        self.applied_cfg = None
        self.toggle = 0
        self.busy = 0
        self.stalls = [OutputStall(rng, backpressure, bursts) for _ in OUTPUT_STREAMS]
        self.stall_bits = 0
        self.open_offers = 0        # outputs offered and not yet taken
        self.cover = None           # (cycle, sample arguments) last sampled
        self.last_fall = None       # the cycle busy last fell (a kept fall is seen again)

    @property
    def idle(self):
        return self.presenting is None and self.head == len(self.queue)


class Testbench:
    """One run on one top (see the module docstring).

    Parameters
    ----------
    layouts : tb.testbench_top.Layouts
        The packed values of the top the backend simulates (``TestbenchTop.layouts``, or
        `tb.testbench_top.layouts_for`).
    read, write : callable(name) -> callable
        ``read(name)()`` returns the integer value of the top's signal ``name``;
        ``write(name)(value)`` sets an input.
    memory, maxphyaddr, seed, latency, wait_states, backpressure, bursts, gap, shadow,
    allowed_words, agent, on_resolved, on_barrier, compare_lock, locked_rmw
        As `tb.cocotb.env.TB` documents them.
    fsm_coverage : tb.fsm_coverage.Sampler, tb.fsm_coverage_pipelined.Sampler or None
        (the one of the unit's bus variant)
    on_event : callable(tb.checker.Event) or None
        Each output handshake, in order.
    check : bool
        Feed the checker (False: only record what happens).
    bus : str or None
        The unit's bus variant (`hdl.formats.BUS_KINDS`), the top's (``layouts.bus``) if None;
        for the golden model (`tb.checker.Checker`) and the memory. A pipelined memory
        answers ``latency`` cycles after it takes a request, at least 1.
    """

    __test__ = False        # a name pytest would take for a test class

    def __init__(self, layouts, read, write, *, memory, maxphyaddr=52, seed=0, latency=0,
                 wait_states=0.0, backpressure=0.0, bursts=0.0, gap=0.0, shadow=False,
                 allowed_words=None, agent=None, on_resolved=None, on_barrier=None,
                 compare_lock=True, locked_rmw=None, fsm_coverage=None, on_event=None,
                 check=True, bus=None):
        validate_timing(latency, wait_states, backpressure, bursts)
        if latency + MAX_STALL >= 2 ** WAIT_BITS:
            raise ValueError(f"latency must be below {2 ** WAIT_BITS - MAX_STALL}, not "
                             f"{latency} (the memory helper counts {WAIT_BITS}-bit waits)")
        bus = layouts.bus if bus is None else bus
        if bus != layouts.bus:
            raise ValueError(f"a {bus} unit in a top built for the {layouts.bus} port")
        self.layouts, self.n = layouts, layouts.n
        self.memory = memory
        self.rng = random.Random(seed)
        self.pipelined = PipelinedMemory(memory, self.rng, latency=latency,
                                         wait_states=wait_states, bursts=bursts) \
            if bus == "pipelined" else None
        self.latency, self.wait_states, self.bursts, self.gap = latency, wait_states, bursts, gap
        self.checker = Checker(self.n, maxphyaddr=maxphyaddr,
                               shadow=memory.copy() if shadow else None,
                               allowed_words=allowed_words, on_resolved=on_resolved,
                               compare_lock=compare_lock,
                               locked_rmw=compare_lock if locked_rmw is None else locked_rmw,
                               bus=bus)
        self.check = check
        self.agent, self.on_barrier, self.on_event = agent, on_barrier, on_event
        self.coverage = fsm_coverage
        self.cores = [_Core(i, self.rng, backpressure, bursts) for i in range(self.n)]
        self.status = Layout(layouts.status_fields)
        self.request = Layout(layouts.request_fields)
        self.answer = Layout(layouts.mem_fields)
        self.icr = Layout(layouts.icr_fields)
        self.agent_layout = Layout(layouts.agent_fields)
        self.snapshot = Layout(layouts.snapshot_fields)
        self._read_status = read("status")
        self._read_request = read("bus_request")
        self._write_answer = write("mem_answer")
        self._write_agent = write("agent_answer")
        self._read = read
        self._write_watchdog = write("watchdog")
        self._payloads = [[read(f"payload_{i}_{s}") for s in OUTPUT_STREAMS]
                          for i in range(self.n)]
        self._snapshots = [read(f"snapshot_{i}") for i in range(self.n)]
        self._cfg = [write(f"cfg_{i}") for i in range(self.n)]
        self._icr = [write(f"icr_load_{i}") for i in range(self.n)]
        self._stalls = [write(f"stalls_{i}") for i in range(self.n)]
        self._status_bits = [{name: (self.status.offset[f"{name}{i}"],
                                     self.status.mask[f"{name}{i}"])
                              for name in ("busy", "fell", "took", "rose", "changed")}
                             for i in range(self.n)]
        # per wake: the status bits as plain shifts, the request's fields as getters
        self._core_bits = [(core, *(self.status.offset[f"{name}{core.index}"]
                                    for name in ("busy", "fell", "fell_before", "took",
                                                 "rose")))
                           for core in self.cores]
        self._fell_at = [read(f"fell_at_{i}") for i in range(self.n)]
        self._write_wake_on_fall = write("wake_on_fall")
        self._wake_on_fall = (1 << self.n) - 1      # as `reset_inputs` writes it
        self._flag_bits = tuple(self.status.offset[name]
                                for name in ("error", "acked", "agent_start", "need"))
        self._request_field = {name: self.request.getter(name)
                               for name in self.request.offset}
        self.records = []           # heap of (cycle, phase, seq, what, args)
        self._seq = 0
        self._outputs = {}          # (cycle, core) -> ([offers], [events])
        self.cycle = -1
        self.mem_toggle = 0
        self.agent_toggle = 0
        self.outstanding = None     # an agent run: the transfer answered, ack not seen yet
        self.accepted = 0
        self.transfers = 0
        self.longest_wait = 0
        self.offer_stalls = 0
        self.longest_stall = 0
        self.on_accept = None       # callable(core, request, cycle), in order
        self.on_transfer = None     # callable(lock cycle or None), each transfer as made
        self.last_status = 0
        self._alarms = []           # cycles to be woken at (`wake_at`)
        self._watchdog = 0xFFFF_FFFF

    # -- set-up ---------------------------------------------------------------------------------
    def reset_inputs(self, write):
        """Every input of the top to its idle value (call while the top is in reset)."""
        for name in ("mem_answer", "agent_answer", "every_cycle", "cov_enable",
                     "wake_on_ack"):
            write(name)(0)
        write("wake_on_fall")(self._wake_on_fall)
        write("watchdog")(2 ** 32 - 1)
        for i in range(self.n):
            for name in (f"icr_load_{i}", f"stalls_{i}", f"cfg_{i}"):
                write(name)(0)
        write("cov_enable")(self.coverage is not None)
        # the classic memory acks after holds of the agent nobody knows in advance
        write("wake_on_ack")(self.agent is not None and self.pipelined is None)
        if self.pipelined is not None:      # the first request's stall
            write("first_stall")(self.pipelined.stall())

    def start_agent(self):
        """Schedule the agent's first operation (after reset)."""
        if self.agent is not None:
            self._arm_agent(0)

    def submit(self, requests):
        for r in requests:
            if not 0 <= r.port < self.n:
                raise ValueError(f"request port {r.port} out of range 0..{self.n - 1}")
            self.cores[r.port].queue.append(r)

    def now(self):
        """The simulator's cycle (read from the top, between wakes too)."""
        return self._read_status() & 0xFFFF_FFFF

    def wake_at(self, cycle):
        """Be woken in ``cycle`` (later than now) whatever happens: a time-out, or to load
        requests submitted between wakes."""
        heapq.heappush(self._alarms, cycle)
        self._program_watchdog(self.cycle)

    def _program_watchdog(self, t):
        alarms = self._alarms
        while alarms and alarms[0] <= t:
            heapq.heappop(alarms)
        target = alarms[0] & 0xFFFF_FFFF if alarms else 0xFFFF_FFFF
        if target != self._watchdog:
            self._write_watchdog(target)
            self._watchdog = target

    # -- one wake -------------------------------------------------------------------------------
    def wake(self):
        """Handle everything the top reports in this cycle; returns the cycle."""
        s = self.last_status = self._read_status()
        error, acked, agent_start, need = self._flag_bits
        t = s & 0xFFFF_FFFF
        self.cycle = t
        if s >> error & 1:
            self._protocol_error(t)
        if self.coverage is not None:
            self._cover(t, s)
        for core, busy, fell, fell_before, took, _ in self._core_bits:
            core.busy = s >> busy & 1
            if s >> fell_before & 1:
                self._fell(core, self._fell_at[core.index]())
            if s >> fell & 1:
                self._fell(core, t)
            if s >> took & 1:
                self._accepted(core, t - 1)
        if self.outstanding is not None and s >> acked & 1:
            self._record(t - 1, _TRANSFER, "transfer", self.outstanding)
            self.outstanding = None
        if s >> agent_start & 1:
            self._agent_starts(t)
        if s >> need & 1:
            self._answer(t)
        for core, _, _, _, _, rose_bit in self._core_bits:
            rose = s >> rose_bit & 0xF
            if rose:
                self._offers(core, t, rose)
        for core in self.cores:
            if core.presenting is None and core.head < len(core.queue) and \
                    (not core.waiting_idle or not core.busy):
                self._present(core, t)
        # only an ICR write taken in this cycle would still come (at the next wake)
        done = t
        for core in self.cores:
            if core.presenting is not None and core.valid_from <= t:
                done = t - 1
                break
        self.flush(done)
        if self.check:
            check_delivery = self.checker.delivery.check     # the delivery bound
            for core in self.cores:
                check_delivery(core.index, done)
        if self._alarms:
            self._program_watchdog(t)
        self._ask_for_falls()
        return t

    def _fell(self, core, cycle):
        """``busy`` of ``core`` fell in ``cycle``: now, or since the last wake (a fall the
        helper kept; a backend that wakes every cycle sees it twice)."""
        if cycle != core.last_fall:
            core.last_fall = cycle
            self._record(cycle, _IDLE, "idle", core)

    def _ask_for_falls(self):
        """Be woken by the fall of ``busy`` only on a core with nothing left to present or
        one waiting for idle: on the others, the next write taken wakes anyway, after it."""
        mask = 0
        for core in self.cores:
            if core.waiting_idle or core.idle:
                mask |= 1 << core.index
        if mask != self._wake_on_fall:
            self._write_wake_on_fall(mask)
            self._wake_on_fall = mask

    def _protocol_error(self, t):
        errors = self._read("errors")()
        names = list(self.layouts.bus_errors) + [
            f"core {i}: {stream}: {e}" for i in range(self.n) for stream in OUTPUT_STREAMS
            for e in STREAM_ERRORS]
        found = [name for k, name in enumerate(names) if errors >> k & 1]
        raise ProtocolError(f"cycle {t}: {'; '.join(found)}")

    # -- the ICR writes ---------------------------------------------------------------------------
    def _present(self, core, t):
        request = core.queue[core.head]
        if (request.barrier or request.cfg != core.applied_cfg) and core.busy:
            core.waiting_idle = True        # the fall of busy wakes us
            return
        core.waiting_idle = False
        core.head += 1
        if request.barrier and self.on_barrier is not None:
            # the host acts on memory once the core is idle: everything before is checked
            # (the checker's shadow memory has caught up)
            self.flush(t)
            self.on_barrier(request)
        if request.cfg != core.applied_cfg:
            self._cfg[core.index](pack_config(request.cfg))
            core.applied_cfg = request.cfg
        delay = coin_run(self.rng, self.gap, 2 ** DELAY_BITS - 1)
        core.toggle ^= 1
        self._icr[core.index](self.icr.pack(
            toggle=core.toggle, delay=delay,
            payload=ICR_WRITE.pack(kind=request.kind, data=request.value)))
        core.presenting = request
        core.valid_from = t + delay

    def _accepted(self, core, cycle):
        request, core.presenting = core.presenting, None
        self.accepted += 1
        self._record(cycle, _ACCEPT, "accept", (core.index, request))

    # -- the memory -----------------------------------------------------------------------------
    def _answer(self, t):
        if self.pipelined is not None:
            self._take(t)
            return
        r, field = self._read_request(), self._request_field
        adr, we, sel = field["adr"](r), field["we"](r), field["sel"](r)
        lock = field["lock"](r)
        master = field["grant"](r) if self.layouts.system else 0
        try:
            data = self.memory.transfer(adr=adr, write=bool(we), sel=sel,
                                        data=field["dat_w"](r) if we else 0, lock=bool(lock))
            err = 0
        except BusError:
            data, err = 0, 1
        wait = wait_cycles(self.rng, self.latency, self.wait_states, self.bursts)
        transfer = self._performed(master, field["lock_id"](r) if lock else None, wait,
                                   wait=wait, err=err, data=data)
        if self.agent is not None:
            self.outstanding = transfer         # acked after holds nobody knows yet
        else:
            self._record(t + wait, _TRANSFER, "transfer", transfer)

    def _take(self, t):
        """The pipelined memory takes a request in this cycle: perform it, and load its
        answer, due in a later cycle, with the stall of the next request."""
        r, field = self._read_request(), self._request_field
        we, lock = field["we"](r), field["lock"](r)
        master = field["grant"](r) if self.layouts.system else 0
        data, err, due = self.pipelined.take(t, adr=field["adr"](r), we=we,
                                             sel=field["sel"](r), dat_w=field["dat_w"](r),
                                             lock=lock)
        transfer = self._performed(master, field["lock_id"](r) if lock else None, due - t,
                                   due=due, err=err, data=data, stall=self.pipelined.stall())
        self._record(due, _TRANSFER, "transfer", transfer)

    def _performed(self, master, lock_id, delay, **answer):
        """The memory performed ``master``'s transfer (the last of its log): load its answer,
        due ``delay`` cycles on (``answer``: the answer's fields, of the port's `mem_fields`),
        and tell those who follow the transfers. Returns the transfer: (master, access, lock
        id)."""
        access = self.memory.log[-1]
        self.longest_wait = max(self.longest_wait, delay)
        self.mem_toggle ^= 1
        self._write_answer(self.answer.pack(toggle=self.mem_toggle, **answer))
        self.transfers += 1
        if self.on_transfer is not None:
            self.on_transfer(lock_id)
        if self.agent is not None:
            self.agent.observe(master, access)
        return master, access, lock_id

    def _agent_starts(self, t):
        hold = self.agent.start()
        self._arm_agent(hold)

    def _arm_agent(self, hold):
        self.agent_toggle ^= 1
        wait = min(self.agent.next_wait(), 2 ** AGENT_WAIT_BITS - 1)
        self._write_agent(self.agent_layout.pack(toggle=self.agent_toggle, hold=hold,
                                                 wait=wait, active=int(self.agent.enabled)))

    # -- the outputs ----------------------------------------------------------------------------
    def _offers(self, core, t, rose):
        i = core.index
        for k, stream in enumerate(OUTPUT_STREAMS):
            if not rose >> k & 1:
                continue
            payload = decode_event(stream, self._payloads[i][k]())
            stall = core.stalls[k].stall_at(t)
            field = STALL_BITS * k
            core.stall_bits = core.stall_bits & ~(_STALL_MASK << field) | stall << field
            self.offer_stalls += stall
            self.longest_stall = max(self.longest_stall, stall)
            core.open_offers += 1
            self._output(t, i, offer=(stream, payload))
            self._output(t + stall, i, event=Event(i, stream, payload, t, t + stall))
        self._stalls[i](core.stall_bits)

    def _output(self, cycle, core, offer=None, event=None):
        key = (cycle, core)
        entry = self._outputs.get(key)
        if entry is None:
            entry = self._outputs[key] = ([], [])
            self._record(cycle, _OUTPUTS, "outputs", key)
        if offer is not None:
            entry[0].append(offer)
        if event is not None:
            entry[1].append(event)

    # -- records, in cycle order --------------------------------------------------------------
    def _record(self, cycle, phase, what, args):
        self._seq += 1
        heapq.heappush(self.records, (cycle, phase, self._seq, what, args))

    def flush(self, upto=None):
        """Hand every record up to cycle ``upto`` (all: None) to the checker."""
        records, checker = self.records, self.checker
        while records and (upto is None or records[0][0] <= upto):
            cycle, _, _, what, args = heapq.heappop(records)
            if not self.check:
                self._record_only(what, args, cycle)
            elif what == "transfer":
                master, access, lock_cycle = args
                checker.transfer(master, access, lock_cycle, cycle)
            elif what == "accept":
                checker.accepted(args[0], args[1], cycle)
                if self.on_accept is not None:
                    self.on_accept(args[0], args[1], cycle)
            elif what == "idle":
                checker.idle(args.index, cycle)
            else:
                rising, events = self._outputs.pop(args)
                checker.outputs(args[1], cycle, rising, events)
                for event in events:
                    self.cores[event.port].open_offers -= 1
                    if self.on_event is not None:
                        self.on_event(event)

    def _record_only(self, what, args, cycle):
        if what == "accept" and self.on_accept is not None:
            self.on_accept(args[0], args[1], cycle)
        elif what == "outputs":
            for event in self._outputs.pop(args)[1]:
                self.cores[event.port].open_offers -= 1
                if self.on_event is not None:
                    self.on_event(event)

    # -- state for the waiters ------------------------------------------------------------------
    def settled(self):
        """Every write accepted, every core idle with nothing offered (then no record can
        turn up for this cycle: all are handed to the checker)."""
        for c in self.cores:        # a loop, not all(...): this runs after every wake
            if c.busy or not c.idle:
                return False
        self.flush()
        return not any(c.open_offers for c in self.cores)

    def pending(self):
        """Per core: (requests not yet loaded, one presented, busy)."""
        return {c.index: (len(c.queue) - c.head, c.presenting is not None, c.busy)
                for c in self.cores}

    def counters(self):
        return {name: self._read(f"count_{name}")() for name in self.layouts.counters}

    # -- FSM coverage ---------------------------------------------------------------------------
    def _cover(self, t, s):
        """Sample the snapshot of cycle t - 1 of each core whose snapshot changed; the cycles
        since the last sample repeat it (a few repeats add every bin more could)."""
        for core in self.cores:
            if not s >> self._status_bits[core.index]["changed"][0] & 1:
                continue
            self._replay(core, t - 2)
            args = self._sample_args(core, self._snapshots[core.index]())
            self._sample(core, args)
            core.cover = (t - 1, args)

    def finish_coverage(self, cycle):
        """The cycles up to ``cycle`` - 1 that repeat the last sample (the snapshot of
        ``cycle`` itself is registered only at its end)."""
        if self.coverage is not None:
            for core in self.cores:
                self._replay(core, cycle - 1)

    def _replay(self, core, upto):
        if core.cover is None:
            return
        last, args = core.cover
        for _ in range(min(upto - last, _REPLAYS)):
            self._sample(core, args)
        core.cover = (max(last, upto), args)

    def _sample(self, core, args):
        if self.pipelined is not None:
            self.coverage.sample(*args, core=core.index)
            return
        system_grant, args = args[0], args[1:]
        if self.layouts.system and core.index == 0:
            self.coverage.system_grant(system_grant)
        self.coverage.sample(core.index, *args)

    def _sample_args(self, core, snap):
        f = self.snapshot
        get = f.get
        if self.pipelined is not None:      # `tb.fsm_coverage_pipelined.Sampler.sample`
            icr_valid = get(snap, "icr_valid")
            kind = core.presenting.kind if icr_valid and core.presenting is not None else None
            return (get(snap, "state"), get(snap, "kind"), kind,
                    (get(snap, "notify_valid"), get(snap, "notify_ready")),
                    (get(snap, "self_ipi_valid"), get(snap, "self_ipi_ready")))
        states = [get(snap, f"state{k}") for k in range(len(self.coverage.names))]
        icr_valid = get(snap, "icr_valid")
        kind = core.presenting.kind if icr_valid and core.presenting is not None else None
        return (get(snap, "system_grant"), states, get(snap, "grant"), get(snap, "cyc"),
                get(snap, "ack"), kind, bool(icr_valid and get(snap, "icr_ready")),
                get(snap, "post"), get(snap, "self_ipi_req"), get(snap, "lookup_post"),
                (get(snap, "notify_valid"), get(snap, "notify_ready")),
                (get(snap, "self_ipi_valid"), get(snap, "self_ipi_ready")))


"""Cycle-based bus-functional models of the unit's ports (run inside cocotb).

All models are stepped by one loop in `tb.cocotb.env.TB`, twice a cycle and in a fixed order,
so a run is reproducible from its seed: ``drive`` at the falling edge (the DUT's outputs have
settled after the rising edge; the models set their inputs), then ``sample`` in the ReadOnly
phase of the same cycle (everything has settled with those inputs: what is seen then happens at
the next rising edge). A memory that acks 0 cycles after ``stb`` answers in the same cycle.
"""

from collections import deque

from hdl.formats import OUTPUT_STREAMS
from sim.memory import BusError
from tb.checker import LockTracker, ProtocolError
from tb.codec import ICR_WRITE, pack_config
from tb.timing import OutputStall, TransferTimer


__all__ = ["CorePorts", "WishboneMemory", "ICRDriver", "OutputPort"]


def _handle(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise ProtocolError(f"the DUT has no port {name!r}") from None


class CorePorts:
    """Handles of one core's ports (everything but the bus).

    Parameters
    ----------
    dut : cocotb handle of the top
    prefix : str
        ``""`` for `IPIVirtualizer`, ``"cores__i__"`` for core ``i`` of `IPIVSystem`
        (Amaranth's flattened names).
    """

    def __init__(self, dut, prefix=""):
        h = lambda name: _handle(dut, prefix + name)
        self.cfg = h("cfg")
        self.icr_valid, self.icr_payload, self.icr_ready = \
            h("icr__valid"), h("icr__payload"), h("icr__ready")
        self.busy = h("busy")
        self.streams = {name: (h(f"{name}__valid"), h(f"{name}__payload"), h(f"{name}__ready"))
                        for name in OUTPUT_STREAMS}


class _Bus:
    def __init__(self, dut, prefix="bus__"):
        for name in ("cyc", "stb", "we", "adr", "sel", "dat_w", "dat_r", "ack", "err", "lock"):
            setattr(self, name, _handle(dut, prefix + name))


class WishboneMemory:
    """A Wishbone B4 classic slave backed by a `sim.memory.Memory`.

    Each transfer goes through ``memory.transfer`` (so it is logged and may end in an error
    injected there). Another master, the software ``agent``, may own the memory for whole
    cycles: it may start only outside a locked sequence of the DUT (``cyc`` and ``lock`` high
    after a locked transfer completed), and the DUT is not answered while it owns the memory,
    so a locked sequence and the agent's accesses never interleave.

    Parameters
    ----------
    dut : cocotb handle of the top
    memory : sim.memory.Memory
    rng : random.Random
    latency, wait_states, bursts
        The memory's timing (see `tb.timing`).
    n_masters : int
        More than one: `IPIVSystem`; transfers are attributed to masters by the arbiter's grant.
    on_transfer : callable(master, sim.memory.Access, locked bus cycle or None)
        Each completed transfer (see `tb.checker.LockTracker`).
    agent : object with ``tick(cycle, may_start) -> bool`` (owns the memory this cycle), or None
    """

    def __init__(self, dut, memory, rng, *, latency=0, wait_states=0.0, bursts=0.0,
                 n_masters=1, on_transfer=None, agent=None):
        self.timer = TransferTimer(rng, latency, wait_states, bursts)
        self.bus = _Bus(dut)
        self.memory = memory
        self.rng = rng
        self.on_transfer = on_transfer
        self.agent = agent
        self.arbiter = None
        if n_masters > 1:
            arbiter = _handle(dut, "arbiter")
            self.arbiter = (_handle(arbiter, "grant"),
                            [_handle(arbiter, f"masters__{i}__cyc") for i in range(n_masters)])
        self.request = None
        self.held = 0               # cycles the current transfer has waited so far
        self.in_locked = False      # inside a locked sequence (a locked transfer completed)
        self.locks = LockTracker()
        self.lock_cycle = None      # the locked bus cycle in progress
        self.grant = None
        self.ack = self.err = 0
        self.dat_r_valid = False
        self.transfers = 0
        self.stalled = 0            # cycles the DUT waited because the agent owned the memory
        self.busy_cycles = 0        # cycles with cyc high
        self.cyc_run = self.longest_cyc_run = 0     # consecutive cycles with cyc high
        self.handovers_in_cyc = 0   # master changes with cyc high on both sides (systems)
        self.locked_handovers = 0   # ... with lock high on both sides too
        self.prev_lock = 0

    def _set(self, name, value):
        if getattr(self, name) != value:
            setattr(self, name, value)
            getattr(self.bus, name).value = value

    def drive(self, cycle):
        bus = self.bus
        cyc, stb = int(bus.cyc.value), int(bus.stb.value)
        lock = int(bus.lock.value) if cyc else 0
        if not cyc and (stb or int(bus.lock.value)):
            raise ProtocolError(f"cycle {cycle}: stb or lock high without cyc")
        if not (cyc and lock):
            self.in_locked = False
        if cyc:
            self.busy_cycles += 1
            self.cyc_run += 1
            self.longest_cyc_run = max(self.longest_cyc_run, self.cyc_run)
            if self.arbiter is not None:
                self._check_grant(cycle, lock)
        else:
            self.cyc_run = 0
            if self.arbiter is not None:
                self.grant = None
        self.lock_cycle = self.locks.step(cyc, lock, self.grant)
        owned = self.agent.tick(cycle, not self.in_locked) if self.agent is not None else False

        ack = err = 0
        data = None
        if cyc and stb:
            if not self.timer.waiting:      # a new transfer
                self.request = self._read_request(lock)
                self.held = 0
            if self.timer.step(True, hold=owned):
                if self.held and self._read_request(lock) != self.request:
                    raise ProtocolError(f"cycle {cycle}: the master changed its transfer while "
                                        f"waiting for ack: {self.request} -> "
                                        f"{self._read_request(lock)}")
                ack, err, data = self._perform()
            else:
                self.stalled += owned
                self.held += 1
        elif self.timer.waiting:
            raise ProtocolError(f"cycle {cycle}: the master withdrew a transfer before its ack")

        self._set("ack", ack)
        self._set("err", err)
        if data is not None:
            bus.dat_r.value = data
            self.dat_r_valid = True
        elif self.dat_r_valid:
            # Garbage outside the ack cycle: a master sampling dat_r late reads nonsense.
            bus.dat_r.value = self.rng.getrandbits(64)
            self.dat_r_valid = False

    def _read_request(self, lock):
        bus = self.bus
        we = int(bus.we.value)
        return (int(bus.adr.value), we, int(bus.sel.value), int(bus.dat_w.value) if we else 0,
                lock)

    def _check_grant(self, cycle, lock):
        grant_handle, masters_cyc = self.arbiter
        grant = int(grant_handle.value)
        if self.grant is not None and grant != self.grant and \
                int(masters_cyc[self.grant].value):
            raise ProtocolError(f"cycle {cycle}: the arbiter switched from master {self.grant} "
                                f"to {grant} while master {self.grant} holds cyc")
        if grant != self.grant:
            self.in_locked = False      # a new master's sequence
            if self.grant is not None:
                self.handovers_in_cyc += 1      # the bus saw no cyc-low cycle in between
                self.locked_handovers += bool(lock and self.prev_lock)
        self.grant = grant
        self.prev_lock = lock

    def _perform(self):
        adr, we, sel, dat_w, lock = self.request
        try:
            data = self.memory.transfer(adr=adr, write=bool(we), sel=sel, data=dat_w,
                                        lock=bool(lock))
            ack, err = 1, 0
        except BusError:
            data, ack, err = None, 0, 1
        if lock:
            self.in_locked = True
        self.transfers += 1
        if self.on_transfer is not None:
            self.on_transfer(self.grant if self.arbiter is not None else 0, self.memory.log[-1],
                             self.lock_cycle)
        return ack, err, (data if not we and ack else None)


class ICRDriver:
    """Offers ICR writes (`sim.scenarios.Request`: ``cfg``, ``kind``, ``value``) on one core.

    ``cfg`` is changed only while the core is idle (the contract: held stable while ``busy``);
    a request with ``barrier`` also waits for idle and then calls ``on_barrier(request)``.

    Parameters
    ----------
    ports : CorePorts
    rng : random.Random
    gap : float
        Probability of an idle cycle before offering the next write.
    on_accept : callable(request, cycle)
    on_barrier : callable(request) or None
    """

    def __init__(self, ports, rng, *, gap=0.0, on_accept=None, on_barrier=None):
        self.ports = ports
        self.rng = rng
        self.gap = gap
        self.on_accept = on_accept
        self.on_barrier = on_barrier
        self.queue = deque()
        self.presenting = None
        self.valid = 0
        self.applied_cfg = None
        self.offered_since = None

    def push(self, request):
        self.queue.append(request)

    @property
    def idle(self):
        return self.presenting is None and not self.queue

    def drive(self, cycle, busy):
        if self.presenting is not None:
            return
        request = self.queue[0] if self.queue else None
        if request is None or (self.gap and self.rng.random() < self.gap) or \
                ((request.barrier or request.cfg != self.applied_cfg) and busy):
            if self.valid:
                self.ports.icr_valid.value = self.valid = 0
            return
        if request.barrier and self.on_barrier is not None:
            self.on_barrier(request)
        if request.cfg != self.applied_cfg:
            self.ports.cfg.value = pack_config(request.cfg)
            self.applied_cfg = request.cfg
        self.ports.icr_payload.value = ICR_WRITE.pack(kind=request.kind, data=request.value)
        if not self.valid:
            self.ports.icr_valid.value = self.valid = 1
        self.presenting = self.queue.popleft()
        self.offered_since = cycle

    def sample(self, cycle):
        if self.presenting is not None and int(self.ports.icr_ready.value):
            request, self.presenting = self.presenting, None
            if self.on_accept is not None:
                self.on_accept(request, cycle)


class OutputPort:
    """Back-pressure on one output stream (the stall model of `tb.timing`: coin flips and
    bursts, capped), and what its monitor (`tb.checker.OutputMonitors`) looks at.

    Parameters
    ----------
    name : str
        One of `hdl.formats.OUTPUT_STREAMS`.
    handles : (valid, payload, ready)
    backpressure : float
        Probability that ``ready`` is low in a cycle.
    bursts : float
        Probability that a burst of 0..50 cycles with ``ready`` low starts in a cycle.
    """

    def __init__(self, name, handles, rng, *, backpressure=0.0, bursts=0.0):
        self.stall = OutputStall(rng, backpressure, bursts)
        self.name = name
        self.valid, self.payload, self.ready_handle = handles
        self.rng = rng
        self.backpressure = backpressure
        self.ready = None

    def drive(self):
        value = int(self.stall.step())
        if value != self.ready:
            self.ready_handle.value = self.ready = value

    def observe(self):
        """(valid, raw payload, ready) in this cycle."""
        valid = int(self.valid.value)
        return valid, int(self.payload.value) if valid else 0, self.ready

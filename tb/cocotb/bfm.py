"""Cycle-based bus-functional models of the unit's ports (run inside cocotb).

All models are stepped by one loop in `tb.cocotb.env.TB`, twice a cycle and in a fixed order,
so a run is reproducible from its seed: ``drive`` at the falling edge (the DUT's outputs have
settled after the rising edge; the models set their inputs), then ``sample`` in the ReadOnly
phase of the same cycle (everything has settled with those inputs: what is seen then happens at
the next rising edge). A memory that acks 0 cycles after ``stb`` answers in the same cycle.
"""

from collections import deque

from sim.memory import BusError


__all__ = ["ProtocolError", "CorePorts", "WishboneMemory", "ICRDriver", "OutputPort",
           "OUTPUT_STREAMS"]

OUTPUT_STREAMS = ("exit", "notify", "self_ipi", "gp")


class ProtocolError(AssertionError):
    """A port broke its protocol (Wishbone, stream valid/ready, the contract's ``busy``)."""


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
    latency : int
        Cycles from ``stb`` to ``ack``/``err`` (0: in the same cycle).
    wait_states : float
        Probability of one more wait cycle, drawn again after each extra one.
    n_masters : int
        More than one: `IPIVSystem`; transfers are attributed to masters by the arbiter's grant.
    on_transfer : callable(master, sim.memory.Access)
    agent : object with ``tick(cycle, may_start) -> bool`` (owns the memory this cycle), or None
    """

    def __init__(self, dut, memory, rng, *, latency=0, wait_states=0.0, n_masters=1,
                 on_transfer=None, agent=None):
        if not isinstance(latency, int) or latency < 0:
            raise ValueError(f"latency must be a non-negative integer, not {latency!r}")
        if not 0.0 <= wait_states < 1.0:
            raise ValueError(f"wait_states must be in [0, 1), not {wait_states!r}")
        self.bus = _Bus(dut)
        self.memory = memory
        self.rng = rng
        self.latency = latency
        self.wait_states = wait_states
        self.on_transfer = on_transfer
        self.agent = agent
        self.arbiter = None
        if n_masters > 1:
            arbiter = _handle(dut, "arbiter")
            self.arbiter = (_handle(arbiter, "grant"),
                            [_handle(arbiter, f"masters__{i}__cyc") for i in range(n_masters)])
        self.wait = None            # cycles left before the current transfer is answered
        self.request = None
        self.held = 0               # cycles the current transfer has waited so far
        self.in_locked = False      # inside a locked sequence (a locked transfer completed)
        self.last_locked = None     # last transfer of the current locked sequence
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
        if stb and not cyc:
            raise ProtocolError(f"cycle {cycle}: stb high without cyc")
        if not (cyc and lock):
            self.in_locked, self.last_locked = False, None
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
        owned = self.agent.tick(cycle, not self.in_locked) if self.agent is not None else False

        ack = err = 0
        data = None
        if cyc and stb:
            if self.wait is None:           # a new transfer
                self.request = self._read_request(lock)
                self.held = 0
                self.wait = self.latency
                while self.wait_states and self.rng.random() < self.wait_states:
                    self.wait += 1
            if owned:
                self.stalled += 1
                self.held += 1
            elif self.wait == 0:
                if self.held and self._read_request(lock) != self.request:
                    raise ProtocolError(f"cycle {cycle}: the master changed its transfer while "
                                        f"waiting for ack: {self.request} -> "
                                        f"{self._read_request(lock)}")
                ack, err, data = self._perform(cycle)
            else:
                self.wait -= 1
                self.held += 1
        elif self.wait is not None:
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
            self.in_locked, self.last_locked = False, None   # a new master's sequence
            if self.grant is not None:
                self.handovers_in_cyc += 1      # the bus saw no cyc-low cycle in between
                self.locked_handovers += bool(lock and self.prev_lock)
        self.grant = grant
        self.prev_lock = lock

    def _perform(self, cycle):
        adr, we, sel, dat_w, lock = self.request
        self.wait = None
        try:
            data = self.memory.transfer(adr=adr, write=bool(we), sel=sel, data=dat_w,
                                        lock=bool(lock))
            ack, err = 1, 0
        except BusError:
            data, ack, err = None, 0, 1
        access = self.memory.log[-1]
        if lock:
            # The contract's locked RMW: a locked write follows the locked read of its word.
            if we and (self.last_locked is None or self.last_locked.write or
                       self.last_locked.adr != adr):
                raise ProtocolError(f"cycle {cycle}: locked write {access} is not preceded by "
                                    f"a locked read of its word in the same locked sequence")
            self.in_locked, self.last_locked = True, access
        self.transfers += 1
        if self.on_transfer is not None:
            self.on_transfer(self.grant if self.arbiter is not None else 0, access)
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
        from .codec import ICR_WRITE, pack_config
        self._pack, self._pack_cfg = ICR_WRITE.pack, pack_config
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
            self.ports.cfg.value = self._pack_cfg(request.cfg)
            self.applied_cfg = request.cfg
        self.ports.icr_payload.value = self._pack(kind=request.kind, data=request.value)
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
    """Random back-pressure on one output stream, and its monitor.

    The monitor checks the stream rules (``valid`` stays high and the payload stable until
    taken) and reports each new offer and each handshake.

    Parameters
    ----------
    name : str
        exit / notify / self_ipi / gp.
    handles : (valid, payload, ready)
    decode : callable(int) -> payload as the scoreboard compares it
    backpressure : float
        Probability that ``ready`` is low in a cycle.
    """

    def __init__(self, name, handles, decode, rng, *, backpressure=0.0):
        if not 0.0 <= backpressure < 1.0:
            raise ValueError(f"backpressure must be in [0, 1), not {backpressure!r}")
        self.name = name
        self.valid, self.payload, self.ready_handle = handles
        self.decode = decode
        self.rng = rng
        self.backpressure = backpressure
        self.ready = None
        self.offered = None         # (first cycle valid, payload) while offered
        self.stalls = 0             # cycles offered and not taken

    def drive(self):
        ready = 0 if self.backpressure and self.rng.random() < self.backpressure else 1
        if ready != self.ready:
            self.ready_handle.value = self.ready = ready

    def sample(self, cycle):
        """Returns (rising payload or None, taken (first cycle, payload) or None)."""
        if not int(self.valid.value):
            if self.offered is not None:
                raise ProtocolError(f"cycle {cycle}: {self.name}.valid dropped before the "
                                    f"payload {self.offered[1]} was taken")
            return None, None
        payload = self.decode(int(self.payload.value))
        rising = None
        if self.offered is None:
            self.offered = (cycle, payload)
            rising = payload
        elif self.offered[1] != payload:
            raise ProtocolError(f"cycle {cycle}: {self.name} payload changed while valid: "
                                f"{self.offered[1]} -> {payload}")
        if self.ready:
            taken, self.offered = self.offered, None
            return rising, taken
        self.stalls += 1
        return rising, None

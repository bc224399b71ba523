"""The testbench top: the gateware under test (`IPIVirtualizer` or `IPIVSystem`) and small HDL
helpers, so that the Python testbench (`tb.testbench`) is woken once per transaction instead of
every cycle. Both simulator backends simulate this top: Amaranth's simulator directly, Icarus
and Verilator through its Verilog (`tb.verilog.generate`).

Python hands each helper what a transaction needs, drawn in advance; the helper plays it cycle
by cycle and checks the protocol rules every cycle:

- **memory** (Wishbone B4 classic slave): Python answers a new request (``need``) in the
  cycle it appears with the data, ``err`` and the number of wait cycles; the helper holds
  ``ack``/``err`` back that many cycles (counting only cycles the software agent does not own
  the memory) and drives random garbage on ``dat_r`` outside the answer. Checked: no
  ``stb``/``lock`` without ``cyc``, no request withdrawn or changed before its answer, no
  arbiter that switches masters while the owner's ``cyc`` is high. On a unit or system with
  the pipelined port, the memory is a Wishbone B4 pipelined slave instead
  (`tb.testbench_pipelined`): Python answers each request in the cycle it is taken, and the
  helper gives the answers in order at their cycles and stalls each request as drawn.
- **ICR producer** (per core): a request loaded with a delay (idle cycles before ``valid``)
  is offered until taken; the handshake is reported in the next cycle (``took``).
- **busy** (per core): its fall (``fell``) wakes Python only where Python asks for it
  (``wake_on_fall``: a core with nothing left to present, or one waiting for idle); else the
  helper keeps the fall and its cycle (``fell_before``, ``fell_at[i]``) for the next wake,
  which comes before the core can start anything new (a write taken wakes), and wakes at
  once for a second fall not yet reported.
- **consumers** (per output stream): ``ready`` stays low for the number of cycles Python set
  when ``valid`` rose (``rose``), then high. Checked: ``valid`` held and the payload stable
  until taken, no ``valid`` while ``busy`` is low.
- **software agent** (systems): it may start only outside a locked sequence, after the number
  of eligible cycles Python drew; it then owns the memory for the cycles Python set.
- **FSM coverage**: a snapshot per core of what `tb.fsm_coverage.Sampler` (pipelined:
  `tb.fsm_coverage_pipelined.Sampler`) reads, registered each cycle, and whether it changed.

``status`` packs the cycle number and every event flag into one value, so a wake-up costs one
read. ``wake`` says Python has something to do in this cycle; with ``negedge_wake``, the
register ``wake_toggle`` changes at the falling edge of each such cycle (the cocotb side waits
for that change; values are settled then and inputs written then count for this cycle).
"""

from amaranth import Cat, ClockDomain, ClockSignal, Const, Elaboratable, Module, Mux, \
    ResetSignal, Shape, Signal, Value

from hdl import wishbone
from hdl.formats import ICRWriteKind, OUTPUT_STREAMS
from hdl.ipi_virtualizer import STAGES, CoreSignature
from hdl.params import bus_addr_width, check_bus
from hdl.pipelined_sequencer import PipelinedSequencer
from .testbench_hdl import (
    AGENT_WAIT_BITS, COUNTER_BITS, CYCLE_BITS, DELAY_BITS, HOLD_BITS, LOCK_ID_BITS, STALL_BITS,
    WAIT_BITS, Armed, fields as _fields, flag as _flag, request_changed as _request_changed,
    sub as _sub, width as _width,
)
from .testbench_pipelined import MEM_FIELDS as PIPELINED_MEM_FIELDS, PIPELINED_BUS_ERRORS, \
    PipelinedMemoryHelper


__all__ = ["TestbenchTop", "Layouts", "layouts_for", "COUNTERS", "CYCLE_BITS", "WAIT_BITS",
           "STALL_BITS", "DELAY_BITS", "HOLD_BITS", "AGENT_WAIT_BITS", "LOCK_ID_BITS",
           "BUS_ERRORS", "PIPELINED_BUS_ERRORS", "STREAM_ERRORS"]

#: The bus protocol errors of the classic port, one ``errors`` bit each (in this order).
BUS_ERRORS = ("stb or lock high without cyc",
              "the master withdrew a transfer before its answer",
              "the master changed its transfer while waiting for the answer",
              "an arbiter switched masters while the owner's cyc was high")
#: The errors of one output stream (per core, per stream in `OUTPUT_STREAMS` order).
STREAM_ERRORS = ("valid dropped before the payload was taken",
                 "payload changed while valid and not taken",
                 "valid high while busy is low")


#: The statistics counters of the top (``count_<name>``).
COUNTERS = ("cyc_cycles", "longest_cyc_run", "handovers_in_cyc", "locked_handovers",
            "agent_stall_cycles", "grant_switches")


def _snapshot_fields(bus, grant_bits):
    """What the FSM-coverage snapshot of one core holds: classic, what `tb.fsm_coverage.Sampler`
    reads; pipelined, what `tb.fsm_coverage_pipelined.Sampler` reads."""
    if bus == "pipelined":
        return [("state", Shape.cast(PipelinedSequencer.State).width),
                ("kind", Shape.cast(ICRWriteKind).width), ("icr_valid", 1),
                ("notify_valid", 1), ("notify_ready", 1), ("self_ipi_valid", 1),
                ("self_ipi_ready", 1), ("icr_load", 1)]
    return [(f"state{k}", Shape.cast(stage.component.State).width)
            for k, stage in enumerate(STAGES)] + \
        [("grant", Shape.cast(range(len(STAGES))).width), ("cyc", 1), ("ack", 1),
         ("icr_valid", 1), ("icr_ready", 1), ("post", 1), ("self_ipi_req", 1),
         ("lookup_post", 1), ("notify_valid", 1), ("notify_ready", 1), ("self_ipi_valid", 1),
         ("self_ipi_ready", 1), ("system_grant", grant_bits), ("icr_load", 1)]


class Layouts:
    """The packed values between Python and the top: [(field, width)], LSB first, of
    ``status_fields``, ``request_fields`` (a bus request), ``mem_fields`` (its answer),
    ``icr_fields``, ``agent_fields`` and ``snapshot_fields`` (FSM coverage; without
    ``coverage``: a dummy bit); ``n`` cores, ``system`` (an `IPIVSystem`), ``bus`` (the
    memory port, `hdl.formats.BUS_KINDS`), the names of the ``counters`` and of the
    ``bus_errors``. `layouts_for` gives them without building the design (the cocotb side)."""

    def __init__(self, *, n, system, addr_width, sel_width, icr_width, bus="classic",
                 coverage=True):
        self.n, self.system, self.counters = n, system, COUNTERS
        self.bus = check_bus(bus)
        grant_bits = max(1, (n - 1).bit_length())
        if bus == "pipelined":
            self.mem_fields, self.bus_errors = PIPELINED_MEM_FIELDS, PIPELINED_BUS_ERRORS
        else:
            self.mem_fields = [("toggle", 1), ("wait", WAIT_BITS), ("err", 1), ("data", 64)]
            self.bus_errors = BUS_ERRORS
        self.agent_fields = [("toggle", 1), ("hold", HOLD_BITS), ("wait", AGENT_WAIT_BITS),
                             ("active", 1)]
        self.request_fields = [("adr", addr_width), ("we", 1), ("sel", sel_width),
                               ("dat_w", 64), ("lock", 1), ("lock_id", LOCK_ID_BITS),
                               ("grant", grant_bits)]
        self.icr_fields = [("toggle", 1), ("delay", DELAY_BITS), ("payload", icr_width)]
        self.status_fields = [("cycle", CYCLE_BITS), ("need", 1), ("error", 1),
                              ("agent_start", 1), ("acked", 1), ("cyc", 1)]
        for i in range(n):
            self.status_fields += [(f"busy{i}", 1), (f"fell{i}", 1), (f"fell_before{i}", 1),
                                   (f"took{i}", 1),
                                   (f"rose{i}", len(OUTPUT_STREAMS)), (f"changed{i}", 1),
                                   (f"posted{i}", 1), (f"suppressed{i}", 1)]
        self.snapshot_fields = _snapshot_fields(bus, grant_bits) if coverage else [("none", 1)]

    def __eq__(self, other):
        return isinstance(other, Layouts) and vars(self) == vars(other)


def layouts_for(n_cores, maxphyaddr, bus="classic"):
    """The `Layouts` of the top around ``IPIVirtualizer(maxphyaddr=..., bus=...)``
    (``n_cores`` None) or ``IPIVSystem(n_cores, ...)``, with coverage, computed from the
    signatures and the stage classes (no design is built)."""
    members = wishbone.Signature(addr_width=bus_addr_width(maxphyaddr)).members
    icr = CoreSignature().members["icr"].signature.members["payload"].shape
    return Layouts(n=1 if n_cores is None else n_cores, system=n_cores is not None,
                   addr_width=Shape.cast(members["adr"].shape).width,
                   sel_width=Shape.cast(members["sel"].shape).width,
                   icr_width=Shape.cast(icr).width, bus=bus)


class TestbenchTop(Elaboratable):
    """The DUT and its helpers (see the module docstring).

    Parameters
    ----------
    dut : IPIVirtualizer or IPIVSystem
    negedge_wake : bool
        Build the falling-edge ``wake_toggle`` (the cocotb backend waits on it; the Amaranth
        backend steps cycle by cycle and does not need it).
    coverage : bool
        Build the FSM-coverage snapshots (else ``snapshot[i]`` stays at its reset value and
        ``changed`` low).

    Each helper is a module of its own: Amaranth's simulator evaluates a module's
    combinational logic whenever one of its inputs changes, so what changes every cycle (the
    cycle count) is kept away from the wide comparisons.

    Inputs written by Python: ``mem_answer``, ``agent_answer``, ``watchdog``, ``every_cycle``,
    ``cov_enable``, ``wake_on_ack``, ``wake_on_fall`` (a bit per core), ``first_stall``
    (pipelined port only); per core ``cfg[i]``, ``icr_load[i]``, ``stalls[i]``.
    Outputs read by Python: ``status`` (layout ``status_fields``),
    ``bus_request`` (``request_fields``), per core ``payloads[i][stream]``, ``snapshot[i]``
    (``snapshot_fields``) and ``fell_at[i]``, ``errors`` (sticky), the counters ``counters``.
    """

    __test__ = False        # a name pytest would take for a test class

    def __init__(self, dut, *, negedge_wake=False, coverage=True):
        self.dut = dut
        self.coverage = coverage
        self.system = hasattr(dut, "cores")
        self.ports = list(dut.cores) if self.system else [dut]
        self.units = list(dut.units) if self.system else [dut]
        self.n = len(self.ports)
        self.negedge_wake = negedge_wake
        bus = dut.bus
        self.bus_kind = getattr(dut, "bus_kind", "classic")
        self.grant_bits = max(1, (self.n - 1).bit_length())
        self.layouts = Layouts(
            n=self.n, system=self.system, addr_width=len(bus.adr), sel_width=len(bus.sel),
            icr_width=len(Value.cast(self.ports[0].icr.payload)), bus=self.bus_kind,
            coverage=coverage)
        lay = self.layouts
        # inputs
        self.mem_answer = Signal(_width(lay.mem_fields))
        self.agent_answer = Signal(_width(lay.agent_fields))
        self.watchdog = Signal(CYCLE_BITS, init=2 ** CYCLE_BITS - 1)
        self.every_cycle = Signal()
        self.cov_enable = Signal()
        self.wake_on_ack = Signal()
        self.wake_on_fall = Signal(self.n)
        self.cfg = [Signal(len(Value.cast(p.cfg)), name=f"cfg_{i}")
                    for i, p in enumerate(self.ports)]
        self.icr_load = [Signal(_width(lay.icr_fields), name=f"icr_load_{i}")
                         for i in range(self.n)]
        self.stalls = [Signal(STALL_BITS * len(OUTPUT_STREAMS), name=f"stalls_{i}")
                       for i in range(self.n)]
        # the pipelined memory's stall of the first request (`tb.testbench_pipelined`)
        self.first_stall = Signal(STALL_BITS, name="first_stall") \
            if self.bus_kind == "pipelined" else None
        # outputs
        self.cycle = Signal(CYCLE_BITS)
        self.bus_request = Signal(_width(lay.request_fields))
        self.payloads = [{s: Signal(len(Value.cast(getattr(p, s).payload)),
                                    name=f"payload_{i}_{s}") for s in OUTPUT_STREAMS}
                         for i, p in enumerate(self.ports)]
        n_errors = len(lay.bus_errors) + self.n * len(OUTPUT_STREAMS) * len(STREAM_ERRORS)
        self.errors = Signal(n_errors)
        self.counters = {name: Signal(COUNTER_BITS, name=f"count_{name}")
                         for name in COUNTERS}
        self.fell_at = [Signal(CYCLE_BITS, name=f"fell_at_{i}") for i in range(self.n)]
        self.wake = Signal()
        self.wake_toggle = Signal()
        self.status = Signal(_width(lay.status_fields))
        width = _width(lay.snapshot_fields)
        # reset to a value no cycle has, so that the first cycle counts as a change
        self.snapshot = [Signal(width, name=f"snapshot_{i}", init=2 ** width - 1)
                         for i in range(self.n)]

    def top_ports(self):
        """The top's inputs and outputs, for `amaranth.back.verilog.convert`."""
        first = [self.first_stall] if self.first_stall is not None else []
        return [self.mem_answer, self.agent_answer, self.watchdog, self.every_cycle,
                self.cov_enable, self.wake_on_ack, self.wake_on_fall, *first, *self.cfg,
                *self.icr_load, *self.stalls,
                self.status, self.bus_request, *[s for p in self.payloads for s in p.values()],
                *self.snapshot, *self.fell_at, self.errors, *self.counters.values(),
                self.wake_toggle]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        counter = _sub(m, "cycle_counter")
        counter.d.sync += self.cycle.eq(self.cycle + 1)
        status = {"cycle": self.cycle}
        errors = {}
        if self.bus_kind == "pipelined":
            bus_wake = PipelinedMemoryHelper(self, _sub(m, "memory"), status, errors).wake
        else:
            bus_wake = self._memory(_sub(m, "memory"), status, errors)
        self._agent(_sub(m, "agent"), status)
        self._arbiters(_sub(m, "arbiter_check"), status, errors)
        core_wakes = [self._core(m, i, status, errors) for i in range(self.n)]
        self._errors(_sub(m, "error_flags"), status, errors)
        w = _sub(m, "wake")
        w.d.comb += [
            self.status.eq(Cat(status[name] for name, _ in self.layouts.status_fields)),
            self.wake.eq(bus_wake | Cat(core_wakes).any() | status["error"] |
                         status["agent_start"] | (status["acked"] & self.wake_on_ack) |
                         self.every_cycle | (self.cycle == self.watchdog)),
        ]
        if self.negedge_wake:
            w.domains.negedge = cd = ClockDomain("negedge", clk_edge="neg", local=True)
            w.d.comb += [cd.clk.eq(ClockSignal("sync")), cd.rst.eq(ResetSignal("sync"))]
            with w.If(self.wake):
                w.d.negedge += self.wake_toggle.eq(~self.wake_toggle)
        return m

    # -- the memory (classic; the pipelined one: `tb.testbench_pipelined`) ---------------------
    def _memory(self, m, status, errors):
        bus = self.dut.bus
        answer = _fields("mem_answer", self.mem_answer, self.layouts.mem_fields)
        arm = Armed(m, answer["toggle"], "mem")
        serving = Signal()                      # answered by Python, not yet acked
        count = Signal(WAIT_BITS)
        held = Signal()                         # the agent owns the memory this cycle
        self._held, self._take = held, Const(0)
        req = bus.cyc & bus.stb
        pending = serving | arm.armed
        wait = Mux(arm.armed, answer["wait"], count)
        done = Signal()
        m.d.comb += done.eq(req & pending & (wait == 0) & ~held)
        # random data outside the answer: a master that samples dat_r late reads nonsense
        lfsr = Signal(64, init=0x9E37_79B9_7F4A_7C15)      # a new value after each answer
        with m.If(done):
            m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[1] ^ lfsr[3] ^ lfsr[4]))
        m.d.comb += [
            bus.ack.eq(done & ~answer["err"]), bus.err.eq(done & answer["err"]),
            bus.dat_r.eq(Mux(done, answer["data"], lfsr)),
        ]
        changed = _request_changed(m, arm.armed, [bus.adr, bus.we, bus.sel,
                                                  Mux(bus.we, bus.dat_w, 0), bus.lock])
        with m.If(done):
            m.d.sync += serving.eq(0)
        with m.Elif(pending & req):
            m.d.sync += [serving.eq(1), count.eq(Mux(held, wait, wait - (wait != 0)))]
        acked = Signal()
        m.d.sync += acked.eq(done)
        errors["bus"] = [_flag(m, "stb_without_cyc", ~bus.cyc & (bus.stb | bus.lock)),
                         _flag(m, "withdrawn", pending & ~req),
                         _flag(m, "changed", serving & req & changed)]
        grant, grant_q, locked = self._locked_cycles(m)
        # the agent may start outside a locked sequence of the DUT: one whose first locked
        # request Python has answered (the answer is where a transfer takes effect)
        in_locked, still_locked = Signal(), Signal()
        self._may_start = Signal()
        m.d.comb += [still_locked.eq(in_locked & locked & (grant == grant_q)),
                     self._may_start.eq(~still_locked)]
        m.d.sync += in_locked.eq(still_locked | (arm.armed & locked))
        self._bus_statistics(m, grant, grant_q, held, req)
        need = Signal()
        m.d.comb += need.eq(req & ~pending)
        status.update(need=need, acked=acked, cyc=bus.cyc)
        return need

    def _locked_cycles(self, m):
        """Number the locked bus cycles (as `tb.checker.LockTracker` does) into
        ``bus_request``; returns (the system arbiter's grant, its value in the last cycle,
        ``cyc & lock``)."""
        bus = self.dut.bus
        grant = self.dut.arbiter.grant if self.system else Const(0, 1)
        grant_q = Signal(self.grant_bits)
        locked, locked_q = Signal(), Signal()
        lock_count = Signal(LOCK_ID_BITS)
        lock_id = Signal(LOCK_ID_BITS)
        m.d.comb += [locked.eq(bus.cyc & bus.lock),
                     lock_id.eq(lock_count + (locked & (~locked_q | (grant != grant_q))))]
        m.d.sync += [lock_count.eq(lock_id), locked_q.eq(locked), grant_q.eq(grant)]
        m.d.comb += self.bus_request.eq(Cat(bus.adr, bus.we, bus.sel, bus.dat_w, bus.lock,
                                            lock_id, grant))
        return grant, grant_q, locked

    def _bus_statistics(self, m, grant, grant_q, held, req):
        bus, c = self.dut.bus, self.counters
        run = Signal(COUNTER_BITS)
        cyc_q, lock_q = Signal(), Signal()
        m.d.sync += [cyc_q.eq(bus.cyc), lock_q.eq(bus.lock & bus.cyc)]
        with m.If(bus.cyc):
            m.d.sync += [c["cyc_cycles"].eq(c["cyc_cycles"] + 1), run.eq(run + 1)]
            with m.If(run + 1 > c["longest_cyc_run"]):
                m.d.sync += c["longest_cyc_run"].eq(run + 1)
            with m.If(cyc_q & (grant != grant_q)):
                m.d.sync += c["handovers_in_cyc"].eq(c["handovers_in_cyc"] + 1)
                with m.If(bus.lock & lock_q):
                    m.d.sync += c["locked_handovers"].eq(c["locked_handovers"] + 1)
        with m.Else():
            m.d.sync += run.eq(0)
        with m.If(held & req):
            m.d.sync += c["agent_stall_cycles"].eq(c["agent_stall_cycles"] + 1)

    # -- the software agent -------------------------------------------------------------------
    def _agent(self, m, status):
        answer = _fields("agent_answer", self.agent_answer, self.layouts.agent_fields)
        arm = Armed(m, answer["toggle"], "agent")
        own = Signal(HOLD_BITS)                 # cycles still owned after this one
        wait = Signal(AGENT_WAIT_BITS)          # eligible cycles before the next start
        owned = Signal()
        m.d.comb += owned.eq(own != 0)
        eligible = answer["active"] & ~owned & self._may_start
        start = Signal()
        # an answer with hold h > 0 is an operation starting now (owned this cycle and h - 1
        # more); with h = 0 it only schedules the next start. Not in a cycle a pipelined memory
        # takes a request: Python performs that one then, and the agent's stall would undo it.
        hold = answer["hold"]
        m.d.comb += [start.eq(eligible & (wait == 0) & ~arm.armed & ~self._take),
                     self._held.eq(owned | (arm.armed & (hold != 0)))]
        with m.If(arm.armed):
            m.d.sync += [own.eq(hold - (hold != 0)), wait.eq(answer["wait"])]
        with m.Elif(owned):
            m.d.sync += own.eq(own - 1)
        with m.Elif(eligible & (wait != 0)):
            m.d.sync += wait.eq(wait - 1)
        status["agent_start"] = start

    # -- arbiters ------------------------------------------------------------------------------
    def _arbiters(self, m, status, errors):
        """Every arbiter (the system's, each unit's) keeps its grant while the owner's cyc
        is high."""
        owners = ([self.dut] if self.system else []) + self.units
        arbiters = [o.arbiter for o in owners if hasattr(o, "arbiter")]
        switches = []
        for k, arbiter in enumerate(arbiters):
            prev = Signal(len(arbiter.grant), name=f"grant_prev_{k}")
            m.d.sync += prev.eq(arbiter.grant)
            started = Signal(name=f"grant_started_{k}")
            m.d.sync += started.eq(1)
            owner_cyc = Cat(master.cyc for master in arbiter.masters).bit_select(prev, 1)
            switches.append(started & (arbiter.grant != prev) & owner_cyc)
        switch = _flag(m, "grant_switch", Cat(switches).any())
        c = self.counters["grant_switches"]
        with m.If(switch):
            m.d.sync += c.eq(c + 1)
        errors["arbiter"] = switch

    # -- one core --------------------------------------------------------------------------------
    def _core(self, top, i, status, errors):
        port, unit = self.ports[i], self.units[i]
        m = _sub(top, f"icr_{i}")
        m.d.comb += port.cfg.eq(self.cfg[i])
        # the ICR producer
        load = _fields(f"icr_load_{i}", self.icr_load[i], self.layouts.icr_fields)
        arm = Armed(m, load["toggle"], f"icr{i}")
        pending = Signal(name=f"icr_pending_{i}")
        count = Signal(DELAY_BITS, name=f"icr_delay_{i}")
        pend = pending | arm.armed
        delay = Mux(arm.armed, load["delay"], count)
        valid = Signal(name=f"icr_valid_{i}")
        m.d.comb += [valid.eq(pend & (delay == 0)), port.icr.valid.eq(valid),
                     Value.cast(port.icr.payload).eq(load["payload"])]
        handshake = valid & port.icr.ready
        m.d.sync += [pending.eq(pend & ~handshake), count.eq(delay - (delay != 0))]
        took = Signal(name=f"took_{i}")
        m.d.sync += took.eq(handshake)
        # busy
        busy = port.busy
        busy_q, fell = Signal(name=f"busy_q_{i}"), Signal(name=f"fell_{i}")
        m.d.sync += busy_q.eq(busy)
        m.d.comb += fell.eq(busy_q & ~busy)
        fell_before = Signal(name=f"fell_before_{i}")       # a fall Python was not woken for
        with m.If(self.wake):
            m.d.sync += fell_before.eq(0)
        with m.Elif(fell):
            m.d.sync += [fell_before.eq(1), self.fell_at[i].eq(self.cycle)]
        # the consumers
        rose = []
        stream_errors = []
        for k, name in enumerate(OUTPUT_STREAMS):
            r, errs = self._consumer(_sub(top, f"{name}_{i}"), i, k, name, busy)
            rose.append(r)
            stream_errors += errs
        errors[f"core{i}"] = stream_errors
        changed = self._snapshot(_sub(top, f"snapshot_{i}"), i, unit, port, valid,
                                 load["toggle"]) if self.coverage else Const(0)
        # the PID update's pulses, registered (they may follow ``ack`` in the same cycle)
        pulses = [Signal(name=f"posted_{i}"), Signal(name=f"suppressed_{i}")]
        pid_update = getattr(unit, "pid_update", None)
        if pid_update is not None:
            m.d.sync += [pulses[0].eq(pid_update.posted), pulses[1].eq(pid_update.suppressed)]
        status.update({f"busy{i}": busy, f"fell{i}": fell, f"fell_before{i}": fell_before,
                       f"took{i}": took,
                       f"rose{i}": Cat(rose), f"changed{i}": changed,
                       f"posted{i}": pulses[0], f"suppressed{i}": pulses[1]})
        return took | (fell & (self.wake_on_fall[i] | fell_before)) | Cat(rose).any() | \
            (changed & self.cov_enable)

    def _consumer(self, m, i, k, name, busy):
        stream = getattr(self.ports[i], name)
        payload = Value.cast(stream.payload)
        stall = self.stalls[i][k * STALL_BITS:(k + 1) * STALL_BITS]
        offered = Signal(name=f"{name}_offered_{i}")      # valid last cycle, not taken
        waited = Signal(STALL_BITS, name=f"{name}_waited_{i}")
        payload_q = Signal(len(payload), name=f"{name}_payload_{i}")
        m.d.comb += [stream.ready.eq(Mux(offered, waited, 0) >= stall),
                     self.payloads[i][name].eq(payload)]
        m.d.sync += [offered.eq(stream.valid & ~stream.ready),
                     waited.eq(Mux(stream.valid & ~stream.ready,
                                   Mux(offered, waited, 0) + 1, 0))]
        with m.If(stream.valid & ~offered):
            m.d.sync += payload_q.eq(payload)
        rose = _flag(m, f"{name}_rose_{i}", stream.valid & ~offered)
        return rose, [_flag(m, f"{name}_dropped_{i}", offered & ~stream.valid),
                      _flag(m, f"{name}_changed_{i}",
                            offered & stream.valid & (payload != payload_q)),
                      _flag(m, f"{name}_idle_valid_{i}", stream.valid & ~busy)]

    def _snapshot(self, m, i, unit, port, icr_valid, icr_toggle):
        """What the FSM-coverage sampler reads of core ``i`` (`Layouts.snapshot_fields`),
        registered each cycle; returns whether it changed."""
        if self.bus_kind == "pipelined":
            seq = unit.sequencer
            now = Cat(seq.state, seq.kind, icr_valid, port.notify.valid, port.notify.ready,
                      port.self_ipi.valid, port.self_ipi.ready, icr_toggle)
        else:
            now = self._classic_snapshot(m, i, unit, port, icr_valid, icr_toggle)
        changed = Signal(name=f"snapshot_changed_{i}")
        m.d.sync += [self.snapshot[i].eq(now), changed.eq(now != self.snapshot[i])]
        return changed

    def _classic_snapshot(self, m, i, unit, port, icr_valid, icr_toggle):
        system_grant = Signal(self.grant_bits, name=f"system_grant_{i}")
        if self.system:
            with m.If(self.dut.bus.cyc):
                m.d.sync += system_grant.eq(self.dut.arbiter.grant)
        return Cat(*[s.state for s in unit.stages], unit.arbiter.grant, unit.bus.cyc,
                   unit.bus.ack, icr_valid, port.icr.ready, unit.interceptor.post.valid,
                   unit.interceptor.self_ipi.valid, unit.lookup.post.valid,
                   port.notify.valid, port.notify.ready, port.self_ipi.valid,
                   port.self_ipi.ready,
                   Mux(self.dut.bus.cyc, self.dut.arbiter.grant, system_grant)
                   if self.system else Const(0, self.grant_bits),
                   icr_toggle)         # a new ICR write loaded: its kind is another

    # -- errors ---------------------------------------------------------------------------------
    def _errors(self, m, status, errors):
        # the bus's, the arbiters' (last of `Layouts.bus_errors`), then each core's
        flags = Cat(errors["bus"] + [errors["arbiter"]] +
                    [e for i in range(self.n) for e in errors[f"core{i}"]])
        seen = Signal(len(self.errors))
        m.d.comb += self.errors.eq(seen | flags)
        m.d.sync += seen.eq(self.errors)
        status["error"] = self.errors.any()

"""Work in progress (issue #12), not yet used by ``ipiv prove`` or the tests: the next formal
harness, `IPIVirtualizer` in a free but legal environment, a monitor that follows each
request through the spec model (`tb.formal.spec`), and the properties as named checks.
Status: its safety checks pass BMC at depth 6 on the real design; `_invariants` (the
auxiliary invariants k-induction needs) is still empty. See tb/formal/README.md.

Environment (assumptions, shared by every check):

- ``cfg`` is free, but held stable from a request's acceptance while the unit is busy
  (``docs/interface.md``);
- the ``icr`` producer is free except for the stream rule: once ``valid``, it holds ``valid``
  and the payload until ``ready``;
- every output consumer drives ``ready`` freely: it may stall for any number of cycles;
- the memory answers with free read data and a free choice of ``ack`` or ``err``, only while
  ``cyc & stb`` and never both, after any number of wait states (``latency=None``) or at
  most ``latency`` cycles after the transfer began;
- for the ``completion`` check only, consumers take an output at most ``patience`` cycles
  after it is offered (a response bound needs one).

The monitor keeps the accepted request (kind, data, ``cfg``), the index of the transfer it is
at, and the data the bus returned (VICR_HI, the entry, the word of a read-modify-write,
NotifyInfo); the spec model turns these into the transfer expected next and the outcome due.
Counters of notifications (and self-IPIs) due but not yet taken, with their payloads, check
conservation. Auxiliary invariants (`_invariants`) tie the monitor to the stages' state
registers so that the safety checks close by k-induction; they are asserted (so proven) in
every ``prove`` check, and documented in ``tb/formal/README.md``.

Amaranth 0.5 has no ``Past``: every "previous cycle" value is a register kept here.
"""



from amaranth import C, Cat, ClockDomain, Elaboratable, Fragment, Module, Mux, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hdl import IPIVirtualizer
from hdl.formats import (
    APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause,
    ICRWriteKind, OUTPUT_STREAMS, VMCSConfig,
)

from .harness import Check, _past, assume_icr_held, assume_memory, completion_bounds
from .spec import MAX_TRANSFERS, RequestSpec


__all__ = ["Check", "CHECKS", "COVERS", "FormalHarness", "WITNESS_CFG", "completion_bounds",
           "witness_memory"]

CHECKS = {c.name: c for c in [
    Check("handshake_exit", "prove", "exit: valid held and payload stable until ready"),
    Check("handshake_notify", "prove", "notify: valid held and payload stable until ready"),
    Check("handshake_self_ipi", "prove", "self_ipi: valid held and payload stable until ready"),
    Check("handshake_gp", "prove", "gp: valid held and payload stable until ready"),
    Check("bus_protocol", "prove",
          "Wishbone master: stb/lock only in cyc; a transfer holds stb, adr, we, sel, dat_w "
          "until ack or err"),
    Check("transfers", "prove",
          "every bus transfer is the spec's next one (address, we, sel, write data, lock): "
          "vICR stores, read-back, entry, PIR/NotifyInfo/IRR read-modify-writes; none beyond "
          "the spec's path, none after err, none for #GP or the x2APIC intercept"),
    Check("locked_rmw", "prove",
          "a read-modify-write keeps cyc and lock high from its read to its write; the PIR and "
          "NotifyInfo RMWs share one locked bus cycle"),
    Check("outcome", "prove",
          "exit (reason, qualification, cause, image), #GP and self-IPI iff the spec says so; "
          "a request's transfers and its exit are complete before the next is accepted and "
          "before the unit idles"),
    Check("notifications", "prove",
          "conservation: ON transitions = notifications taken + pending; notify only for an "
          "ON transition, once, with the NV and decoded NDST its NotifyInfo read returned"),
    Check("completion", "bmc",
          "an accepted request is done (unit ready again) within the bound; the unit idles "
          "after it"),
    Check("covers", "cover",
          "reachability: notification, a notification while the previous one is offered, "
          "each exit cause, #GP, suppressed post, self-IPI"),
]}

COVERS = (["notify", "second_notification_while_offered", "suppressed_post", "self_ipi",
           "gp", "wrmsr_exit"] +
          [f"exit_{cause.name.lower()}" for cause in ExitCause])


#: The witness environment's configuration: IPIv and VID on, xAPIC guest and host (both
#: formats matter: the x2APIC kinds are still free to arrive), four table entries.
WITNESS_CFG = {"ipiv": 1, "vid": 1, "x2apic": 0, "host_x2apic": 0, "last_pid_index": 3,
               "pid_table": 0x1000, "vapic_page": 0x2000}
_WITNESS_PID = 0x4000


def witness_memory(adr):
    """The witness environment's memory (it ignores writes): entries 0-2 usable (PID
    ``4000H + 40H*T``), entry 3 not (a reserved bit); NotifyInfo with ON = 0, NV F2H, NDST
    05H << 8 (xAPIC) and SN = 1 in PID 2 only; VICR_HI destination 1; PIR and IRR words 0."""
    cases = []
    for t in range(4):
        pid = _WITNESS_PID + 0x40 * t
        cases.append(((WITNESS_CFG["pid_table"] + 8 * t) >> 3, pid | 1 if t < 3 else pid | 3))
        sn = 1 if t == 2 else 0
        cases.append(((pid + 32) >> 3, 0x0500 << 32 | 0xF2 << 16 | sn << 1))
    cases.append(((WITNESS_CFG["vapic_page"] + 0x310) >> 3, 1 << 24))
    value = C(0, 64)
    for word, data in reversed(cases):
        value = Mux(adr == word, data, value)
    return value


def _byte_mask(sel):
    return Cat(sel[k].replicate(8) for k in range(8))


class _Internals:
    """Named state registers of the unit's stages, for the auxiliary invariants only.

    Found by name in the elaborated fragment (the stages do not export them); ``state(stage,
    name)`` is 1 while that stage's FSM is in state ``name``.
    """

    def __init__(self, fragment):
        self._signals = {}
        for sub, name, _ in fragment.subfragments:
            found = {}
            for stmts in sub.statements.values():
                for stmt in stmts:
                    for sig in stmt._lhs_signals():
                        found.setdefault(sig.name, sig)
            self._signals[name] = found

    def __call__(self, stage, name):
        return self._signals[stage][name]

    def state(self, stage, name):
        sig = self._signals[stage]["fsm_state"]
        for n in range(2 ** len(sig)):
            if sig.decoder(n).split("/")[0] == name:
                return sig == n
        return C(0)         # a state this build does not have


class FormalHarness(Elaboratable):
    """`IPIVirtualizer` with a free environment and the properties of one check.

    Parameters
    ----------
    check : str
        A key of `CHECKS`.
    faults : collection of hdl.faults.Fault
        Passed to the unit (mutation tests).
    maxphyaddr : int
        MAXPHYADDR of the unit (36, the smallest, keeps the solver fast).
    latency : int or None
        The memory answers at most this many cycles after a transfer begins; None: any
        number of wait states.
    patience : int
        For ``completion``: consumers take an output at most this many cycles after it is
        offered.
    invariants : bool
        Assert the auxiliary invariants too (k-induction needs them; BMC does not).
    witness : bool
        Pin ``cfg`` and the memory's contents to `WITNESS_CFG` and `witness_memory`, and
        leave only some ICR bits free (kind, vector, bits 19:11, a 3-bit destination);
        timing, stalls and errors stay free. A subset of the free environment, so a
        failure found here is a failure of the property; it lets BMC reach the deep
        counterexamples of the mutation tests (two postings under a stalled consumer) in
        seconds, where the free environment takes the solver minutes per step.

    Attributes
    ----------
    dut : IPIVirtualizer
    clk : Signal
        The only port (Amaranth ties an unused clock to 0, which would freeze the design).
    """

    def __init__(self, check, *, faults=frozenset(), maxphyaddr=36, latency=None, patience=1,
                 invariants=True, witness=False):
        if check not in CHECKS:
            raise ValueError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
        for name, value in (("latency", latency), ("patience", patience)):
            if value is None and name == "latency":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if check == "completion" and latency is None:
            raise ValueError("the completion check needs a latency bound")
        self.check = check
        self.latency = latency
        self.patience = patience
        self.invariants = invariants
        self.witness = witness
        self.maxphyaddr = maxphyaddr
        self.dut = IPIVirtualizer(maxphyaddr=maxphyaddr, faults=faults)
        self._cd = ClockDomain("sync", reset_less=True)
        self.clk = self._cd.clk

    def _assert(self, m, name, test):
        # The message names the sub-property in the RTLIL, for the failure report.
        m.d.comb += Assert(test, name)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self._cd
        frag = Fragment.get(self.dut, platform)
        m.submodules.dut = frag
        dut = self.dut
        bus = dut.bus

        # -- environment ------------------------------------------------------------------------
        if self.witness:
            m.d.comb += [
                dut.cfg.eq(VMCSConfig.const(WITNESS_CFG)),
                bus.dat_r.eq(witness_memory(bus.adr)),
            ]
        else:
            m.d.comb += [
                dut.cfg.as_value().eq(AnySeq(len(dut.cfg.as_value()))),
                bus.dat_r.eq(AnySeq(64)),
            ]
        if self.witness:
            # Free: kind, vector, ICR bits 19:11 (destination mode, bit 12, trigger,
            # shorthand, reserved), T (x2APIC bits 34:32, SENDUIPI NDST bits 10:8); 0 else.
            m.d.comb += dut.icr.p.as_value().eq(Cat(
                AnySeq(2), AnySeq(8), C(0, 3), AnySeq(9), C(0, 12), AnySeq(3), C(0, 5),
                AnySeq(3), C(0, 21)))
        else:
            m.d.comb += dut.icr.p.as_value().eq(AnySeq(len(dut.icr.p.as_value())))
        m.d.comb += [
            dut.icr.valid.eq(AnySeq(1)),
            bus.ack.eq(AnySeq(1)),
            bus.err.eq(AnySeq(1)),
        ]
        for name in OUTPUT_STREAMS:
            m.d.comb += getattr(dut, name).ready.eq(AnySeq(1))

        accepted = dut.icr.valid & dut.icr.ready
        active, answer, done = assume_memory(m, bus, self.latency)
        assume_icr_held(m, dut.icr)

        # -- monitor: the request in flight, as the spec sees it --------------------------------
        r_live = Signal()           # a request has been accepted (the latest one is tracked)
        r_kind = Signal(ICRWriteKind)
        r_data = Signal(64)
        r_cfg = Signal(VMCSConfig)  # cfg at acceptance
        pos = Signal(range(MAX_TRANSFERS + 1))     # transfers of this request answered so far
        r_err = Signal()            # one of them ended in err: the request is over
        r_hi = Signal(32)           # data the spec's reads returned
        r_entry = Signal(64)
        r_rmw = Signal(64)
        r_ni = Signal(64)
        r_exit_seen = Signal()      # its exit or #GP has been offered
        r_locked = Signal()         # the transfer answered last was a locked one

        # cfg is held from acceptance while the unit is busy (checked in _invariants).
        m.d.comb += Assume(~(r_live & dut.busy) | (dut.cfg.as_value() == r_cfg.as_value()))

        # The transfer expected now does not depend on the data it returns, so this is no loop.
        ni_now = Signal(64)
        spec = RequestSpec(m, kind=r_kind, data=r_data, cfg=r_cfg, maxphyaddr=self.maxphyaddr,
                           hi=r_hi, entry=r_entry, rmw=r_rmw, ni=r_ni, ni_now=ni_now)
        exp = spec.transfer(pos)
        m.d.comb += ni_now.eq(Mux(done & ~bus.err & exp.what["ni_read"], bus.dat_r, r_ni))
        spec_notification = Signal(40)
        m.d.comb += spec_notification.eq(spec.notification)
        n = spec.n_transfers
        in_flight = r_live & ~r_err & (pos < n)     # transfers still due

        with m.If(accepted):
            m.d.sync += [
                r_live.eq(1), r_kind.eq(dut.icr.p.kind), r_data.eq(dut.icr.p.data),
                r_cfg.eq(dut.cfg), pos.eq(0), r_err.eq(0), r_hi.eq(0), r_entry.eq(0),
                r_rmw.eq(0), r_ni.eq(0), r_exit_seen.eq(0), r_locked.eq(0),
            ]
        with m.Else():
            with m.If(done):
                with m.If(pos != MAX_TRANSFERS):
                    m.d.sync += pos.eq(pos + 1)
                m.d.sync += r_locked.eq(exp.lock & ~bus.err)
                with m.If(bus.err):
                    m.d.sync += r_err.eq(1)
                with m.Else():
                    with m.If(exp.what["read_hi"]):
                        m.d.sync += r_hi.eq(bus.dat_r[:32])
                    with m.If(exp.what["entry"]):
                        m.d.sync += r_entry.eq(bus.dat_r)
                    with m.If(exp.what["pir_read"] | exp.what["irr_read"]):
                        m.d.sync += r_rmw.eq(bus.dat_r)
                    with m.If(exp.what["ni_read"]):
                        m.d.sync += r_ni.eq(bus.dat_r)
            with m.If(dut.exit.valid | dut.gp.valid):
                m.d.sync += r_exit_seen.eq(1)

        spec_exit_due = r_live & (r_err | (spec.exit & (pos == n)))
        exit_owed = spec_exit_due & ~r_exit_seen & ~dut.exit.valid
        gp_owed = r_live & spec.gp & ~r_exit_seen & ~dut.gp.valid
        # Complete at the end of this cycle (the next request may be accepted in the cycle the
        # last transfer of this one is answered).
        complete = ~r_live | r_err | (done & bus.err) | (pos + done == n)

        # -- notification and self-IPI scoreboards (one offered, one waiting) -------------------
        on_set = r_live & ~r_err & done & ~bus.err & exp.what["ni_write"] & (pos < n)
        irr_set = r_live & ~r_err & done & ~bus.err & exp.what["irr_write"] & (pos < n)
        nb = _Scoreboard(m, "notify", 40, push=on_set, value=spec_notification,
                         pop=dut.notify.valid & dut.notify.ready)
        sb = _Scoreboard(m, "self_ipi", 8, push=irr_set, value=spec.vector,
                         pop=dut.self_ipi.valid & dut.self_ipi.ready)

        internals = _Internals(frag)
        notify_waiting = internals.state("pid_update", "NOTIFY")
        self_ipi_waiting = internals.state("virr_update", "OFFER")
        notify_pending = dut.notify.valid + notify_waiting
        self_ipi_pending = dut.self_ipi.valid + self_ipi_waiting

        ctx = dict(r_live=r_live, r_kind=r_kind, r_data=r_data, r_cfg=r_cfg, pos=pos,
                   r_err=r_err, r_hi=r_hi, r_entry=r_entry, r_rmw=r_rmw, r_ni=r_ni,
                   r_exit_seen=r_exit_seen, r_locked=r_locked, spec=spec, exp=exp, n=n,
                   in_flight=in_flight, nb=nb, sb=sb, internals=internals,
                   complete=complete, exit_owed=exit_owed, gp_owed=gp_owed)

        # -- the check ----------------------------------------------------------------------
        name = self.check
        if name.startswith("handshake_"):
            out = getattr(dut, name[len("handshake_"):])
            p_valid = _past(m, out.valid, "valid")
            p_ready = _past(m, out.ready, "ready")
            p_payload = _past(m, out.p, "payload")
            with m.If(p_valid & ~p_ready):
                self._assert(m, "valid_held", out.valid)
                self._assert(m, "payload_stable", Value.cast(out.p) == p_payload)

        elif name == "bus_protocol":
            p_open = _past(m, active & ~answer, "xfer_open")
            p_adr = _past(m, bus.adr, "adr")
            p_we = _past(m, bus.we, "we")
            p_sel = _past(m, bus.sel, "sel")
            p_dat_w = _past(m, bus.dat_w, "dat_w")
            self._assert(m, "stb_in_cyc", ~bus.stb | bus.cyc)
            self._assert(m, "lock_in_cyc", ~bus.lock | bus.cyc)
            with m.If(p_open):
                self._assert(m, "stb_held", active)
                self._assert(m, "request_stable", (bus.adr == p_adr) & (bus.we == p_we) &
                             (bus.sel == p_sel) & (~bus.we | (bus.dat_w == p_dat_w)))

        elif name == "transfers":
            with m.If(active):
                self._assert(m, "no_transfer_beyond_spec", in_flight)
                mask = _byte_mask(exp.sel)
                self._assert(m, "transfer_is_spec",
                             (bus.adr == exp.adr) & (bus.we == exp.we) & (bus.sel == exp.sel) &
                             (bus.lock == exp.lock) &
                             (~exp.we | ((bus.dat_w & mask) == (exp.data & mask))))

        elif name == "locked_rmw":
            with m.If(active & in_flight & exp.lock):
                self._assert(m, "rmw_transfer_locked", bus.lock)
            with m.If(in_flight & r_locked & exp.lock):
                self._assert(m, "lock_held_between_transfers", bus.cyc & bus.lock)

        elif name == "outcome":
            with m.If(dut.exit.valid):
                x = dut.exit.p
                self._assert(m, "exit_iff_spec", spec_exit_due & ~dut.gp.valid)
                with m.If(r_err):
                    self._assert(m, "bus_error_exit",
                                 (x.reason == EXIT_REASON_APIC_WRITE) &
                                 (x.qualification == APIC_WRITE_QUALIFICATION_ICR) &
                                 (x.cause == ExitCause.BUS_ERROR) & (x.icr == spec.image))
                with m.Else():
                    self._assert(m, "exit_is_spec",
                                 (x.reason == spec.exit_reason) &
                                 (x.qualification == spec.exit_qualification) &
                                 (x.cause.as_value() == spec.exit_cause) &
                                 (x.icr == spec.exit_icr))
            with m.If(dut.gp.valid):
                self._assert(m, "gp_iff_spec", r_live & spec.gp & ~r_err &
                             (dut.gp.p == r_data))
            with m.If(accepted | ~dut.busy):
                self._assert(m, "request_complete", complete)
                self._assert(m, "exit_offered", ~exit_owed & ~gp_owed)
            with m.If(dut.self_ipi.valid):
                self._assert(m, "self_ipi_iff_spec", (sb.count != 0) & (dut.self_ipi.p == sb.head))
            self._assert(m, "self_ipi_conservation", sb.count == self_ipi_pending)

        elif name == "notifications":
            with m.If(dut.notify.valid):
                self._assert(m, "notify_has_an_on_transition", nb.count != 0)
                self._assert(m, "notify_payload", dut.notify.p.as_value() == nb.head)
            self._assert(m, "conservation", nb.count == notify_pending)
            with m.If(~dut.busy):
                self._assert(m, "nothing_pending_when_idle", nb.count == 0)

        elif name == "completion":
            self._environment_patience(m)
            ready_bound, idle_bound = completion_bounds(self.latency, self.patience)
            since = Signal(range(idle_bound + 2))
            with m.If(accepted):
                m.d.sync += since.eq(0)
            with m.Elif(since <= idle_bound):
                m.d.sync += since.eq(since + 1)
            with m.If(r_live & (since >= ready_bound)):
                self._assert(m, "ready_again", dut.icr.ready)
            with m.If(r_live & (since >= idle_bound)):
                self._assert(m, "idle", ~dut.busy)

        elif name == "covers":
            m.d.comb += [
                Cover(dut.notify.valid, "notify"),
                Cover(on_set & dut.notify.valid & ~dut.notify.ready,
                      "second_notification_while_offered"),
                Cover(r_live & spec.post & ~spec.notify & (pos == n) & dut.icr.ready,
                      "suppressed_post"),
                Cover(dut.self_ipi.valid, "self_ipi"),
                Cover(dut.gp.valid, "gp"),
                Cover(dut.exit.valid & (dut.exit.p.reason == EXIT_REASON_WRMSR), "wrmsr_exit"),
            ]
            for cause in ExitCause:
                m.d.comb += Cover(dut.exit.valid & (dut.exit.p.cause == cause),
                                  f"exit_{cause.name.lower()}")

        if self.invariants and CHECKS[name].mode == "prove":
            _invariants(self, m, ctx)
        return m

    def _environment_patience(self, m):
        """Consumers take an output within ``patience`` cycles (a response bound needs it)."""
        for name in OUTPUT_STREAMS:
            out = getattr(self.dut, name)
            waiting = Signal(range(self.patience + 2), name=f"{name}_waiting")
            with m.If(out.valid & ~out.ready):
                with m.If(waiting <= self.patience):
                    m.d.sync += waiting.eq(waiting + 1)
            with m.Else():
                m.d.sync += waiting.eq(0)
            m.d.comb += Assume(~(out.valid & (waiting >= self.patience)) | out.ready)


class _Scoreboard:
    """Outputs due (pushed by the spec) and not yet taken (popped), in order: at most two are
    kept; ``count`` reaches 3 only on overflow."""

    def __init__(self, m, name, width, *, push, value, pop):
        self.count = Signal(2, name=f"{name}_due")
        e0 = Signal(width, name=f"{name}_due_0")
        e1 = Signal(width, name=f"{name}_due_1")
        self.head, self.tail = e0, e1
        with m.If(pop & push):
            with m.If(self.count == 2):
                m.d.sync += [e0.eq(e1), e1.eq(value)]
            with m.Elif(self.count == 1):
                m.d.sync += e0.eq(value)
            with m.Else():
                m.d.sync += [e0.eq(value), self.count.eq(1)]     # pop of nothing: flagged
        with m.Elif(pop):
            m.d.sync += [e0.eq(e1), self.count.eq(Mux(self.count == 0, 0, self.count - 1))]
        with m.Elif(push):
            with m.If(self.count == 0):
                m.d.sync += [e0.eq(value), self.count.eq(1)]
            with m.Elif(self.count == 1):
                m.d.sync += [e1.eq(value), self.count.eq(2)]
            with m.Else():
                m.d.sync += self.count.eq(3)


def _invariants(harness, m, ctx):
    """The auxiliary invariants: the monitor's view of the request in flight agrees with the
    stages' state registers (see tb/formal/README.md, "Invariants")."""
    pass

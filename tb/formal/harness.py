"""The formal harness: `IPIVirtualizer` in a free but legal environment, a monitor that
follows each request through the independent spec model (`tb.formal.spec`), the auxiliary
invariants that make the safety properties close by k-induction, and the properties as named
checks (tb/formal/README.md).

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
registers so that the safety checks close by k-induction. The ``invariants`` check proves
them (1-inductive); every other ``prove`` check and the covers assume them, as proven lemmas
(the covers show that they exclude none of the behaviours covered). They are documented in
``tb/formal/README.md``.

Amaranth 0.5 has no ``Past``: every "previous cycle" value is a register kept here.
"""

from dataclasses import dataclass

from amaranth import C, Cat, ClockDomain, Elaboratable, Fragment, Module, Mux, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hdl import IPIVirtualizer
from hdl.formats import (
    APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause,
    ICRWriteKind, OUTPUT_STREAMS, VMCSConfig,
)

from .spec import MAX_TRANSFERS, RequestSpec


__all__ = ["Check", "CHECKS", "COVERS", "FormalHarness", "WITNESS_CFG", "completion_bounds",
           "witness_memory"]


@dataclass(frozen=True)
class Check:
    """One named property check (one SymbiYosys run)."""
    name: str
    mode: str           # sby mode: "bmc", "prove" or "cover"
    text: str


CHECKS = {c.name: c for c in [
    Check("invariants", "prove",
          "the auxiliary invariants: the monitor's request position determines every stage's "
          "state and registers; the scoreboards hold what the stages still owe"),
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
          "before the unit idles; an idle unit offers and owes nothing"),
    Check("notifications", "prove",
          "conservation: ON transitions = notifications taken + pending; notify only for an "
          "ON transition, once, with the NV and decoded NDST its NotifyInfo read returned"),
    Check("completion", "prove",
          "an accepted request is done (unit ready again) within the bound; the unit idles "
          "after it"),
    Check("covers", "cover",
          "reachability: notification, a notification while the previous one is offered, "
          "each exit cause, #GP, suppressed post, self-IPI"),
]}

COVERS = (["notify", "second_notification_while_offered", "suppressed_post", "self_ipi",
           "gp", "wrmsr_exit"] +
          [f"exit_{cause.name.lower()}" for cause in ExitCause])


def completion_bounds(latency, patience):
    """Cycles after the acceptance cycle by which the unit must be ready again, and idle.

    A request makes at most `MAX_TRANSFERS` transfers of at most ``latency + 1`` cycles each;
    an exit (or #GP) is then offered in the next cycle, taken within ``patience``, and the
    unit is ready the cycle after; a notification or self-IPI is registered as the last
    transfer ends and taken within ``patience`` (a previous one is always taken by then).
    The count starts at 0 in the cycle after acceptance.
    """
    ready = MAX_TRANSFERS * (latency + 1) + patience + 1
    return ready, ready + patience + 1


def _past(m, value, name):
    """A register holding ``value`` of the previous cycle (0 in the first)."""
    value = Value.cast(value)
    reg = Signal(len(value), name=f"past_{name}")
    m.d.sync += reg.eq(value)
    return reg


def assume_icr_held(m, icr):
    """The stream rule of the ``icr`` producer: once ``valid``, it holds ``valid`` and the
    payload until ``ready``."""
    p_valid = _past(m, icr.valid, "icr_valid")
    p_ready = _past(m, icr.ready, "icr_ready")
    p_payload = _past(m, icr.p, "icr_p")
    with m.If(p_valid & ~p_ready):
        m.d.comb += Assume(icr.valid & (icr.p.as_value() == p_payload))


def assume_memory(m, bus, latency):
    """The memory answers (``ack`` or ``err``, never both) only during ``cyc & stb``, and, if
    ``latency`` is not None, at most ``latency`` cycles after the transfer began. Returns
    (active, answer, done) of the current cycle."""
    active = bus.cyc & bus.stb
    answer = bus.ack | bus.err
    m.d.comb += [Assume(~answer | active), Assume(~(bus.ack & bus.err))]
    if latency is not None:
        waited = Signal(range(latency + 2))
        with m.If(active & ~answer):
            with m.If(waited <= latency):
                m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        m.d.comb += Assume(~(active & (waited >= latency)) | answer)
    return active, answer, active & answer


#: The witness environment's configuration: IPIv and VID on, xAPIC guest and host (both
#: formats matter: the x2APIC kinds are still free to arrive), four table entries.
WITNESS_CFG = {"ipiv": 1, "vid": 1, "x2apic": 0, "host_x2apic": 0, "last_pid_index": 3,
               "pid_table": 0x1000, "vapic_page": 0x2000}
_WITNESS_PID = 0x4000


def witness_memory(adr):
    """The witness environment's memory (it ignores writes): entries 0-2 usable (PID
    ``4000H + 40H*T``), entry 3 not (a reserved bit); NotifyInfo with ON = 0, NV F0H + T,
    NDST (5 + T) << 8 (xAPIC; so two notifications to different PIDs differ) and SN = 1 in
    PID 2 only; VICR_HI destination 1; PIR and IRR words 0."""
    cases = []
    for t in range(4):
        pid = _WITNESS_PID + 0x40 * t
        cases.append(((WITNESS_CFG["pid_table"] + 8 * t) >> 3, pid | 1 if t < 3 else pid | 3))
        sn = 1 if t == 2 else 0
        cases.append(((pid + 32) >> 3, (5 + t) << 40 | (0xF0 + t) << 16 | sn << 1))
    cases.append(((WITNESS_CFG["vapic_page"] + 0x310) >> 3, 1 << 24))
    value = C(0, 64)
    for word, data in reversed(cases):
        value = Mux(adr == word, data, value)
    return value


# Which stage made a transfer (r_err_by).
_INTERCEPTOR, _LOOKUP, _PID_UPDATE, _VIRR_UPDATE = range(4)


def _byte_mask(sel):
    return Cat(sel[k].replicate(8) for k in range(8))


class _Internals:
    """Named state registers of the unit's stages, for the auxiliary invariants only.

    Found by name in the elaborated fragment (the stages do not export them); ``state(stage,
    name)`` is 1 while that stage's FSM is in state ``name`` (a name the FSM does not have is
    a `KeyError`).
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
        # A renamed state must not turn an invariant about it into a vacuous one.
        raise KeyError(f"{stage} has no FSM state {name!r}")


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
        Use the auxiliary invariants (default): asserted by the ``invariants`` check,
        assumed by the other ``prove`` checks and the covers. A mutation test runs its check
        as BMC without them, so that nothing assumed can hide the fault.
    witness : bool
        Pin ``cfg`` and the memory's contents to `WITNESS_CFG` and `witness_memory`, and
        leave only some ICR bits free (kind, vector, bits 19:11, a 3-bit destination);
        timing, stalls and errors stay free. A subset of the free environment, so a
        failure found here is a failure of the property; it lets BMC reach the deep
        counterexamples of the mutation tests (two postings under a stalled consumer) in
        seconds, where the free environment takes the solver minutes per step.
    bounds : (int, int) or None
        ``completion`` only: the cycles after acceptance by which the unit must be ready
        again and idle; default `completion_bounds`. A test shortens them by one to show the
        check fails (the bounds are tight).

    Attributes
    ----------
    dut : IPIVirtualizer
    clk : Signal
        The only port (Amaranth ties an unused clock to 0, which would freeze the design).
    """

    def __init__(self, check, *, faults=frozenset(), maxphyaddr=36, latency=None, patience=1,
                 invariants=True, witness=False, bounds=None):
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
        self.bounds = bounds
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
        r_exit_taken = Signal()     # its exit or #GP has been taken
        r_err_by = Signal(range(4)) # the stage whose transfer ended in err (for invariants)

        # The environment holds cfg from acceptance while the unit is busy (interface.md).
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
                r_exit_taken.eq(0), r_err_by.eq(0),
            ]
        with m.Else():
            with m.If(done):
                with m.If(pos != MAX_TRANSFERS):
                    m.d.sync += pos.eq(pos + 1)
                m.d.sync += r_locked.eq(exp.lock & ~bus.err)
                with m.If(bus.err):
                    m.d.sync += r_err.eq(1)
                    m.d.sync += r_err_by.eq(
                        Mux(exp.what["entry"], _LOOKUP,
                            Mux(exp.what["irr_read"] | exp.what["irr_write"], _VIRR_UPDATE,
                                Mux(exp.what["store_hi"] | exp.what["store_lo"] |
                                    exp.what["read_hi"], _INTERCEPTOR, _PID_UPDATE))))
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
            with m.If((dut.exit.valid & dut.exit.ready) | (dut.gp.valid & dut.gp.ready)):
                m.d.sync += r_exit_taken.eq(1)

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

        # What the auxiliary invariants look at.
        ctx = dict(r_live=r_live, r_kind=r_kind, r_data=r_data, pos=pos, r_err=r_err,
                   r_entry=r_entry, r_rmw=r_rmw, r_ni=r_ni, r_exit_seen=r_exit_seen,
                   r_exit_taken=r_exit_taken, r_err_by=r_err_by, spec=spec, exp=exp, n=n,
                   in_flight=in_flight, nb=nb, sb=sb, internals=internals)

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
            with m.If(~dut.busy):
                self._assert(m, "nothing_offered_when_idle",
                             ~dut.exit.valid & ~dut.gp.valid & ~dut.notify.valid &
                             ~dut.self_ipi.valid & (sb.count == 0))

        elif name == "notifications":
            with m.If(dut.notify.valid):
                self._assert(m, "notify_has_an_on_transition", nb.count != 0)
                self._assert(m, "notify_payload", dut.notify.p.as_value() == nb.head)
            self._assert(m, "conservation", nb.count == notify_pending)
            with m.If(~dut.busy):
                self._assert(m, "nothing_pending_when_idle", nb.count == 0)

        elif name == "completion":
            self._environment_patience(m)
            ready_bound, idle_bound = self.bounds or completion_bounds(self.latency,
                                                                       self.patience)
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

        if self.invariants:
            _invariants(self, m, ctx, prove=(name == "invariants"))
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


def _invariants(harness, m, ctx, *, prove):
    """The auxiliary invariants (tb/formal/README.md, "Invariants"): the monitor's view of the
    request (which transfer it is at, what the bus returned, whether its exit was taken)
    determines every stage's FSM state, output registers and data registers, and the
    scoreboards hold exactly what the stages still owe. Asserted when ``prove`` (the
    ``invariants`` check proves them by induction), assumed otherwise (the other checks use
    them as proven lemmas)."""
    dut = harness.dut
    I, L, U, V = dut.interceptor, dut.lookup, dut.pid_update, dut.virr_update
    reg, state = ctx["internals"], ctx["internals"].state
    spec, exp, pos, n = ctx["spec"], ctx["exp"], ctx["pos"], ctx["n"]
    live, err, taken = ctx["r_live"], ctx["r_err"], ctx["r_exit_taken"]
    nb, sb = ctx["nb"], ctx["sb"]
    what = exp.what

    def inv(name, test):
        m.d.comb += (Assert if prove else Assume)(test, f"inv_{name}")

    def only(stage_outputs, which):
        # ``which`` (a stream of the stage, or None) is the only valid one.
        return Cat(out.valid == (out is which) for out in stage_outputs).all()

    i_outs = (I.gp, I.exit, I.post, I.self_ipi)
    l_outs = (L.post, L.exit)

    def i_in(name, offering=None):
        return state("interceptor", name) & only(i_outs, offering)

    def l_in(name, offering=None):
        return state("lookup", name) & only(l_outs, offering)

    i_idle, l_idle = i_in("IDLE"), l_in("IDLE")
    u_idle = state("pid_update", "IDLE") & ~U.exit.valid
    v_idle = state("virr_update", "IDLE") & ~V.exit.valid
    # The interceptor's registers while it stores and reads the vICR.
    i_regs = (reg("interceptor", "kind") == ctx["r_kind"].as_value()) & \
        (reg("interceptor", "image") == spec.image) & (reg("interceptor", "xapic") == spec.xapic)
    i_post = (I.post.p.vector == spec.vector) & (I.post.p.dest == spec.dest) & \
        (I.post.p.icr == spec.image)
    i_self = (I.self_ipi.p.vector == spec.vector) & (I.self_ipi.p.icr == spec.image)
    l_post = (L.post.p.vector == spec.vector) & \
        (L.post.p.pid_line == ctx["r_entry"][6:]) & (L.post.p.icr == spec.image)

    def exit_is(x, *, bus_error=False):
        if bus_error:
            return (x.reason == EXIT_REASON_APIC_WRITE) & \
                (x.qualification == APIC_WRITE_QUALIFICATION_ICR) & \
                (x.cause == ExitCause.BUS_ERROR) & (x.icr == spec.image)
        return (x.reason == spec.exit_reason) & (x.qualification == spec.exit_qualification) & \
            (x.cause.as_value() == spec.exit_cause) & (x.icr == spec.exit_icr)

    ok = live & ~err
    flight = ctx["in_flight"]
    fin = ok & (pos == n)
    inv("position_within_the_path", ~ok | (pos <= n))
    inv("nothing_before_acceptance",
        live | (i_idle & l_idle & u_idle & v_idle & ~dut.notify.valid & ~dut.self_ipi.valid))

    # -- transfers still due: the stage that makes the next one, and nothing else ---------------
    rest_idle = l_idle & u_idle & v_idle
    phases = [
        ("store_hi", i_in("STORE_HI") & i_regs & rest_idle),
        ("store_lo", i_in("STORE_LO") & i_regs & rest_idle),
        ("read_hi", i_in("READ_HI") & i_regs & rest_idle),
        ("entry", i_in("OUTPUT", I.post) & i_post & rest_idle),
        ("pir_read", i_idle & l_in("OUTPUT", L.post) & l_post & u_idle & v_idle),
        ("pir_write", i_idle & l_in("OUTPUT", L.post) & l_post & v_idle &
         state("pid_update", "PIR_WRITE") & ~U.exit.valid &
         (reg("pid_update", "word") == ctx["r_rmw"])),
        ("ni_read", i_idle & l_in("OUTPUT", L.post) & l_post & v_idle &
         state("pid_update", "NOTIFY_INFO_READ") & ~U.exit.valid),
        ("ni_write", i_idle & l_in("OUTPUT", L.post) & l_post & v_idle &
         state("pid_update", "NOTIFY_INFO_WRITE") & ~U.exit.valid &
         (reg("pid_update", "word") == ctx["r_ni"])),
        ("irr_read", i_in("OUTPUT", I.self_ipi) & i_self & l_idle & u_idle & v_idle),
        ("irr_write", i_in("OUTPUT", I.self_ipi) & i_self & l_idle & u_idle &
         state("virr_update", "WRITE") & ~V.exit.valid &
         (reg("virr_update", "word") == ctx["r_rmw"][:32])),
    ]
    for name, config in phases:
        inv(f"at_{name}", ~(flight & what[name]) | config)
    inv("exit_taken_after_offered", ~taken | ctx["r_exit_seen"])
    inv("no_exit_in_flight", ~flight | (~ctx["r_exit_seen"] & ~taken))

    # -- the request's transfers are done: what it still owes --------------------------------
    index_range = spec.pre_exit & (spec.exit_cause == ExitCause.INDEX_RANGE.value)
    all_idle = i_idle & l_idle & u_idle & v_idle
    ends = [
        ("gp", spec.gp, Mux(taken, i_idle, i_in("OUTPUT", I.gp) & (I.gp.p == ctx["r_data"])) &
         l_idle & u_idle & v_idle),
        ("interceptor_exit", spec.intercept | (spec.pre_exit & ~index_range),
         Mux(taken, i_idle, i_in("OUTPUT", I.exit) & exit_is(I.exit.p)) &
         l_idle & u_idle & v_idle),
        ("index_range_exit", index_range,
         Mux(taken, i_idle & l_idle,
             (i_in("OUTPUT", I.post) & i_post & l_idle) |
             (i_idle & l_in("OUTPUT", L.exit) & exit_is(L.exit.p))) & u_idle & v_idle),
        ("entry_invalid_exit", spec.needs_entry & ~spec.post,
         i_idle & Mux(taken, l_idle, l_in("OUTPUT", L.exit) & exit_is(L.exit.p)) &
         u_idle & v_idle),
        ("icr_hi_stored", ctx["r_kind"] == ICRWriteKind.XAPIC_ICR_HI, all_idle),
        ("posted", spec.post,
         i_idle & l_idle & v_idle & ~U.exit.valid &
         (state("pid_update", "IDLE") |
          (state("pid_update", "NOTIFY") & spec.notify &
           (reg("pid_update", "word") == ctx["r_ni"])))),
        ("self_ipi", spec.self_ipi,
         i_idle & l_idle & u_idle & ~V.exit.valid &
         (state("virr_update", "IDLE") |
          (state("virr_update", "OFFER") & (reg("virr_update", "word")[:8] == spec.vector)))),
    ]
    for name, when, config in ends:
        inv(f"done_{name}", ~(fin & when) | config)
    inv("no_exit_without_spec", ~(fin & ~spec.exit & ~spec.gp) |
        (~ctx["r_exit_seen"] & ~taken))

    # -- a transfer ended in err: the stage that made it offers the bus-error exit -----------
    stages = [(_INTERCEPTOR, i_in("OUTPUT", I.exit), I.exit, i_idle),
              (_LOOKUP, l_in("OUTPUT", L.exit), L.exit, l_idle),
              (_PID_UPDATE, state("pid_update", "OUTPUT") & U.exit.valid, U.exit, u_idle),
              (_VIRR_UPDATE, state("virr_update", "OUTPUT") & V.exit.valid, V.exit, v_idle)]
    for index, offering, out, idle in stages:
        others = Cat(o_idle for k, _, _, o_idle in stages if k != index).all()
        inv(f"bus_error_{index}", ~(live & err & (ctx["r_err_by"] == index)) |
            (others & Mux(taken, idle, offering & exit_is(out.p, bus_error=True))))

    # -- what is still owed on notify and self_ipi --------------------------------------------
    notify_waiting = state("pid_update", "NOTIFY")
    inv("notifications_owed", nb.count == dut.notify.valid + notify_waiting)
    inv("notification_offered", ~dut.notify.valid | (dut.notify.p.as_value() == nb.head))
    inv("notification_waiting", ~notify_waiting |
        (Mux(dut.notify.valid, nb.tail, nb.head) == spec.notification))
    offer_waiting = state("virr_update", "OFFER")
    inv("self_ipis_owed", sb.count == dut.self_ipi.valid + offer_waiting)
    inv("self_ipi_offered", ~dut.self_ipi.valid | (dut.self_ipi.p == sb.head))
    inv("self_ipi_waiting", ~offer_waiting |
        (Mux(dut.self_ipi.valid, sb.tail, sb.head) == reg("virr_update", "word")[:8]))

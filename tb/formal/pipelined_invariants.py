"""The auxiliary invariants of the pipelined unit (tb/formal/README.md, "Invariants of the
pipelined unit").

The monitor's view of the request (transfers taken and answered, what the bus returned,
whether its exit was taken) determines the sequencer's state and registers and the issuer's
counters, and the scoreboards hold what the sequencer still owes. They read only what the
unit publishes: the sequencer's ``state`` and the registers named in
`hdl.ipi_virtualizer.PIPELINED_STAGES`, the issuer's public counters (`ISSUER_REGISTERS`),
and the round trip's answers as the issuer hands them to the sequencer (``trip.answers``, a
port). Asserted by the ``invariants`` check, assumed by the other checks.
"""

from amaranth import C, Mux, Value

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE, ICRWriteKind,
    PID_POINTER_ENTRY_BYTES,
)

from .invariants import Published, _Invariants, early_verdict, transition_tables


__all__ = ["add_pipelined_invariants", "ISSUER_REGISTERS"]

#: The issuer's public registers (`hdl.pipelined_issuer.PipelinedIssuer`).
ISSUER_REGISTERS = ("issued", "answered", "erred", "locked", "one_out", "all_issued")


class _PipelinedInvariants:
    """The invariants, by group (tb/formal/README.md, "Invariants of the pipelined unit")."""

    def __init__(self, m, dut, mon, *, prove):
        self.m, self.dut, self.mon, self.prove = m, dut, mon, prove
        self.reg = Published(dut)
        self.issuer = {name: Value.cast(getattr(dut.issuer, name)) for name in ISSUER_REGISTERS}
        q = self.issuer
        self.q_idle = (q["issued"] == 0) & (q["answered"] == 0) & ~q["erred"] & ~q["locked"]
        self.quiet = ~dut.exit.valid & ~dut.gp.valid
        self.idle = self.at("IDLE") & self.quiet
        spec = mon.spec
        self.common = (self.seq("kind") == mon.kind.as_value()) & \
            (self.seq("xapic") == spec.xapic) & (self.seq("image") == spec.image)
        self.classified = self.seq("verdict") == early_verdict(m, mon)
        # The addresses the sequencer registers every cycle, from cfg (and V).
        vapic, word = mon.cfg.vapic_page, spec.word
        self.vicr_adr = (self.seq("lo_adr") == word(vapic + APIC_OFFSET_ICR_LO)) & \
            (self.seq("hi_adr") == word(vapic + APIC_OFFSET_ICR_HI))
        self.irr_adr = self.seq("irr_adr") == \
            word(vapic + APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * spec.vector[5:8])
        # The entry's, from T as known (in STORES, from the cycle after acceptance).
        self.entry_adr = self.seq("entry_adr") == \
            word(mon.cfg.pid_table + PID_POINTER_ENTRY_BYTES * spec.dest[:16])
        self.ok = mon.live & ~mon.err
        self.fin = self.ok & (mon.answered == mon.n)
        self.on_bus = mon.on_bus

    def seq(self, name):
        return self.reg("sequencer", name)

    def at(self, name):
        return self.reg.state("sequencer", name)

    # As the classic invariants: assert or assume (``prove``), and an exit's payload against
    # the spec (both read only ``m``, ``prove`` and ``mon``).
    inv = _Invariants.inv
    exit_is = _Invariants.exit_is

    def basics(self):
        mon, dut = self.mon, self.dut
        self.inv("answered_le_taken", ~mon.live | (mon.answered <= mon.taken))
        self.inv("taken_within_the_path", ~mon.live | (mon.taken <= mon.n))
        self.inv("outstanding_are_this_requests",
                 mon.outstanding == Mux(mon.live, mon.taken - mon.answered, 0))
        self.inv("nothing_before_acceptance",
                 mon.live | (self.idle & self.q_idle & ~dut.notify.valid & ~dut.self_ipi.valid))
        self.inv("lock_window_is_the_issuers", self.issuer["locked"] == mon.lock_open)
        # The issuer's comparisons registered ahead (the round trip's count is held).
        q, count = self.issuer, self.dut.issuer.trip.count
        self.inv("issuer_one_out", q["one_out"] == (q["answered"] + 1 == q["issued"]))
        self.inv("issuer_all_issued",
                 q["all_issued"] == ((q["issued"] != 0) & (q["issued"] == count)))
        # The sequencer's published transition table is complete (tb/fsm_coverage relies on
        # it).
        self.inv("transition_tables", transition_tables(self.m, dut))

    def round_trips(self):
        """While answers are due: the round trip of the next answer fixes the sequencer's
        state and registers and the issuer's counters."""
        mon, spec, q = self.mon, self.mon.spec, self.issuer
        what, needs = mon.ans.what, mon.ans.needs
        lo = mon.kind == ICRWriteKind.XAPIC_ICR_LO
        issuer = (q["issued"] + needs == mon.taken) & (q["answered"] + needs == mon.answered) & \
            (q["erred"] == mon.err) & (mon.taken <= mon.ans.ends)
        pid = self.seq("pid_line") == mon.entry[6:]
        # The PIR word, once answered, waits in the issuer for the NotifyInfo read's answer.
        pir_kept = (mon.answered == needs) | mon.err | \
            (Value.cast(self.dut.issuer.trip.answers[0]) == mon.rmw)
        phases = [
            ("STORES", what["store_hi"] | what["store_lo"] | what["read_hi"] |
             (what["entry"] & ~lo), self.common & self.classified & self.vicr_adr &
             ((q["issued"] == 0) | lo | self.entry_adr)),
            ("ENTRY", what["entry"] & lo, self.common & self.entry_adr),
            ("READS", what["pir_read"] | what["ni_read"], self.common & pid & pir_kept),
            ("WRITES", what["pir_write"] | what["ni_write"],
             self.common & pid &
             (self.seq("pir_word") == (mon.rmw | (C(1, 64) << spec.vector[:6]))) &
             (self.seq("ni_word") == mon.ni) & (self.seq("notifying") == spec.notify)),
            ("IRR_READ", what["irr_read"], self.common & self.irr_adr),
            ("IRR_WRITE", what["irr_write"],
             self.common & self.irr_adr &
             (self.seq("irr_word") == (mon.rmw[:32] | (C(1, 32) << spec.vector[:5])))),
        ]
        for state, when, config in phases:
            self.inv(f"at_{state.lower()}", ~(self.on_bus & when) |
                     (self.at(state) & self.quiet & issuer & config))
        # The window opens as a locked read is taken and stays open through the writes.
        self.inv("lock_window_open", mon.lock_open ==
                 (self.on_bus & mon.ans.lock & (mon.ans.we | (mon.taken != needs))))
        self.inv("exit_taken_after_offered", ~mon.exit_taken | mon.exit_seen)
        self.inv("no_exit_on_bus", ~self.on_bus | (~mon.exit_seen & ~mon.exit_taken))

    def request_done(self):
        """Every answer is in: what the request still owes."""
        dut, mon, spec, taken = self.dut, self.mon, self.mon.spec, self.mon.exit_taken
        offers_exit = self.at("OUTPUT") & dut.exit.valid & ~dut.gp.valid
        ends = [
            ("gp", spec.gp, Mux(taken, self.idle, self.at("OUTPUT") & dut.gp.valid &
                                ~dut.exit.valid & (dut.gp.p == mon.data))),
            ("exit", spec.exit, Mux(taken, self.idle, offers_exit & self.exit_is(dut.exit.p))),
            ("icr_hi_stored", mon.kind == ICRWriteKind.XAPIC_ICR_HI, self.idle),
            ("posted", spec.post, self.quiet &
             (self.at("IDLE") | (self.at("NOTIFY") & spec.notify &
                                 (self.seq("ni_word") == mon.ni)))),
            ("self_ipi", spec.self_ipi, self.quiet &
             (self.at("IDLE") | (self.at("OFFER") & self.common))),
        ]
        for name, when, config in ends:
            self.inv(f"done_{name}", ~(self.fin & when) | (config & self.q_idle))
        self.inv("no_exit_without_spec", ~(self.fin & ~spec.exit & ~spec.gp) |
                 (~mon.exit_seen & ~taken))
        self.inv("bus_error", ~(mon.live & mon.err & (mon.answered == mon.taken)) |
                 (self.q_idle & Mux(taken, self.idle,
                                    offers_exit & self.exit_is(dut.exit.p, bus_error=True))))

    def outputs_owed(self):
        """What is still owed on ``notify`` and ``self_ipi``."""
        dut, mon = self.dut, self.mon
        nb, sb = mon.nb, mon.sb
        self.inv("notifications_owed", nb.count == dut.notify.valid + mon.notify_waiting)
        self.inv("notification_offered", ~dut.notify.valid | (dut.notify.p.as_value() == nb.head))
        self.inv("notification_waiting", ~mon.notify_waiting |
                 (Mux(dut.notify.valid, nb.tail, nb.head) == mon.spec.notification))
        self.inv("self_ipis_owed", sb.count == dut.self_ipi.valid + mon.self_ipi_waiting)
        self.inv("self_ipi_offered", ~dut.self_ipi.valid | (dut.self_ipi.p == sb.head))
        self.inv("self_ipi_waiting", ~mon.self_ipi_waiting |
                 (Mux(dut.self_ipi.valid, sb.tail, sb.head) == self.seq("image")[:8]))


def add_pipelined_invariants(m, dut, mon, *, prove):
    """Assert (``prove``) or assume the invariants of the pipelined ``dut`` against the
    `tb.formal.pipelined_monitor.PipelinedMonitor` ``mon``."""
    invariants = _PipelinedInvariants(m, dut, mon, prove=prove)
    invariants.basics()
    invariants.round_trips()
    invariants.request_done()
    invariants.outputs_owed()

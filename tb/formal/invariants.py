"""The auxiliary invariants of the formal harness (tb/formal/README.md, "Invariants").

The monitor's view of the request (which transfer it is at, what the bus returned, whether
its exit was taken) determines every stage's state, output registers and data registers,
and the scoreboards hold exactly what the stages still owe. They read only what the stages
publish (their ``state`` and the registers named in `hdl.ipi_virtualizer.STAGES`), so a
stage's local names are free to change. Asserted by the ``invariants`` check (proven by
induction), assumed by the other checks (as proven lemmas).
"""

from amaranth import Cat, Mux, Value
from amaranth.hdl import Assert, Assume

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE,
    APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE, ExitCause, ICR_IPIV_INELIGIBLE_MASK,
    ICRWriteKind, PID_POINTER_ENTRY_BYTES,
)

from hdl.icr_classifier import EarlyVerdict, classify, early_image

from .environment import past
from .monitor import STAGE_INDEX


__all__ = ["Published", "add_invariants"]


class Published:
    """The stages' published state and registers, by name (the unit's `stage_table`, classic
    or pipelined): ``published(stage, name)`` is a register the stage table names (anything
    else is a `KeyError`), ``published.state(stage, name)`` is 1 while the stage is in that
    state of its ``State`` enum (a name the enum lacks is a `KeyError`, so a renamed state
    cannot turn an invariant into a vacuous one)."""

    def __init__(self, dut):
        self._stages = {stage.name: (getattr(dut, stage.name), stage.registers)
                        for stage in dut.stage_table}

    def __call__(self, stage, name):
        unit, registers = self._stages[stage]
        if name not in registers:
            raise KeyError(f"{stage} publishes no register {name!r}")
        return Value.cast(getattr(unit, name))

    def state(self, stage, name):
        unit, _ = self._stages[stage]
        if name not in unit.State.__members__:
            raise KeyError(f"{stage} has no state {name!r}")
        return unit.state == unit.State[name]


def transition_tables(m, dut):
    """1 while every stage's state register moved along its published table this cycle."""
    ok = []
    for i, stage in enumerate(dut.stages):
        before = past(m, stage.state, f"state_{i}")
        # Sorted, so the RTLIL does not depend on the order of a set (PYTHONHASHSEED).
        table = sorted(stage.TRANSITIONS, key=lambda t: (t[0].value, t[1].value))
        moved = [(before == a.value) & (stage.state == b) for a, b in table]
        valid_before = Cat(before == s.value for s in stage.State).any()
        ok.append(~valid_before | Cat(moved).any())
    return Cat(ok).all()


def early_verdict(m, mon, ineligible_mask=ICR_IPIV_INELIGIBLE_MASK):
    """The classification and range check (`hdl.icr_classifier.EarlyVerdict`) a stage
    registers as it takes the monitor's request. Pass a stage's own eligibility mask, so that
    a mutant of it fails where its outcome shows."""
    kind = mon.kind.as_value()
    verdict = classify(m, early_image(kind, mon.spec.image), kind=kind, xapic=mon.spec.xapic,
                       cfg=mon.cfg, ineligible_mask=ineligible_mask)
    return EarlyVerdict.of(verdict, mon.cfg)


class _Invariants:
    def __init__(self, m, dut, mon, *, prove):
        self.m, self.dut, self.mon, self.prove = m, dut, mon, prove
        self.reg = Published(dut)
        self.state = self.reg.state
        I, L, U, V = dut.interceptor, dut.lookup, dut.pid_update, dut.virr_update
        self.i_outs, self.l_outs = (I.gp, I.exit, I.post, I.self_ipi), (L.post, L.exit)
        self.i_idle, self.l_idle = self.i_in("IDLE"), self.l_in("IDLE")
        self.u_idle = self.state("pid_update", "IDLE") & ~U.exit.valid
        self.v_idle = self.state("virr_update", "IDLE") & ~V.exit.valid
        spec = mon.spec
        # The interceptor's registers while it stores and reads the vICR.
        vapic, word = mon.cfg.vapic_page, spec.word
        self.i_regs = (self.reg("interceptor", "kind") == mon.kind.as_value()) & \
            (self.reg("interceptor", "image") == spec.image) & \
            (self.reg("interceptor", "xapic") == spec.xapic) & \
            (self.reg("interceptor", "verdict") ==
             early_verdict(m, mon, dut.interceptor.ineligible_mask())) & \
            (self.reg("interceptor", "lo_adr") == word(vapic + APIC_OFFSET_ICR_LO)) & \
            (self.reg("interceptor", "hi_adr") == word(vapic + APIC_OFFSET_ICR_HI))
        # The addresses summed into the payloads are the bus's, at the width of its address.
        aw = len(self.reg("interceptor", "lo_adr"))
        self.i_post = (I.post.p.vector == spec.vector) & (I.post.p.dest == spec.dest) & \
            (I.post.p.icr == spec.image) & \
            (I.post.p.in_range == (spec.dest <= mon.cfg.last_pid_index)) & \
            (I.post.p.entry_adr[:aw] ==
             word(mon.cfg.pid_table + PID_POINTER_ENTRY_BYTES * spec.dest[:16]))
        self.i_self = (I.self_ipi.p.vector == spec.vector) & (I.self_ipi.p.icr == spec.image) & \
            (I.self_ipi.p.irr_adr[:aw] ==
             word(vapic + APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * spec.vector[5:8]))
        self.l_post = (L.post.p.vector == spec.vector) & \
            (L.post.p.pid_line == mon.entry[6:]) & (L.post.p.icr == spec.image)
        self.ok = mon.live & ~mon.err
        self.fin = self.ok & (mon.pos == mon.n)

    def inv(self, name, test):
        self.m.d.comb += (Assert if self.prove else Assume)(test, f"inv_{name}")

    @staticmethod
    def only(stage_outputs, which):
        """``which`` (a stream of the stage, or None) is the only valid one."""
        return Cat(out.valid == (out is which) for out in stage_outputs).all()

    def i_in(self, name, offering=None):
        return self.state("interceptor", name) & self.only(self.i_outs, offering)

    def l_in(self, name, offering=None):
        return self.state("lookup", name) & self.only(self.l_outs, offering)

    def exit_is(self, x, *, bus_error=False):
        spec = self.mon.spec
        if bus_error:
            return (x.reason == EXIT_REASON_APIC_WRITE) & \
                (x.qualification == APIC_WRITE_QUALIFICATION_ICR) & \
                (x.cause == ExitCause.BUS_ERROR) & (x.icr == spec.image)
        return (x.reason == spec.exit_reason) & (x.qualification == spec.exit_qualification) & \
            (x.cause.as_value() == spec.exit_cause) & (x.icr == spec.exit_icr)

    def basics(self):
        mon, dut = self.mon, self.dut
        self.inv("position_within_the_path", ~self.ok | (mon.pos <= mon.n))
        self.inv("nothing_before_acceptance",
                 mon.live | (self.i_idle & self.l_idle & self.u_idle & self.v_idle &
                             ~dut.notify.valid & ~dut.self_ipi.valid))
        # The unit's arbiter is exclusive (hdl.wishbone.Arbiter): one stage holds cyc at most.
        cycs = [stage.bus.cyc for stage in dut.stages]
        self.inv("one_bus_master", sum(cycs) <= 1)
        # The stages' published transition tables are complete (tb/fsm_coverage relies on it).
        self.inv("transition_tables", transition_tables(self.m, dut))

    def transfers_due(self):
        """The stage that makes the next transfer, and nothing else."""
        I, L, U, V = self.dut.interceptor, self.dut.lookup, self.dut.pid_update, \
            self.dut.virr_update
        mon, state, reg = self.mon, self.state, self.reg
        i_idle, l_idle, u_idle, v_idle = self.i_idle, self.l_idle, self.u_idle, self.v_idle
        i_in, l_in = self.i_in, self.l_in
        rest_idle = l_idle & u_idle & v_idle
        posting = i_idle & l_in("OUTPUT", L.post) & self.l_post & v_idle
        phases = [
            ("store_hi", i_in("STORE_HI") & self.i_regs & rest_idle),
            ("store_lo", i_in("STORE_LO") & self.i_regs & rest_idle),
            ("read_hi", i_in("READ_HI") & self.i_regs & rest_idle),
            ("entry", i_in("OUTPUT", I.post) & self.i_post & rest_idle),
            ("pir_read", posting & u_idle),
            ("pir_write", posting & state("pid_update", "PIR_WRITE") & ~U.exit.valid &
             (reg("pid_update", "word") == mon.rmw)),
            ("ni_read", posting & state("pid_update", "NOTIFY_INFO_READ") & ~U.exit.valid),
            ("ni_write", posting & state("pid_update", "NOTIFY_INFO_WRITE") & ~U.exit.valid &
             (reg("pid_update", "word") == mon.ni)),
            ("irr_read", i_in("OUTPUT", I.self_ipi) & self.i_self & l_idle & u_idle & v_idle),
            ("irr_write", i_in("OUTPUT", I.self_ipi) & self.i_self & l_idle & u_idle &
             state("virr_update", "WRITE") & ~V.exit.valid &
             (reg("virr_update", "word") == mon.rmw[:32])),
        ]
        for name, config in phases:
            self.inv(f"at_{name}", ~(mon.in_flight & mon.exp.what[name]) | config)
        self.inv("exit_taken_after_offered", ~mon.exit_taken | mon.exit_seen)
        self.inv("no_exit_in_flight", ~mon.in_flight | (~mon.exit_seen & ~mon.exit_taken))

    def request_done(self):
        """The request's transfers are done: what it still owes."""
        I, L, U, V = self.dut.interceptor, self.dut.lookup, self.dut.pid_update, \
            self.dut.virr_update
        mon, spec, state, reg = self.mon, self.mon.spec, self.state, self.reg
        i_idle, l_idle, u_idle, v_idle = self.i_idle, self.l_idle, self.u_idle, self.v_idle
        i_in, l_in, taken = self.i_in, self.l_in, mon.exit_taken
        index_range = spec.pre_exit & (spec.exit_cause == ExitCause.INDEX_RANGE.value)
        ends = [
            ("gp", spec.gp, Mux(taken, i_idle, i_in("OUTPUT", I.gp) & (I.gp.p == mon.data)) &
             l_idle & u_idle & v_idle),
            ("interceptor_exit", spec.intercept | (spec.pre_exit & ~index_range),
             Mux(taken, i_idle, i_in("OUTPUT", I.exit) & self.exit_is(I.exit.p)) &
             l_idle & u_idle & v_idle),
            ("index_range_exit", index_range,
             Mux(taken, i_idle & l_idle,
                 (i_in("OUTPUT", I.post) & self.i_post & l_idle) |
                 (i_idle & l_in("OUTPUT", L.exit) & self.exit_is(L.exit.p))) & u_idle & v_idle),
            ("entry_invalid_exit", spec.needs_entry & ~spec.post,
             i_idle & Mux(taken, l_idle, l_in("OUTPUT", L.exit) & self.exit_is(L.exit.p)) &
             u_idle & v_idle),
            ("icr_hi_stored", mon.kind == ICRWriteKind.XAPIC_ICR_HI,
             i_idle & l_idle & u_idle & v_idle),
            ("posted", spec.post,
             i_idle & l_idle & v_idle & ~U.exit.valid &
             (state("pid_update", "IDLE") |
              (state("pid_update", "NOTIFY") & spec.notify &
               (reg("pid_update", "word") == mon.ni)))),
            ("self_ipi", spec.self_ipi,
             i_idle & l_idle & u_idle & ~V.exit.valid &
             (state("virr_update", "IDLE") |
              (state("virr_update", "OFFER") &
               (reg("virr_update", "word")[:8] == spec.vector)))),
        ]
        for name, when, config in ends:
            self.inv(f"done_{name}", ~(self.fin & when) | config)
        self.inv("no_exit_without_spec", ~(self.fin & ~spec.exit & ~spec.gp) |
                 (~mon.exit_seen & ~taken))

    def bus_errors(self):
        """A transfer ended in err: the stage that made it offers the bus-error exit."""
        I, L, U, V = self.dut.interceptor, self.dut.lookup, self.dut.pid_update, \
            self.dut.virr_update
        mon, state = self.mon, self.state
        stages = [
            (STAGE_INDEX["interceptor"], self.i_in("OUTPUT", I.exit), I.exit, self.i_idle),
            (STAGE_INDEX["lookup"], self.l_in("OUTPUT", L.exit), L.exit, self.l_idle),
            (STAGE_INDEX["pid_update"], state("pid_update", "OUTPUT") & U.exit.valid, U.exit,
             self.u_idle),
            (STAGE_INDEX["virr_update"], state("virr_update", "OUTPUT") & V.exit.valid, V.exit,
             self.v_idle),
        ]
        for index, offering, out, idle in stages:
            others = Cat(o_idle for k, _, _, o_idle in stages if k != index).all()
            self.inv(f"bus_error_{index}", ~(mon.live & mon.err & (mon.err_by == index)) |
                     (others & Mux(mon.exit_taken, idle,
                                   offering & self.exit_is(out.p, bus_error=True))))

    def outputs_owed(self):
        """What is still owed on ``notify`` and ``self_ipi``."""
        dut, mon, state, reg = self.dut, self.mon, self.state, self.reg
        nb, sb = mon.nb, mon.sb
        notify_waiting = state("pid_update", "NOTIFY")
        self.inv("notifications_owed", nb.count == dut.notify.valid + notify_waiting)
        self.inv("notification_offered", ~dut.notify.valid | (dut.notify.p.as_value() == nb.head))
        self.inv("notification_waiting", ~notify_waiting |
                 (Mux(dut.notify.valid, nb.tail, nb.head) == mon.spec.notification))
        offer_waiting = state("virr_update", "OFFER")
        self.inv("self_ipis_owed", sb.count == dut.self_ipi.valid + offer_waiting)
        self.inv("self_ipi_offered", ~dut.self_ipi.valid | (dut.self_ipi.p == sb.head))
        self.inv("self_ipi_waiting", ~offer_waiting |
                 (Mux(dut.self_ipi.valid, sb.tail, sb.head) == reg("virr_update", "word")[:8]))


def add_invariants(m, dut, mon, *, prove):
    """Assert (``prove``) or assume the invariants of ``dut`` against the monitor ``mon``."""
    invariants = _Invariants(m, dut, mon, prove=prove)
    invariants.basics()
    invariants.transfers_due()
    invariants.request_done()
    invariants.bus_errors()
    invariants.outputs_owed()

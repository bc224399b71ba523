"""The formal harness's monitor: the request in flight as the spec model sees it.

It keeps the accepted request (kind, data, ``cfg``), the index of the transfer it is at, and
the data the bus returned (VICR_HI, the entry, the word of a read-modify-write, NotifyInfo);
the spec model (`tb.formal.spec`) turns these into the transfer expected next and the outcome
due. Two small scoreboards hold the notifications (and self-IPIs) due but not yet taken, with
their payloads, for conservation.
"""

from amaranth import Mux, Signal
from amaranth.hdl import Assume

from hdl.formats import ICRWriteKind, VMCSConfig
from hdl.ipi_virtualizer import STAGES

from .spec import MAX_TRANSFERS, RequestSpec


__all__ = ["Monitor", "Scoreboard", "STAGE_INDEX", "keep_read_data", "follow_exit"]

#: Stage name -> its index in `hdl.ipi_virtualizer.STAGES` (which stage made a transfer).
STAGE_INDEX = {stage.name: i for i, stage in enumerate(STAGES)}


def keep_read_data(m, mon, what, dat_r):
    """Keep what the spec's reads returned (``what``: the answered transfer's kind), in the
    monitor's registers; both monitors follow a request's answers this way."""
    with m.If(what["read_hi"]):
        m.d.sync += mon.hi.eq(dat_r[:32])
    with m.If(what["entry"]):
        m.d.sync += mon.entry.eq(dat_r)
    with m.If(what["pir_read"] | what["irr_read"]):
        m.d.sync += mon.rmw.eq(dat_r)
    with m.If(what["ni_read"]):
        m.d.sync += mon.ni.eq(dat_r)


def follow_exit(m, mon, dut):
    """Whether the request's exit or #GP has been offered, and taken."""
    with m.If(dut.exit.valid | dut.gp.valid):
        m.d.sync += mon.exit_seen.eq(1)
    with m.If((dut.exit.valid & dut.exit.ready) | (dut.gp.valid & dut.gp.ready)):
        m.d.sync += mon.exit_taken.eq(1)


class Scoreboard:
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


class Monitor:
    """Follows each accepted request of ``dut`` through the spec model (built into ``m``).

    ``active``, ``answer``, ``done`` are the bus's state this cycle (`assume_memory`). The
    attributes are what the properties and the invariants read: the request's registers
    (``live``, ``kind``, ``data``, ``cfg``, ``pos``, ``err``, ``hi``, ``entry``, ``rmw``,
    ``ni``, ``exit_seen``, ``exit_taken``, ``locked``, ``err_by``), the spec (``spec``, the
    expected transfer ``exp``, the path length ``n``), and what is due (``in_flight``,
    ``exit_due``, ``exit_owed``, ``gp_owed``, ``complete``, the scoreboards ``nb``/``sb`` and
    the stage states that hold one of them back, ``notify_waiting``, ``self_ipi_waiting``).
    """

    def __init__(self, m, dut, *, maxphyaddr, active, answer, done):
        self.dut, self.active, self.answer, self.done = dut, active, answer, done
        self.accepted = dut.icr.valid & dut.icr.ready
        self._registers()
        # The environment holds cfg from acceptance while the unit is busy (interface.md).
        m.d.comb += Assume(~(self.live & dut.busy) |
                           (dut.cfg.as_value() == self.cfg.as_value()))
        self._spec(m, maxphyaddr)
        self._follow(m)
        self._dues(m)
        # The states that hold a notification (self-IPI) back while the previous one waits.
        self.notify_waiting = dut.pid_update.state == dut.pid_update.State.NOTIFY
        self.self_ipi_waiting = dut.virr_update.state == dut.virr_update.State.OFFER

    def _registers(self):
        self.live = Signal(name="r_live")       # a request was accepted (the latest is tracked)
        self.kind = Signal(ICRWriteKind, name="r_kind")
        self.data = Signal(64, name="r_data")
        self.cfg = Signal(VMCSConfig, name="r_cfg")     # cfg at acceptance
        self.pos = Signal(range(MAX_TRANSFERS + 1), name="pos")     # transfers answered
        self.err = Signal(name="r_err")         # one ended in err: the request is over
        self.hi = Signal(32, name="r_hi")       # data the spec's reads returned
        self.entry = Signal(64, name="r_entry")
        self.rmw = Signal(64, name="r_rmw")
        self.ni = Signal(64, name="r_ni")
        self.exit_seen = Signal(name="r_exit_seen")     # its exit or #GP has been offered
        self.locked = Signal(name="r_locked")   # the transfer answered last was locked
        self.exit_taken = Signal(name="r_exit_taken")   # its exit or #GP has been taken
        self.err_by = Signal(range(len(STAGES)), name="r_err_by")   # whose transfer erred

    def _spec(self, m, maxphyaddr):
        bus = self.dut.bus
        # The transfer expected now does not depend on the data it returns: no loop.
        ni_now = Signal(64)
        self.spec = RequestSpec(m, kind=self.kind, data=self.data, cfg=self.cfg,
                                maxphyaddr=maxphyaddr, hi=self.hi, entry=self.entry,
                                rmw=self.rmw, ni=self.ni, ni_now=ni_now)
        self.exp = self.spec.transfer(self.pos)
        m.d.comb += ni_now.eq(Mux(self.done & ~bus.err & self.exp.what["ni_read"],
                                  bus.dat_r, self.ni))
        self.notification = Signal(40)
        m.d.comb += self.notification.eq(self.spec.notification)
        self.n = self.spec.n_transfers
        self.in_flight = self.live & ~self.err & (self.pos < self.n)    # transfers still due

    def _erring_stage(self):
        what = self.exp.what
        return Mux(what["entry"], STAGE_INDEX["lookup"],
                   Mux(what["irr_read"] | what["irr_write"], STAGE_INDEX["virr_update"],
                       Mux(what["store_hi"] | what["store_lo"] | what["read_hi"],
                           STAGE_INDEX["interceptor"], STAGE_INDEX["pid_update"])))

    def _follow(self, m):
        dut, bus, what = self.dut, self.dut.bus, self.exp.what
        with m.If(self.accepted):
            m.d.sync += [
                self.live.eq(1), self.kind.eq(dut.icr.p.kind), self.data.eq(dut.icr.p.data),
                self.cfg.eq(dut.cfg), self.pos.eq(0), self.err.eq(0), self.hi.eq(0),
                self.entry.eq(0), self.rmw.eq(0), self.ni.eq(0), self.exit_seen.eq(0),
                self.locked.eq(0), self.exit_taken.eq(0), self.err_by.eq(0),
            ]
        with m.Else():
            with m.If(self.done):
                with m.If(self.pos != MAX_TRANSFERS):
                    m.d.sync += self.pos.eq(self.pos + 1)
                m.d.sync += self.locked.eq(self.exp.lock & ~bus.err)
                with m.If(bus.err):
                    m.d.sync += [self.err.eq(1), self.err_by.eq(self._erring_stage())]
                with m.Else():
                    keep_read_data(m, self, what, bus.dat_r)
            follow_exit(m, self, dut)

    def _dues(self, m):
        dut, bus, spec = self.dut, self.dut.bus, self.spec
        live, pos, n = self.live, self.pos, self.n
        self.exit_due = live & (self.err | (spec.exit & (pos == n)))
        self.exit_owed = self.exit_due & ~self.exit_seen & ~dut.exit.valid
        self.gp_owed = live & spec.gp & ~self.exit_seen & ~dut.gp.valid
        # Complete at the end of this cycle (the next request may be accepted in the cycle the
        # last transfer of this one is answered).
        self.complete = ~live | self.err | (self.done & bus.err) | (pos + self.done == n)
        # Notification and self-IPI scoreboards (one offered, one waiting).
        answered = live & ~self.err & self.done & ~bus.err & (pos < n)
        self.on_set = answered & self.exp.what["ni_write"]
        self.irr_set = answered & self.exp.what["irr_write"]
        self.nb = Scoreboard(m, "notify", 40, push=self.on_set, value=self.notification,
                             pop=dut.notify.valid & dut.notify.ready)
        self.sb = Scoreboard(m, "self_ipi", 8, push=self.irr_set, value=spec.vector,
                             pop=dut.self_ipi.valid & dut.self_ipi.ready)

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


__all__ = ["Monitor", "Scoreboard", "STAGE_INDEX", "track_request", "accept_request",
           "keep_read_data", "follow_exit", "outputs_due"]

#: Stage name -> its index in `hdl.ipi_virtualizer.STAGES` (which stage made a transfer).
STAGE_INDEX = {stage.name: i for i, stage in enumerate(STAGES)}


def track_request(m, mon, dut):
    """What both monitors keep of the request ``dut`` accepted last: ``accepted`` (one is
    accepted now), the registers of what was accepted, whether it erred, what the spec's reads
    returned and its exit; the environment holds ``cfg`` while the unit works on it."""
    mon.accepted = dut.icr.valid & dut.icr.ready
    mon.live = Signal(name="r_live")        # a request was accepted
    mon.kind = Signal(ICRWriteKind, name="r_kind")
    mon.data = Signal(64, name="r_data")
    mon.cfg = Signal(VMCSConfig, name="r_cfg")      # cfg at acceptance
    mon.err = Signal(name="r_err")          # one was answered with err: the request is over
    mon.hi = Signal(32, name="r_hi")        # data the spec's reads returned
    mon.entry = Signal(64, name="r_entry")
    mon.rmw = Signal(64, name="r_rmw")      # the PIR word or the IRR register
    mon.ni = Signal(64, name="r_ni")
    mon.exit_seen = Signal(name="r_exit_seen")      # its exit or #GP has been offered
    mon.exit_taken = Signal(name="r_exit_taken")    # its exit or #GP has been taken
    # The environment holds cfg from acceptance while the unit is busy (interface.md).
    m.d.comb += Assume(~(mon.live & dut.busy) | (dut.cfg.as_value() == mon.cfg.as_value()))


def accept_request(mon, dut):
    """The statements that take the request ``dut`` accepts now into the registers of
    `track_request`, clearing what the previous one left."""
    return [mon.live.eq(1), mon.kind.eq(dut.icr.p.kind), mon.data.eq(dut.icr.p.data),
            mon.cfg.eq(dut.cfg), mon.err.eq(0), mon.hi.eq(0), mon.entry.eq(0), mon.rmw.eq(0),
            mon.ni.eq(0), mon.exit_seen.eq(0), mon.exit_taken.eq(0)]


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


def outputs_due(m, mon, dut, *, answered, what):
    """The outputs the request owes: its exit or #GP (once ``mon.exit_due``), and the
    scoreboards of notifications and self-IPIs, pushed when the NotifyInfo (VIRR) write of
    kind ``what`` is ``answered`` (one offered, one waiting)."""
    mon.exit_owed = mon.exit_due & ~mon.exit_seen & ~dut.exit.valid
    mon.gp_owed = mon.live & mon.spec.gp & ~mon.exit_seen & ~dut.gp.valid
    mon.on_set = answered & what["ni_write"]
    mon.irr_set = answered & what["irr_write"]
    mon.nb = Scoreboard(m, "notify", 40, push=mon.on_set, value=mon.notification,
                        pop=dut.notify.valid & dut.notify.ready)
    mon.sb = Scoreboard(m, "self_ipi", 8, push=mon.irr_set, value=mon.spec.vector,
                        pop=dut.self_ipi.valid & dut.self_ipi.ready)


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
        track_request(m, self, dut)
        self._registers()
        self._spec(m, maxphyaddr)
        self._follow(m)
        self._dues(m)
        # The states that hold a notification (self-IPI) back while the previous one waits.
        self.notify_waiting = dut.pid_update.state == dut.pid_update.State.NOTIFY
        self.self_ipi_waiting = dut.virr_update.state == dut.virr_update.State.OFFER

    def _registers(self):
        self.pos = Signal(range(MAX_TRANSFERS + 1), name="pos")     # transfers answered
        self.locked = Signal(name="r_locked")   # the transfer answered last was locked
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
            m.d.sync += accept_request(self, dut)
            m.d.sync += [self.pos.eq(0), self.locked.eq(0), self.err_by.eq(0)]
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
        # Complete at the end of this cycle (the next request may be accepted in the cycle the
        # last transfer of this one is answered).
        self.complete = ~live | self.err | (self.done & bus.err) | (pos + self.done == n)
        answered = live & ~self.err & self.done & ~bus.err & (pos < n)
        outputs_due(m, self, dut, answered=answered, what=self.exp.what)

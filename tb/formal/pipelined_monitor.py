"""The formal harness's monitor of the pipelined unit: the request in flight as the pipelined
spec model (`tb.formal.pipelined_spec`) sees it.

Requests taken and answers are tracked separately: ``taken`` counts the request's transfers
taken (the spec's transfer at that index is the one expected next on the bus), ``answered``
the answers it got (in order, so the answer arriving belongs to the spec's transfer at that
index, and its read data is kept as that transfer's). After an ``err`` no more data is kept
(the image of the exit is the one known when the err came, docs/decisions.md#bus-error-image).
The lock window of the request is followed too: open from the cycle its first locked
transfer is taken until the answer of its last locked transfer (after an err, the last
answer).
"""

from amaranth import Mux, Signal

from .monitor import (
    accept_request, follow_exit, keep_read_data, outputs_due, track_request,
)
from .pipelined_spec import PipelinedRequestSpec
from .spec import MAX_TRANSFERS


__all__ = ["PipelinedMonitor"]


class PipelinedMonitor:
    """Follows each accepted request of the pipelined ``dut`` through the spec model.

    ``memory`` is the `tb.formal.pipelined_environment.PipelinedMemory` of the bus. The
    attributes are what the properties and invariants read: the request's registers
    (``live``, ``kind``, ``data``, ``cfg``, ``taken``, ``answered``, ``err``, ``hi``,
    ``entry``, ``rmw``, ``ni``, ``exit_seen``, ``exit_taken``, ``lock_open``), the spec
    (``spec``; ``exp`` the transfer to be taken next, ``ans`` the one answered next; ``n``),
    the bus (``take``, ``answer``, ``outstanding``), the lock window (``window``), and what is
    due (``in_path``, ``on_bus``, ``exit_due``, ``exit_owed``, ``gp_owed``, ``complete``, the scoreboards
    ``nb``/``sb`` and the sequencer's states that hold one of them back, ``notify_waiting``,
    ``self_ipi_waiting``).
    """

    def __init__(self, m, dut, *, maxphyaddr, memory):
        self.dut, self.memory = dut, memory
        self.take, self.answer, self.outstanding = memory.take, memory.answer, \
            memory.outstanding
        track_request(m, self, dut)
        self._registers()
        self._spec(m, maxphyaddr)
        self._follow(m)
        self._dues(m)
        seq = dut.sequencer
        self.notify_waiting = seq.state == seq.State.NOTIFY
        self.self_ipi_waiting = seq.state == seq.State.OFFER

    def _registers(self):
        self.taken = Signal(range(MAX_TRANSFERS + 1), name="r_taken")       # transfers taken
        self.answered = Signal(range(MAX_TRANSFERS + 1), name="r_answered")  # and answered
        self.lock_open = Signal(name="r_lock_open")     # the lock window is open

    def _spec(self, m, maxphyaddr):
        bus = self.dut.bus
        ni_now = Signal(64)
        self.spec = PipelinedRequestSpec(
            m, kind=self.kind, data=self.data, cfg=self.cfg, maxphyaddr=maxphyaddr, hi=self.hi,
            entry=self.entry, rmw=self.rmw, ni=self.ni, ni_now=ni_now)
        self.exp = self.spec.transfer(self.taken, name="slot_taken")
        self.ans = self.spec.transfer(self.answered, name="slot_answered")
        # The transfer answered now does not depend on the data it returns: no loop.
        m.d.comb += ni_now.eq(Mux(self.answer & ~bus.err & ~self.err & self.ans.what["ni_read"],
                                  bus.dat_r, self.ni))
        self.notification = Signal(40)
        m.d.comb += self.notification.eq(self.spec.notification)
        self.n = self.spec.n_transfers
        self.in_path = self.live & ~self.err & (self.taken < self.n)   # transfers still due
        # Answers still due: the path's (after an err, those of the transfers taken).
        self.on_bus = self.live & Mux(self.err, self.answered != self.taken,
                                      self.answered < self.n)
        # The lock window in this cycle: open, or opened by a locked transfer taken now.
        self.window = self.lock_open | (self.take & self.in_path & self.exp.lock)

    def _follow(self, m):
        dut, bus, what = self.dut, self.dut.bus, self.ans.what
        err_now = self.err | bus.err
        closes = self.answer & (((self.answered + 1 == self.n) & self.ans.lock) |
                                (err_now & (self.answered + 1 == self.taken + self.take)))
        with m.If(self.accepted):
            m.d.sync += accept_request(self, dut)
            m.d.sync += [self.taken.eq(0), self.answered.eq(0), self.lock_open.eq(0)]
        with m.Else():
            with m.If(self.take & (self.taken != MAX_TRANSFERS)):
                m.d.sync += self.taken.eq(self.taken + 1)
            with m.If(self.answer & (self.answered != MAX_TRANSFERS)):
                m.d.sync += self.answered.eq(self.answered + 1)
            m.d.sync += self.lock_open.eq((self.lock_open & ~closes) |
                                          (self.take & self.in_path & self.exp.lock))
            with m.If(self.answer & bus.err):
                m.d.sync += self.err.eq(1)
            with m.If(self.answer & ~err_now):
                keep_read_data(m, self, what, bus.dat_r)
            follow_exit(m, self, dut)

    def _dues(self, m):
        dut, bus, spec = self.dut, self.dut.bus, self.spec
        live, n = self.live, self.n
        # Outputs come after the answers: an exit once every transfer taken is answered.
        self.exit_due = live & ((self.err & (self.answered == self.taken)) |
                                (spec.exit & (self.answered == n)))
        # Complete at the end of this cycle: every transfer taken is answered, and the path
        # is done or an err ended it (the next request may be accepted in the cycle the last
        # answer arrives).
        taken_end = self.taken + self.take
        all_answered = self.answered + self.answer == taken_end
        self.complete = ~live | (all_answered &
                                 (self.err | (self.answer & bus.err) | (taken_end == n)))
        # Notification and self-IPI scoreboards (one offered, one waiting): pushed by the
        # answer of the NotifyInfo (VIRR) write, unless the request already failed.
        answered = live & ~self.err & self.answer & ~bus.err & (self.answered < n)
        outputs_due(m, self, dut, answered=answered, what=self.ans.what)

"""Mutants of the pipelined unit: `hdl.pipelined_sequencer.PipelinedSequencer` (what goes in
which round trip, the notification) and `hdl.pipelined_issuer.PipelinedIssuer` (the lock
window, the order of answers, the end of a round trip)."""

from amaranth import C

from ..faults import Fault
from ..formats import ICRLow, NOTIFY_INFO_ON, NotifyInfo


class _WriteBeforeReadAnswered:
    def round_trips(self, m, adr, post_in_range):
        super().round_trips(m, adr, post_in_range)
        S, slots = self.State, self.trip.requests
        vector = ICRLow(self.image[:32]).vector
        with m.If(self.state == S.READS):
            m.d.comb += [*self.request(slots[2], adr["pir"], we=1,
                                       dat_w=C(1, 64) << vector[:6], lock=1),
                         self.trip.count.eq(3)]
        with m.If(self.state == S.WRITES):      # NotifyInfo only (or the PIR word again)
            with m.If(self.notifying):
                m.d.comb += self.request(slots[0], adr["ni"], we=1,
                                         dat_w=self.ni_word | NOTIFY_INFO_ON, lock=1)
            m.d.comb += self.trip.count.eq(1)


class _NotifyBeforeLastAnswer:
    def reads_done(self, m):
        super().reads_done(m)
        word = self.trip.last           # NotifyInfo, as it arrives
        info = NotifyInfo(word)
        with m.If((~self.notify.valid | self.notify.ready) & ~info.on & ~info.sn):
            m.d.sync += self.notification(word)

    def writes_done(self, m):
        self.complete(m)


class _LockDroppedWithWriteOutstanding:
    def lock(self, taken, current):
        return (self.locked & (self.issued != self.trip.count)) | (taken & current.lock)


class _AnswerMismatched:
    def slot_answered(self):
        return self.answered ^ self.trip.keep_lock


class _NextRequestEarly:
    def last_answer(self):
        early = (self.issued + 1 == self.trip.count) & self.bus.stb & ~self.bus.stall & \
            ~self.trip.keep_lock
        return super().last_answer() | early


SEQUENCER_MUTANTS = {
    Fault.WRITE_BEFORE_READ_ANSWERED: _WriteBeforeReadAnswered,
    Fault.NOTIFY_BEFORE_LAST_ANSWER: _NotifyBeforeLastAnswer,
}
ISSUER_MUTANTS = {
    Fault.LOCK_DROPPED_WITH_WRITE_OUTSTANDING: _LockDroppedWithWriteOutstanding,
    Fault.ANSWER_MISMATCHED: _AnswerMismatched,
    Fault.NEXT_REQUEST_EARLY: _NextRequestEarly,
}

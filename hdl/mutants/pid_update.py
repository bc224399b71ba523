"""Mutants of `hdl.pid_update.PIDUpdate` (the locks, the PIR word and bit, the NotifyInfo
decision and decoding, the notification register)."""

from amaranth import C, Cat, Signal

from ..faults import Fault


class _DropLock:
    LOCK = 0


class _OnDespiteSN:
    def suppresses(self, info):
        return info.on


class _PIRWriteWithoutRead:
    def idle(self, m, pir_adr):
        with m.If(self.request.valid):
            m.d.sync += self.word.eq(0)
            self.go(m, self.State.PIR_WRITE)


class _DropNotifyWhileOffered:
    def wait_to_offer(self, m):
        m.d.comb += self.completing.eq(1)
        self.go(m, self.State.IDLE)


class _NotifyOverwritten:
    def wait_to_offer(self, m):
        self.offer(m)


class _DoubleNotify:
    """Offers, then waits in NOTIFY to offer once more when it is taken."""
    def offer(self, m):
        super().offer(m)
        m.d.comb += self.completing.eq(0)
        self.go(m, self.State.NOTIFY)


class _WrongNVByte:
    def notification_vector(self, info):
        return info.as_value()[24:32]


class _WrongNDSTByte:
    def xapic_destination(self, info):
        return info.ndst[:8]


class _PIRBitOffByOne:
    def pir_bit(self, req):
        return C(1, 64) << (req.vector + 1)[:6]


class _WrongPIRWord:
    def pir_address(self, req):
        return Cat(req.vector[5:7], C(0, 1), req.pid_line)[:self._addr_width]


class _LockGap:
    """One cycle with neither cyc nor lock between the PIR read and its write."""
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._gap = Signal(name="gap")

    def pir_read_done(self, m):
        super().pir_read_done(m)
        m.d.sync += self._gap.eq(1)

    def pir_write(self, m, pir_adr):
        with m.If(self._gap):
            m.d.sync += self._gap.eq(0)
        with m.Else():
            super().pir_write(m, pir_adr)


class _LockWithoutCyc:
    def idle(self, m, pir_adr):
        m.d.comb += self.bus.lock.eq(1)
        super().idle(m, pir_adr)


MUTANTS = {
    Fault.DROP_LOCK: _DropLock,
    Fault.ON_DESPITE_SN: _OnDespiteSN,
    Fault.PIR_WRITE_WITHOUT_READ: _PIRWriteWithoutRead,
    Fault.DROP_NOTIFY_WHILE_OFFERED: _DropNotifyWhileOffered,
    Fault.NOTIFY_OVERWRITTEN: _NotifyOverwritten,
    Fault.DOUBLE_NOTIFY: _DoubleNotify,
    Fault.WRONG_NV_BYTE: _WrongNVByte,
    Fault.WRONG_NDST_BYTE: _WrongNDSTByte,
    Fault.PIR_BIT_OFF_BY_ONE: _PIRBitOffByOne,
    Fault.WRONG_PIR_WORD: _WrongPIRWord,
    Fault.LOCK_GAP: _LockGap,
    Fault.LOCK_WITHOUT_CYC: _LockWithoutCyc,
}

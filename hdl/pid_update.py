"""The posted-interrupt-descriptor update unit: last stage of an IPIv posting.

The processor makes two locked read-modify-writes (docs/architecture.md §4): first the PIR
word that holds bit V (set it), then NotifyInfo (if ON = 0 and SN = 0, set ON and notify;
otherwise write nothing). This unit runs them back to back inside one locked bus cycle, which
is at least as atomic as two separate ones (docs/decisions.md). The notification goes to NV at
NDST, decoded by the host's APIC mode.
"""

from amaranth import C, Cat, Mux, Signal
from amaranth.lib import enum, stream
from amaranth.lib.wiring import In, Out

from . import wishbone
from .formats import (
    APICWriteExit, NOTIFY_INFO_ON, Notification, NotifyInfo, PID_NOTIFY_INFO_OFFSET,
    XAPICNDST,
)
from .fsm import transition_table
from .requests import PIDPostRequest
from .stage import Stage


__all__ = ["PIDUpdate"]


class PIDUpdate(Stage):
    """Posts a vector into a PID and decides the notification.

    The two read-modify-writes follow each other with ``cyc`` and ``lock`` held from the PIR
    read to the last write's ``ack`` (the NotifyInfo update starts in the cycle after the PIR
    write's ``ack``), so no other master gets between them. When the post needs no
    notification, the NotifyInfo read is the last transfer.

    A `hdl.stage.Stage`: see there for ``maxphyaddr``, ``cfg``, ``bus``, ``busy`` and
    ``state``.

    Members
    -------
    request : In(stream.Signature(PIDPostRequest))
        Taken when the posting is complete.
    notify : Out(stream.Signature(Notification))
    exit : Out(stream.Signature(APICWriteExit))
        Bus errors only.
    posted : Out(1)
        One-cycle pulse: a posting completed (with or without a notification).
    suppressed : Out(1)
        One-cycle pulse: a posting completed without a notification (ON or SN was set).
    completing : Out(1)
        The posting ends at this clock edge with nothing left to do (its notification, if
        any, is registered at the same edge): the next ICR write may be accepted now.

    Attributes
    ----------
    word : Signal(64)
        The word read by the current read-modify-write: the PIR word in ``PIR_WRITE``,
        NotifyInfo in ``NOTIFY_INFO_WRITE`` and ``NOTIFY``.
    """

    class State(enum.Enum, shape=3):
        IDLE = 0                # (and the PIR read, presented with the request)
        PIR_WRITE = 1
        NOTIFY_INFO_READ = 2
        NOTIFY_INFO_WRITE = 3
        NOTIFY = 4              # waits for the notification register
        OUTPUT = 5              # offers a bus-error exit

    #: Every (from, to) the state register can take (a self-loop where a state waits); proven
    #: complete by ``ipiv prove invariants``.
    TRANSITIONS = transition_table(State, """
        IDLE              -> IDLE PIR_WRITE OUTPUT
        PIR_WRITE         -> PIR_WRITE OUTPUT NOTIFY_INFO_READ
        NOTIFY_INFO_READ  -> NOTIFY_INFO_READ OUTPUT IDLE NOTIFY_INFO_WRITE
        NOTIFY_INFO_WRITE -> NOTIFY_INFO_WRITE OUTPUT IDLE NOTIFY
        NOTIFY            -> NOTIFY IDLE
        OUTPUT            -> OUTPUT IDLE
    """)

    #: ``lock`` during the read-modify-writes.
    LOCK = 1

    def __init__(self, *, maxphyaddr=52):
        super().__init__({
            "request": In(stream.Signature(PIDPostRequest)),
            "notify": Out(stream.Signature(Notification)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "posted": Out(1),
            "suppressed": Out(1),
            "completing": Out(1),
        }, maxphyaddr=maxphyaddr)
        self.word = Signal(64, name="word")

    @property
    def outputs(self):
        return (self.notify, self.exit)

    # -- the steps (hdl.mutants overrides some of them) -------------------------------------

    def pir_address(self, req):
        """Word address of the PIR word holding bit V: PID + 8 * (V / 64)."""
        return Cat(req.vector[6:8], C(0, 1), req.pid_line)[:self._addr_width]

    def pir_bit(self, req):
        return C(1, 64) << req.vector[:6]

    def suppresses(self, info):
        """NotifyInfo as read says: no notification (ON or SN already set)."""
        return info.on | info.sn

    def notification_vector(self, info):
        return info.nv

    def xapic_destination(self, info):
        """NDST of an xAPIC host: the APIC ID in bits 15:8."""
        return XAPICNDST(info.ndst).apic_id

    def notification(self, info):
        """Load the notification of NotifyInfo ``info``: NV at NDST, as the host decodes it."""
        dest = Mux(self.cfg.host_x2apic, info.ndst, self.xapic_destination(info))
        return [self.notify.valid.eq(1), self.notify.p.vector.eq(self.notification_vector(info)),
                self.notify.p.dest.eq(dest)]

    def idle(self, m, pir_adr):
        """Present the PIR read with the request."""
        with m.If(self.request.valid):
            wishbone.drive(m, self.bus, adr=pir_adr, lock=self.LOCK)
            with m.If(self.bus.err):
                self.bus_error(m)
            with m.Elif(self.bus.ack):
                self.pir_read_done(m)

    def pir_read_done(self, m):
        m.d.sync += self.word.eq(self.bus.dat_r)
        self.go(m, self.State.PIR_WRITE)

    def pir_write(self, m, pir_adr):
        wishbone.drive(m, self.bus, adr=pir_adr, we=1,
                       dat_w=self.word | self.pir_bit(self.request.p), lock=self.LOCK)
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            self.go(m, self.State.NOTIFY_INFO_READ)

    def notify_info_read(self, m, ni_adr):
        wishbone.drive(m, self.bus, adr=ni_adr, lock=self.LOCK)
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            m.d.sync += self.word.eq(self.bus.dat_r)
            with m.If(self.suppresses(NotifyInfo(self.bus.dat_r))):
                m.d.comb += [self.request.ready.eq(1), self.posted.eq(1),
                             self.suppressed.eq(1), self.completing.eq(1)]
                self.go(m, self.State.IDLE)
            with m.Else():
                self.go(m, self.State.NOTIFY_INFO_WRITE)

    def notify_info_write(self, m, ni_adr):
        wishbone.drive(m, self.bus, adr=ni_adr, we=1, dat_w=self.word | NOTIFY_INFO_ON,
                       lock=self.LOCK)
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            m.d.comb += [self.request.ready.eq(1), self.posted.eq(1)]
            with m.If(~self.notify.valid | self.notify.ready):
                self.offer(m)
            with m.Else():
                self.wait_to_offer(m)

    def offer(self, m):
        """The notification register is free as the posting ends: fill it, done."""
        m.d.sync += self.notification(NotifyInfo(self.word))
        m.d.comb += self.completing.eq(1)
        self.go(m, self.State.IDLE)

    def wait_to_offer(self, m):
        """The previous notification is still offered: wait for it in ``NOTIFY``."""
        self.go(m, self.State.NOTIFY)

    def wait_for_register(self, m):
        with m.If(~self.notify.valid | self.notify.ready):
            m.d.sync += self.notification(NotifyInfo(self.word))
            self.go(m, self.State.IDLE)

    def machine(self, m):
        req = self.request.p
        pir_adr = self.pir_address(req)
        ni_adr = Cat(C(PID_NOTIFY_INFO_OFFSET // 8, 3), req.pid_line)[:self._addr_width]
        S = self.State
        with m.Switch(self.state):
            with m.Case(S.IDLE):
                self.idle(m, pir_adr)
            with m.Case(S.PIR_WRITE):
                self.pir_write(m, pir_adr)
            with m.Case(S.NOTIFY_INFO_READ):
                self.notify_info_read(m, ni_adr)
            with m.Case(S.NOTIFY_INFO_WRITE):
                self.notify_info_write(m, ni_adr)
            with m.Case(S.NOTIFY):
                self.wait_for_register(m)
            with m.Case(S.OUTPUT):
                with m.If(self.exit.ready):
                    self.go(m, S.IDLE)

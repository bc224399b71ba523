"""The posted-interrupt-descriptor update unit: last stage of an IPIv posting.

The processor makes two locked read-modify-writes (docs/architecture.md §4): first the PIR
word that holds bit V (set it), then NotifyInfo (if ON = 0 and SN = 0, set ON and notify;
otherwise write nothing). This unit runs them back to back inside one locked bus cycle, which
is at least as atomic as two separate ones (docs/decisions.md). The notification goes to NV at
NDST, decoded by the host's APIC mode.
"""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit
from .faults import Fault, PID_UPDATE_FAULTS, check_faults
from .formats import (
    APICWriteExit, ExitCause, Notification, NotifyInfo, PID_NOTIFY_INFO_OFFSET, VMCSConfig,
    XAPICNDST,
)
from .params import bus_addr_width
from .requests import PIDPostRequest


__all__ = ["PIDUpdate"]


class PIDUpdate(wiring.Component):
    """Posts a vector into a PID and decides the notification.

    The two read-modify-writes follow each other with ``cyc`` and ``lock`` held from the PIR
    read to the last write's ``ack`` (the NotifyInfo update starts in the cycle after the PIR
    write's ``ack``), so no other master gets between them. When the post needs no
    notification, the NotifyInfo read is the last transfer.

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR (36..52); the bus word address has ``maxphyaddr - 3`` bits.
    faults : collection of hdl.faults.Fault
        Test-only deliberate defects (default none: the real design). Allowed here: those of
        ``hdl.faults.PID_UPDATE_FAULTS`` (the locks, the PIR word and bit, the NotifyInfo
        decision and decoding, the notification register; each documented in
        `hdl.faults.Fault`). Others are a `ValueError`.

    Members
    -------
    cfg : In(VMCSConfig)
    request : In(stream.Signature(PIDPostRequest))
        Taken when the posting is complete.
    notify : Out(stream.Signature(Notification))
    exit : Out(stream.Signature(APICWriteExit))
        Bus errors only.
    bus : Out(wishbone.Signature)
    busy : Out(1)
    posted : Out(1)
        One-cycle pulse: a posting completed (with or without a notification).
    suppressed : Out(1)
        One-cycle pulse: a posting completed without a notification (ON or SN was set).
    completing : Out(1)
        The posting ends at this clock edge with nothing left to do (its notification, if
        any, is registered at the same edge): the next ICR write may be accepted now.
    """

    def __init__(self, *, maxphyaddr=52, faults=frozenset()):
        self._addr_width = bus_addr_width(maxphyaddr)
        self._faults = check_faults(faults, PID_UPDATE_FAULTS, "PIDUpdate")
        super().__init__({
            "cfg": In(VMCSConfig),
            "request": In(stream.Signature(PIDPostRequest)),
            "notify": Out(stream.Signature(Notification)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "bus": Out(wishbone.Signature(addr_width=self._addr_width)),
            "busy": Out(1),
            "posted": Out(1),
            "suppressed": Out(1),
            "completing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self._addr_width
        req = self.request.p
        bus = self.bus

        faults = self._faults
        pir_adr = Cat(req.vector[6:8], C(0, 1), req.pid_line)[:aw]
        if Fault.WRONG_PIR_WORD in faults:
            pir_adr = Cat(req.vector[5:7], C(0, 1), req.pid_line)[:aw]
        ni_adr = Cat(C(PID_NOTIFY_INFO_OFFSET // 8, 3), req.pid_line)[:aw]
        pir_bit = Signal(64)
        m.d.comb += pir_bit.eq(C(1, 64) << req.vector[:6])
        if Fault.PIR_BIT_OFF_BY_ONE in faults:
            m.d.comb += pir_bit.eq(C(1, 64) << (req.vector + 1)[:6])

        word = Signal(64)           # data read by the current read-modify-write
        info = NotifyInfo(word)
        on_bit = NotifyInfo.const({"on": 1}).as_bits()
        nv = info.nv
        if Fault.WRONG_NV_BYTE in faults:
            nv = word[24:32]
        xapic_dest = XAPICNDST(info.ndst).apic_id
        if Fault.WRONG_NDST_BYTE in faults:
            xapic_dest = info.ndst[:8]
        notification = [
            self.notify.valid.eq(1),
            self.notify.p.vector.eq(nv),
            self.notify.p.dest.eq(Mux(self.cfg.host_x2apic, info.ndst, xapic_dest)),
        ]
        notify_free = ~self.notify.valid | self.notify.ready
        lock = int(Fault.DROP_LOCK not in self._faults)

        for out in (self.notify, self.exit):
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)

        def bus_error():
            m.d.comb += self.request.ready.eq(1)
            load_exit(m, self.exit, cause=ExitCause.BUS_ERROR, icr=req.icr)
            m.next = "OUTPUT"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                if Fault.LOCK_WITHOUT_CYC in faults:
                    m.d.comb += bus.lock.eq(1)
                with m.If(self.request.valid):
                    if Fault.PIR_WRITE_WITHOUT_READ in self._faults:
                        m.d.sync += word.eq(0)
                        m.next = "PIR_WRITE"
                    else:
                        wishbone.drive(m, bus, adr=pir_adr, lock=lock)
                        with m.If(bus.err):
                            bus_error()
                        with m.Elif(bus.ack):
                            m.d.sync += word.eq(bus.dat_r)
                            m.next = "PIR_GAP" if Fault.LOCK_GAP in faults else "PIR_WRITE"

            if Fault.LOCK_GAP in faults:
                with m.State("PIR_GAP"):
                    m.next = "PIR_WRITE"        # the bus is let go between read and write

            with m.State("PIR_WRITE"):
                wishbone.drive(m, bus, adr=pir_adr, we=1, dat_w=word | pir_bit, lock=lock)
                with m.If(bus.err):
                    bus_error()
                with m.Elif(bus.ack):
                    m.next = "NOTIFY_INFO_READ"

            with m.State("NOTIFY_INFO_READ"):
                wishbone.drive(m, bus, adr=ni_adr, lock=lock)
                read = NotifyInfo(bus.dat_r)
                with m.If(bus.err):
                    bus_error()
                with m.Elif(bus.ack):
                    m.d.sync += word.eq(bus.dat_r)
                    suppress = read.on | read.sn
                    if Fault.ON_DESPITE_SN in self._faults:
                        suppress = read.on
                    with m.If(suppress):
                        m.d.comb += [self.request.ready.eq(1), self.posted.eq(1),
                                     self.suppressed.eq(1), self.completing.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "NOTIFY_INFO_WRITE"

            with m.State("NOTIFY_INFO_WRITE"):
                wishbone.drive(m, bus, adr=ni_adr, we=1, dat_w=word | on_bit, lock=lock)
                with m.If(bus.err):
                    bus_error()
                with m.Elif(bus.ack):
                    m.d.comb += [self.request.ready.eq(1), self.posted.eq(1)]
                    with m.If(notify_free):
                        m.d.sync += notification
                        if Fault.DOUBLE_NOTIFY in faults:
                            m.next = "NOTIFY"   # ... and once more when it is taken
                        else:
                            m.d.comb += self.completing.eq(1)
                            m.next = "IDLE"
                    with m.Else():
                        if Fault.DROP_NOTIFY_WHILE_OFFERED in faults:
                            m.d.comb += self.completing.eq(1)
                            m.next = "IDLE"
                        elif Fault.NOTIFY_OVERWRITTEN in faults:
                            m.d.comb += self.completing.eq(1)
                            m.d.sync += notification
                            m.next = "IDLE"
                        else:
                            m.next = "NOTIFY"

            with m.State("NOTIFY"):
                # One notification register: wait while the previous one is still offered.
                with m.If(notify_free):
                    m.d.sync += notification
                    m.next = "IDLE"

            with m.State("OUTPUT"):
                with m.If(self.exit.ready):
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

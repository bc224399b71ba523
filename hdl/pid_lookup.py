"""The PID-pointer-table lookup: second stage of an IPIv posting.

Checks the virtual destination T against the last PID-pointer index, reads the 8-byte entry at
``pid_table + 8*T`` and checks it (bits 5:0 == 000001b, nothing at or above MAXPHYADDR);
hands the PID address on to the PID update unit or ends the request as an APIC-write exit
(``INDEX_RANGE``, ``ENTRY_INVALID``, ``BUS_ERROR``). No entry is read when T is out of range.
"""

from amaranth import C, Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit
from .faults import Fault, PID_LOOKUP_FAULTS, check_faults
from .formats import (
    APICWriteExit, ExitCause, PID_POINTER_ENTRY_LOW_MASK, PID_POINTER_ENTRY_VALID,
    PIDPointerEntry, VMCSConfig,
)
from .params import bus_addr_width, check_maxphyaddr
from .requests import PIDPostRequest, PostRequest


__all__ = ["PIDLookup"]


class PIDLookup(wiring.Component):
    """Looks the destination up in the PID-pointer table.

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR (36..52): entries with a bit at or above it set are invalid.
    faults : collection of hdl.faults.Fault
        Test-only deliberate defects (default none: the real design). Allowed here: those of
        ``hdl.faults.PID_LOOKUP_FAULTS`` (the bound check, the entry decision, the exit
        handshake; each documented in `hdl.faults.Fault`). Others are a `ValueError`.

    Members
    -------
    cfg : In(VMCSConfig)
    request : In(stream.Signature(PostRequest))
    post : Out(stream.Signature(PIDPostRequest))
    exit : Out(stream.Signature(APICWriteExit))
    bus : Out(wishbone.Signature)
    busy : Out(1)
    """

    def __init__(self, *, maxphyaddr=52, faults=frozenset()):
        self._maxphyaddr = check_maxphyaddr(maxphyaddr)
        self._faults = check_faults(faults, PID_LOOKUP_FAULTS, "PIDLookup")
        self._addr_width = bus_addr_width(maxphyaddr)
        super().__init__({
            "cfg": In(VMCSConfig),
            "request": In(stream.Signature(PostRequest)),
            "post": Out(stream.Signature(PIDPostRequest)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "bus": Out(wishbone.Signature(addr_width=self._addr_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        aw = self._addr_width
        req = self.request.p

        faults = self._faults
        in_range = req.dest <= self.cfg.last_pid_index
        if Fault.SKIP_BOUND_CHECK in faults:
            in_range = C(1)
        if Fault.BOUND_OFF_BY_ONE in faults:
            in_range = req.dest <= self.cfg.last_pid_index + 1
        # T <= last index < 2**16 here, so 16 bits of T address the entry.
        entry_adr = (self.cfg.pid_table + Cat(C(0, 3), req.dest[:16]))[3:3 + aw]
        entry = PIDPointerEntry(self.bus.dat_r)
        entry_ok = ((self.bus.dat_r & PID_POINTER_ENTRY_LOW_MASK) == PID_POINTER_ENTRY_VALID) & \
            (self.bus.dat_r[self._maxphyaddr:] == 0)

        for out in (self.post, self.exit):
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)
        if Fault.EXIT_WITHDRAWN in faults:
            m.d.sync += self.exit.valid.eq(0)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.request.valid):
                    with m.If(~in_range):
                        m.d.comb += self.request.ready.eq(1)
                        load_exit(m, self.exit, cause=ExitCause.INDEX_RANGE, icr=req.icr)
                        m.next = "OUTPUT"
                    with m.Else():
                        wishbone.drive(m, self.bus, adr=entry_adr)
                        with m.If(self.bus.err):
                            m.d.comb += self.request.ready.eq(1)
                            load_exit(m, self.exit, cause=ExitCause.BUS_ERROR, icr=req.icr)
                            m.next = "OUTPUT"
                        with m.Elif(self.bus.ack):
                            m.d.comb += self.request.ready.eq(1)
                            with m.If(entry_ok):
                                m.d.sync += [
                                    self.post.valid.eq(1),
                                    self.post.p.vector.eq(req.vector),
                                    self.post.p.pid_line.eq(entry.pid_line),
                                    self.post.p.icr.eq(req.icr),
                                ]
                            with m.Else():
                                load_exit(m, self.exit, cause=ExitCause.ENTRY_INVALID,
                                          icr=req.icr)
                                if Fault.POST_DESPITE_EXIT in faults:
                                    m.d.sync += [
                                        self.post.valid.eq(1),
                                        self.post.p.vector.eq(req.vector),
                                        self.post.p.pid_line.eq(entry.pid_line),
                                        self.post.p.icr.eq(req.icr),
                                    ]
                            m.next = "OUTPUT"

            with m.State("OUTPUT"):
                done = (self.post.valid & self.post.ready) | (self.exit.valid & self.exit.ready)
                if Fault.EXIT_WITHDRAWN in faults:
                    done = done | self.exit.valid
                with m.If(done):
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

"""`IPIVirtualizer`: the IPI-virtualization logic of one logical processor running one vCPU.

The external contract is ``docs/interface.md``. Inside, four stages share the memory
port through a round-robin `wishbone.Arbiter` (only one stage drives the bus at a time, so the
combinational grant costs no cycle)::

    icr -> ICRInterceptor --post--> PIDLookup --post--> PIDUpdate -> notify
               |   \\--self_ipi--> VIRRUpdate -> self_ipi
               gp        (exits of every stage are merged onto ``exit``)

A new write is accepted only when the later stages are idle or finishing their last transfer
(no exit can follow then), so requests take effect in the order accepted and nothing is
accepted while an exit or #GP waits to be taken. A pending ``notify`` or ``self_ipi`` does not
hold the next write back.
"""

from amaranth import Cat, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from . import wishbone
from .faults import (
    Fault, ICR_INTERCEPTOR_FAULTS, PID_LOOKUP_FAULTS, PID_UPDATE_FAULTS, VIRR_UPDATE_FAULTS,
    check_faults,
)
from .formats import APICWriteExit, ICRWrite, Notification, OUTPUT_STREAMS, VMCSConfig
from .icr_interceptor import ICRInterceptor
from .params import bus_addr_width, check_maxphyaddr
from .pid_lookup import PIDLookup
from .pid_update import PIDUpdate
from .virr_update import VIRRUpdate


__all__ = ["CoreSignature", "IPIVirtualizer"]


class CoreSignature(wiring.Signature):
    """The ports of one unit facing its logical processor: every member of `IPIVirtualizer`
    but the memory port (``cfg``, ``icr``, the output streams `OUTPUT_STREAMS`, ``busy``)."""

    def __init__(self):
        super().__init__({
            "cfg": In(VMCSConfig),
            "icr": In(stream.Signature(ICRWrite)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "notify": Out(stream.Signature(Notification)),
            "self_ipi": Out(stream.Signature(8)),
            "gp": Out(stream.Signature(64)),
            "busy": Out(1),
        })
        assert all(name in self.members for name in OUTPUT_STREAMS)


class IPIVirtualizer(wiring.Component):
    """IPI virtualization of one vCPU (see ``docs/interface.md``).

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR, 36..52 (anything else is a `ValueError`). The Wishbone word address has
        ``maxphyaddr - 3`` bits.
    faults : collection of hdl.faults.Fault
        Test-only deliberate defects, default none (the real design); for mutation tests of
        the formal properties and checkers, never for use. Each goes to the stage that owns
        it (``hdl.faults.STAGE_FAULTS``; every `hdl.faults.Fault` is documented there).
        Anything else is a `ValueError`.

    Members
    -------
    cfg : In(VMCSConfig)
        Held stable while ``busy``.
    icr : In(stream.Signature(ICRWrite))
    exit : Out(stream.Signature(APICWriteExit))
    notify : Out(stream.Signature(Notification))
    self_ipi : Out(stream.Signature(8))
    gp : Out(stream.Signature(64))
    bus : Out(wishbone.Signature)
    busy : Out(1)
        A request was accepted and not all of it is done (bus work left, or an output not
        yet taken).
    """

    def __init__(self, *, maxphyaddr=52, faults=frozenset()):
        self.maxphyaddr = check_maxphyaddr(maxphyaddr)
        self.faults = check_faults(faults, frozenset(Fault), "IPIVirtualizer")
        addr_width = bus_addr_width(maxphyaddr)
        core = CoreSignature().members
        super().__init__({
            **{name: member for name, member in core.items() if name != "busy"},
            "bus": Out(wishbone.Signature(addr_width=addr_width)),
            "busy": core["busy"],       # the contract's order: ..., bus, busy
        })
        self.interceptor = ICRInterceptor(maxphyaddr=maxphyaddr,
                                          faults=self.faults & ICR_INTERCEPTOR_FAULTS)
        self.lookup = PIDLookup(maxphyaddr=maxphyaddr, faults=self.faults & PID_LOOKUP_FAULTS)
        self.pid_update = PIDUpdate(maxphyaddr=maxphyaddr,
                                    faults=self.faults & PID_UPDATE_FAULTS)
        self.virr_update = VIRRUpdate(maxphyaddr=maxphyaddr,
                                      faults=self.faults & VIRR_UPDATE_FAULTS)
        self.arbiter = wishbone.Arbiter(4, addr_width=addr_width)

    def elaborate(self, platform):
        m = Module()
        stages = (self.interceptor, self.lookup, self.pid_update, self.virr_update)
        m.submodules.interceptor = self.interceptor
        m.submodules.lookup = self.lookup
        m.submodules.pid_update = self.pid_update
        m.submodules.virr_update = self.virr_update
        m.submodules.arbiter = self.arbiter

        for stage in stages:
            m.d.comb += stage.cfg.eq(self.cfg)

        connect(m, flipped(self.icr), self.interceptor.icr)
        connect(m, self.interceptor.post, self.lookup.request)
        connect(m, self.lookup.post, self.pid_update.request)
        connect(m, self.interceptor.self_ipi, self.virr_update.request)
        connect(m, self.interceptor.gp, flipped(self.gp))
        connect(m, self.pid_update.notify, flipped(self.notify))
        connect(m, self.virr_update.self_ipi, flipped(self.self_ipi))

        # At most one stage offers an exit at a time (one request is in flight).
        exits = [stage.exit for stage in stages]
        m.d.comb += self.exit.valid.eq(Cat(e.valid for e in exits).any())
        for e in exits:
            m.d.comb += e.ready.eq(self.exit.ready)
            with m.If(e.valid):
                m.d.comb += self.exit.p.eq(e.p)

        for i, stage in enumerate(stages):
            connect(m, stage.bus, self.arbiter.masters[i])
        connect(m, self.arbiter.bus, flipped(self.bus))

        # The next write may be accepted when the later stages are idle, or in the cycle the
        # last transfer of a posting/self-IPI completes (then its vICR store follows the last
        # transfer with no idle bus cycle).
        m.d.comb += [
            self.interceptor.accept.eq(
                ~(self.lookup.busy | self.pid_update.busy | self.virr_update.busy) |
                self.pid_update.completing | self.virr_update.completing),
            self.busy.eq(Cat(stage.busy for stage in stages).any() | self.exit.valid |
                         self.gp.valid | self.notify.valid | self.self_ipi.valid),
        ]
        return m

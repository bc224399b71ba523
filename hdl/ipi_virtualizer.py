"""`IPIVirtualizer`: the IPI-virtualization logic of one logical processor running one vCPU.

The external contract is ``docs/interface.md``. Inside, four stages share the memory
port through an exclusive `wishbone.Arbiter` (only one stage drives the bus at a time, so
the bus is the OR of their requests and each stage's answers are gated by its own ``cyc``)::

    icr -> ICRInterceptor --post--> PIDLookup --post--> PIDUpdate -> notify
               |   \\--self_ipi--> VIRRUpdate -> self_ipi
               gp        (exits of every stage are merged onto ``exit``)

A new write is accepted only when the later stages are idle or finishing their last transfer
(no exit can follow then), so requests take effect in the order accepted and nothing is
accepted while an exit or #GP waits to be taken. A pending ``notify`` or ``self_ipi`` does not
hold the next write back.
"""

from typing import NamedTuple

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out, flipped

from . import wishbone
from .core_signature import CoreSignature
from .faults import Fault, check_faults
from .formats import OUTPUT_STREAMS
from .icr_interceptor import ICRInterceptor
from .mutants import faults_of, mutant
from .params import bus_addr_width, check_bus, check_maxphyaddr
from .pid_lookup import PIDLookup
from .pid_update import PIDUpdate
from .pipelined_issuer import PipelinedIssuer
from .pipelined_sequencer import PipelinedSequencer
from .virr_update import VIRRUpdate
from .wires import connect_apart


__all__ = ["CoreSignature", "IPIVirtualizer", "Stage", "STAGES", "PIPELINED_STAGES",
           "stage_table"]


class Stage(NamedTuple):
    """One stage of the unit, as the proofs, the coverage, the waves and the probes see it.

    ``name`` is the stage's attribute on `IPIVirtualizer` and its instance name in the
    elaborated design (and so in Verilog); ``component`` its class, whose ``State`` enum and
    ``TRANSITIONS`` table describe the public ``state`` register; ``registers`` the other
    public registers that the proofs, waves and probes read (each an attribute of the stage).
    """
    name: str
    component: type
    registers: tuple


#: The stages of the classic unit, in the order of its arbiter's masters. This is the one
#: list of them.
STAGES = (
    Stage("interceptor", ICRInterceptor, ("kind", "xapic", "image", "verdict", "lo_adr",
                                           "hi_adr")),
    Stage("lookup", PIDLookup, ()),
    Stage("pid_update", PIDUpdate, ("word",)),
    Stage("virr_update", VIRRUpdate, ("word",)),
)

#: The pipelined unit's one stage with a state machine; its bus port, the `PipelinedIssuer`,
#: is the unit's ``issuer`` (public registers ``issued``, ``answered``, ``erred``, ``locked``).
PIPELINED_STAGES = (
    Stage("sequencer", PipelinedSequencer, ("kind", "xapic", "image", "pid_line", "pir_word",
                                            "ni_word", "notifying", "irr_word", "verdict",
                                            "lo_adr", "hi_adr", "irr_adr", "entry_adr")),
)


def stage_table(bus):
    """The stage table of the unit with memory port ``bus`` (`hdl.wishbone.BUS_KINDS`)."""
    return {"classic": STAGES, "pipelined": PIPELINED_STAGES}[check_bus(bus)]


class IPIVirtualizer(wiring.Component):
    """IPI virtualization of one vCPU (see ``docs/interface.md``).

    Parameters
    ----------
    maxphyaddr : int
        MAXPHYADDR, 36..52 (anything else is a `ValueError`). The Wishbone word address has
        ``maxphyaddr - 3`` bits.
    bus : str
        ``"classic"`` (default): the memory port is Wishbone B4 classic, one transfer at a
        time, through the four stages. ``"pipelined"``: Wishbone B4 pipelined (one more
        member, ``stall``), a posting in three dependent round trips (`PipelinedSequencer`,
        `PipelinedIssuer`). Anything else is a `ValueError`.
    faults : collection of hdl.faults.Fault
        Test-only deliberate defects, default none (the real design); for mutation tests of
        the formal properties and checkers, never for use. Each is built into the stage that
        owns it (`hdl.mutants`; every `hdl.faults.Fault` is documented there). Anything else
        is a `ValueError`.

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

    Attributes
    ----------
    stage_table : tuple of Stage
        `STAGES` or `PIPELINED_STAGES`; each stage is an attribute (``interceptor``, ...,
        or ``sequencer``), with its public ``state`` and registers.
    arbiter : wishbone.Arbiter
        Classic (exclusive): its public ``owner`` register is the master that had the bus
        last.
    issuer : PipelinedIssuer
        Pipelined: the memory port.
    """

    def __init__(self, *, maxphyaddr=52, bus="classic", faults=frozenset()):
        self.maxphyaddr = check_maxphyaddr(maxphyaddr)
        self.bus_kind = check_bus(bus)
        self.faults = check_faults(faults, frozenset(Fault), "IPIVirtualizer")
        addr_width = bus_addr_width(maxphyaddr)
        core = CoreSignature().members
        super().__init__({
            **{name: member for name, member in core.items() if name != "busy"},
            "bus": Out(wishbone.Signature(addr_width=addr_width, pipelined=bus == "pipelined")),
            "busy": core["busy"],       # the contract's order: ..., bus, busy
        })
        self.stage_table = stage_table(bus)
        components = [stage.component for stage in self.stage_table]
        if bus == "pipelined":
            components.append(PipelinedIssuer)
        foreign = self.faults - faults_of(components)
        if foreign:
            raise ValueError(f"faults {sorted(f.value for f in foreign)} are not faults of the "
                             f"{bus} unit")
        for stage in self.stage_table:
            setattr(self, stage.name, mutant(stage.component, self.faults)(
                maxphyaddr=maxphyaddr))
        if bus == "classic":
            self.arbiter = wishbone.Arbiter(len(STAGES), addr_width=addr_width, exclusive=True)
        else:
            self.issuer = mutant(PipelinedIssuer, self.faults)(addr_width=addr_width)

    @property
    def stages(self):
        """The stage instances, in `stage_table` order."""
        return tuple(getattr(self, stage.name) for stage in self.stage_table)

    def elaborate(self, platform):
        m = Module()
        for stage in self.stage_table:
            m.submodules[stage.name] = getattr(self, stage.name)
        if self.bus_kind == "pipelined":
            self._connect_pipelined(m)
        else:
            self._connect_classic(m)
        return m

    def _connect_pipelined(self, m):
        seq = self.sequencer
        m.submodules.issuer = self.issuer
        m.d.comb += [seq.cfg.eq(self.cfg), self.busy.eq(seq.busy)]
        connect_apart(m, "icr_wires", flipped(self.icr), seq.icr)
        for name in OUTPUT_STREAMS:
            connect_apart(m, f"{name}_wires", getattr(seq, name), flipped(getattr(self, name)))
        connect_apart(m, "trip_wires", seq.trip, self.issuer.trip)
        connect_apart(m, "bus_wires", self.issuer.bus, flipped(self.bus))

    def _connect_classic(self, m):
        stages = self.stages
        m.submodules.arbiter = self.arbiter

        for stage in stages:
            m.d.comb += stage.cfg.eq(self.cfg)

        connect_apart(m, "icr_wires", flipped(self.icr), self.interceptor.icr)
        connect_apart(m, "post_wires", self.interceptor.post, self.lookup.request)
        connect_apart(m, "lookup_post_wires", self.lookup.post, self.pid_update.request)
        connect_apart(m, "self_ipi_request_wires", self.interceptor.self_ipi,
                      self.virr_update.request)
        connect_apart(m, "gp_wires", self.interceptor.gp, flipped(self.gp))
        connect_apart(m, "notify_wires", self.pid_update.notify, flipped(self.notify))
        connect_apart(m, "self_ipi_wires", self.virr_update.self_ipi, flipped(self.self_ipi))

        # At most one stage offers an exit at a time (one request is in flight).
        exits = [stage.exit for stage in stages]
        m.d.comb += self.exit.valid.eq(Cat(e.valid for e in exits).any())
        for e in exits:
            m.d.comb += e.ready.eq(self.exit.ready)
            with m.If(e.valid):
                m.d.comb += self.exit.p.eq(e.p)

        for entry, stage, master in zip(self.stage_table, stages, self.arbiter.masters):
            connect_apart(m, f"{entry.name}_bus_wires", stage.bus, master)
        connect_apart(m, "bus_wires", self.arbiter.bus, flipped(self.bus))

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

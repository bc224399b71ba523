"""`IPIVSystem`: several IPI virtualizers sharing one memory port, for multi-core studies."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out, flipped

from . import wishbone
from .formats import OUTPUT_STREAMS
from .ipi_virtualizer import CoreSignature, IPIVirtualizer
from .params import bus_addr_width, check_bus, check_maxphyaddr
from .wires import connect_apart


__all__ = ["CoreSignature", "IPIVSystem"]


class IPIVSystem(wiring.Component):
    """``n_cores`` `IPIVirtualizer` units, a round-robin arbiter, and one memory port.

    Parameters
    ----------
    n_cores : int
    maxphyaddr : int
    bus : str
        ``"classic"`` or ``"pipelined"``: the kind of every unit's memory port and of the
        shared one (docs/interface.md).
    faults : collection of hdl.faults.Fault
        Test-only: built into every unit (see `IPIVirtualizer`).
    answers_later : bool
        Classic: the memory never answers in the cycle a request first appears (R >= 2, as
        the board's RAM). The arbiter then sends each answer to its registered owner
        (`wishbone.Arbiter`): the same cycles, and no path from one unit's bus request into
        another unit's answer. With a memory that may answer at once it is wrong. Pipelined:
        no effect (pipelined answers always go to the owner).

    Members
    -------
    cores : Out(CoreSignature).array(n_cores)
        Core ``i``'s ports, named as on `IPIVirtualizer`.
    bus : Out(wishbone.Signature)
    """

    def __init__(self, n_cores, *, maxphyaddr=52, bus="classic", faults=frozenset(),
                 answers_later=False):
        if isinstance(n_cores, bool) or not isinstance(n_cores, int) or n_cores < 1:
            raise ValueError(f"n_cores must be a positive integer, not {n_cores!r}")
        self.n_cores = n_cores
        self.maxphyaddr = check_maxphyaddr(maxphyaddr)
        self.bus_kind = check_bus(bus)
        addr_width = bus_addr_width(maxphyaddr)
        pipelined = bus == "pipelined"
        super().__init__({
            "cores": Out(CoreSignature()).array(n_cores),
            "bus": Out(wishbone.Signature(addr_width=addr_width, pipelined=pipelined)),
        })
        self.units = [IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus, faults=faults)
                      for _ in range(n_cores)]
        self.arbiter = wishbone.Arbiter(n_cores, addr_width=addr_width, pipelined=pipelined,
                                        answers_later=answers_later and not pipelined)

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = self.arbiter
        for i, (core, unit) in enumerate(zip(self.cores, self.units)):
            m.submodules[f"core{i}"] = unit
            m.d.comb += [unit.cfg.eq(core.cfg), core.busy.eq(unit.busy)]
            connect_apart(m, f"core{i}_icr_wires", flipped(core.icr), unit.icr)
            for name in OUTPUT_STREAMS:
                connect_apart(m, f"core{i}_{name}_wires", getattr(unit, name),
                              flipped(getattr(core, name)))
            connect_apart(m, f"core{i}_bus_wires", unit.bus, self.arbiter.masters[i])
        connect_apart(m, "bus_wires", self.arbiter.bus, flipped(self.bus))
        return m

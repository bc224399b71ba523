"""One guest IPI to n destinations: what the sender pays and when the last target has it
pending, four ways (``docs/architecture.md`` §7.1, ``docs/decisions.md#multicast-model``).

The guest is in x2APIC physical mode, every destination is a running vCPU with its own PID,
and the destinations have consecutive APIC IDs. The four paths:

- ``ipiv``: n WRMSRs to the ICR, each virtualized by the processor; each costs the unit's
  posting, taken from the RTL measurement of the selected bus variant (`BUS_VARIANTS`).
- ``pv_hypercall``: KVM's paravirtual send-IPI (``KVM_HC_SEND_IPI``): one VMCALL exit per
  `PV_SEND_IPI_DESTINATIONS` destinations, then, inside it, KVM posts to each destination in
  software (``kvm_pv_send_ipi`` -> ``kvm_apic_set_irq`` -> ``vmx_deliver_posted_interrupt``).
- ``exits``: IPIv off: n WRMSR exits, each through KVM's x2APIC ICR fastpath and one software
  posting.
- ``pv_hypercall_no_ipiv``: the hypercall with IPIv off. KVM's hypercall path never looks at
  IPIv (Linux 6.0 ``x86.c:kvm_emulate_hypercall``, ``lapic.c:kvm_pv_send_ipi``), so it costs
  the same as ``pv_hypercall``.

Every cost is a `sim.round_trip` figure: the exit round trip, the fastpath's saving and the
cache latencies are its cited `PARAMETERS`, the software posting its `software_posting_cost`,
the unit's posting the RTL's. No figure is fitted here. A traced ``KVM_HC_SEND_IPI`` is priced
with n = the destinations set in its two bitmaps.
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from .round_trip import fit, software_posting_cost


__all__ = ["BusVariant", "BUS_VARIANTS", "PATHS", "METRICS", "PV_SEND_IPI_DESTINATIONS",
           "PathCost", "MulticastCosts", "multicast_costs", "crossover", "hypercalls_for"]

# Destinations one KVM_HC_SEND_IPI carries: two 64-bit bitmaps above ``min`` (Linux 6.0
# lapic.c:kvm_pv_send_ipi; the guest's KVM_IPI_CLUSTER_SIZE, arch/x86/kernel/kvm.c).
PV_SEND_IPI_DESTINATIONS = 128

PATHS = ("ipiv", "pv_hypercall", "exits", "pv_hypercall_no_ipiv")
METRICS = ("sender_cycles", "last_target_cycles")


# -- the unit's posting cost, per bus variant --------------------------------------------------

@dataclass(frozen=True)
class BusVariant:
    """A memory bus the unit can be built with, and the cost of one virtualized x2APIC ICR
    write on it: ``posting(model) -> cycles``, from that variant's RTL measurement."""
    name: str
    text: str
    posting: Callable


def _posting_on(bus):
    """The cost of one virtualized x2APIC write on port ``bus``: its RTL bench (the model's
    re-measured one when the model is of that bus) at the model's latencies."""
    def posting(model):
        return model.unit_cost("x2APIC", bus=bus)
    return posting


BUS_VARIANTS = {b.name: b for b in [
    BusVariant("classic", "Wishbone B4 classic, one transfer per bus cycle (RTL_BENCH, "
                          "ipiv bench --bus classic)", _posting_on("classic")),
    BusVariant("pipelined", "Wishbone B4 pipelined, a posting in three dependent round trips "
                            "(RTL_BENCH_PIPELINED, ipiv bench --bus pipelined)",
               _posting_on("pipelined")),
]}


def _bus(name):
    if name not in BUS_VARIANTS:
        raise ValueError(f"bus must be one of {', '.join(map(repr, BUS_VARIANTS))}, "
                         f"not {name!r}")
    return BUS_VARIANTS[name]


# -- the result --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PathCost:
    """Cycles of one path for one multicast IPI.

    ``sender_cycles``: the sending vCPU's time from its first ICR write (or VMCALL) until it
    runs guest code again. ``last_target_cycles``: from the same start until the last
    destination's posting is done (PIR bit and ON set, notification sent). An exit round trip
    is counted whole before the postings it makes (no cited figure splits it), so for the
    software paths ``last_target_cycles`` is an upper bound, by the last VM entry.
    ``components``: ((name, cycles), ...) summing to ``sender_cycles``.
    """
    sender_cycles: float
    last_target_cycles: float
    components: tuple


@dataclass(frozen=True)
class MulticastCosts:
    """The four paths for one IPI to ``n`` destinations on bus variant ``bus``."""
    n: int
    bus: str
    hypercalls: int
    ipiv: PathCost
    pv_hypercall: PathCost
    exits: PathCost
    pv_hypercall_no_ipiv: PathCost

    def path(self, name):
        if name not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, not {name!r}")
        return getattr(self, name)


def hypercalls_for(n):
    """VMCALLs a Linux 6.0 guest makes for ``n`` destinations with consecutive APIC IDs
    (``kvm.c:__send_ipi_mask`` starts a new one when an ID falls outside its 128-ID window)."""
    return math.ceil(n / PV_SEND_IPI_DESTINATIONS)


def _check_n(n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of destinations >= 1, not {n!r}")


@lru_cache(maxsize=1)
def _default_model():
    return fit()


def _path(components):
    """A `PathCost` whose last posting ends with the sender's time: IPIv posts before the
    sender's next instruction, and an exit round trip is counted whole before its postings."""
    total = sum(c for _, c in components)
    return PathCost(total, total, tuple(components))


def multicast_costs(n, *, bus="classic", model=None):
    """The four paths (`MulticastCosts`) of one guest IPI to ``n`` destinations.

    ``bus``: the unit's bus variant (`BUS_VARIANTS`), ValueError for any other.
    ``model``: the `sim.round_trip.RoundTripModel` to take every cost from (default: the
    fitted seed model, `sim.round_trip.fit`).
    """
    _check_n(n)
    variant = _bus(bus)
    model = model or _default_model()
    per_write = variant.posting(model)
    software_post = software_posting_cost(model.latency)
    vmcall = model.value("kvm_full_exit")
    calls = hypercalls_for(n)

    # IPIv: each WRMSR is done when its posting is (docs/decisions.md#multicast-model).
    ipiv = _path([(f"ipiv posting (RTL, {bus} bus) x {n}", n * per_write)])
    hypercall = _path([
        (f"VMCALL exit round trip x {calls}", calls * vmcall),
        (f"kvm software posting x {n}", n * software_post)])
    # IPIv off: each WRMSR exits; KVM's x2APIC fastpath, as in the seed's x2APIC IPIv-off cell.
    exits = _path([(f"{name} x {n}", n * cycles) for name, cycles in
                               model.exit_path("x2APIC", fastpath=True)])
    return MulticastCosts(n, bus, calls, ipiv, hypercall, exits,
                          pv_hypercall_no_ipiv=hypercall)


def crossover(*, path="pv_hypercall", against="ipiv", metric="sender_cycles", bus="classic",
              model=None, n_max=64):
    """The smallest n in 1..``n_max`` at which ``path`` costs fewer cycles (``metric``) than
    ``against``, or None when it never does there."""
    for name in (path, against):
        if name not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, not {name!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    _check_n(n_max)
    for n in range(1, n_max + 1):
        costs = multicast_costs(n, bus=bus, model=model)
        if getattr(costs.path(path), metric) < getattr(costs.path(against), metric):
            return n
    return None

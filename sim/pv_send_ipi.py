"""KVM's paravirtual send-IPI hypercall (``KVM_HC_SEND_IPI``): the destinations one call
names, and what the calls of a trace cost against IPIv (the multicast model,
`sim.multicast`).

What a call says (Linux 6.0; the same in 6.19):

- Guest, ``arch/x86/kernel/kvm.c`` ``__send_ipi_mask``: the APIC IDs of a cpumask go into a
  bitmap of two longs relative to the lowest ID ``min``, and the guest calls
  ``kvm_hypercall4(KVM_HC_SEND_IPI, bitmap low, bitmap high, min, icr)``: RBX, RCX, RDX, RSI,
  printed by ``kvm_hypercall`` as a0, a1, a2, a3. ``icr`` is ``APIC_DM_FIXED | vector`` (or
  ``APIC_DM_NMI``).
- Host, ``arch/x86/kvm/lapic.c`` ``kvm_pv_send_ipi``: bit i of a0 is APIC ID ``min + i``,
  bit i of a1 is ``min + cluster + i``, with ``cluster`` 64 for a 64-bit guest (32 for a
  32-bit one); an ICR with a logical destination mode or a shorthand is refused
  (``-KVM_EINVAL``), nothing is sent; each destination gets ``kvm_apic_set_irq``.

[Model decision: the guest is 64-bit (``cluster`` 64); a trace does not say. See
``docs/decisions.md#replay-assumptions``.]

Pricing: a call to n destinations costs what `sim.multicast.multicast_costs` (n) says for
KVM's hypercall without IPIv (today), with IPIv if the guest kept the hypercall, and with IPIv
if the guest wrote the ICR once per destination instead.
"""

from dataclasses import dataclass, field

from hdl.formats import DestMode, ICRLow, Shorthand
from .multicast import multicast_costs


__all__ = ["CLUSTER_BITS", "PVSendIPI", "pv_destinations", "pv_send_ipi", "PVPricing",
           "price_pv_send_ipis", "VARIANTS"]

CLUSTER_BITS = 64            # bits per bitmap long of a 64-bit guest
_LONG = (1 << CLUSTER_BITS) - 1

# multicast_costs' variants, as the report names them: today, and the two ways with IPIv.
VARIANTS = (
    ("pv_hypercall_no_ipiv", "the hypercall, no IPIv (today)"),
    ("pv_hypercall", "the hypercall on a host with IPIv"),
    ("ipiv", "one ICR write per destination, IPIv"),
    ("exits", "one ICR write per destination, no IPIv (WRMSR exits)"),
)


@dataclass(frozen=True)
class PVSendIPI:
    """One ``kvm_hypercall nr 0xa``: who called, the ICR and the APIC IDs it names."""
    line: int
    task: str
    sender: int | None
    icr: int                   # low 32 bits of a3
    destinations: tuple        # APIC IDs, ascending
    refused: bool = False      # KVM refuses it: logical destination mode or a shorthand

    @property
    def vector(self):
        return int(ICRLow.from_bits(self.icr).vector)


def pv_destinations(bitmap_low, bitmap_high, min_id, *, cluster=CLUSTER_BITS):
    """The APIC IDs a call names: bit i of ``bitmap_low`` is ``min_id + i``, bit i of
    ``bitmap_high`` is ``min_id + cluster + i``."""
    ids = [min_id + i for i in range(cluster) if bitmap_low >> i & 1]
    ids += [min_id + cluster + i for i in range(cluster) if bitmap_high >> i & 1]
    return tuple(ids)


def pv_send_ipi(line, task, sender, args):
    """The `PVSendIPI` of a ``kvm_hypercall nr 0xa`` with arguments ``args`` (a0..a3)."""
    low, high, min_id, icr = args
    fields = ICRLow.from_bits(icr & 0xFFFF_FFFF)
    refused = fields.dest_mode != DestMode.PHYSICAL or fields.shorthand != Shorthand.NONE
    dests = () if refused else pv_destinations(low & _LONG, high & _LONG, min_id & 0xFFFF_FFFF)
    return PVSendIPI(line, task, sender, icr & 0xFFFF_FFFF, dests, refused)


@dataclass
class PVPricing:
    """The calls of a trace priced by the multicast model: cycles summed over the calls,
    per variant (`VARIANTS`), on the sender and until the last target has the interrupt."""
    calls: int = 0
    destinations: int = 0
    per_fanout: dict = field(default_factory=dict)        # {n destinations: calls}
    refused: int = 0
    empty: int = 0                                        # calls naming no destination
    sender_cycles: dict = field(default_factory=dict)     # {variant: cycles}
    last_target_cycles: dict = field(default_factory=dict)
    bus: str = "classic"

    @property
    def saved_by_icr_writes(self):
        """Sender cycles saved if the guest wrote the ICR (IPIv) instead of calling."""
        return self.sender_cycles["pv_hypercall_no_ipiv"] - self.sender_cycles["ipiv"]

    @property
    def saved_keeping_hypercall(self):
        """Sender cycles saved on a host with IPIv if the guest keeps the hypercall."""
        return self.sender_cycles["pv_hypercall_no_ipiv"] - self.sender_cycles["pv_hypercall"]


def price_pv_send_ipis(calls, *, model=None, bus="classic"):
    """`PVPricing` of a list of `PVSendIPI` with `sim.multicast.multicast_costs` (one call
    to n destinations per call; refused calls and calls to no destination are not priced)."""
    out = PVPricing(bus=bus)
    out.sender_cycles = {name: 0.0 for name, _ in VARIANTS}
    out.last_target_cycles = {name: 0.0 for name, _ in VARIANTS}
    costs = {}
    for call in calls:
        out.calls += 1
        n = len(call.destinations)
        if call.refused or not n:
            out.refused += call.refused
            out.empty += not call.refused
            continue
        out.destinations += n
        out.per_fanout[n] = out.per_fanout.get(n, 0) + 1
        if n not in costs:
            costs[n] = multicast_costs(n, bus=bus, model=model)
        for name, _ in VARIANTS:
            variant = getattr(costs[n], name)
            out.sender_cycles[name] += variant.sender_cycles
            out.last_target_cycles[name] += variant.last_target_cycles
    return out

"""KVM's optimized APIC map and IPI delivery (``arch/x86/kvm/lapic.c``; 6.0 also
``irq_comm.c`` kvm_irq_delivery_to_apic).

`recalculate_apic_map` is kvm_recalculate_apic_map; `deliver` is kvm_irq_delivery_to_apic: the
fast path (kvm_irq_delivery_to_apic_fast with kvm_apic_map_get_dest_lapic) and, when the map
cannot decide, the slow path over every vCPU in creation order.

Facts, both releases unless said otherwise:

- The map has a physical table indexed by APIC ID (at least 256 entries, up to the highest
  x2APIC ID = vCPU id) and logical tables (xAPIC flat: 8 slots; xAPIC cluster: 16 clusters of
  4; x2APIC reuses the physical table in clusters of 16). A logical APIC is entered at the
  lowest set bit of its logical ID.
- 6.0: a vCPU in x2APIC mode, or with an x2APIC ID above 0xFF (the "hotplug hack"), is entered
  at its x2APIC ID; a vCPU in xAPIC mode also at its xAPIC ID unless that slot is taken. The
  logical mode is the OR of every software-enabled APIC's mode: mixed modes (or none) leave
  logical IPIs to the slow path.
- 6.19: the hotplug hack applies only with KVM_CAP_X2APIC_API's 32-bit IDs (``x2apic_format``);
  otherwise each vCPU is entered once, at its x2APIC ID (x2APIC mode) or xAPIC ID, and two
  vCPUs on one ID disable the whole map and set the PHYSICAL_ID_ALIASED APICv inhibit. Logical
  mode is the one mode all software-enabled APICs with a non-zero LDR share; a different mode,
  a logical ID with several bits or a taken slot disables logical lookups (LOGICAL_ID_ALIASED,
  which only AMD's AVIC honours). An xAPIC-mode vCPU whose xAPIC ID differs from its vCPU id
  truncated to 8 bits sets the APIC_ID_MODIFIED inhibit, and a recalculation without such a
  vCPU clears it.
- Fast path: a self IPI goes to the sender; other shorthands and broadcasts (0xFF from an
  xAPIC sender, 0xFFFFFFFF from an x2APIC sender) take the slow path. Physical: the one table
  entry (none if the ID is beyond the table: dropped). Logical: the slots of the destination
  mask; lowest priority picks, with vector hashing (kvm.vector_hashing, default on), the
  (vector mod n)-th set bit of the mask, n = the number of set bits, and drops the interrupt
  if that slot is empty; without hashing, the APIC with the lowest arbitration count.
- Slow path: physical lowest priority to 0xFF becomes fixed; every vCPU whose APIC matches
  (kvm_apic_match_dest) gets a fixed-style interrupt, or, for lowest priority, the
  (vector mod n)-th of the n matching software-enabled vCPUs in creation order (vcpu_idx).
"""

from hdl.formats import (
    APICRegister as R, DeliveryMode, DestMode, Shorthand, X2APIC_BROADCAST_ID, XAPIC_BROADCAST_ID,
)
from .lapic import DFR_FLAT


__all__ = ["APICMap", "recalculate_apic_map", "deliver", "deliver_fast",
           "INHIBIT_PHYSICAL_ID_ALIASED", "INHIBIT_LOGICAL_ID_ALIASED",
           "INHIBIT_APIC_ID_MODIFIED"]

INHIBIT_PHYSICAL_ID_ALIASED = "PHYSICAL_ID_ALIASED"
INHIBIT_LOGICAL_ID_ALIASED = "LOGICAL_ID_ALIASED"
INHIBIT_APIC_ID_MODIFIED = "APIC_ID_MODIFIED"

# Logical modes (6.0: a bit set, OR-ed; 6.19: one value).
FLAT, CLUSTER, X2APIC = "flat", "cluster", "x2apic"
SW_DISABLED, MAP_DISABLED = "sw-disabled", "map-disabled"


class APICMap:
    """``struct kvm_apic_map``: vCPUs by physical and logical APIC ID."""

    def __init__(self, max_apic_id):
        self.max_apic_id = max_apic_id
        self.phys_map = [None] * (max_apic_id + 1)
        self.xapic_flat_map = [None] * 8
        self.xapic_cluster_map = [[None] * 4 for _ in range(16)]
        self.modes = set()                 # 6.0
        self.logical_mode = SW_DISABLED    # 6.19

    def mode(self, kernel):
        """The logical mode the lookups use (6.0: only a single mode counts)."""
        if kernel == "6.0":
            return next(iter(self.modes)) if len(self.modes) == 1 else MAP_DISABLED
        return self.logical_mode

    def logical_dest(self, dest_id, kernel, mode=None):
        """kvm_apic_map_get_logical_dest: (slots, mask) or None (not optimized)."""
        mode = self.mode(kernel) if mode is None else mode
        if mode == SW_DISABLED:
            return self.xapic_flat_map, 0
        if mode == X2APIC:
            offset = (dest_id >> 16) * 16
            if offset > self.max_apic_id:
                return self.phys_map, 0
            size = min(self.max_apic_id - offset + 1, 16)
            return _Slice(self.phys_map, offset), dest_id & (0xFFFF >> (16 - size))
        if mode == FLAT:
            return self.xapic_flat_map, dest_id & 0xFF
        if mode == CLUSTER:
            return self.xapic_cluster_map[(dest_id >> 4) & 0xF], dest_id & 0xF
        return None


class _Slice:
    """A window of 16 entries into the physical table (x2APIC logical clusters)."""

    def __init__(self, table, offset):
        self.table, self.offset = table, offset

    def __getitem__(self, i):
        return self.table[self.offset + i]

    def __setitem__(self, i, value):
        self.table[self.offset + i] = value


def _logical_mode_of(apic):
    if apic.x2apic:
        return X2APIC
    return FLAT if apic.read32(R.DFR) == DFR_FLAT else CLUSTER


def recalculate_apic_map(vm, kernel):
    """kvm_recalculate_apic_map. Returns (map or None, {inhibit: set?}) where the second item
    says, for 6.19, which APICv inhibits the recalculation sets (True) or clears (False)."""
    vcpus = list(vm.vcpus.values())
    max_id = max([255] + [v.vcpu_id for v in vcpus])
    new = APICMap(max_id)
    if kernel == "6.0":
        for v in vcpus:
            apic = v.apic
            if apic.x2apic or v.vcpu_id > 0xFF:             # the hotplug hack
                new.phys_map[v.vcpu_id] = v
            if not apic.x2apic and new.phys_map[apic.xapic_id] is None:
                new.phys_map[apic.xapic_id] = v
            if not apic.sw_enabled:
                continue
            ldr = apic.ldr
            if apic.x2apic:
                new.modes.add(X2APIC)
            elif ldr:
                ldr >>= 24
                new.modes.add(_logical_mode_of(apic))
            current = next(iter(new.modes)) if len(new.modes) == 1 else MAP_DISABLED
            found = new.logical_dest(ldr, kernel, mode=current)
            if found is None:
                continue
            slots, mask = found
            if mask:
                slots[(mask & -mask).bit_length() - 1] = v
        return new, {}

    mismatch = False
    aliased = False
    for v in vcpus:
        apic = v.apic
        if not apic.x2apic and apic.xapic_id != v.vcpu_id & 0xFF:
            mismatch = True
        if vm.x2apic_format:
            if apic.x2apic or v.vcpu_id > 0xFF:
                new.phys_map[v.vcpu_id] = v
            if not apic.x2apic and new.phys_map[apic.xapic_id] is None:
                new.phys_map[apic.xapic_id] = v
        else:
            physical_id = v.vcpu_id if apic.x2apic else apic.xapic_id
            if new.phys_map[physical_id] is not None:
                aliased = True
                break
            new.phys_map[physical_id] = v
        _logical_619(new, v)
    if aliased:
        new = None
    inhibits = {INHIBIT_PHYSICAL_ID_ALIASED: new is None,
                INHIBIT_LOGICAL_ID_ALIASED: new is None or new.logical_mode == MAP_DISABLED,
                INHIBIT_APIC_ID_MODIFIED: mismatch}
    return new, inhibits


def _logical_619(new, v):
    """kvm_recalculate_logical_map (6.19)."""
    apic = v.apic
    if new.logical_mode == MAP_DISABLED or not apic.sw_enabled:
        return
    ldr = apic.ldr
    if not ldr:
        return
    mode = _logical_mode_of(apic)
    if not apic.x2apic:
        ldr >>= 24
    if new.logical_mode == SW_DISABLED:
        new.logical_mode = mode
    elif new.logical_mode != mode:
        new.logical_mode = MAP_DISABLED
        return
    if apic.x2apic:
        return
    slots, mask = new.logical_dest(ldr, "6.19")
    if not mask:
        return
    low = (mask & -mask).bit_length() - 1
    if mask & (mask - 1) or slots[low] is not None:
        new.logical_mode = MAP_DISABLED
    else:
        slots[low] = v


def _nth_set_bit(bits, n):
    """The index of the n-th (from 0) set bit of the list/int ``bits``."""
    for i, b in enumerate(bits):
        if b:
            if n == 0:
                return i
            n -= 1
    raise AssertionError("fewer set bits than expected")


def _lowest_prio(irq):
    return irq.delivery_mode is DeliveryMode.LOWEST_PRIORITY


def _is_broadcast_dest(vm, src, irq, amap, kernel):
    if vm.x2apic_broadcast_quirk_disabled:
        if irq.dest == XAPIC_BROADCAST_ID and amap.mode(kernel) != X2APIC:
            return True
        return irq.dest == X2APIC_BROADCAST_ID
    x2apic_ipi = src is not None and src.apic.x2apic
    return irq.dest == (X2APIC_BROADCAST_ID if x2apic_ipi else XAPIC_BROADCAST_ID)


def _get_dest(vm, src, irq, amap, kernel):
    """kvm_apic_map_get_dest_lapic: None (not handled) or the list of target vCPUs (maybe
    empty: dropped)."""
    if irq.shorthand is Shorthand.SELF and src is not None:
        return [src]
    if irq.shorthand is not Shorthand.NONE:
        return None
    if amap is None or _is_broadcast_dest(vm, src, irq, amap, kernel):
        return None
    if irq.dest_mode is DestMode.PHYSICAL:
        if irq.dest > amap.max_apic_id:
            return []
        target = amap.phys_map[irq.dest]
        return [target] if target is not None else []
    found = amap.logical_dest(irq.dest, kernel)
    if found is None:
        return None
    slots, mask = found
    bits = [mask >> i & 1 for i in range(16)]
    if not _lowest_prio(irq):
        return [slots[i] for i in range(16) if bits[i] and slots[i] is not None]
    if not vm.kvm.vector_hashing:
        lowest = None
        for i in range(16):
            if bits[i] and slots[i] is not None and \
                    (lowest is None or slots[i].apic_arb_prio < lowest.apic_arb_prio):
                lowest = slots[i]
        return [lowest] if lowest is not None else []
    if not mask:
        return []
    target = slots[_nth_set_bit(bits, irq.vector % sum(bits))]
    return [target] if target is not None else []    # an empty slot: dropped


def deliver_fast(vm, src, irq, kernel):
    """kvm_irq_delivery_to_apic_fast: (handled, vCPUs that accepted)."""
    if irq.shorthand is Shorthand.SELF:
        return True, [src] if src.accept_irq(irq) else []
    targets = _get_dest(vm, src, irq, vm.apic_map, kernel)
    if targets is None:
        return False, []
    return True, [t for t in targets if t.accept_irq(irq)]


def deliver(vm, src, irq, kernel):
    """kvm_irq_delivery_to_apic: the vCPUs that accepted ``irq`` (an `sim.lapic.IPI`)."""
    handled, accepted = deliver_fast(vm, src, irq, kernel)
    if handled:
        return accepted
    if irq.dest_mode is DestMode.PHYSICAL and irq.dest == XAPIC_BROADCAST_ID and \
            _lowest_prio(irq):
        irq = irq.with_delivery_mode(DeliveryMode.FIXED)
    accepted, candidates, lowest = [], [], None
    src_apic = None if src is None else src.apic
    for v in vm.vcpus.values():           # creation order: vcpu_idx
        if not v.apic.matches(src_apic, irq):
            continue
        if not _lowest_prio(irq):
            if v.accept_irq(irq):
                accepted.append(v)
        elif v.apic.sw_enabled:
            if not vm.kvm.vector_hashing:
                if lowest is None or v.apic_arb_prio < lowest.apic_arb_prio:
                    lowest = v
            else:
                candidates.append(v)
    if candidates:
        lowest = candidates[irq.vector % len(candidates)]
    if lowest is not None and lowest.accept_irq(irq):
        accepted.append(lowest)
    return accepted

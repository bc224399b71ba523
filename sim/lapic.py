"""A vCPU's virtual local APIC, its registers living in the virtual-APIC page of shared memory
(so the gateware's vICR stores and VIRR updates and the model see the same state), and the
decoding and destination matching of IPIs the way KVM does them (``arch/x86/kvm/lapic.c``
kvm_apic_send_ipi / kvm_icr_to_lapic_irq, kvm_apic_match_dest; identical in 6.0 and 6.19).

KVM has no "send illegal vector" emulation: an IPI with a vector below 16 is decoded and
delivered like any other (lapic.c kvm_apic_send_ipi, 6.0 and 6.19), so the model has none.

Model decisions: the APIC is hardware-enabled and the guest has software-enabled it (SPIV bit
8 set at creation; KVM's reset value is 0xFF, disabled, until the guest writes SPIV); the
x2APIC LDR is derived from the x2APIC ID as KVM writes it (kvm_apic_calc_x2apic_ldr).
"""

from dataclasses import dataclass, replace

from hdl.formats import (
    APIC_REGISTER_STRIDE, APICRegister as R, DeliveryMode, DestMode, ICRLow, Shorthand,
    TriggerMode, X2APIC_BROADCAST_ID, XAPIC_BROADCAST_ID, XAPICICRHigh,
)


__all__ = ["IPI", "VirtualAPIC", "DFR_FLAT", "DFR_CLUSTER", "APIC_ICR_BUSY",
           "SPIV_APIC_ENABLED"]

SPIV_APIC_ENABLED = 1 << 8
DFR_FLAT = 0xFFFF_FFFF
DFR_CLUSTER = 0x0FFF_FFFF
APIC_ICR_BUSY = ICRLow.const({"delivery_status": 1}).as_bits()


@dataclass(frozen=True)
class IPI:
    """An interrupt request decoded from an ICR (KVM's ``struct kvm_lapic_irq``)."""
    vector: int
    delivery_mode: DeliveryMode
    dest_mode: DestMode
    level: bool
    trigger: TriggerMode
    shorthand: Shorthand
    dest: int

    @classmethod
    def from_icr(cls, low, high, *, x2apic):
        f = ICRLow.from_bits(low & 0xFFFF_FFFF)
        dest = high if x2apic else XAPICICRHigh.from_bits(high & 0xFFFF_FFFF).dest
        return cls(f.vector, DeliveryMode(f.delivery_mode), DestMode(f.dest_mode),
                   bool(f.level), TriggerMode(f.trigger), Shorthand(f.shorthand), dest)

    def with_delivery_mode(self, mode):
        return replace(self, delivery_mode=mode)


class VirtualAPIC:
    """Registers of one virtual local APIC in the virtual-APIC page at ``page``.

    RVI and SVI (the guest interrupt status of virtual-interrupt delivery) are kept here too;
    the vCPU mirrors them into its VMCS.
    """

    def __init__(self, memory, page, apic_id, *, x2apic=False):
        self.memory = memory
        self.page = page
        self.apic_id = apic_id
        self.x2apic = x2apic
        self.rvi = 0
        self.svi = 0
        self.write32(R.SVR, 0xFF | SPIV_APIC_ENABLED)
        if not x2apic:
            self.write32(R.ID, apic_id << 24)
            self.write32(R.DFR, DFR_FLAT)

    # -- registers --------------------------------------------------------------------------
    def read32(self, offset):
        return self.memory.read(self.page + offset, 4)

    def write32(self, offset, value):
        self.memory.write(self.page + offset, value & 0xFFFF_FFFF, 4)

    def read64(self, offset):
        return self.memory.read(self.page + offset, 8)

    def write64(self, offset, value):
        self.memory.write(self.page + offset, value, 8)

    def _bit(self, base, vector):
        return base + APIC_REGISTER_STRIDE * (vector // 32), 1 << (vector % 32)

    def test(self, base, vector):
        offset, bit = self._bit(base, vector)
        return bool(self.read32(offset) & bit)

    def set(self, base, vector):
        offset, bit = self._bit(base, vector)
        self.write32(offset, self.read32(offset) | bit)

    def clear(self, base, vector):
        offset, bit = self._bit(base, vector)
        self.write32(offset, self.read32(offset) & ~bit)

    def highest(self, base):
        """The highest vector set in IRR/ISR/TMR at ``base``, or 0."""
        for word in range(7, -1, -1):
            value = self.read32(base + APIC_REGISTER_STRIDE * word)
            if value:
                return 32 * word + value.bit_length() - 1
        return 0

    def vectors(self, base):
        """Every vector set in IRR/ISR/TMR at ``base``, ascending."""
        return [32 * word + bit for word in range(8)
                for value in (self.read32(base + APIC_REGISTER_STRIDE * word),) if value
                for bit in range(32) if value >> bit & 1]

    # -- identity ---------------------------------------------------------------------------
    @property
    def sw_enabled(self):
        """kvm_apic_sw_enabled: SPIV bit 8."""
        return bool(self.read32(R.SVR) & SPIV_APIC_ENABLED)

    def set_sw_enabled(self, enabled):
        value = self.read32(R.SVR)
        self.write32(R.SVR, value | SPIV_APIC_ENABLED if enabled else value & ~SPIV_APIC_ENABLED)

    @property
    def xapic_id(self):
        return self.read32(R.ID) >> 24

    def set_xapic_id(self, apic_id):
        """A guest write to the xAPIC ID register (KVM inhibits APICv when this changes)."""
        self.write32(R.ID, (apic_id & 0xFF) << 24)

    @property
    def ldr(self):
        if self.x2apic:   # derived from the x2APIC ID: cluster in 31:16, one bit in 15:0
            return (self.apic_id >> 4) << 16 | 1 << (self.apic_id & 0xF)
        return self.read32(R.LDR)

    def set_x2apic_mode(self, enabled):
        self.x2apic = enabled
        if not enabled:
            self.write32(R.ID, (self.apic_id & 0xFF) << 24)

    # -- priority and delivery --------------------------------------------------------------
    @property
    def ppr(self):
        tpr, isrv = self.read32(R.TPR) & 0xFF, self.highest(R.ISR)
        return tpr if (tpr & 0xF0) >= (isrv & 0xF0) else isrv & 0xF0

    def accept_fixed(self, vector, *, level=None):
        """Set IRR and raise RVI; ``level`` True/False sets/clears TMR, None leaves it."""
        self.set(R.IRR, vector)
        if level is not None:
            (self.set if level else self.clear)(R.TMR, vector)
        self.rvi = max(self.rvi, vector)

    def deliverable(self):
        """The vector the guest would take now (RVI above the PPR class), or None."""
        self.rvi = self.highest(R.IRR)
        if self.rvi and (self.rvi & 0xF0) > (self.ppr & 0xF0):
            return self.rvi
        return None

    def acknowledge(self):
        """Virtual-interrupt delivery: move the highest IRR vector to ISR."""
        vector = self.deliverable()
        if vector is None:
            return None
        self.clear(R.IRR, vector)
        self.set(R.ISR, vector)
        self.svi = vector
        self.rvi = self.highest(R.IRR)
        return vector

    def eoi(self):
        """EOI: clear the highest ISR bit; returns its vector (0 if none)."""
        vector = self.highest(R.ISR)
        if vector:
            self.clear(R.ISR, vector)
        self.svi = self.highest(R.ISR)
        return vector

    # -- destinations -----------------------------------------------------------------------
    def match_physical(self, mda):
        """kvm_apic_match_physical_addr, with KVM's x2APIC "hotplug hack": a destination above
        0xFF is matched against the x2APIC ID (the vCPU id) even in xAPIC mode."""
        if mda == (X2APIC_BROADCAST_ID if self.x2apic else XAPIC_BROADCAST_ID):
            return True
        if self.x2apic or mda > 0xFF:
            return mda == self.apic_id
        return mda == self.xapic_id

    def match_logical(self, mda):
        """kvm_apic_match_logical_addr."""
        if mda == (X2APIC_BROADCAST_ID if self.x2apic else XAPIC_BROADCAST_ID):
            return True
        ldr = self.ldr
        if self.x2apic:
            return ldr >> 16 == mda >> 16 and bool(ldr & mda & 0xFFFF)
        logical = ldr >> 24
        dfr = self.read32(R.DFR)
        if dfr == DFR_FLAT:
            return bool(logical & mda)
        if dfr == DFR_CLUSTER:
            return logical >> 4 == mda >> 4 and bool(logical & mda & 0xF)
        return False

    def matches(self, source, ipi, *, broadcast_quirk=True):
        """kvm_apic_match_dest: does ``ipi`` sent by ``source`` (a VirtualAPIC; None for a
        non-IPI message, where KVM turns 0xFF into the x2APIC broadcast for an x2APIC
        target unless KVM_CAP_X2APIC_API disabled that quirk) address this APIC?"""
        if ipi.shorthand is Shorthand.SELF:
            return self is source
        if ipi.shorthand is Shorthand.ALL_INCLUDING_SELF:
            return True
        if ipi.shorthand is Shorthand.ALL_EXCLUDING_SELF:
            return self is not source
        mda = ipi.dest
        if broadcast_quirk and source is None and mda == XAPIC_BROADCAST_ID and self.x2apic:
            mda = X2APIC_BROADCAST_ID
        if ipi.dest_mode is DestMode.PHYSICAL:
            return self.match_physical(mda)
        return self.match_logical(mda)

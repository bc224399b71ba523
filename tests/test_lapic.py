from hdl.formats import APICRegister as R, DeliveryMode, DestMode, Shorthand
from sim.lapic import DFR_CLUSTER, IPI, VirtualAPIC
from sim.memory import Memory
from sim.scenarios import icr_low


def apic(apic_id, x2apic=False, ldr=None, dfr=None):
    a = VirtualAPIC(Memory(), 0x1000 * (apic_id + 1), apic_id, x2apic=x2apic)
    if ldr is not None:
        a.write32(R.LDR, ldr << 24)
    if dfr is not None:
        a.write32(R.DFR, dfr)
    return a


def ipi(dest, x2apic=False, **fields):
    high = dest if x2apic else dest << 24
    return IPI.from_icr(icr_low(0x40, **fields), high, x2apic=x2apic)


def test_decode():
    i = IPI.from_icr(0x000C_4C41, 0x0500_0000, x2apic=False)
    assert (i.vector, i.delivery_mode, i.dest_mode, i.level, i.shorthand, i.dest) == \
        (0x41, DeliveryMode.NMI, DestMode.LOGICAL, True, Shorthand.ALL_EXCLUDING_SELF, 5)
    assert IPI.from_icr(0x41, 0x1234_5678, x2apic=True).dest == 0x1234_5678


def test_physical_and_broadcast():
    a, b = apic(1), apic(2)
    assert b.matches(a, ipi(2)) and not b.matches(a, ipi(3)) and b.matches(a, ipi(0xFF))
    x, y = apic(1, True), apic(0x100, True)
    assert y.matches(x, ipi(0x100, True)) and y.matches(x, ipi(0xFFFF_FFFF, True))
    assert not y.matches(x, ipi(0xFF, True))       # 0xFF is a plain ID in x2APIC


def test_logical_flat_and_cluster():
    a, b = apic(1, ldr=0x01), apic(2, ldr=0x06)
    assert b.matches(a, ipi(0x04, dest_mode=DestMode.LOGICAL))
    assert not b.matches(a, ipi(0x01, dest_mode=DestMode.LOGICAL))
    c = apic(3, ldr=0x32, dfr=DFR_CLUSTER)          # cluster 3, member bit 1
    assert c.matches(a, ipi(0x3A, dest_mode=DestMode.LOGICAL))
    assert not c.matches(a, ipi(0x2A, dest_mode=DestMode.LOGICAL))
    x = apic(0x23, True)                             # x2APIC: cluster 2, bit 3
    assert x.ldr == 0x2_0008
    assert x.matches(a, ipi(0x2_0008, True, dest_mode=DestMode.LOGICAL))
    assert not x.matches(a, ipi(0x1_0008, True, dest_mode=DestMode.LOGICAL))


def test_shorthands():
    a, b = apic(1), apic(2)
    assert a.matches(a, ipi(0, shorthand=Shorthand.SELF)) and not b.matches(a, ipi(
        0, shorthand=Shorthand.SELF))
    assert a.matches(a, ipi(0, shorthand=Shorthand.ALL_INCLUDING_SELF))
    assert not a.matches(a, ipi(0, shorthand=Shorthand.ALL_EXCLUDING_SELF))
    assert b.matches(a, ipi(0, shorthand=Shorthand.ALL_EXCLUDING_SELF))


def test_priorities_ack_and_eoi():
    a = apic(0)
    a.accept_fixed(0x31)
    a.accept_fixed(0x52)
    assert a.rvi == 0x52 and a.acknowledge() == 0x52
    assert a.deliverable() is None              # 0x31 is below the in-service class
    assert a.ppr == 0x50 and a.eoi() == 0x52
    assert a.acknowledge() == 0x31 and a.eoi() == 0x31 and a.acknowledge() is None
    a.write32(R.TPR, 0x40)
    a.accept_fixed(0x45)
    assert a.deliverable() is None               # TPR class 4 masks vector 0x45
    assert a.vectors(R.IRR) == [0x45]

"""Public helpers that build an architectural value (`sim.arch_values` and its users) refuse a
value that does not fit its field, naming the field and its range (issue 23 item 2), instead
of keeping its low bits as Amaranth's ``Layout.const`` does."""

import pytest

from hdl.formats import DeliveryMode, ICRLow, NotifyInfo, X2APICICR, XAPICNDST
from sim.arch_values import check_fields, pack
from sim.golden import Config
from sim.memory import Memory
from sim.scenarios import guest_ipi, icr_low
from sim.vm_layout import build_vm, ndst_of, write_pid_pointer_entry, write_routing


def test_layout_const_truncates_which_is_why_the_check_exists():
    assert ICRLow.const({"vector": 300}).as_bits() == 300 & 0xFF


@pytest.mark.parametrize("call,message", [
    (lambda: icr_low(300), r"ICR field 'vector' must be 0\.\.0xff, not 300 \(0x12c\)"),
    (lambda: icr_low(-1), r"ICR field 'vector' must be 0\.\.0xff, not -1"),
    (lambda: icr_low(0x41, mode=9), r"ICR field 'delivery_mode' must be one of FIXED \(0\)"),
    (lambda: icr_low(0x41, reserved_13=2), r"ICR field 'reserved_13' must be 0\.\.0x1,"),
    (lambda: icr_low(0x41, level=True, reserved_31_20=0x1000), r"'reserved_31_20' must be "
                                                               r"0\.\.0xfff"),
    (lambda: icr_low(0x41, vectr=1), r"ICR has no field 'vectr' \(fields: vector, "),
    (lambda: icr_low("0x41"), r"ICR field 'vector' must be an integer"),
])
def test_icr_low_rejects_what_does_not_fit(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_icr_low_packs_what_fits():
    assert icr_low(0xFF) == 0x40FF                          # level 1 by default (bit 14)
    assert icr_low(2, mode=DeliveryMode.NMI, level=0) == 4 << 8 | 2
    assert icr_low(2, mode=4, level=0) == icr_low(2, mode=DeliveryMode.NMI, level=0)


@pytest.mark.parametrize("x2apic,dest,message", [
    (False, 0x100, r"xAPIC ICR2 field 'dest' must be 0\.\.0xff, not 256"),
    (True, 1 << 32, r"x2APIC ICR field 'dest' must be 0\.\.0xffffffff"),
    (True, -2, r"must be 0\.\.0xffffffff, not -2"),
])
def test_guest_ipi_rejects_a_destination_wider_than_the_mode(x2apic, dest, message):
    cfg = Config(x2apic=x2apic, last_pid_index=7)
    with pytest.raises(ValueError, match=message):
        guest_ipi(cfg, icr_low(0x41), dest)
    with pytest.raises(ValueError, match=r"ICR bits 31:0 must be 0\.\.0xffffffff"):
        guest_ipi(cfg, 1 << 32, 1)


def test_guest_ipi_builds_the_mode_s_writes():
    (x2,) = guest_ipi(Config(x2apic=True), icr_low(0x41), 0xFFFF_FFFF)
    assert x2.value == X2APICICR.const({"low": {"vector": 0x41, "level": 1},
                                        "dest": 0xFFFF_FFFF}).as_bits()
    hi, lo = guest_ipi(Config(x2apic=False), icr_low(0x41), 0xFF)
    assert (hi.value, lo.value) == (0xFF << 24, icr_low(0x41))


def test_pid_routing_and_table_entries_refuse_what_does_not_fit():
    memory = Memory()
    with pytest.raises(ValueError, match=r"xAPIC NDST field 'apic_id' must be 0\.\.0xff"):
        ndst_of(256, host_x2apic=False)
    with pytest.raises(ValueError, match=r"PID field 'ndst' must be 0\.\.0xffffffff"):
        ndst_of(1 << 32, host_x2apic=True)
    assert ndst_of(3, host_x2apic=False) == XAPICNDST.const({"apic_id": 3}).as_bits()
    with pytest.raises(ValueError, match=r"PID field 'nv' must be 0\.\.0xff, not 498"):
        write_routing(memory, 0x1000, sn=0, nv=0x1F2, ndst=1)
    with pytest.raises(ValueError, match=r"PID field 'sn' must be 0\.\.0x1"):
        write_routing(memory, 0x1000, sn=2, nv=0xF2, ndst=1)
    write_routing(memory, 0x1000, sn=1, nv=0xF2, ndst=7, on=True)
    info = NotifyInfo.from_bits(memory.read(0x1000 + 32))
    assert (info.on, info.sn, info.nv, info.ndst) == (1, 1, 0xF2, 7)
    with pytest.raises(ValueError, match=r"PID-pointer table index must be 0\.\.0xffff"):
        write_pid_pointer_entry(memory, 0x8000, 0x10000, 0x9000)
    with pytest.raises(ValueError, match=r"PID-pointer entry field 'pid_line'"):
        write_pid_pointer_entry(memory, 0x8000, 1, 1 << 64)
    with pytest.raises(ValueError, match="vCPU id 8 outside 0..7"):
        build_vm({8: "running"})


@pytest.mark.parametrize("fields,message", [
    ({"last_pid_index": 0x10000}, r"VMCSConfig field 'last_pid_index' must be 0\.\.0xffff"),
    ({"pid_table": 1 << 64}, r"'pid_table' must be 0\.\.0xffffffffffffffff"),
    ({"vapic_page": -0x1000}, r"'vapic_page' must be"),
    ({"ipiv": 2}, r"'ipiv' must be 0\.\.0x1, not 2"),
])
def test_vmcs_config_refuses_what_the_gateware_cannot_hold(fields, message):
    with pytest.raises(ValueError, match=message):
        Config(**fields)


def test_nested_fields_and_enum_members():
    value = pack(X2APICICR, {"low": {"vector": 0x41, "delivery_mode": DeliveryMode.INIT},
                             "dest": 9})
    assert value == 9 << 32 | 5 << 8 | 0x41
    with pytest.raises(ValueError, match=r"X2APICICR field 'low\.vector' must be 0\.\.0xff"):
        pack(X2APICICR, {"low": {"vector": 0x100}})
    with pytest.raises(ValueError, match=r"field 'low' takes a dict of its fields"):
        check_fields(X2APICICR, {"low": 0x41})

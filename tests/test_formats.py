"""The architectural formats against the bit positions of docs/architecture.md."""

from amaranth.lib import data

from hdl import formats as f
from hdl import vmx




def test_icr_low_fields():
    icr = f.ICRLow.const({"vector": 0xAB, "delivery_mode": f.DeliveryMode.NMI,
                          "dest_mode": f.DestMode.LOGICAL, "delivery_status": 1,
                          "level": 1, "trigger": f.TriggerMode.LEVEL,
                          "shorthand": f.Shorthand.ALL_EXCLUDING_SELF}).as_bits()
    assert icr == 0xAB | 4 << 8 | 1 << 11 | 1 << 12 | 1 << 14 | 1 << 15 | 3 << 18


def test_icr_masks():
    assert f.ICR_RESERVED_MASK == 0xFFF3_2000          # bits 31:20, 17:16, 13
    assert f.ICR_IPIV_INELIGIBLE_MASK == 0xFFFF_BF00   # all but the vector and bit 14
    assert f.XAPIC_ICR_HI_MASK == 0xFF00_0000


def test_icr_views():
    assert f.XAPICICR.const({"high": {"dest": 0x5A}}).as_bits() == 0x5A << 56
    assert f.X2APICICR.const({"dest": 0x12345678}).as_bits() == 0x12345678 << 32
    assert data.Layout.cast(f.XAPICICR).size == 64 == data.Layout.cast(f.X2APICICR).size


def test_pid_layout():
    pid = f.PostedInterruptDescriptor.const({
        "notify_info": {"on": 1, "sn": 1, "nv": 0xF2, "ndst": 0xDEADBEEF}}).as_bits()
    assert pid == 1 << 256 | 1 << 257 | 0xF2 << 272 | 0xDEADBEEF << 288
    assert data.Layout.cast(f.PostedInterruptDescriptor).size == 8 * f.PID_BYTES
    assert f.PID_NOTIFY_INFO_OFFSET * 8 == 256
    assert f.XAPICNDST.const({"apic_id": 0x34}).as_bits() == 0x3400


def test_pid_pointer_entry():
    assert f.PIDPointerEntry.const({"valid": 1, "pid_line": 0x1234}).as_bits() == 0x1234 << 6 | 1
    assert f.PID_POINTER_ENTRY_LOW_MASK == 0x3F and f.PID_POINTER_ENTRY_VALID == 1


def test_contract_layouts():
    cfg = data.Layout.cast(f.VMCSConfig)
    assert [(name, field.width) for name, field in cfg] == [
        ("ipiv", 1), ("vid", 1), ("x2apic", 1), ("host_x2apic", 1), ("last_pid_index", 16),
        ("pid_table", 64), ("vapic_page", 64)]
    assert {name: field.width for name, field in data.Layout.cast(f.ICRWrite)} == \
        {"kind": 2, "data": 64}
    assert {name: field.width for name, field in data.Layout.cast(f.APICWriteExit)} == \
        {"reason": 16, "qualification": 12, "cause": 4, "icr": 64}
    assert {name: field.width for name, field in data.Layout.cast(f.Notification)} == \
        {"vector": 8, "dest": 32}
    assert {k.name: k.value for k in f.ICRWriteKind} == {
        "XAPIC_ICR_LO": 0, "XAPIC_ICR_HI": 1, "X2APIC_ICR": 2, "SENDUIPI": 3}
    assert {c.name: c.value for c in f.ExitCause} == {
        "DISABLED": 0, "UNSUPPORTED": 1, "ILLEGAL_VECTOR": 2, "BROADCAST": 3,
        "INDEX_RANGE": 4, "ENTRY_INVALID": 5, "BUS_ERROR": 6}
    assert f.SendUIPIData.const({"nv": 0x42, "ndst": 7}).as_bits() == 7 << 32 | 0x42


def test_constants():
    assert f.EXIT_REASON_APIC_WRITE == 56
    assert f.APIC_WRITE_QUALIFICATION_ICR == 0x300
    assert (f.APIC_OFFSET_IRR, f.APIC_OFFSET_ICR_LO, f.APIC_OFFSET_ICR_HI) == (0x200, 0x300, 0x310)
    assert (f.POSTED_INTR_WAKEUP_VECTOR, f.POSTED_INTR_VECTOR) == (0xF1, 0xF2)


def test_vmx_constants():
    assert vmx.Tertiary.IPI_VIRT == 0x10 and vmx.Primary.ACTIVATE_TERTIARY_CONTROLS == 1 << 17
    assert vmx.Primary.ACTIVATE_SECONDARY_CONTROLS == 1 << 31
    assert vmx.Secondary.VIRTUAL_INTR_DELIVERY == 1 << 9 and vmx.PinBased.POSTED_INTR == 1 << 7
    assert vmx.VMXMSR.PROCBASED_CTLS3 == 0x492 and vmx.VMXMSR.PROCBASED_CTLS == 0x482
    fields = {x.name: x.value for x in vmx.VMCSField}
    assert {k: fields[k] for k in ("POSTED_INTR_NV", "LAST_PID_POINTER_INDEX",
                                   "VIRTUAL_APIC_PAGE_ADDR", "POSTED_INTR_DESC_ADDR",
                                   "TERTIARY_VM_EXEC_CONTROL", "PID_POINTER_TABLE")} == {
        "POSTED_INTR_NV": 0x0002, "LAST_PID_POINTER_INDEX": 0x0008,
        "VIRTUAL_APIC_PAGE_ADDR": 0x2012, "POSTED_INTR_DESC_ADDR": 0x2016,
        "TERTIARY_VM_EXEC_CONTROL": 0x2034, "PID_POINTER_TABLE": 0x2042}
    assert vmx.field_width(0x2034) is vmx.FieldWidth.W64
    assert vmx.field_width(0x2035) is vmx.FieldWidth.W32
    assert vmx.field_width(0x0008) is vmx.FieldWidth.W16
    assert vmx.field_width(0x4002) is vmx.FieldWidth.W32
    assert vmx.field_width(0x681E) is vmx.FieldWidth.NATURAL
    assert [c.feature for c in vmx.TERTIARY if c.feature] == ["ipi_virt"]

"""Grouping records into IPIs (`sim.trace_group` through `sim.replay.parse_lines`): one IPI
per ICR write, whatever records and in whatever order a kernel traced it."""

import pytest

from sim.replay import parse_lines
from sim.trace_events import entry_body, exit_body


def rec(event, body, task="CPU 3/KVM", pid=4103, ts=None, cpu=1):
    rec.clock += 0.000002
    stamp = f"{rec.clock if ts is None else ts:.6f}"
    return f"{task:>16}-{pid:<7d} [{cpu:03d}] d..1. {stamp}: {event}: {body}"


rec.clock = 100.0

IPI = ("kvm_apic_ipi", "dst 2 vec 251 (Fixed|physical|assert|edge|dst)")
APIC64 = ("kvm_apic", "apic_write APIC_ICR = 0x2000040fb")
MSR = ("kvm_msr", "msr_write 830 = 0x2000040fb")
EXIT = ("kvm_exit", exit_body(3, "MSR_WRITE", 0x1000))
ENTRY = ("kvm_entry", entry_body(3, 0x1004))


def one(*events, **kw):
    parsed = parse_lines([rec(*e, **kw) for e in events])
    assert not parsed.errors
    return parsed


@pytest.mark.parametrize("order", [
    (EXIT, IPI, APIC64, MSR, ENTRY),             # 6.0 (kvm_x2apic_icr_write, then the MSR)
    (EXIT, ("kvm_apic_accept_irq", "apicid 2 vec 251 (Fixed|edge)"), IPI, APIC64, MSR, ENTRY),
    (APIC64, MSR, IPI),                          # any order
    (MSR, IPI),
    (IPI, MSR),
    (MSR,),                                      # only kvm_msr: decoded from its value
])
def test_one_x2apic_write_is_one_ipi(order):
    (ipi,) = one(*order).ipis
    assert (ipi.mode, ipi.icr_low, ipi.dest, ipi.sender) == ("x2APIC", 0x40FB, 2, 3)


def test_older_kernels_split_x2apic_write():
    """Before the 64-bit x2APIC ICR: APIC_ICR2 (the whole destination), APIC_ICR (the low
    word, which sends), kvm_apic_ipi, then kvm_msr."""
    (ipi,) = one(("kvm_apic", "apic_write APIC_ICR2 = 0x2"),
                 ("kvm_apic", "apic_write APIC_ICR = 0x40fb"), IPI, MSR).ipis
    assert (ipi.mode, ipi.dest, ipi.sources) == \
        ("x2APIC", 2, ("kvm_apic (ICR2)", "kvm_apic", "kvm_apic_ipi", "kvm_msr"))
    # Without the kvm_msr, the ICR2 holding the whole destination still says x2APIC.
    (ipi,) = one(("kvm_apic", "apic_write APIC_ICR2 = 0x102"),
                 ("kvm_apic", "apic_write APIC_ICR = 0x40fb"),
                 ("kvm_apic_ipi", "dst 102 vec 251 (Fixed|physical|assert|edge|dst)")).ipis
    assert (ipi.mode, ipi.dest) == ("x2APIC", 0x102)


def test_xapic_write_across_two_exits():
    """Without APICv the ICR2 write is an exit of its own; it gives the next ICR its
    destination."""
    (ipi,) = one(("kvm_exit", exit_body(3, "APIC_ACCESS", 1, 0x1310)),
                 ("kvm_apic", "apic_write APIC_ICR2 = 0x5000000"),
                 ("kvm_entry", entry_body(3, 2)),
                 ("kvm_exit", exit_body(3, "APIC_ACCESS", 2, 0x1300)),
                 ("kvm_apic", "apic_write APIC_ICR = 0x40fb"),
                 ("kvm_apic_ipi", "dst 5 vec 251 (Fixed|physical|assert|edge|dst)"),
                 ("kvm_entry", entry_body(3, 3))).ipis
    assert (ipi.mode, ipi.dest, ipi.icr_low) == ("xAPIC", 5, 0x40FB)


def test_only_kvm_apic_ipi_takes_the_default_mode():
    (ipi,) = one(IPI).ipis
    assert (ipi.mode, ipi.dest, ipi.icr_low) == ("unknown", 2, 0x40FB)


def test_repeated_writes_are_separate_ipis():
    assert len(one(MSR, MSR, MSR).ipis) == 3
    assert len(one(IPI, IPI).ipis) == 2
    assert len(one(IPI, MSR, IPI, MSR).ipis) == 2


def test_disagreeing_records_are_not_merged():
    other = ("kvm_msr", "msr_write 830 = 0x2000040fd")          # vector 0xfd, not 0xfb
    assert len(one(IPI, other).ipis) == 2
    elsewhere = ("kvm_msr", "msr_write 830 = 0x3000040fb")      # destination 3, not 2
    assert len(one(IPI, elsewhere).ipis) == 2


def test_exit_and_entry_end_a_write():
    assert len(one(IPI, ENTRY, EXIT, MSR).ipis) == 2


def test_timestamps_far_apart_are_separate_writes():
    assert len(one(("kvm_apic_ipi", IPI[1]), ts=5.0).ipis) == 1
    lines = [rec(*IPI, ts=5.0), rec(*MSR, ts=5.5)]
    assert len(parse_lines(lines).ipis) == 2
    lines = [rec(*IPI, ts=5.0), rec(*MSR, ts=5.00002)]
    assert len(parse_lines(lines).ipis) == 1


def test_interleaved_threads_group_by_thread():
    a = dict(task="CPU 0/KVM", pid=10)
    b = dict(task="CPU 1/KVM", pid=11)
    ipi_b = ("kvm_apic_ipi", "dst 0 vec 251 (Fixed|physical|assert|edge|dst)")
    msr_b = ("kvm_msr", "msr_write 830 = 0x40fb")
    parsed = parse_lines([rec(*IPI, **a), rec(*ipi_b, **b), rec(*MSR, **a), rec(*msr_b, **b)])
    assert [(i.sender, i.dest, i.sources) for i in parsed.ipis] == [
        (0, 2, ("kvm_apic_ipi", "kvm_msr")), (1, 0, ("kvm_apic_ipi", "kvm_msr"))]


def test_sender_from_kvm_exit_when_the_thread_has_no_qemu_name():
    parsed = parse_lines([rec("kvm_exit", exit_body(5, "MSR_WRITE", 1), task="qemu-kvm"),
                          rec(*MSR, task="qemu-kvm")])
    assert parsed.ipis[0].sender == 5 and parsed.ipis[0].sender_known
    parsed = parse_lines([rec(*MSR, task="qemu-kvm")])
    assert parsed.ipis[0].sender == 0 and not parsed.ipis[0].sender_known


@pytest.mark.parametrize("event,body", [
    ("kvm_apic", "apic_write APIC_EOI = 0x0"),
    ("kvm_apic_accept_irq", "apicid 2 vec 251 (Fixed|edge)"),
    ("kvm_inj_virq", "IRQ 0xfb"),
    ("kvm_ioapic_set_irq", "pin 2 dst 1 vec 209 (Fixed|logical|edge)"),
    ("kvm_msi_set_irq", "dst 1 vec 34 (Fixed|physical|edge)"),
    ("kvm_pic_set_irq", "chip 0 pin 0 (edge|masked)"),
    ("kvm_set_irq", "gsi 4 level 1 source 0"),
    ("kvm_exit", exit_body(3, "EXTERNAL_INTERRUPT", 1, intr_info=0x800000FB)),
    ("kvm_msr", "msr_write 6e0 = 0x10e8aebe830c9e"),
    ("kvm_msr", "msr_read 830 = 0x0"),
    ("kvm_msr", "msr_write 830 = 0x2000040fb (#GP)"),
    ("kvm_msr", "msr_write 83f = 0xfb"),
    ("kvm_apic", "apic_read APIC_ICR = 0x40fb"),
    ("kvm_hypercall", "nr 0x5 a0 0x0 a1 0x1 a2 0x0 a3 0x0"),
    ("kvm_pi_irte_update", "VT-d PI is enabled for irq 40, vcpu 1, gsi: 0x21, gvec: 0x22, "
                           "pi_desc_addr: 0x10b6c0c0"),
    ("kvm_ple_window_update", "vcpu 0 old 4096 new 8192 (grow)"),
])
def test_not_ipis(event, body):
    parsed = one((event, body))
    assert parsed.ipis == [] and parsed.records == 1 and parsed.pv_send_ipi == 0


def test_pv_send_ipi_is_counted_apart():
    parsed = one(("kvm_hypercall", "nr 0xa a0 0xf a1 0x0 a2 0x0 a3 0xfd"), MSR)
    assert parsed.pv_send_ipi == 1 and len(parsed.ipis) == 1
    assert parsed.other_events["kvm_hypercall (PV send-IPI)"] == 1


def test_kernel_formats_are_checked():
    lines = [rec("kvm_exit", exit_body(3, "MSR_WRITE", 1, kernel="6.19")), rec(*MSR)]
    assert parse_lines(lines, kernel="6.19").notes == []
    (note,) = parse_lines(lines, kernel="6.0").notes
    assert "Linux 6.19" in note[1] and note[0] is None
    lines = [rec("kvm_exit", exit_body(3, "MSR_WRITE", 1, kernel="6.0")), rec(*MSR)]
    assert parse_lines(lines, kernel="6.0").notes == []
    with pytest.raises(ValueError, match="unknown kernel"):
        parse_lines(lines, kernel="5.15")


def test_6_19_refuses_reserved_bits_an_ipi_on_6_0():
    bad = rec("kvm_msr", "msr_write 830 = 0x2001040fb")          # bit 16 is reserved
    assert parse_lines([bad], kernel="6.0").notes == []
    (note,) = parse_lines([bad], kernel="6.19").notes
    assert note[0] == 1 and "reserved" in note[1]
    assert len(parse_lines([bad], kernel="6.0").ipis) == 1


# -- exits alone, and the PV send-IPI's destinations -------------------------------------------

def apic_write_exit(vcpu, offset):
    """Linux 6.0 kvm_exit TP_printk for an APIC-write exit at ``offset``."""
    return ("kvm_exit", "vcpu %u reason %s rip 0x%lx info1 0x%016x info2 0x%016x intr_info "
                        "0x%08x error_code 0x%08x" % (vcpu, "APIC_WRITE", 0x1000, offset, 0,
                                                      0, 0))


def test_an_apic_write_exit_at_the_icr_alone_is_an_ipi():
    parsed = one(apic_write_exit(3, 0x300), ENTRY, apic_write_exit(3, 0x300),
                 apic_write_exit(3, 0x0B0))
    assert parsed.ipis == []
    assert [(i.sender, i.mode, i.line) for i in parsed.exit_only] == \
        [(3, "xAPIC", 1), (3, "xAPIC", 3)]


def test_an_apic_write_exit_described_by_a_record_is_no_second_ipi():
    icr = ("kvm_apic", "apic_write APIC_ICR = 0x40fb")
    parsed = one(apic_write_exit(3, 0x300), icr, IPI, ENTRY)
    assert len(parsed.ipis) == 1 and parsed.exit_only == []
    # another thread's record describes nothing of this thread's exit
    lines = [rec(*apic_write_exit(0, 0x300), task="CPU 0/KVM", pid=10),
             rec(*IPI, task="CPU 1/KVM", pid=11)]
    parsed = parse_lines(lines)
    assert len(parsed.ipis) == 1 and [i.sender for i in parsed.exit_only] == [0]


def test_msr_write_exits_are_counted():
    parsed = one(EXIT, EXIT, MSR)
    assert parsed.msr_write_exits == 2 and len(parsed.ipis) == 1 and parsed.notes == []


def test_pv_send_ipi_destinations_and_sender():
    parsed = one(("kvm_hypercall", "nr 0xa a0 0x5 a1 0x2 a2 0x10 a3 0xfd"))
    (call,) = parsed.pv_send_ipis
    # a0 bits 0, 2 -> 0x10, 0x12; a1 bit 1 -> 0x10 + 64 + 1
    assert (call.destinations, call.vector, call.sender, call.refused) == \
        ((0x10, 0x12, 0x51), 0xFD, 3, False)
    (call,) = one(("kvm_hypercall", "nr 0xa a0 0x5 a1 0x0 a2 0x0 a3 0xc00fd")).pv_send_ipis
    assert call.refused and call.destinations == ()          # a shorthand: KVM refuses it

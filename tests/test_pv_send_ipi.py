"""KVM's PV send-IPI hypercall in a trace (`sim.pv_send_ipi` through ``ipiv replay``): the
destinations a call names, and its price from the multicast model (`sim.multicast`).

The calls are made here as a Linux guest makes them (``arch/x86/kernel/kvm.c``
``__send_ipi_mask``: a 128-bit bitmap of APIC IDs above ``min``, a new call when an ID falls
outside it; ``kvm_hypercall4(KVM_HC_SEND_IPI, low, high, min, icr)``) and printed with
``kvm_hypercall``'s ``TP_printk`` (``nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3 0x%lx``)."""

import random

import pytest

from sim.multicast import multicast_costs
from sim.pv_send_ipi import VARIANTS, pv_destinations
from sim.replay import format_report, replay, report_json
from sim.round_trip import fit

WINDOW = 128          # KVM_IPI_CLUSTER_SIZE: two 64-bit longs
LONG = (1 << 64) - 1


def guest_calls(apic_ids, icr):
    """(a0, a1, a2, a3) of each hypercall the guest makes to send to ``apic_ids`` in order."""
    calls, bitmap, low, high = [], 0, 0, 0
    for apic_id in apic_ids:
        if not bitmap:
            low = high = apic_id
        elif apic_id < low and high - apic_id < WINDOW:
            bitmap <<= low - apic_id
            low = apic_id
        elif low < apic_id < low + WINDOW:
            high = max(high, apic_id)
        else:
            calls.append((bitmap & LONG, bitmap >> 64, low, icr))
            low = high = apic_id
            bitmap = 0
        bitmap |= 1 << (apic_id - low)
    if bitmap:
        calls.append((bitmap & LONG, bitmap >> 64, low, icr))
    return calls


def hypercall_line(vcpu, ts, args):
    body = "nr 0x%x a0 0x%x a1 0x%x a2 0x%x a3 0x%x" % ((0xA,) + tuple(args))
    return "%16s-%-7d [%03d] %s %5d.%06d: %s: %s" % (
        f"CPU {vcpu}/KVM", 6000 + vcpu, vcpu, "d....", int(ts), round(ts % 1 * 1e6),
        "kvm_hypercall", body)


def write(tmp_path, lines):
    path = tmp_path / "pv.trace"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_bitmap_low_high_and_min():
    # bit i of a0 is min + i, bit i of a1 is min + 64 + i (kvm_pv_send_ipi, 64-bit guest)
    assert pv_destinations(0b1011, 0b1, 4) == (4, 5, 7, 68)
    assert pv_destinations(0, 1 << 63, 0) == (127,)
    assert pv_destinations(0, 0, 9) == ()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_decodes_what_the_guest_sent(tmp_path, seed):
    rng = random.Random(seed)
    sends = [sorted(rng.sample(range(300), rng.randint(1, 40))) for _ in range(6)]
    lines, expected = [], []
    for i, ids in enumerate(sends):
        for args in guest_calls(ids, 0xFB):
            lines.append(hypercall_line(i % 4, 1.0 + len(lines) * 1e-4, args))
        expected.append(ids)
    j = report_json(replay(write(tmp_path, lines)))
    assert j["pv_send_ipi"] == len(lines) and j["ipis"] == 0
    sent = [a for ids in sends for a in ids]
    got = j["pv_send_ipis"]["destinations"]
    assert sum(got.values()) == len(sent)
    assert got == {f"physical {a:#x}": sent.count(a) for a in set(sent)}


def test_priced_with_the_multicast_model(tmp_path):
    model = fit()
    fanouts = [1, 3, 8, 8, 64, 100]
    lines = [hypercall_line(0, 1.0 + i * 1e-3, guest_calls(range(n), 0xFB)[0])
             for i, n in enumerate(fanouts)]
    lines.append(hypercall_line(1, 2.0, (0b11, 0, 0, 0x8FB)))     # logical: KVM refuses it
    lines.append(hypercall_line(1, 2.1, (0, 0, 0, 0xFB)))         # no destination
    report = replay(write(tmp_path, lines), model=model)
    priced = report_json(report)["pv_send_ipis"]["priced"]
    assert (priced["calls"], priced["refused"], priced["empty"]) == (8, 1, 1)
    assert priced["destinations"] == sum(fanouts)
    assert priced["per_fanout"] == {"1": 1, "3": 1, "8": 2, "64": 1, "100": 1}
    for name, _ in VARIANTS:
        expect = sum(getattr(multicast_costs(n, model=model), name).sender_cycles
                     for n in fanouts)
        assert priced["sender_cycles"][name] == pytest.approx(expect)
        expect = sum(getattr(multicast_costs(n, model=model), name).last_target_cycles
                     for n in fanouts)
        assert priced["last_target_cycles"][name] == pytest.approx(expect)
    assert priced["saved_by_icr_writes"] == pytest.approx(
        priced["sender_cycles"]["pv_hypercall_no_ipiv"] - priced["sender_cycles"]["ipiv"])
    text = format_report(report)
    assert "8 calls to 184 destinations" in text and "multicast model" in text


def test_a_hypercall_without_arguments_is_counted_not_priced(tmp_path):
    path = tmp_path / "t"
    path.write_text("  kvm_hypercall: nr 0xa\n  kvm_msr: msr_write 830 = 0x100004040\n")
    j = report_json(replay(str(path)))
    assert j["pv_send_ipi"] == 1 and j["pv_send_ipis"]["priced"] is None

"""Trace replay: the three event forms, unknown and malformed lines, classification through
the golden model (and the gateware), and the example traces shipped in sim/traces/."""

import json
import os

import pytest

from hdl.formats import ICRLow
from sim.replay import (
    EXAMPLES, TraceError, classify, format_report, generate_trace, parse_lines, parse_trace,
    replay, report_json,
)
from sim.round_trip import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "sim", "traces")


def rec(event, body, task="CPU 0/KVM-4100", cpu=1, ts="100.000001", flags=None):
    middle = f" {flags}" if flags else ""
    return f"  {task} [{cpu:03d}]{middle} {ts}: {event}: {body}"


X2_IPI = rec("kvm_apic_ipi", "dst 1 vec 64 (Fixed|physical|assert|edge|dst)")
X2_MSR = rec("kvm_msr", "msr_write 830 = 0x100004040")


# -- parsing each form ----------------------------------------------------------------------------

def test_x2apic_ipi_and_its_wrmsr_are_one_ipi():
    parsed = parse_lines([X2_IPI, X2_MSR])
    assert len(parsed.ipis) == 1
    ipi = parsed.ipis[0]
    assert (ipi.mode, ipi.icr_low, ipi.dest, ipi.line) == ("x2APIC", 0x4040, 1, 1)
    assert ipi.sources == ("kvm_apic_ipi", "kvm_msr") and ipi.sender == 0


def test_xapic_icr2_icr_and_ipi_are_one_ipi():
    lines = [rec("kvm_apic", "apic_write APIC_ICR2 = 0x2000000", task="CPU 3/KVM-7"),
             rec("kvm_apic", "apic_write APIC_ICR = 0x40ef", task="CPU 3/KVM-7"),
             rec("kvm_apic_ipi", "dst 2 vec 239 (Fixed|physical|assert|edge|dst)",
                 task="CPU 3/KVM-7")]
    parsed = parse_lines(lines)
    assert [(i.mode, i.icr_low, i.dest, i.sender) for i in parsed.ipis] == \
        [("xAPIC", 0x40EF, 2, 3)]
    assert parsed.other_events["kvm_apic (ICR2)"] == 1


def test_each_form_alone():
    parsed = parse_lines([
        rec("kvm_apic_ipi", "dst 3 vec 2 (NMI|physical|assert|edge|dst)", task="a-1"),
        rec("kvm_msr", "msr_write 830 = 0x2000000fd", task="b-2"),
        rec("kvm_apic", "apic_write APIC_ICR = 0xc00f0", task="c-3"),
    ])
    got = [(i.mode, i.icr_low, i.dest) for i in parsed.ipis]
    assert got == [("unknown", 0x4402, 3), ("x2APIC", 0xFD, 2), ("xAPIC", 0xC00F0, 0)]


def test_kvm_apic_ipi_fields_decode():
    body = "dst 5 vec 48 (LowPrio|logical|de-assert|level|all-but-self)"
    (ipi,) = parse_lines([rec("kvm_apic_ipi", body)]).ipis
    f = ICRLow.from_bits(ipi.icr_low)
    assert (f.vector, int(f.delivery_mode.value), int(f.dest_mode.value), f.level,
            int(f.trigger.value), int(f.shorthand.value)) == (48, 1, 1, 0, 1, 3)


def test_different_ipis_of_one_thread_are_not_merged():
    other = rec("kvm_msr", "msr_write 830 = 0x1000000fd")         # vector 0xfd, not 0x40
    assert len(parse_lines([X2_IPI, other]).ipis) == 2


def test_ftrace_format_with_tgid_and_flags():
    line = "    qemu-kvm-4242    (  4200) [002] d..1.  5512.123456: kvm_msr: msr_write 830 = 0x40"
    parsed = parse_lines([line])
    assert len(parsed.ipis) == 1 and parsed.ipis[0].mode == "x2APIC"
    assert parse_lines([rec("kvm_msr", "msr_write 830 = 0x40", flags="d..1.")]).ipis


def test_unknown_lines_and_other_events_are_counted_and_skipped():
    parsed = parse_lines([
        "cpus=4", "# tracer: nop", "", "garbage here",
        rec("kvm_entry", "vcpu 0, rip 0xffffffff81000000"),
        rec("kvm_msr", "msr_write 6e0 = 0x1234"),             # TSC deadline, not the ICR
        rec("kvm_msr", "msr_read 830 = 0x0"),
        rec("kvm_apic", "apic_write APIC_EOI = 0x0"),
        X2_MSR,
    ])
    assert parsed.unknown_lines == 4 and parsed.lines == 9
    assert parsed.other_events["kvm_entry"] == 1
    assert parsed.other_events["kvm_msr (not an ICR write)"] == 2
    assert parsed.other_events["kvm_apic (not an ICR write)"] == 1
    assert len(parsed.ipis) == 1 and not parsed.errors


@pytest.mark.parametrize("line,fragment", [
    (rec("kvm_apic_ipi", "dst 1 vec 64"), "malformed kvm_apic_ipi"),
    (rec("kvm_apic_ipi", "dst 1 vec 64 (Bogus|physical|assert|edge|dst)"),
     "unknown delivery mode 'Bogus'"),
    (rec("kvm_apic_ipi", "dst 1 vec 64 (Fixed|physical|assert|edge|some)"),
     "unknown shorthand 'some'"),
    (rec("kvm_apic_ipi", "dst 1 vec 300 (Fixed|physical|assert|edge|dst)"), "not 0..255"),
    (rec("kvm_msr", "msr_write 830 = zzz"), "malformed kvm_msr"),
    (rec("kvm_msr", "msr_write 830 = 0x1" + "0" * 16), "wider than 64 bits"),
    (rec("kvm_apic", "apic_write APIC_ICR = 0x100000000"), "wider than 32 bits"),
    (rec("kvm_apic", "apic_write"), "malformed kvm_apic"),
])
def test_malformed_known_lines_are_reported_with_their_line_number(line, fragment):
    parsed = parse_lines(["cpus=2", X2_MSR, line, X2_MSR])
    assert len(parsed.errors) == 1
    number, message = parsed.errors[0]
    assert number == 3 and fragment in message
    assert len(parsed.ipis) == 2             # the good lines around it still count


def test_default_mode_is_checked():
    with pytest.raises(ValueError, match="default_mode"):
        parse_lines([], default_mode="x3APIC")


def test_unreadable_files(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        parse_trace(str(tmp_path / "missing"))
    with pytest.raises(TraceError, match="is a directory"):
        parse_trace(str(tmp_path))
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match="not a text trace"):
        parse_trace(str(binary))


# -- classification -----------------------------------------------------------------------------

def classify_lines(lines, **kw):
    parsed = parse_lines(lines, default_mode=kw.pop("default_mode", "x2APIC"))
    return classify(parsed, **kw)


def test_classification_by_cause():
    lines = [
        X2_MSR,                                                              # posted
        rec("kvm_msr", "msr_write 830 = 0x100000840", task="t-2"),          # logical
        rec("kvm_msr", "msr_write 830 = 0x100000005", task="t-3"),          # vector 5
        rec("kvm_msr", "msr_write 830 = 0x700000040", task="t-4"),          # ID 7, 4 vCPUs
        rec("kvm_apic", "apic_write APIC_ICR2 = 0xff000000", task="t-5"),
        rec("kvm_apic", "apic_write APIC_ICR = 0x40", task="t-5"),          # xAPIC broadcast
    ]
    classified, vcpus = classify_lines(lines, vcpus=4)
    assert vcpus == 4
    assert [c.label for c in classified] == [
        "posted", "exit (UNSUPPORTED)", "exit (ILLEGAL_VECTOR)", "exit (INDEX_RANGE)",
        "exit (BROADCAST)"]


def test_replay_vm_covers_the_destinations_seen():
    classified, vcpus = classify_lines([rec("kvm_msr", "msr_write 830 = 0x900000040")])
    assert vcpus == 10 and classified[0].label == "posted"


def test_cycles_saved_come_from_the_round_trip_model():
    model = fit()
    lines = [X2_MSR, rec("kvm_apic", "apic_write APIC_ICR2 = 0x1000000", task="t-2"),
             rec("kvm_apic", "apic_write APIC_ICR = 0x40", task="t-2")]
    (x2, xa), _ = classify_lines(lines, model=model)
    assert x2.saved == pytest.approx(model.saving("x2APIC"))
    assert xa.saved == pytest.approx(model.saving("xAPIC"))
    # A logical IPI exits either way; with IPIv it also pays the unit's vICR store.
    (logical,), _ = classify_lines([rec("kvm_msr", "msr_write 830 = 0x100000840")],
                                   model=model)
    assert -20 < logical.saved < 0


def test_mode_of_a_lone_kvm_apic_ipi_is_the_default():
    line = rec("kvm_apic_ipi", "dst 1 vec 64 (Fixed|physical|assert|edge|dst)")
    (c,), _ = classify_lines([line], default_mode="xAPIC")
    assert c.mode == "xAPIC" and c.label == "posted"


# -- the shipped traces -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shipped_traces_replay_cleanly(name):
    path = os.path.join(TRACES, name)
    with open(path) as f:
        text = f.read()
    assert text.startswith("# Generated by sim.replay.generate_trace")
    report = replay(path)
    j = report_json(report)
    assert j["errors"] == [] and j["unknown_lines"] == 5          # the header
    # Every IPI is traced once by kvm_apic_ipi, which pairs with its ICR event.
    assert j["ipis"] == text.count(" kvm_apic_ipi:") > 50
    assert all(len(c.ipi.sources) == 2 for c in report.classified)
    # Virtualized exactly when the ICR is physical, fixed, edge, no shorthand, vector >= 16.
    independent = sum(1 for c in report.classified
                      if (c.ipi.icr_low & 0xFFFF_BF00) == 0 and (c.ipi.icr_low & 0xFF) >= 16
                      and c.ipi.dest < report.vcpus)
    assert j["virtualized"] == independent
    assert 0 < j["virtualized"] < j["ipis"]
    assert j["cycles_saved"] > 0


def test_shipped_traces_are_what_the_generator_writes(tmp_path):
    for name, kw in EXAMPLES.items():
        generate_trace(str(tmp_path / name), **kw)
        with open(tmp_path / name) as a, open(os.path.join(TRACES, name)) as b:
            assert a.read() == b.read(), name


def test_replay_on_the_gateware_agrees():
    report = replay(os.path.join(TRACES, "ipiworld-mixed.trace"), rtl=True)
    assert report.rtl == []
    assert "agrees with the golden model" in format_report(report)


def test_report_text_and_json():
    report = replay(os.path.join(TRACES, "ipiworld-xapic.trace"))
    text = format_report(report)
    for fragment in ("IPIs", "virtualized by IPIv", "per APIC mode", "per vector",
                     "per destination", "cycles saved"):
        assert fragment in text
    j = json.loads(json.dumps(report_json(report)))
    assert set(j["per_mode"]) == {"xAPIC"}
    assert sum(v["ipis"] for v in j["per_vector"].values()) == j["ipis"]
    assert sum(v["ipis"] for v in j["per_destination"].values()) == j["ipis"]


def test_cli_replay(capsys):
    from tests.test_experiments import run
    path = os.path.join(TRACES, "ipiworld-x2apic.trace")
    assert run("replay", path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["per_mode"].keys() == {"x2APIC"} and data["rtl"] is None
    assert run("replay", path) == 0
    assert "virtualized by IPIv" in capsys.readouterr().out

"""Trace replay end to end: parsing, malformed and unreadable input, classification through
the golden model (and the gateware), the example traces shipped in sim/traces/, traces made
from the co-simulation in every output form, and ``ipiv replay``."""

import io
import json
import os

import pytest

from hdl.formats import ICR_IPIV_INELIGIBLE_MASK, ICRLow
from sim.replay import (
    EXAMPLES, FORMATS, TraceError, classify, format_report, generate_trace, parse_lines,
    parse_trace, replay, report_json,
)
from sim.round_trip import fit
from tb.replay_rtl import check_rtl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "sim", "traces")


def rec(event, body, task="CPU 0/KVM-4100", cpu=1, ts="100.000001", flags=None):
    middle = f" {flags}" if flags else ""
    return f"  {task} [{cpu:03d}]{middle} {ts}: {event}: {body}"


X2_IPI = rec("kvm_apic_ipi", "dst 1 vec 64 (Fixed|physical|assert|edge|dst)")
X2_MSR = rec("kvm_msr", "msr_write 830 = 0x100004040")


# -- parsing -------------------------------------------------------------------------------------

def test_each_form_alone():
    parsed = parse_lines([
        rec("kvm_apic_ipi", "dst 3 vec 2 (NMI|physical|assert|edge|dst)", task="a-1"),
        rec("kvm_msr", "msr_write 830 = 0x2000000fd", task="b-2"),
        rec("kvm_apic", "apic_write APIC_ICR = 0xc00f0", task="c-3"),
    ])
    got = [(i.mode, i.icr_low, i.dest) for i in parsed.ipis]
    assert got == [("unknown", 0x4402, 3), ("x2APIC", 0xFD, 2), ("xAPIC", 0xC00F0, 0)]
    assert parsed.records == 3 and parsed.lines == 3


def test_kvm_apic_ipi_fields_decode():
    body = "dst 5 vec 48 (LowPrio|logical|de-assert|level|all-but-self)"
    (ipi,) = parse_lines([rec("kvm_apic_ipi", body)]).ipis
    f = ICRLow.from_bits(ipi.icr_low)
    assert (f.vector, int(f.delivery_mode.value), int(f.dest_mode.value), f.level,
            int(f.trigger.value), int(f.shorthand.value)) == (48, 1, 1, 0, 1, 3)


def test_lines_are_counted_by_kind():
    parsed = parse_lines([
        "cpus=4", "# tracer: nop", "", "garbage here",
        rec("kvm_entry", "vcpu 0, rip 0xffffffff81000000"),
        rec("kvm_msr", "msr_write 6e0 = 0x1234"),             # TSC deadline, not the ICR
        rec("kvm_msr", "msr_read 830 = 0x0"),
        rec("kvm_apic", "apic_write APIC_EOI = 0x0"),
        X2_MSR,
    ])
    assert (parsed.lines, parsed.records, parsed.comment_lines, parsed.unknown_lines) == \
        (9, 5, 2, 1)
    assert parsed.other_events["kvm_entry"] == 1
    assert parsed.other_events["kvm_msr (not an ICR write)"] == 2
    assert parsed.other_events["kvm_apic (EOI)"] == 1
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
    (rec("kvm_apic", "apic_write APIC_ICR2 = 0x100000000"), "wider than 32 bits"),
    (rec("kvm_apic", "apic_write"), "malformed kvm_apic"),
    (rec("kvm_hypercall", "a0 0x0"), "malformed kvm_hypercall"),
    (rec("kvm_exit", "vcpu 0 rip 0x1"), "malformed kvm_exit"),
])
def test_malformed_known_lines_are_reported_with_their_line_number(line, fragment):
    parsed = parse_lines(["cpus=2", X2_MSR, line, X2_MSR])
    assert len(parsed.errors) == 1
    number, message = parsed.errors[0]
    assert number == 3 and fragment in message
    assert len(parsed.ipis) == 2             # the good lines around it still count
    assert parsed.records == 3


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="default_mode"):
        parse_lines([], default_mode="x3APIC")
    with pytest.raises(ValueError, match="unknown kernel '5.4'"):
        parse_lines([], kernel="5.4")


def test_unreadable_files(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        parse_trace(str(tmp_path / "missing"))
    with pytest.raises(TraceError, match="is a directory"):
        parse_trace(str(tmp_path))
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match="not a text trace"):
        parse_trace(str(binary))


@pytest.mark.parametrize("text,fragment", [
    ("", "is empty"),
    ("\n\n", "no trace record in its 2 lines"),
    ("Hello,\nthis is a mail, not a trace.\n# with a comment\n", "no trace record in its 3"),
    ("cpus=4\n", "no trace record"),
])
def test_no_trace_record_is_an_error(tmp_path, text, fragment):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(TraceError, match=fragment):
        replay(str(path))


def test_standard_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(X2_IPI + "\n" + X2_MSR + "\n"))
    report = replay("-")
    assert len(report.classified) == 1 and report.path == "-"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(TraceError, match="standard input is empty"):
        replay("-")


# -- classification -----------------------------------------------------------------------------

def classify_lines(lines, **kw):
    parsed = parse_lines(lines, default_mode=kw.pop("default_mode", "x2APIC"))
    return classify(parsed, **kw)


def test_classification_by_cause():
    lines = [
        X2_MSR,                                                              # posted
        rec("kvm_msr", "msr_write 830 = 0x100000840", task="t-2"),          # logical
        rec("kvm_msr", "msr_write 830 = 0x100000005", task="t-3"),          # vector 5
        rec("kvm_msr", "msr_write 830 = 0x100000000040", task="t-4"),       # ID 4096: no vCPU
        rec("kvm_apic", "apic_write APIC_ICR2 = 0xff000000", task="t-5"),
        rec("kvm_apic", "apic_write APIC_ICR = 0x40", task="t-5"),          # xAPIC broadcast
    ]
    classified, vcpus = classify_lines(lines, vcpus=4)
    assert vcpus == 4
    assert [c.label for c in classified] == [
        "posted", "exit (UNSUPPORTED)", "exit (ILLEGAL_VECTOR)", "exit (INDEX_RANGE)",
        "exit (BROADCAST)"]


def test_replay_vm_has_every_vcpu_the_trace_names():
    classified, vcpus = classify_lines([rec("kvm_msr", "msr_write 830 = 0x900000040")])
    assert vcpus == 10 and classified[0].label == "posted"
    # the sender counts too (CPU 6/KVM), a logical or shorthand destination does not
    lines = [rec("kvm_msr", "msr_write 830 = 0x1f00000840", task="CPU 6/KVM-9"),
             rec("kvm_msr", "msr_write 830 = 0x1f000c0040", task="CPU 6/KVM-9")]
    assert classify_lines(lines)[1] == 7


def test_vcpus_too_small_is_an_error():
    lines = [rec("kvm_msr", "msr_write 830 = 0x900000040", task="CPU 2/KVM-7")]
    with pytest.raises(TraceError, match=r"--vcpus 9 is too small .* vCPU 9 \(line 1\)"):
        classify_lines(lines, vcpus=9)
    assert classify_lines(lines, vcpus=12)[1] == 12


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


WIDE_IPI = rec("kvm_apic_ipi", "dst 1a3 vec 64 (Fixed|physical|assert|edge|dst)")


def test_xapic_destination_above_ff_is_a_trace_error_naming_its_line():
    """A lone kvm_apic_ipi taken as xAPIC (the default mode) cannot name a destination an
    xAPIC guest cannot write; x2APIC takes it, and 0xFF still fits xAPIC."""
    lines = [X2_IPI, WIDE_IPI]
    for vcpus in (None, 4):                     # before the --vcpus check, which would blame 419
        with pytest.raises(TraceError, match=r"^line 2: destination 0x1a3 does not fit an xAPIC"):
            classify_lines(lines, default_mode="xAPIC", vcpus=vcpus)
    classified, vcpus = classify_lines(lines, default_mode="x2APIC")
    assert vcpus == 0x1A4 and [c.mode for c in classified] == ["x2APIC", "x2APIC"]
    ff = rec("kvm_apic_ipi", "dst ff vec 64 (Fixed|physical|assert|edge|dst)")
    (c,), _ = classify_lines([ff], default_mode="xAPIC")
    assert c.label == "exit (BROADCAST)"
    # An ICR record shows the mode: its 8-bit ICR2 is never too wide.
    icr = [rec("kvm_apic", "apic_write APIC_ICR2 = 0xff000000", task="t-2"),
           rec("kvm_apic", "apic_write APIC_ICR = 0x40", task="t-2")]
    (c,), _ = classify_lines(icr, default_mode="xAPIC")
    assert (c.mode, c.ipi.dest) == ("xAPIC", 0xFF)


# -- traces from the co-simulation, in every form ----------------------------------------------

def _virtualizable(low, dest, vcpus):
    """IPIv posts exactly: physical, fixed, edge, no shorthand, bit 12 clear, vector >= 16,
    a destination in the table (and not the xAPIC broadcast)."""
    return (low & ICR_IPIV_INELIGIBLE_MASK) == 0 and (low & 0xFF) >= 16 and dest < vcpus


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kernel", ["6.0", "6.19"])
def test_generated_trace_replays_to_what_the_guests_wrote(tmp_path, fmt, kernel):
    path = tmp_path / f"{fmt}.trace"
    written = generate_trace(str(path), steps=120, seed=11, x2apic=None, fmt=fmt, kernel=kernel,
                             apicv=fmt != "perf")
    report = replay(str(path), kernel=kernel)
    j = report_json(report)
    assert j["unknown_lines"] == 0 and j["errors"] == [] and j["notes"] == []
    got = [(c.ipi.sender, c.ipi.mode, c.ipi.icr_low & 0xFFFF_EFFF, c.ipi.dest)
           for c in report.classified]
    assert got == [(v, m, low & 0xFFFF_EFFF, d) for v, m, low, d in written]
    assert {m for _, m, _, _ in written} == {"x2APIC", "xAPIC"}
    assert j["virtualized"] == sum(_virtualizable(low, d, report.vcpus)
                                   for _, _, low, d in written)
    # the other kernel's event formats are noted
    other = replay(str(path), kernel="6.19" if kernel == "6.0" else "6.0")
    assert report_json(other)["notes"] and len(other.classified) == len(written)


def test_generated_xapic_trace_without_apicv_has_two_apic_access_exits_per_ipi(tmp_path):
    """Without APICv an xAPIC guest's ICR2 and ICR writes each fault: APIC-access exits whose
    qualification is access type 1 (linear write, bits 15:12) at offset 310H, then 300H (SDM
    Vol. 3C, exit qualification for APIC-access VM exits); ICR2 carries the destination in
    bits 31:24."""
    import re
    path = tmp_path / "xapic.trace"
    written = generate_trace(str(path), steps=60, seed=5, x2apic=False, apicv=False)
    text = path.read_text()
    info1 = re.findall(r"reason APIC_ACCESS rip \S+ info1 (0x[0-9a-f]+)", text)
    assert written and info1 == ["0x0000000000001310", "0x0000000000001300"] * len(written)
    icr2 = [int(v, 16) for v in re.findall(r"apic_write APIC_ICR2 = (0x[0-9a-f]+)", text)]
    assert icr2 == [d << 24 for _, _, _, d in written]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shipped_traces_replay_cleanly(name):
    path = os.path.join(TRACES, name)
    with open(path) as f:
        text = f.read()
    assert "# Generated by sim.trace_generate.generate_trace" in text
    kernel = EXAMPLES[name].get("kernel", "6.0")
    j = report_json(replay(path, kernel=kernel))
    assert j["errors"] == [] and j["notes"] == [] and j["unknown_lines"] == 0
    assert j["comment_lines"] >= 4 and j["records"] == j["lines"] - j["comment_lines"]
    # Every IPI is traced once by kvm_apic_ipi.
    assert j["ipis"] == text.count(" kvm_apic_ipi:") + text.count(" kvm:kvm_apic_ipi:") > 50
    assert 0 < j["virtualized"] < j["ipis"] and j["cycles_saved"] > 0


def test_shipped_traces_are_what_the_generator_writes(tmp_path):
    for name, kw in EXAMPLES.items():
        generate_trace(str(tmp_path / name), **kw)
        with open(tmp_path / name) as a, open(os.path.join(TRACES, name)) as b:
            assert a.read() == b.read(), name


def test_replay_on_the_gateware_agrees():
    report = replay(os.path.join(TRACES, "ipiworld-mixed.trace"), check=check_rtl)
    assert report.rtl == []
    assert "agrees with the golden model" in format_report(report)


def test_report_text_and_json():
    report = replay(os.path.join(TRACES, "ipiworld-xapic.trace"))
    text = format_report(report)
    for fragment in ("trace records", "IPIs", "virtualized by IPIv", "per APIC mode",
                     "per vector", "per destination", "cycles saved"):
        assert fragment in text
    j = json.loads(json.dumps(report_json(report)))
    for key in ("ipis", "virtualized", "lines", "unknown_lines", "records", "pv_send_ipi",
                "kernel"):
        assert key in j
    assert set(j["per_mode"]) == {"xAPIC"}
    assert sum(v["ipis"] for v in j["per_vector"].values()) == j["ipis"]
    assert sum(v["ipis"] for v in j["per_destination"].values()) == j["ipis"]


def test_pv_send_ipi_in_the_report(tmp_path):
    path = tmp_path / "pv.trace"
    path.write_text(rec("kvm_hypercall", "nr 0xa a0 0xff a1 0x0 a2 0x0 a3 0xfd") + "\n" +
                    X2_MSR + "\n")
    report = replay(str(path))
    assert report_json(report)["pv_send_ipi"] == 1
    assert "PV send-IPI hypercalls: 1" in format_report(report)
    assert "IPIv does nothing" in format_report(report)


# -- ipiv replay ---------------------------------------------------------------------------------

def test_cli_replay(capsys):
    from tests.test_experiments import run
    path = os.path.join(TRACES, "ipiworld-x2apic.trace")
    assert run("replay", path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["per_mode"].keys() == {"x2APIC"} and data["rtl"] is None
    assert data["kernel"] == "6.0" and data["unknown_lines"] == 0
    assert run("replay", path, "--kernel", "6.19") == 0
    out = capsys.readouterr().out
    assert "virtualized by IPIv" in out and "Linux 6.19 event formats" in out


@pytest.mark.parametrize("content,argv,message", [
    ("", [], "is empty"),
    ("just some text\n", [], "no trace record"),
    (X2_MSR.replace("0x100004040", "0x900004040") + "\n", ["--vcpus", "4"], "too small"),
    (WIDE_IPI + "\n", ["--default-mode", "xapic"],
     "ipiv replay: error: line 1: destination 0x1a3 does not fit an xAPIC ICR"),
    (None, ["--kernel", "5.4"], "invalid choice"),
])
def test_cli_errors_are_one_line(tmp_path, content, argv, message):
    from tests.test_experiments import ipiv
    path = tmp_path / "t.trace"
    if content is not None:
        path.write_text(content)
    result = ipiv("replay", str(path), *argv)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_stdin_and_malformed_lines_on_stderr():
    import subprocess
    import sys
    other = rec("kvm_apic_ipi", "dst 1 vec 65 (Fixed|physical|assert|edge|dst)")
    text = "\n".join([X2_MSR, rec("kvm_msr", "msr_write 830 = zzz"), other]) + "\n"
    result = subprocess.run([sys.executable, "-m", "tb", "replay", "-", "--json"], input=text,
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("ipiv replay: -: line 2: malformed kvm_msr")
    data = json.loads(result.stdout)
    assert (data["records"], data["ipis"], data["errors"][0]["line"]) == (3, 2, 2)

"""``ipiv replay`` on the inputs users have besides a full trace: traces of exits only,
``perf kvm stat report`` summaries, quoted-printable mail text, binary recordings and traces
without the IPI events; and what the report gives (destination kinds, shares, cycles per
outcome, rates).

Every input is written here from the printing code: ftrace's record prefix
(``kernel/trace/trace_output.c``: ``%16s-%-7d [%03d] FLAGS %5lu.%06lu: ``), the ``TP_printk``
formats of ``arch/x86/kvm/trace.h`` (Linux 6.0, and the older ``kvm_exit``), perf's
``print_result`` (``tools/perf/builtin-kvm.c``) with the keys of
``tools/perf/arch/x86/util/kvm-stat.c``, and RFC 2045's quoted-printable rules.
"""

import json
import quopri

import pytest

from sim.replay import (
    IPI_EVENTS, TraceError, generate_trace, parse_lines, replay, report_json, format_report,
)
from sim.round_trip import fit, posting_cost
from sim.trace_input import is_quoted_printable
from tests.test_experiments import ipiv


# -- the printing code, in Python ----------------------------------------------------------------

def ftrace(task, pid, cpu, ts, event, body, flags="d...."):
    """trace_output.c: comm right-aligned in 16, pid left-aligned in 7, cpu, flags, time."""
    secs, usecs = int(ts), round((ts - int(ts)) * 1e6)
    return "%16s-%-7d [%03d] %s %5d.%06d: %s: %s" % (task, pid, cpu, flags, secs, usecs,
                                                    event, body)


def kvm_exit(vcpu, reason, rip, info1, info2=0):
    """Linux 6.0 TP_printk of kvm_exit."""
    return ("vcpu %u reason %s rip 0x%x info1 0x%016x info2 0x%016x intr_info 0x%08x "
            "error_code 0x%08x" % (vcpu, reason, rip, info1, info2, 0, 0))


def kvm_exit_old(reason, rip, info1, info2=0):
    """kvm_exit of kernels before the vCPU was printed: ``info %llx %llx``."""
    return "reason %s rip 0x%x info %x %x" % (reason, rip, info1, info2)


def kvm_msr(write, index, value):
    return "msr_%s %x = 0x%x" % ("write" if write else "read", index, value)


def stat_table(name, rows, width=20):
    """perf kvm stat report (print_vcpu_info, print_result) for {key: samples}; width 20 is
    perf 6.0's decode_str_len, 40 perf 6.19's KVM_EVENT_NAME_LEN."""
    total = sum(rows.values())
    out = ["", "", "Analyze events for all VMs, all VCPUs:", "",
           "%*s " % (width, name) + "%10s " % "Samples" + "%9s " % "Samples%" +
           "%9s " % "Time%" + "%11s " % "Min Time" + "%11s " % "Max Time" +
           "%16s " % "Avg time", ""]
    for key, n in rows.items():
        out.append("%*s " % (width, key) + "%10u " % n + "%8.2f%% " % (100.0 * n / total) +
                   "%8.2f%% " % (100.0 * n / total) + "%9.2fus " % 0.61 +
                   "%9.2fus " % 83.2 + "%9.2fus ( +-%7.2f%% )" % (1.93, 2.41))
    out += ["", "Total Samples:%d, Total events handled time:%.2fus." % (total, 1.93 * total),
            ""]
    return out


def write(tmp_path, lines, name="input.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def model():
    return fit()


def posted_saving(model, mode):
    """What IPIv saves on one posted IPI (x2APIC: KVM would take its fastpath)."""
    off = sum(c for _, c in model.exit_path(mode, fastpath=mode == "x2APIC"))
    return off - posting_cost(mode, model.latency, bench=model.bench)


def exit_saving(model, mode):
    """What IPIv saves on one IPI it does not post: nothing, less its x2APIC vICR store."""
    return -posting_cost(mode, model.latency, ipiv=False, bench=model.bench) \
        if mode == "x2APIC" else 0.0


RIP = 0xFFFFFFFF8106C0B2


# -- exit-only traces ------------------------------------------------------------------------

def test_apic_write_exit_at_the_icr_is_one_ipi_of_unknown_destination(tmp_path, model):
    lines = [
        ftrace("CPU 1/KVM", 5001, 3, 1000.0001, "kvm_exit", kvm_exit(1, "APIC_WRITE", RIP, 0x300)),
        ftrace("CPU 1/KVM", 5001, 3, 1000.0002, "kvm_exit", kvm_exit(1, "APIC_WRITE", RIP, 0x380)),
        ftrace("CPU 0/KVM", 5000, 2, 1000.0003, "kvm_exit", kvm_exit(0, "APIC_WRITE", RIP, 0x300)),
        ftrace("CPU 0/KVM", 5000, 2, 1000.0004, "kvm_exit", kvm_exit(0, "HLT", RIP, 0)),
        ftrace("CPU 2/KVM", 5002, 1, 1000.0005, "kvm_exit", kvm_exit(2, "APIC_WRITE", RIP, 0x300)),
    ]
    report = replay(write(tmp_path, lines), model=model)
    j = report_json(report)
    assert j["ipis"] == 3 and j["destination_unknown"] == 3      # 380H is the timer
    assert j["per_destination"]["unknown"]["ipis"] == 3 and j["per_vector"] == {
        "unknown": {"ipis": 3, "virtualized": 3}}
    assert j["per_mode"] == {"xAPIC": {"ipis": 3, "virtualized": 3}}
    assert j["virtualized"] == 3 and j["exits_removed"] == 3
    assert j["cycles_saved"] == pytest.approx(3 * posted_saving(model, "xAPIC"))
    text = format_report(report)
    assert "destination and vector unknown for 3 IPIs" in text
    assert "assumed virtualizable: all (--virtualizable 1)" in text


def test_the_share_assumed_virtualizable(tmp_path, model):
    lines = [ftrace("CPU 0/KVM", 5000, 2, 1.0 + i * 1e-4, "kvm_exit",
                    kvm_exit(0, "APIC_WRITE", RIP, 0x300)) for i in range(8)]
    path = write(tmp_path, lines)
    j = report_json(replay(path, model=model, virtualizable=0.25))
    assert j["virtualized"] == 2 and j["virtualizable_assumed"] == 0.25
    assert j["cycles_saved"] == pytest.approx(
        2 * posted_saving(model, "xAPIC") + 6 * exit_saving(model, "xAPIC"))
    assert "assumed virtualizable: 25% (--virtualizable 0.25)" in format_report(
        replay(path, model=model, virtualizable=0.25))
    with pytest.raises(ValueError, match="from 0 to 1"):
        replay(path, virtualizable=1.5)


def test_old_kvm_exit_format_and_bare_records(tmp_path):
    """As posted in mail: the event alone, the kvm_exit of kernels without the vCPU."""
    lines = ["  kvm_exit: " + kvm_exit_old("APIC_WRITE", RIP, 0x300),
             "  kvm_exit: " + kvm_exit_old("APIC_WRITE", RIP, 0x300),
             "  kvm_exit: " + kvm_exit_old("EPT_MISCONFIG", RIP, 0)]
    j = report_json(replay(write(tmp_path, lines)))
    assert (j["ipis"], j["destination_unknown"], j["senders_unknown"]) == (2, 2, 2)


def test_an_exit_described_by_its_records_is_counted_once(tmp_path):
    """The APIC-write exit, then what KVM traces for the write it emulates."""
    task = ("CPU 0/KVM", 5000, 2)
    lines = [ftrace(*task, 1.000001, "kvm_exit", kvm_exit(0, "APIC_WRITE", RIP, 0x300)),
             ftrace(*task, 1.000002, "kvm_apic", "apic_write APIC_ICR = 0x4040"),
             ftrace(*task, 1.000003, "kvm_apic_ipi",
                    "dst 1 vec 64 (Fixed|physical|assert|edge|dst)"),
             ftrace(*task, 1.000004, "kvm_entry", "vcpu 0, rip 0x%x" % (RIP + 4))]
    j = report_json(replay(write(tmp_path, lines)))
    assert (j["ipis"], j["destination_unknown"], j["outcomes"]) == (1, 0, {"posted": 1})


def test_msr_write_exits_count_only_through_kvm_msr(tmp_path):
    task = ("CPU 0/KVM", 5000, 2)
    exit_ = kvm_exit(0, "MSR_WRITE", RIP, 0)
    with_msr = [ftrace(*task, 1.000001, "kvm_exit", exit_),
                ftrace(*task, 1.000002, "kvm_msr", kvm_msr(True, 0x830, 2 << 32 | 0xFD)),
                ftrace(*task, 1.000003, "kvm_exit", exit_),
                ftrace(*task, 1.000004, "kvm_msr", kvm_msr(True, 0x6E0, 12345))]
    j = report_json(replay(write(tmp_path, with_msr)))
    assert (j["ipis"], j["virtualized"], j["notes"]) == (1, 1, [])
    j = report_json(replay(write(tmp_path, [ftrace(*task, 1.0, "kvm_exit", exit_)] * 3)))
    assert j["ipis"] == 0
    assert "3 MSR_WRITE exits without kvm_msr records" in j["notes"][0]["message"]


@pytest.mark.parametrize("seed", [3, 6])
def test_generated_exit_only_trace_counts_every_xapic_write(tmp_path, seed):
    path = tmp_path / "exits.trace"
    written = generate_trace(str(path), steps=150, seed=seed, x2apic=None,
                             events=("kvm_exit",))
    xapic = sum(mode == "xAPIC" for _, mode, _, _ in written)
    assert 0 < xapic < len(written)
    j = report_json(replay(str(path)))
    assert j["ipis"] == j["destination_unknown"] == xapic
    # with kvm_msr too, the x2APIC writes are IPIs with their ICR value
    written = generate_trace(str(path), steps=150, seed=seed, x2apic=None,
                             events=("kvm_exit", "kvm_msr"))
    j = report_json(replay(str(path)))
    assert j["ipis"] == len(written) and j["destination_unknown"] == xapic


# -- perf kvm stat report ----------------------------------------------------------------------

def test_msr_summary(tmp_path, model):
    rows = {"0x6e0:W": 9126, "0x830:W": 1186, "0x4b564d02:W": 23, "0x830:R": 4}
    report = replay(write(tmp_path, stat_table("MSR Access", rows)), model=model)
    j = report_json(report)
    assert j["source"] == "perf-kvm-stat" and j["perf_kvm_stat"]["tables"] == ["msr"]
    assert (j["ipis"], j["virtualized"], j["exits_removed"]) == (1186, 1186, 1186)
    assert j["per_mode"] == {"x2APIC": {"ipis": 1186, "virtualized": 1186}}
    assert j["cycles_saved"] == pytest.approx(1186 * posted_saving(model, "x2APIC"))
    assert set(j["other_events"]) == {"msr 0x6e0:W", "msr 0x4b564d02:W", "msr 0x830:R"}
    assert j["records"] == 4 and j["unknown_lines"] == 0


def test_mmio_summary_counts_icr2_as_halves(tmp_path, model):
    rows = {"0xfee000b0:W": 5000, "0xfee00300:W": 412, "0xfee00310:W": 412,
            "0xfee00020:R": 3}
    j = report_json(replay(write(tmp_path, stat_table("MMIO Access", rows, width=40)),
                           model=model))
    assert j["ipis"] == 412 and j["exits_removed"] == 824
    assert j["cycles_saved"] == pytest.approx(412 * posted_saving(model, "xAPIC"))
    assert any("ICR2" in n["message"] and "not more IPIs" in n["message"]
               for n in j["notes"])


def test_vmexit_summary_counts_apic_write_and_says_so(tmp_path):
    rows = {"MSR_WRITE": 20000, "HLT": 9000, "APIC_WRITE": 700, "EXTERNAL_INTERRUPT": 650,
            "VMCALL": 40}
    j = report_json(replay(write(tmp_path, stat_table("VM-EXIT", rows))))
    assert j["ipis"] == 700 and j["per_mode"] == {"xAPIC": {"ipis": 700, "virtualized": 700}}
    messages = " ".join(n["message"] for n in j["notes"])
    assert "upper bound" in messages and "20000 MSR_WRITE exits" in messages
    assert "40 VMCALL exits" in messages


def test_several_tables_and_a_row_cut_by_mail(tmp_path):
    msr = stat_table("MSR Access", {"0x830:W": 300, "0x6e0:W": 100})
    vmexit = stat_table("VM-EXIT", {"MSR_WRITE": 400, "APIC_WRITE": 50})
    cut = [line for line in msr]
    row = next(i for i, line in enumerate(cut) if "0x830:W" in line)
    cut[row:row + 1] = [cut[row][:52], cut[row][52:]]           # wrapped at 52 columns
    j = report_json(replay(write(tmp_path, ["$ perf kvm stat report --event=msr"] + cut +
                                 ["$ perf kvm stat report"] + vmexit)))
    assert j["perf_kvm_stat"]["tables"] == ["msr", "vmexit"]
    assert j["ipis"] == 350 and j["per_mode"]["x2APIC"]["ipis"] == 300
    assert j["unknown_lines"] == 2             # the two command lines
    assert not any("MSR_WRITE exits" in n["message"] for n in j["notes"])   # msr table given


def test_summary_json_has_the_keys_of_a_trace(tmp_path):
    trace = [ftrace("CPU 0/KVM", 5000, 2, 1.0, "kvm_msr", kvm_msr(True, 0x830, 1 << 32 | 0x40))]
    summary = stat_table("MSR Access", {"0x830:W": 10})
    a = report_json(replay(write(tmp_path, trace, "a.txt")))
    b = report_json(replay(write(tmp_path, summary, "b.txt")))
    assert a.keys() == b.keys()
    assert (a["source"], b["source"]) == ("trace", "perf-kvm-stat")


# -- quoted-printable --------------------------------------------------------------------------

QP_TRACE = (
    # RFC 2045: "=" is =3D; a line longer than 76 characters is cut by soft line breaks.
    "       CPU 0/KVM-5000    [002] d.... 1000.000100: kvm_msr: msr_write 830 =3D 0x2000=\n"
    "000fd\n"
    "       CPU 1/KVM-5001    [003] d.... 1000.000200: kvm_exit: vcpu 1 reason APIC_=\n"
    "WRITE rip 0xffffffff8106c0b2 info1 0x0000000000000300 info2 0x000000000000000=\n"
    "0 intr_info 0x00000000 error_code 0x00000000=20\n")


def test_quoted_printable_is_decoded_and_said(tmp_path):
    path = tmp_path / "mail.txt"
    path.write_text(QP_TRACE)
    report = replay(str(path))
    j = report_json(report)
    assert j["input_encoding"] == "quoted-printable"
    assert (j["lines"], j["records"], j["unknown_lines"]) == (2, 2, 0)
    assert (j["ipis"], j["destination_unknown"], j["outcomes"]["posted"]) == (2, 1, 1)
    assert "quoted-printable" in format_report(report)


def test_an_encoded_trace_replays_as_the_plain_one(tmp_path):
    plain = tmp_path / "plain.trace"
    generate_trace(str(plain), steps=60, seed=5, x2apic=None)
    encoded = tmp_path / "encoded.trace"
    encoded.write_bytes(quopri.encodestring(plain.read_bytes()))
    assert encoded.read_bytes() != plain.read_bytes()
    a, b = report_json(replay(str(plain))), report_json(replay(str(encoded)))
    assert a["input_encoding"] is None and b["input_encoding"] == "quoted-printable"
    for key in ("ipis", "virtualized", "records", "outcomes", "per_destination"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("text,expected", [
    ("kvm_msr: msr_write 830 =3D 0x1\n", True),
    ("kvm_exit: vcpu 0 reason APIC_=\nWRITE\n", True),
    ("kvm_msr: msr_write 830 = 0x100004040\n", False),
    ("sched_switch: prev_comm=3D prev_prio=120 prev_state=R ==> next_comm=swapper\n", False),
    ("kvm_exit: vcpu 0 reason HLT rip 0x1\n", False),
])
def test_what_is_taken_for_quoted_printable(text, expected):
    assert is_quoted_printable(text) is expected


# -- inputs that cannot be replayed ------------------------------------------------------------

SCHED = ftrace("kworker/0:1", 17, 0, 5.5, "sched_switch",
               "prev_comm=kworker/0:1 prev_pid=17 prev_prio=120 prev_state=I ==> "
               "next_comm=swapper/0 next_pid=0 next_prio=120")


def test_no_ipi_events_names_what_to_record(tmp_path):
    with pytest.raises(TraceError) as e:
        replay(write(tmp_path, [SCHED, SCHED]))
    message = str(e.value)
    assert "\n" not in message and "trace-cmd record" in message
    for event in IPI_EVENTS:
        assert f"-e kvm:{event}" in message and event in message.split(";")[0]


@pytest.mark.parametrize("head,fragment", [
    (b"\x17\x08Dtracing6\x00", "run `trace-cmd report"),
    (b"PERFILE2\x68\x00\x00\x00", "perf script"),
])
def test_binary_recordings_say_what_to_run(tmp_path, head, fragment):
    path = tmp_path / "rec.dat"
    path.write_bytes(head + bytes(range(256)))
    with pytest.raises(TraceError, match=fragment):
        replay(str(path))


@pytest.mark.parametrize("content,fragment", [
    (SCHED + "\n", "none of the events that describe IPIs"),
    (b"\x17\x08Dtracing6\x00\x00", "trace-cmd report"),
])
def test_cli_refusals_are_one_line(tmp_path, content, fragment):
    path = tmp_path / "t"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = ipiv("replay", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ipiv replay: error: ") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_virtualizable(tmp_path):
    path = write(tmp_path, stat_table("VM-EXIT", {"APIC_WRITE": 40, "HLT": 3}))
    result = ipiv("replay", path, "--virtualizable", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["ipis"], data["virtualized"], data["virtualizable_assumed"]) == (40, 20, 0.5)
    result = ipiv("replay", path, "--virtualizable", "1.5")
    assert result.returncode == 2 and "--virtualizable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- what the summary gives --------------------------------------------------------------------

def test_destinations_are_told_apart_by_kind(tmp_path):
    task = ("CPU 0/KVM", 5000, 2)
    ipis = ["dst 2 vec 64 (Fixed|physical|assert|edge|dst)",
            "dst 2 vec 64 (Fixed|logical|assert|edge|dst)",
            "dst 0 vec 252 (Fixed|physical|assert|edge|all-but-self)",
            "dst ffffffff vec 64 (Fixed|physical|assert|edge|dst)",
            "dst 2 vec 65 (Fixed|physical|assert|edge|dst)"]
    lines = [ftrace(*task, 1.0 + i * 1e-3, "kvm_apic_ipi", body) for i, body in enumerate(ipis)]
    report = replay(write(tmp_path, lines))
    j = report_json(report)
    dest = j["per_destination"]
    assert set(dest) == {"physical 0x2", "logical 0x2", "all-but-self", "broadcast"}
    assert (dest["physical 0x2"]["ipis"], dest["physical 0x2"]["kind"],
            dest["physical 0x2"]["id"]) == (2, "physical", 2)
    assert (dest["logical 0x2"]["ipis"], dest["logical 0x2"]["virtualized"]) == (1, 0)
    assert dest["all-but-self"]["kind"] == "shorthand"
    assert {k: v["ipis"] for k, v in j["per_destination_kind"].items()} == \
        {"physical": 2, "logical": 1, "shorthand": 1, "broadcast": 1}
    text = format_report(report)
    assert "physical 0x2 2/2" in text and "logical 0x2 0/1" in text
    assert "all-but-self 0/1" in text and " 0x0 " not in text


def test_share_cycles_per_outcome_and_rates(tmp_path, model):
    task = ("CPU 0/KVM", 5000, 2)
    values = [1 << 32 | 0x40, 1 << 32 | 0x41, 1 << 32 | 0x840, 0xC0040]   # 2 posted, 2 exits
    lines = [ftrace(*task, 10.0 + 0.25 * i, "kvm_msr", kvm_msr(True, 0x830, v))
             for i, v in enumerate(values)]
    report = replay(write(tmp_path, lines), model=model)
    j = report_json(report)
    assert j["virtualized_share"] == 0.5
    per = j["cycles_saved_per_outcome"]
    assert per["posted"] == pytest.approx(2 * posted_saving(model, "x2APIC"))
    assert per["exit (UNSUPPORTED)"] == pytest.approx(2 * exit_saving(model, "x2APIC"))
    assert sum(per.values()) == pytest.approx(j["cycles_saved"])
    assert j["duration_s"] == pytest.approx(0.75)
    assert j["ipis_per_s"] == pytest.approx(4 / 0.75)
    assert j["cycles_saved_per_s"] == pytest.approx(j["cycles_saved"] / 0.75)
    text = format_report(report)
    assert "virtualized by IPIv: 2 of 4 (50%)" in text and "IPIs/s" in text
    # no timestamps, no rate
    bare = [f"kvm_msr: {kvm_msr(True, 0x830, v)}" for v in values]
    j = report_json(replay(write(tmp_path, bare, "bare.txt")))
    assert j["duration_s"] is None and j["ipis_per_s"] is None


def test_zero_ipis_is_no_error_when_ipi_events_are_there(tmp_path):
    lines = [ftrace("CPU 0/KVM", 5000, 2, 1.0, "kvm_exit", kvm_exit(0, "HLT", RIP, 0))]
    j = report_json(replay(write(tmp_path, lines)))
    assert (j["ipis"], j["virtualized_share"]) == (0, None)


def test_parse_lines_keeps_timestamps():
    parsed = parse_lines([ftrace("a", 1, 0, 3.5, "kvm_exit", kvm_exit(0, "HLT", RIP, 0)),
                          ftrace("a", 1, 0, 2.25, "kvm_exit", kvm_exit(0, "HLT", RIP, 0))])
    assert (parsed.first_ts, parsed.last_ts) == (2.25, 3.5)


# -- the README ----------------------------------------------------------------------------------

def test_readme_replay_section_starts_with_the_question_and_the_command():
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = re.search(r"^## Would IPIv help my guest\?.*?\n(.*?)(?=^## )", readme,
                        re.S | re.M).group(1)
    first_block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    assert section.index("```sh") < 120           # the command comes first, after one line
    assert "ipiv replay trace.txt" in first_block
    assert all(f"-e kvm:{e}" in first_block for e in IPI_EVENTS)
    # the figures it quotes are what replay gives on the trace it names
    j = report_json(replay(os.path.join(root, "sim", "traces", "ipiworld-mixed.trace")))
    quoted = (f"`virtualized by IPIv: {j['virtualized']} of {j['ipis']} "
              f"({j['virtualized_share']:.0%})`, {j['exits_removed']} exits removed, "
              f"{j['cycles_saved']:.0f} cycles saved ({j['cycles_saved_per_ipi']:.0f} per IPI), "
              f"{j['ipis_per_s']:.0f} IPIs/s")
    assert quoted in " ".join(section.split())


def test_quoted_printable_with_mail_line_ends(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(QP_TRACE.replace("\n", "\r\n").encode())
    j = report_json(replay(str(path)))
    assert (j["input_encoding"], j["records"], j["ipis"]) == ("quoted-printable", 2, 2)

"""The line forms of `sim.trace_parse`: every common output of the KVM tracepoints, and lines
that must not be taken for records."""

import pytest

from sim.trace_parse import classify_line, iter_lines, normalize

BODY = "msr_write 830 = 0x2000000fd"


@pytest.mark.parametrize("line,form,task,pid,cpu,ts", [
    # ftrace trace / trace_pipe: 16-wide comm, -7d pid, flags of 5, 4 or none, (TGID)
    ("       CPU 0/KVM-7289    [003] d..2.  1000.000023: kvm_msr: " + BODY,
     "ftrace", "CPU 0/KVM", 7289, 3, 1000.000023),
    (" qemu-system-x86-8397    [002] .....  1404.389509: kvm_msr: " + BODY,
     "ftrace", "qemu-system-x86", 8397, 2, 1404.389509),
    ("           <...>-123     [004] .... 1907374.582975: kvm_msr: " + BODY,
     "ftrace", "<...>", 123, 4, 1907374.582975),
    ("       CPU 0/KVM-7289    (   7280) [003] d..1  1000.000023: kvm_msr: " + BODY,
     "ftrace", "CPU 0/KVM", 7289, 3, 1000.000023),
    ("       CPU 0/KVM-7289    (-------) [003] dNs1..2  1000.000023: kvm_msr: " + BODY,
     "ftrace", "CPU 0/KVM", 7289, 3, 1000.000023),
    ("       CPU 0/KVM-7289    [003]  1000.000023: kvm_msr: " + BODY,
     "ftrace", "CPU 0/KVM", 7289, 3, 1000.000023),
    # trace-cmd report: -5d pid, event name padded to 20
    ("       CPU 1/KVM-4101  [003]  1000.000023: kvm_msr:              " + BODY,
     "ftrace", "CPU 1/KVM", 4101, 3, 1000.000023),
    ("       CPU 1/KVM-4101  [003] d..1.  1000.000023: kvm_msr:              " + BODY,
     "ftrace", "CPU 1/KVM", 4101, 3, 1000.000023),
    # trace-cmd report -l: comm cut to 8, cpu without brackets, flags glued to it
    ("CPU 0/KV-7289      3d..1. 1234.567890: kvm_msr:              " + BODY,
     "latency", "CPU 0/KV", 7289, 3, 1234.56789),
    # perf script: COMM TID [CPU] TIME: sys:event (right-aligned), comm with spaces/slash/dash
    ("       CPU 0/KVM 1821753 [015] 4831258.258093: kvm:kvm_msr: " + BODY,
     "perf", "CPU 0/KVM", 1821753, 15, 4831258.258093),
    (" kworker/5:2-eve 429543 [005] 108229.924107:         kvm:kvm_msr: " + BODY,
     "perf", "kworker/5:2-eve", 429543, 5, 108229.924107),
    ("        qemu-kvm  4242/4250 [001] 12.000001: kvm:kvm_msr: " + BODY,
     "perf", "qemu-kvm", 4250, 1, 12.000001),
    ("           <...> 206966 .N.. [017] 15504452.408994: kvm:kvm_msr: " + BODY,
     "perf", "<...>", 206966, 17, 15504452.408994),
    # pasted: task without pid, timestamp only, COMM-PID, event alone
    ("microkvm [012] 98222.234315: kvm_msr: " + BODY, "task", "microkvm", None, 12, 98222.234315),
    (" 220.696238: kvm_msr: " + BODY, "timestamp", None, None, None, 220.696238),
    ("     kvm_pv_test-54285: kvm_msr: " + BODY, "task-pid", "kvm_pv_test", 54285, None, None),
    ("  kvm_msr:              " + BODY, "bare", None, None, None, None),
    ("kvm:kvm_msr: " + BODY, "bare", None, None, None, None),
])
def test_forms(line, form, task, pid, cpu, ts):
    got = classify_line(1, line)
    assert got.kind == "record"
    r = got.record
    assert (r.form, r.task, r.pid, r.cpu, r.ts, r.event, r.body) == \
        (form, task, pid, cpu, ts, "kvm_msr", BODY)


@pytest.mark.parametrize("line", [
    "Note: this is prose",                       # not a KVM tracepoint in the bare form
    "  kvm_intel: VMX timer exit, EXIT_REASON = 34",   # a printk, not a tracepoint
    "From the traces, it is seen that: kvm_exit: is avoided",
    "[003] 1000.000023: kvm_msr: " + BODY,        # a CPU column without a task
    "CPU 0/KVM-7289 1000.000023 kvm_msr " + BODY,  # no colons
    "kvm_msr:" + BODY,                            # no space after the event
    "60.78%  msr_write 830 = 0x1000000fb",        # perf top, not a record
])
def test_not_records(line):
    assert classify_line(1, line).kind == "unknown"


@pytest.mark.parametrize("line", [
    "# tracer: nop", "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION", "cpus=8",
    "version = 6", "CPU 3 is empty", "CPU:2 [EVENTS DROPPED]", "CPU:0 [120 EVENTS DROPPED]",
    "  # a comment someone added",
])
def test_comments_and_headers(line):
    assert classify_line(1, line).kind == "comment"


def test_blank_lines():
    assert [l.kind for l in iter_lines(["", "   ", "\u00a0\u2003", "\t"])] == ["blank"] * 4


def test_unicode_spaces_zero_width_and_quoting():
    assert normalize("\u00a0220.696238:\u2009kvm_msr:\u3000msr_write\u200b 830") == \
        "220.696238: kvm_msr: msr_write 830"
    assert normalize(">> > CPU 0/KVM-1 [000] 1.000001: kvm_msr: x") == \
        "CPU 0/KVM-1 [000] 1.000001: kvm_msr: x"
    line = "\u00a0\u00a0CPU\u00a00/KVM-7289\u202f[003]\u00a01000.000023:\u00a0kvm_msr:\u00a0" + BODY
    r = classify_line(1, line).record
    assert (r.task, r.pid, r.body) == ("CPU 0/KVM", 7289, BODY)


def test_trailing_annotation_stays_in_the_body():
    r = classify_line(1, " 220.696238: kvm_msr: " + BODY + "    <-- the IPI").record
    assert r.body == BODY + " <-- the IPI"


def test_wrapped_record_is_joined_and_counts_two_lines():
    lines = list(iter_lines(["    <...>-12 [004] .... 1907374.582979:",
                             "kvm_msr: " + BODY,
                             "    <...>-12 [004] .... 1907374.582981: kvm_msr:",
                             BODY,
                             "    <...>-12 [004] .... 1907374.582983: kvm_msr:",
                             ""]))
    assert [(l.number, l.kind, l.lines) for l in lines] == \
        [(1, "record", 2), (3, "record", 2), (5, "record", 1), (6, "blank", 1)]
    assert lines[0].record.body == lines[1].record.body == BODY
    assert lines[0].record.pid == 12 and lines[2].record.body == ""


def test_thread_key():
    assert classify_line(1, "  CPU 0/KVM-7 [000] 1.000001: kvm_msr: x").record.thread == "pid:7"
    assert classify_line(1, "microkvm [012] 1.000001: kvm_msr: x").record.thread == \
        "task:microkvm"
    assert classify_line(1, " 1.000001: kvm_msr: x").record.thread is None

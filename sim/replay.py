"""Replay a KVM trace: which of a VM's IPIs would IPI virtualization take off the exit path?

Input: the text that ftrace (``trace``, ``trace_pipe``), ``trace-cmd report`` or ``perf script``
print for the KVM tracepoints, or an excerpt of it pasted into a mail (`sim.trace_parse` reads
the line forms). The records that describe ICR writes (``kvm_apic_ipi``, ``kvm_msr`` 830,
``kvm_apic`` APIC_ICR / APIC_ICR2; `sim.trace_events`) are grouped into IPIs, one per guest
ICR write (`sim.trace_group`). Every IPI is classified by the golden model as if IPIv were on
(virtualized, or the exit and its cause), per vector, per destination and per APIC mode, and
priced with the round-trip model (`sim.round_trip`). KVM's paravirtual send-IPI hypercalls
(``kvm_hypercall: nr 0xa``) are counted apart: they never touch the ICR.

Lines that are no trace record are counted (comments and tool headers apart from unknown
lines); a malformed record of a known event is reported with its line number. A text with no
trace record at all is an error.

Model decisions (the trace does not say):

- The VM has every vCPU the trace names, as sender or as physical unicast destination
  (IDs below `MAX_VCPU_IDS`), or ``--vcpus``; all running, each with a valid PID-pointer
  entry: replay asks what IPIv would virtualize in that VM. A ``--vcpus`` smaller than that
  is an error.
- An IPI traced without an ICR record, on a thread whose APIC mode nothing shows, is taken
  in the default APIC mode (x2APIC unless told), its destination as printed.
"""

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from hdl.formats import DestMode, ICRLow, Shorthand
from .experiments import kvm_fastpath_eligible
from .golden import GoldenIPIVirtualizer, Outcome
from .kvm_kernel import DEFAULT_KERNEL, KERNELS, check_kernel
from .round_trip import fit, posting_cost
from .scenarios import build_vm, deliver_pending, guest_ipi
from .trace_events import KVM_HC_SEND_IPI, Boundary, Hypercall, Other, decode
from .trace_generate import EXAMPLES, FORMATS, generate_example_traces, generate_trace
from .trace_group import TraceIPI, group_records
from .trace_parse import iter_lines


__all__ = ["TraceIPI", "ParseResult", "parse_trace", "parse_lines", "classify", "Report",
           "replay", "format_report", "report_json", "generate_trace",
           "generate_example_traces", "EXAMPLES", "FORMATS", "TraceError", "replay_vm",
           "replay_requests", "named_vcpus", "KERNELS", "DEFAULT_KERNEL", "MAX_VCPU_IDS",
           "PV_SEND_IPI_NOTE"]

MAX_VCPU_IDS = 4096          # x86 KVM_MAX_VCPU_IDS (Linux 6.0): no vCPU has a larger ID
PV_SEND_IPI_NOTE = (
    "KVM's paravirtual send-IPI hypercall (kvm_hypercall nr 0xa, KVM_HC_SEND_IPI): the guest "
    "asks KVM by VMCALL for a set of destinations and writes no ICR, so IPIv does nothing for "
    "these IPIs; a guest that uses it makes few ICR writes, and the ICR IPIs replayed here "
    "are only part of its IPIs.")


class TraceError(Exception):
    """The trace cannot be used (missing file, not text, no trace record, ``vcpus`` too
    small); the message is one line."""


@dataclass
class ParseResult:
    """What `parse_lines` found."""
    ipis: list = field(default_factory=list)
    lines: int = 0
    records: int = 0                                  # lines recognized as trace records
    unknown_lines: int = 0                            # not a record, comment, header or blank
    comment_lines: int = 0                            # '#' comments and tool headers
    other_events: Counter = field(default_factory=Counter)   # records that are no ICR write
    forms: Counter = field(default_factory=Counter)   # records per line form
    errors: list = field(default_factory=list)        # (line number, message)
    notes: list = field(default_factory=list)         # (line number or None, message)
    pv_send_ipi: int = 0
    default_mode: str = "x2APIC"                      # for IPIs traced without an ICR record
    kernel: str = DEFAULT_KERNEL


def parse_lines(lines, *, default_mode="x2APIC", kernel=DEFAULT_KERNEL):
    """Parse trace text lines (an iterable of str) into a `ParseResult`."""
    if default_mode not in ("x2APIC", "xAPIC"):
        raise ValueError(f"default_mode must be x2APIC or xAPIC, not {default_mode!r}")
    check_kernel(kernel)
    result = ParseResult(default_mode=default_mode, kernel=kernel)
    decoded = []
    for line in iter_lines(lines):
        result.lines += line.lines
        if line.kind == "comment":
            result.comment_lines += 1
        elif line.kind == "unknown":
            result.unknown_lines += 1
        if line.kind != "record":
            continue
        record = line.record
        result.records += 1
        result.forms[record.form] += 1
        try:
            event = decode(record.event, record.body)
        except ValueError as e:
            result.errors.append((record.line, f"malformed {record.event} record: {e}: "
                                               f"{record.body!r}"))
            continue
        label = _other_label(event)
        if label is not None:
            result.other_events[label] += 1
        decoded.append((record, event))
    grouping = group_records(decoded, kernel=kernel)
    result.ipis = grouping.ipis
    result.pv_send_ipi = grouping.pv_send_ipi
    result.notes = grouping.notes
    return result


def _other_label(event):
    """How a record that describes no ICR write is counted, or None if it describes one."""
    if isinstance(event, Other):
        return event.label
    if isinstance(event, Boundary):
        return event.event
    if isinstance(event, Hypercall):
        return "kvm_hypercall (PV send-IPI)" if event.nr == KVM_HC_SEND_IPI else \
            "kvm_hypercall"
    return None


def parse_trace(path, *, default_mode="x2APIC", kernel=DEFAULT_KERNEL):
    """Parse a trace file (``-``: standard input); raises `TraceError` if it cannot be read."""
    if path == "-":
        try:
            return parse_lines(sys.stdin, default_mode=default_mode, kernel=kernel)
        except UnicodeDecodeError as e:
            raise TraceError(f"standard input is not a text trace (byte {e.start} is not "
                             f"UTF-8)") from None
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            return parse_lines(f, default_mode=default_mode, kernel=kernel)
    except FileNotFoundError:
        raise TraceError(f"no such file: {path!r}") from None
    except IsADirectoryError:
        raise TraceError(f"{path!r} is a directory") from None
    except UnicodeDecodeError as e:
        raise TraceError(f"{path!r} is not a text trace (byte {e.start} is not UTF-8)") from None
    except OSError as e:
        raise TraceError(f"cannot read {path!r}: {e.strerror}") from None


# -- classification ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Classified:
    """An IPI, its APIC mode as replayed, the golden `Result`, and the cycles IPIv saves."""
    ipi: TraceIPI
    mode: str
    result: object
    saved: float

    @property
    def label(self):
        r = self.result
        return r.outcome.value + (f" ({r.cause.name})" if r.cause is not None else "")

    @property
    def virtualized(self):
        return self.result.outcome.value in ("posted", "self-ipi")


def _mode_of(ipi, default_mode):
    return default_mode if ipi.mode == "unknown" else ipi.mode


def named_vcpus(ipis, default_mode="x2APIC"):
    """{vCPU ID: line of the first record naming it} for the vCPUs a trace names: every
    sender, and every physical unicast destination (no shorthand, not the broadcast ID)
    below `MAX_VCPU_IDS`."""
    named = {}
    for ipi in ipis:
        named.setdefault(ipi.sender, ipi.line)
        f = ICRLow.from_bits(ipi.icr_low & 0xFFFF_FFFF)
        broadcast = 0xFF if _mode_of(ipi, default_mode) == "xAPIC" else 0xFFFF_FFFF
        if f.dest_mode == DestMode.PHYSICAL and f.shorthand == Shorthand.NONE and \
                ipi.dest != broadcast and ipi.dest < MAX_VCPU_IDS:
            named.setdefault(ipi.dest, ipi.line)
    return named


def replay_vm(ipis, vcpus, default_mode="x2APIC"):
    """(VM, number of vCPU IDs): every vCPU the trace names (or ``vcpus``), all running.
    Raises `TraceError` if ``vcpus`` is smaller than the trace needs."""
    named = named_vcpus(ipis, default_mode)
    need = max(named, default=0) + 1
    if vcpus is None:
        vcpus = need
    elif vcpus < need:
        top = max(named)
        raise TraceError(f"--vcpus {vcpus} is too small for this trace: it names vCPU {top} "
                         f"(line {named[top]}); give at least {need}")
    return build_vm({v: "running" for v in range(vcpus)}, max_vcpu_ids=vcpus), vcpus


def replay_requests(vm, ipis, default_mode):
    """Per IPI: (mode, [Request, ...]) as the guest wrote it."""
    out = []
    for ipi in ipis:
        mode = _mode_of(ipi, default_mode)
        cfg = vm.config(ipi.sender, x2apic=mode == "x2APIC")
        out.append((mode, guest_ipi(cfg, ipi.icr_low, ipi.dest, barrier=True)))
    return out


def classify(parsed, *, vcpus=None, model=None):
    """Classify every IPI of a `ParseResult` with the golden model; returns (list of
    `Classified`, number of vCPUs of the replay VM)."""
    model = model or fit()
    vm, vcpus = replay_vm(parsed.ipis, vcpus, parsed.default_mode)
    golden = GoldenIPIVirtualizer()
    out = []
    for ipi, (mode, requests) in zip(parsed.ipis, replay_requests(vm, parsed.ipis,
                                                               parsed.default_mode)):
        result = None
        for request in requests:
            result = golden.execute(request.cfg, vm.memory, request.kind, request.value)
        deliver_pending(vm, vm.memory)      # the target takes the notification
        fast = kvm_fastpath_eligible(ipi.icr_low, ipi.dest, mode)
        off = sum(c for _, c in model.exit_path(mode, fastpath=fast))
        if result.outcome is Outcome.POSTED:
            saved = off - model.ipiv_post(mode)
        elif result.outcome is Outcome.EXIT:
            # IPIv on: an APIC-write exit (full path) after the unit's store.
            on = sum(c for _, c in model.exit_path(mode, fastpath=False))
            if mode == "x2APIC":
                on += posting_cost(mode, model.latency, ipiv=False, bench=model.bench)
            saved = off - on
        else:
            saved = 0.0
        out.append(Classified(ipi, mode, result, saved))
    return out, vcpus


# -- report ------------------------------------------------------------------------------------

@dataclass
class Report:
    """Everything `replay` found, ready for text or JSON."""
    path: str
    parsed: ParseResult
    classified: list
    vcpus: int
    rtl: list | None = None          # disagreements, None when not run

    def counts(self, key):
        table = defaultdict(Counter)
        for c in self.classified:
            table[key(c)]["ipis"] += 1
            table[key(c)]["virtualized"] += c.virtualized
        return table


def replay(path, *, check=None, vcpus=None, default_mode="x2APIC", kernel=DEFAULT_KERNEL,
           model=None, progress=None):
    """Parse and classify; returns a `Report`. ``path`` ``-`` reads standard input;
    ``kernel`` ("6.0" or "6.19") is the release that wrote the trace.

    ``check(parsed, classified, *, vcpus, progress)``: an independent run to compare with
    (`tb.replay_rtl.check_rtl` runs every IPI through the gateware), returning a list of
    disagreements; its result is the report's ``rtl``.

    Raises `TraceError` (one line) for a file that cannot be read, a text with no trace
    record, or ``vcpus`` smaller than the trace needs; ValueError for an unknown kernel.
    """
    check_kernel(kernel)
    parsed = parse_trace(path, default_mode=default_mode, kernel=kernel)
    if parsed.records == 0:
        name = "standard input" if path == "-" else repr(str(path))
        what = "is empty" if parsed.lines == 0 else \
            f"has no trace record in its {parsed.lines} lines"
        raise TraceError(f"{name} {what} (expected KVM tracepoint records as ftrace, "
                         f"trace-cmd report or perf script print them)")
    classified, n = classify(parsed, vcpus=vcpus, model=model)
    report = Report(str(path), parsed, classified, n)
    if check is not None:
        report.rtl = check(parsed, classified, vcpus=n, progress=progress)
    return report


def report_json(report):
    p = report.parsed
    outcome = Counter(c.label for c in report.classified)
    return {
        "file": report.path, "kernel": p.kernel, "lines": p.lines, "records": p.records,
        "ipis": len(report.classified), "pv_send_ipi": p.pv_send_ipi,
        "pv_send_ipi_note": PV_SEND_IPI_NOTE,
        "unknown_lines": p.unknown_lines, "comment_lines": p.comment_lines,
        "forms": dict(p.forms), "other_events": dict(p.other_events),
        "errors": [{"line": n, "message": m} for n, m in p.errors],
        "notes": [{"line": n, "message": m} for n, m in p.notes],
        "replay_vcpus": report.vcpus,
        "senders_unknown": sum(not c.ipi.sender_known for c in report.classified),
        "virtualized": sum(c.virtualized for c in report.classified),
        "outcomes": dict(outcome),
        "per_mode": {k: dict(v) for k, v in report.counts(lambda c: c.mode).items()},
        "per_vector": {str(k): dict(v) for k, v in sorted(report.counts(
            lambda c: ICRLow.from_bits(c.ipi.icr_low).vector).items())},
        "per_destination": {str(k): dict(v) for k, v in sorted(report.counts(
            lambda c: c.ipi.dest).items())},
        "cycles_saved": sum(c.saved for c in report.classified),
        "cycles_saved_per_ipi": (sum(c.saved for c in report.classified) /
                                 max(1, len(report.classified))),
        "rtl": None if report.rtl is None else {"agree": not report.rtl,
                                                "problems": report.rtl},
    }


TOP = 10     # rows of the per-vector and per-destination lines in the text report


def format_report(report):
    j = report_json(report)
    forms = ", ".join(f"{k} {v}" for k, v in sorted(j["forms"].items(), key=lambda kv: -kv[1]))
    lines = [f"{j['file']}: {j['lines']} lines, {j['records']} trace records ({forms}), "
             f"{j['ipis']} IPIs; Linux {j['kernel']} event formats",
             f"  skipped: {j['unknown_lines']} unknown lines, {j['comment_lines']} comment/header "
             f"lines, {sum(j['other_events'].values())} records of other events"]
    if j["errors"]:
        lines.append(f"  {len(j['errors'])} malformed records skipped (line numbers on stderr)")
    lines += [f"  note{'' if n['line'] is None else ' (line ' + str(n['line']) + ')'}: "
              f"{n['message']}" for n in j["notes"]]
    if j["pv_send_ipi"]:
        lines.append(f"  PV send-IPI hypercalls: {j['pv_send_ipi']}. {PV_SEND_IPI_NOTE}")
    lines.append(f"  replayed in a VM of {j['replay_vcpus']} running vCPUs, IPIv on "
                 f"(golden model)" + (f"; sender unknown for {j['senders_unknown']} IPIs "
                                      f"(taken as vCPU 0)" if j["senders_unknown"] else ""))
    lines.append(f"  virtualized by IPIv: {j['virtualized']} of {j['ipis']}")
    for label, n in sorted(j["outcomes"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {label:28s} {n:6d}")
    lines.append("  per APIC mode (virtualized/IPIs): " + ", ".join(
        f"{k} {v['virtualized']}/{v['ipis']}" for k, v in sorted(j["per_mode"].items())))
    for title, table, fmt in (("vector", j["per_vector"], "{:#04x}"),
                              ("destination", j["per_destination"], "{:#x}")):
        top = sorted(table.items(), key=lambda kv: (-kv[1]["ipis"], int(kv[0])))
        shown = ", ".join(f"{fmt.format(int(k))} {v['virtualized']}/{v['ipis']}"
                          for k, v in top[:TOP])
        more = f" (+{len(top) - TOP} more; --json lists all)" if len(top) > TOP else ""
        lines.append(f"  per {title} (virtualized/IPIs, most frequent first): {shown}{more}")
    lines.append(f"  cycles saved (round-trip model): {j['cycles_saved']:.0f} in total, "
                 f"{j['cycles_saved_per_ipi']:.0f} per IPI")
    if j["rtl"] is not None:
        if j["rtl"]["agree"]:
            lines.append(f"  gateware (Amaranth simulator): agrees with the golden model on "
                         f"all {j['ipis']} IPIs")
        else:
            lines += [f"  gateware disagrees: {p}" for p in j["rtl"]["problems"]]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "generate":
        sys.exit("usage: python -m sim.replay generate DIR")
    for name, n in generate_example_traces(sys.argv[2]).items():
        print(f"{name}: {n} IPIs")

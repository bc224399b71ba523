"""Replay a KVM trace: which of a VM's IPIs would IPI virtualization take off the exit path?

Input: the text that ftrace (``trace``, ``trace_pipe``), ``trace-cmd report`` or ``perf script``
print for the KVM tracepoints, or an excerpt of it pasted into a mail (`sim.trace_parse` reads
the line forms). The records that describe ICR writes (``kvm_apic_ipi``, ``kvm_msr`` 830,
``kvm_apic`` APIC_ICR / APIC_ICR2; `sim.trace_events`) are grouped into IPIs, one per guest
ICR write (`sim.trace_group`). Every IPI is classified by the golden model as if IPIv were on
(virtualized, or the exit and its cause), per vector, per destination and per APIC mode, and
priced with the round-trip model (`sim.round_trip`). KVM's paravirtual send-IPI hypercalls
(``kvm_hypercall: nr 0xa``) are counted apart: they never touch the ICR.

Other inputs (`sim.trace_input` reads them): a ``perf kvm stat report`` summary
(``--event=msr``, ``mmio``, ``vmexit``; `sim.perf_kvm_stat`) gives IPI counts without
destinations; a trace of exits only gives APIC-write exits at the ICR (`sim.trace_group`);
both are priced with an assumed share virtualizable (`sim.replay_estimate`). Quoted-printable
text is decoded first. KVM's PV send-IPI hypercalls are decoded to their destinations and
priced with the multicast model (`sim.pv_send_ipi`).

Lines that are no trace record are counted (comments and tool headers apart from unknown
lines); a malformed record of a known event is reported with its line number. A text with no
trace record, or none of the events that describe IPIs (`IPI_EVENTS`), is an error that says
what to record; a binary recording is an error that says what to run first.

Model decisions (the trace does not say):

- The VM has every vCPU the trace names, as sender or as physical unicast destination
  (IDs below `MAX_VCPU_IDS`), or ``--vcpus``; all running, each with a valid PID-pointer
  entry: replay asks what IPIv would virtualize in that VM. A ``--vcpus`` smaller than that
  is an error.
- An IPI traced without an ICR record, on a thread whose APIC mode nothing shows, is taken
  in the default APIC mode (x2APIC unless told), its destination as printed.
"""

import sys
from collections import Counter
from dataclasses import dataclass, field

from hdl.formats import (
    DestMode, ICRLow, Shorthand, X2APIC_BROADCAST_ID, XAPIC_BROADCAST_ID, XAPICICRHigh,
)
from .arch_values import field_width
from .experiments import kvm_fastpath_eligible
from .golden import GoldenIPIVirtualizer, Outcome
from .kvm_kernel import DEFAULT_KERNEL, KERNELS, check_kernel
from .perf_kvm_stat import count_ipis, parse_stat_report
from .pv_send_ipi import price_pv_send_ipis
from .replay_estimate import EstimatedIPIs, check_fraction, saving
from .replay_report import PV_SEND_IPI_NOTE, Report, format_report, report_json
from .round_trip import fit
from .scenarios import build_vm, deliver_pending, guest_ipi
from .trace_events import KVM_HC_SEND_IPI, Boundary, Hypercall, Other, decode
from .trace_generate import EXAMPLES, FORMATS, generate_example_traces, generate_trace
from .trace_group import TraceIPI, group_records
from .trace_input import TraceError, read_input
from .trace_parse import iter_lines


__all__ = ["TraceIPI", "ParseResult", "parse_trace", "parse_lines", "classify", "Report",
           "replay", "format_report", "report_json", "generate_trace",
           "generate_example_traces", "EXAMPLES", "FORMATS", "TraceError", "check_destinations",
           "replay_vm",
           "replay_requests", "named_vcpus", "KERNELS", "DEFAULT_KERNEL", "MAX_VCPU_IDS",
           "PV_SEND_IPI_NOTE", "IPI_EVENTS", "RECORD_COMMAND"]

MAX_VCPU_IDS = 4096          # x86 KVM_MAX_VCPU_IDS (Linux 6.0): no vCPU has a larger ID
# The events that describe IPIs (sim.trace_group), and how to record them.
IPI_EVENTS = ("kvm_msr", "kvm_apic_ipi", "kvm_apic", "kvm_exit", "kvm_hypercall")
RECORD_COMMAND = ("trace-cmd record " + " ".join(f"-e kvm:{e}" for e in IPI_EVENTS) +
                  " sleep 10; trace-cmd report > trace.txt")


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
    events: Counter = field(default_factory=Counter)  # records per event name
    first_ts: float | None = None                     # seconds, of the first timed record
    last_ts: float | None = None
    exit_only: list = field(default_factory=list)     # `sim.trace_group.ExitOnlyIPI`
    pv_send_ipis: list = field(default_factory=list)  # `sim.pv_send_ipi.PVSendIPI`
    msr_write_exits: int = 0


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
        result.events[record.event] += 1
        if record.ts is not None:
            result.first_ts = min(record.ts, result.first_ts or record.ts)
            result.last_ts = max(record.ts, result.last_ts or record.ts)
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
    result.exit_only = grouping.exit_only
    result.pv_send_ipis = grouping.pv_send_ipis
    result.msr_write_exits = grouping.msr_write_exits
    if grouping.msr_write_exits and not result.events["kvm_msr"]:
        result.notes.append((None, f"{grouping.msr_write_exits} MSR_WRITE exits without "
                                   f"kvm_msr records: which MSR each wrote is unknown (x2APIC "
                                   f"IPIs write 830); not counted; record kvm_msr too"))
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
    return parse_lines(read_input(path).lines, default_mode=default_mode, kernel=kernel)


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
        broadcast = (XAPIC_BROADCAST_ID if _mode_of(ipi, default_mode) == "xAPIC"
                     else X2APIC_BROADCAST_ID)
        if f.dest_mode == DestMode.PHYSICAL and f.shorthand == Shorthand.NONE and \
                ipi.dest != broadcast and ipi.dest < MAX_VCPU_IDS:
            named.setdefault(ipi.dest, ipi.line)
    return named


def check_destinations(ipis, default_mode="x2APIC"):
    """Raises `TraceError` naming the line of the first IPI whose destination does not fit
    its APIC mode: an xAPIC guest writes 8 bits (ICR2), so a ``kvm_apic_ipi`` destination
    above FFH taken in the default mode xAPIC cannot be replayed. (The parser already
    refuses one wider than x2APIC's 32 bits.)"""
    bits = field_width(XAPICICRHigh, "dest")
    for ipi in ipis:
        if _mode_of(ipi, default_mode) == "xAPIC" and ipi.dest >> bits:
            raise TraceError(f"line {ipi.line}: destination {ipi.dest:#x} does not fit an xAPIC "
                             f"ICR (0..{(1 << bits) - 1:#x}); is it an x2APIC guest's trace "
                             f"(--default-mode x2apic)?")


def replay_vm(ipis, vcpus, default_mode="x2APIC"):
    """(VM, number of vCPU IDs): every vCPU the trace names (or ``vcpus``), all running.
    Raises `TraceError` if an IPI's destination does not fit its mode (`check_destinations`)
    or if ``vcpus`` is smaller than the trace needs."""
    check_destinations(ipis, default_mode)
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
        if result.outcome in (Outcome.POSTED, Outcome.EXIT):
            # IPIv on, not posted: an APIC-write exit (full path) after the unit's store.
            saved = saving(model, mode, result.outcome is Outcome.POSTED, fastpath=fast)
        else:
            saved = 0.0
        out.append(Classified(ipi, mode, result, saved))
    return out, vcpus


# -- replay ------------------------------------------------------------------------------------

def replay(path, *, check=None, vcpus=None, default_mode="x2APIC", kernel=DEFAULT_KERNEL,
           model=None, progress=None, virtualizable=1.0):
    """Parse and classify; returns a `Report`. ``path`` ``-`` reads standard input;
    ``kernel`` ("6.0" or "6.19") is the release that wrote the trace; ``virtualizable``
    (0..1) the share of the IPIs of unknown destination assumed virtualizable.

    ``check(parsed, classified, *, vcpus, progress)``: an independent run to compare with
    (`tb.replay_rtl.check_rtl` runs every IPI through the gateware), returning a list of
    disagreements; its result is the report's ``rtl``.

    Raises `TraceError` (one line) for a file that cannot be read, a binary recording, a
    text with no trace record or none of `IPI_EVENTS`, or ``vcpus`` smaller than the trace
    needs; ValueError for an unknown kernel or a share out of 0..1.
    """
    check_kernel(kernel)
    check_fraction(virtualizable)
    model = model or fit()
    text = read_input(path)
    common = dict(encoding=text.encoding, virtualizable=virtualizable, model=model)
    stat = parse_stat_report(text.lines)
    if stat is not None:
        report = _stat_report(str(path), stat, kernel, default_mode, common)
    else:
        parsed = parse_lines(text.lines, default_mode=default_mode, kernel=kernel)
        _check_describes_ipis(parsed, text.name)
        classified, n = classify(parsed, vcpus=vcpus, model=model)
        pv = price_pv_send_ipis(parsed.pv_send_ipis, model=model) if parsed.pv_send_ipis \
            else None
        report = Report(str(path), parsed, classified, n,
                        estimated=_exit_only(parsed.exit_only), pv=pv, **common)
    if check is not None and report.classified:
        report.rtl = check(report.parsed, report.classified, vcpus=report.vcpus,
                           progress=progress)
    elif check is not None:
        report.parsed.notes.append((None, "--rtl: no IPI with a known ICR value to run on "
                                          "the gateware"))
    return report


def _check_describes_ipis(parsed, name):
    """Raise `TraceError` for a text with no trace record, or none that describes IPIs."""
    if parsed.records == 0:
        what = "is empty" if parsed.lines == 0 else \
            f"has no trace record in its {parsed.lines} lines"
        raise TraceError(f"{name} {what} (expected KVM tracepoint records as ftrace, "
                         f"trace-cmd report or perf script print them, or a `perf kvm stat "
                         f"report` table)")
    if not any(parsed.events[e] for e in IPI_EVENTS):
        top = ", ".join(e for e, _ in parsed.events.most_common(3))
        raise TraceError(f"{name} has {parsed.records} trace records ({top}) but none of the "
                         f"events that describe IPIs ({', '.join(IPI_EVENTS)}); record them: "
                         f"{RECORD_COMMAND}")


def _exit_only(exit_only):
    """`EstimatedIPIs` per APIC mode of the IPIs seen only as APIC-write exits."""
    modes = Counter(i.mode for i in exit_only)
    return [EstimatedIPIs("APIC_WRITE exits at the ICR (qualification 300) with no record of "
                          "the write", mode, n) for mode, n in sorted(modes.items())]


def _stat_report(path, stat, kernel, default_mode, common):
    """The `Report` of a ``perf kvm stat report`` summary."""
    estimated, notes, others = count_ipis(stat)
    parsed = ParseResult(default_mode=default_mode, kernel=kernel, lines=stat.lines,
                         records=stat.rows, unknown_lines=stat.unknown_lines,
                         comment_lines=stat.comment_lines,
                         forms=Counter({f"perf kvm stat {t.event}": len(t.rows)
                                       for t in stat.tables}),
                         other_events=Counter(others), notes=[(None, n) for n in notes])
    if not estimated:
        parsed.notes.append((None, "no row of this summary counts IPIs: `perf kvm stat "
                                   "report --event=msr` (x2APIC: 0x830:W), `--event=mmio` "
                                   "(xAPIC without APICv) or `--event=vmexit` (APIC_WRITE)"))
    return Report(path, parsed, [], None, source="perf-kvm-stat", estimated=estimated,
                  stat=stat, **common)

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "generate":
        sys.exit("usage: python -m sim.replay generate DIR")
    for name, n in generate_example_traces(sys.argv[2]).items():
        print(f"{name}: {n} IPIs")

"""Replay a KVM trace: which of a VM's IPIs would IPI virtualization take off the exit path?

Input is the text of ``trace-cmd report`` or of the ftrace ``trace`` file. Three events carry
ICR values (KVM, ``arch/x86/kvm/trace.h``):

- ``kvm_apic_ipi: dst %x vec %u (MODE|logical/physical|assert/de-assert|level/edge|SHORTHAND)``,
  traced by KVM when it sends an IPI a guest wrote (so, on a host without IPIv, every IPI);
- ``kvm_msr: msr_write 830 = 0x...``: the full 64-bit x2APIC ICR;
- ``kvm_apic: apic_write APIC_ICR = 0x...`` (and ``APIC_ICR2``): the xAPIC ICR halves.

A ``kvm_apic_ipi`` and the ICR event of the same thread that describe the same write are one
IPI (KVM traces the xAPIC write before the IPI and the x2APIC WRMSR after it). Every IPI is
classified by the golden model as if IPIv were on (virtualized, or the exit and its cause), per
vector, per destination and per APIC mode, and priced with the round-trip model
(`sim.round_trip`). Lines that are not trace records, and records of other events, are counted
and skipped; a malformed line of a known event is reported with its line number.

Model decisions (the trace does not say):

- The VM has vCPU IDs ``0 .. max physical destination seen`` (or ``--vcpus``), all running,
  each with a valid PID-pointer entry: replay asks what IPIv would virtualize in that VM.
- A ``kvm_apic_ipi`` with no ICR event of the same thread beside it is taken in the default
  APIC mode (x2APIC unless told), its destination as printed.
- The sender's vCPU ID comes from QEMU's thread name ``CPU n/KVM``; otherwise 0.
"""

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from hdl.formats import DeliveryMode, DestMode, ICRLow, Shorthand, TriggerMode


__all__ = ["TraceIPI", "ParseResult", "parse_trace", "parse_lines", "classify", "Report",
           "replay", "format_report", "report_json", "generate_trace",
           "generate_example_traces", "TraceError"]


class TraceError(Exception):
    """The trace cannot be read at all (missing file, not text)."""


DELIVERY_NAMES = ("Fixed", "LowPrio", "SMI", "Res3", "NMI", "INIT", "SIPI", "ExtINT")
SHORTHAND_NAMES = ("dst", "self", "all", "all-but-self")
MSR_X2APIC_ICR = 0x830

_RECORD = re.compile(
    r"^\s*(?P<task>\S.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s:]+)\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s*(?P<body>.*?)\s*$")
_IPI = re.compile(
    r"^dst (?P<dst>[0-9a-fA-F]+) vec (?P<vec>\d+) \((?P<mode>\w+)\|(?P<dm>logical|physical)\|"
    r"(?P<level>assert|de-assert)\|(?P<trig>level|edge)\|(?P<sh>[\w-]+)\)$")
_MSR = re.compile(r"^msr_(?P<rw>read|write) (?P<idx>[0-9a-fA-F]+) = 0x(?P<val>[0-9a-fA-F]+)"
                  r"(?P<gp> \(#GP\))?$")
_APIC = re.compile(r"^apic_(?P<rw>read|write) (?P<reg>\w+) = 0x(?P<val>[0-9a-fA-F]+)$")
_QEMU_VCPU = re.compile(r"CPU (\d+)/KVM")


@dataclass(frozen=True)
class TraceIPI:
    """One IPI a guest sent, as reconstructed from the trace."""
    line: int              # line number of its first event
    task: str              # the sending thread, "comm-tid"
    sender: int            # the sender's vCPU ID
    mode: str              # "x2APIC", "xAPIC" or "unknown"
    icr_low: int
    dest: int
    sources: tuple         # events that described it


@dataclass
class ParseResult:
    """What `parse_lines` found."""
    ipis: list = field(default_factory=list)
    lines: int = 0
    unknown_lines: int = 0                            # not a trace record
    other_events: Counter = field(default_factory=Counter)   # records of events not used
    errors: list = field(default_factory=list)        # (line number, message)
    default_mode: str = "x2APIC"                      # for IPIs traced without an ICR event


def _ipi_low(m):
    """ICR bits 31:0 from a ``kvm_apic_ipi`` body, or raise ValueError."""
    if m["mode"] not in DELIVERY_NAMES:
        raise ValueError(f"unknown delivery mode {m['mode']!r}")
    if m["sh"] not in SHORTHAND_NAMES:
        raise ValueError(f"unknown shorthand {m['sh']!r}")
    vector = int(m["vec"])
    if vector > 0xFF:
        raise ValueError(f"vector {vector} is not 0..255")
    return ICRLow.const({
        "vector": vector, "delivery_mode": DeliveryMode(DELIVERY_NAMES.index(m["mode"])),
        "dest_mode": DestMode.LOGICAL if m["dm"] == "logical" else DestMode.PHYSICAL,
        "level": m["level"] == "assert",
        "trigger": TriggerMode.LEVEL if m["trig"] == "level" else TriggerMode.EDGE,
        "shorthand": Shorthand(SHORTHAND_NAMES.index(m["sh"])),
    }).as_bits()


# The fields kvm_apic_ipi prints: what an ICR event must agree on to be the same IPI.
_IPI_FIELDS = ICRLow.const({"vector": 0xFF, "delivery_mode": DeliveryMode.EXTINT,
                            "dest_mode": DestMode.LOGICAL, "level": 1,
                            "trigger": TriggerMode.LEVEL,
                            "shorthand": Shorthand.ALL_EXCLUDING_SELF}).as_bits()


@dataclass
class _Pending:
    line: int
    kind: str          # "ipi" or "icr"
    mode: str
    low: int
    dest: int | None
    source: str


def parse_lines(lines, *, default_mode="x2APIC"):
    """Parse trace text lines (an iterable of str) into a `ParseResult`."""
    if default_mode not in ("x2APIC", "xAPIC"):
        raise ValueError(f"default_mode must be x2APIC or xAPIC, not {default_mode!r}")
    result = ParseResult(default_mode=default_mode)
    pending = {}                         # task -> _Pending not yet paired
    icr2 = {}                            # task -> last xAPIC ICR2 destination
    senders = {}

    def emit(task, first, second=None):
        items = [first] + ([second] if second is not None else [])
        icr = next((i for i in items if i.kind == "icr"), None)
        ipi = next((i for i in items if i.kind == "ipi"), None)
        dest = icr.dest if icr is not None and icr.dest is not None else \
            (ipi.dest if ipi is not None else 0)
        result.ipis.append(TraceIPI(
            min(i.line for i in items), task, senders[task],
            icr.mode if icr is not None else "unknown",
            icr.low if icr is not None else ipi.low, dest,
            tuple(i.source for i in items)))

    def add(task, item):
        prev = pending.pop(task, None)
        if prev is not None and prev.kind != item.kind and \
                (prev.low & _IPI_FIELDS) == (item.low & _IPI_FIELDS):
            emit(task, prev, item)
            return
        if prev is not None:
            emit(task, prev)
        pending[task] = item

    for number, raw in enumerate(lines, 1):
        result.lines += 1
        text = raw.rstrip("\n")
        m = _RECORD.match(text)
        if not m:
            result.unknown_lines += 1
            continue
        task, event, body = f"{m['task']}-{m['pid']}", m["event"], m["body"]
        if task not in senders:
            q = _QEMU_VCPU.search(m["task"])
            senders[task] = int(q.group(1)) if q else 0
        try:
            if event == "kvm_apic_ipi":
                b = _IPI.match(body)
                if not b:
                    raise ValueError("expected 'dst %x vec %u (mode|dest mode|level|trigger|"
                                     "shorthand)'")
                add(task, _Pending(number, "ipi", "unknown", _ipi_low(b), int(b["dst"], 16),
                                   "kvm_apic_ipi"))
            elif event == "kvm_msr":
                b = _MSR.match(body)
                if not b:
                    raise ValueError("expected 'msr_write|msr_read INDEX = 0xVALUE'")
                if b["rw"] != "write" or int(b["idx"], 16) != MSR_X2APIC_ICR or b["gp"]:
                    result.other_events[f"{event} (not an ICR write)"] += 1
                    continue
                value = int(b["val"], 16)
                if value >> 64:
                    raise ValueError(f"ICR value {value:#x} is wider than 64 bits")
                add(task, _Pending(number, "icr", "x2APIC", value & 0xFFFF_FFFF, value >> 32,
                                   "kvm_msr"))
            elif event == "kvm_apic":
                b = _APIC.match(body)
                if not b:
                    raise ValueError("expected 'apic_write|apic_read REGISTER = 0xVALUE'")
                value = int(b["val"], 16)
                if value >> 32:
                    raise ValueError(f"APIC register value {value:#x} is wider than 32 bits")
                if b["rw"] == "write" and b["reg"] == "APIC_ICR2":
                    icr2[task] = value >> 24
                    result.other_events[f"{event} (ICR2)"] += 1
                elif b["rw"] == "write" and b["reg"] == "APIC_ICR":
                    add(task, _Pending(number, "icr", "xAPIC", value, icr2.get(task), "kvm_apic"))
                else:
                    result.other_events[f"{event} (not an ICR write)"] += 1
            else:
                result.other_events[event] += 1
        except ValueError as e:
            result.errors.append((number, f"malformed {event} line: {e}: {body!r}"))
    for task, p in list(pending.items()):
        emit(task, p)
    result.ipis.sort(key=lambda ipi: ipi.line)
    return result


def parse_trace(path, *, default_mode="x2APIC"):
    """Parse a trace file; raises `TraceError` if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            return parse_lines(f, default_mode=default_mode)
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


def _vm_for(ipis, vcpus):
    from .scenarios import build_vm
    if vcpus is None:
        physical = [ipi.dest for ipi in ipis
                    if ICRLow.from_bits(ipi.icr_low).dest_mode == DestMode.PHYSICAL and ipi.dest < 0xFF]
        vcpus = max(physical + [ipi.sender for ipi in ipis] + [1]) + 1
    vcpus = max(vcpus, max([ipi.sender for ipi in ipis] + [0]) + 1)
    return build_vm({v: "running" for v in range(vcpus)}, max_vcpu_ids=vcpus), vcpus


def _requests(vm, ipis, default_mode):
    """Per IPI: (mode, [Request, ...]) as the guest wrote it."""
    from .scenarios import guest_ipi
    out = []
    for ipi in ipis:
        mode = default_mode if ipi.mode == "unknown" else ipi.mode
        cfg = vm.config(ipi.sender, x2apic=mode == "x2APIC")
        out.append((mode, guest_ipi(cfg, ipi.icr_low, ipi.dest, barrier=True)))
    return out


def classify(parsed, *, vcpus=None, model=None):
    """Classify every IPI of a `ParseResult` with the golden model; returns (list of
    `Classified`, number of vCPUs of the replay VM)."""
    from .experiments import kvm_fastpath_eligible
    from .golden import GoldenIPIVirtualizer, Outcome
    from .round_trip import fit, posting_cost
    from .scenarios import deliver_pending
    model = model or fit()
    vm, vcpus = _vm_for(parsed.ipis, vcpus)
    golden = GoldenIPIVirtualizer()
    out = []
    for ipi, (mode, requests) in zip(parsed.ipis, _requests(vm, parsed.ipis,
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


def check_rtl(parsed, classified, *, vcpus, progress=None):
    """Run every IPI through the gateware on Amaranth's simulator (the harness checks every
    output and bus transfer against its own golden run) and compare that run's results with
    ``classified``. Returns a list of disagreements (empty: they agree)."""
    from hdl import IPIVirtualizer
    from tb.amaranth_harness import Harness, MismatchError
    from .golden import Outcome
    from .scenarios import deliver_pending
    vm, _ = _vm_for(parsed.ipis, vcpus)
    per_ipi = _requests(vm, parsed.ipis, parsed.default_mode)
    requests = [r for _, reqs in per_ipi for r in reqs]
    harness = Harness(IPIVirtualizer(), vm.memory,
                      on_barrier=lambda req, *mems: deliver_pending(vm, *mems))
    try:
        run = harness.run(requests, progress=progress)
    except (MismatchError, TimeoutError) as e:
        return [f"gateware and golden model disagree: {e}"]
    results = iter(run.results)
    problems = []
    for c, (_, reqs) in zip(classified, per_ipi):
        rtl = None
        for _ in reqs:
            rtl = next(results)
        same = rtl.outcome is c.result.outcome and rtl.cause == c.result.cause
        if not same:
            problems.append(f"line {c.ipi.line}: replay {c.label}, gateware run "
                            f"{rtl.outcome.value} ({rtl.cause})")
    if sum(1 for e in run.events if e.stream == "notify") != sum(
            1 for c in classified if c.result.outcome is Outcome.POSTED and c.result.notify):
        problems.append("notification count differs between the gateware and the replay")
    return problems


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


def replay(path, *, rtl=False, vcpus=None, default_mode="x2APIC", model=None, progress=None):
    """Parse, classify and (``rtl``) check on the gateware; returns a `Report`."""
    parsed = parse_trace(path, default_mode=default_mode)
    classified, n = classify(parsed, vcpus=vcpus, model=model)
    report = Report(str(path), parsed, classified, n)
    if rtl:
        report.rtl = check_rtl(parsed, classified, vcpus=n, progress=progress)
    return report


def report_json(report):
    p = report.parsed
    outcome = Counter(c.label for c in report.classified)
    return {
        "file": report.path, "lines": p.lines, "ipis": len(report.classified),
        "unknown_lines": p.unknown_lines, "other_events": dict(p.other_events),
        "errors": [{"line": n, "message": m} for n, m in p.errors],
        "replay_vcpus": report.vcpus,
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
    lines = [f"{j['file']}: {j['lines']} lines, {j['ipis']} IPIs "
             f"({j['unknown_lines']} unknown lines and "
             f"{sum(j['other_events'].values())} other events skipped)"]
    for e in j["errors"]:
        lines.append(f"  line {e['line']}: {e['message']}")
    lines.append(f"  replayed in a VM of {j['replay_vcpus']} running vCPUs, IPIv on "
                 f"(golden model)")
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


# -- example traces from the project's co-simulation -----------------------------------------

def _ipi_body(low, dest):
    f = ICRLow.from_bits(low)
    return (f"dst {dest:x} vec {f.vector} ({DELIVERY_NAMES[int(f.delivery_mode.value)]}|"
            f"{'logical' if f.dest_mode == DestMode.LOGICAL else 'physical'}|"
            f"{'assert' if f.level else 'de-assert'}|"
            f"{'level' if f.trigger == TriggerMode.LEVEL else 'edge'}|"
            f"{SHORTHAND_NAMES[int(f.shorthand.value)]})")


def generate_trace(path, *, steps=300, seed=1, x2apic=None, n_vcpus=4, apicv=True):
    """Run `IPIWorld` and write, in ``trace-cmd report`` format, the events a KVM *without*
    IPIv logs for every ICR write its guests made (each one exits).

    ``apicv``: with APICv, xAPIC ICR2 writes do not exit, so no ``APIC_ICR2`` line is traced.
    Returns the number of IPIs written.
    """
    import random
    from .ipi_world import IPIWorld

    rng = random.Random(seed)
    clock = [1000.0]
    out = []

    def record(vcpu, cpu, event, body):
        clock[0] += rng.uniform(0.000001, 0.00004)
        task = f"CPU {vcpu}/KVM-{4100 + vcpu}"
        out.append(f"{task:>18s} [{cpu:03d}] {clock[0]:.6f}: {event + ':':16s} {body}")

    class Recorder(IPIWorld):
        def guest_icr_write(self, sender, low, dest):
            v, cpu = sender.vcpu_id, sender.cpu or 0
            rip = 0xFFFF_FFFF_8100_0000 + 0x40 * rng.randrange(64)
            if sender.apic.x2apic:
                value = (dest & 0xFFFF_FFFF) << 32 | low
                record(v, cpu, "kvm_exit", f"vcpu {v} reason MSR_WRITE rip {rip:#x} info1 0x0 "
                                           f"info2 0x0 intr_info 0x0 error_code 0x0")
                record(v, cpu, "kvm_apic_ipi", _ipi_body(low, dest))
                record(v, cpu, "kvm_msr", f"msr_write 830 = {value:#x}")
            else:
                if not apicv:
                    record(v, cpu, "kvm_apic", f"apic_write APIC_ICR2 = {(dest & 0xFF) << 24:#x}")
                record(v, cpu, "kvm_exit", f"vcpu {v} reason APIC_WRITE rip {rip:#x} info1 0x300 "
                                           f"info2 0x0 intr_info 0x0 error_code 0x0")
                record(v, cpu, "kvm_apic", f"apic_write APIC_ICR = {low:#x}")
                record(v, cpu, "kvm_apic_ipi", _ipi_body(low, dest & 0xFF))
            record(v, cpu, "kvm_entry", f"vcpu {v}, rip {rip + 4:#x}")
            self.stats["traced_ipis"] += 1
            return (yield from super().guest_icr_write(sender, low, dest))

    world = Recorder(n_vcpus=n_vcpus, n_pcpus=n_vcpus, seed=seed, x2apic=x2apic)
    world.run(steps).drain()
    mode = {True: "x2APIC", False: "xAPIC", None: "mixed x2APIC/xAPIC"}[x2apic]
    header = [
        "# Generated by sim.replay.generate_trace from the project's co-simulation (IPIWorld:",
        f"# {n_vcpus} vCPUs, {mode} guests, seed {seed}, {steps} steps): the events a KVM",
        "# without IPIv traces for every ICR write the guests made, in trace-cmd report format.",
        "# Regenerate: .venv/bin/python -m sim.replay generate sim/traces",
        f"cpus={n_vcpus}",
    ]
    with open(path, "w") as f:
        f.write("\n".join(header + out) + "\n")
    return world.stats["traced_ipis"]


EXAMPLES = {
    "ipiworld-x2apic.trace": dict(x2apic=True, seed=1),
    "ipiworld-xapic.trace": dict(x2apic=False, seed=2, apicv=False),
    "ipiworld-mixed.trace": dict(x2apic=None, seed=3),
}


def generate_example_traces(out_dir, *, steps=300):
    """Write the shipped example traces into ``out_dir``; returns {file: IPIs}."""
    import os
    os.makedirs(out_dir, exist_ok=True)
    return {name: generate_trace(os.path.join(out_dir, name), steps=steps, **kw)
            for name, kw in EXAMPLES.items()}


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "generate":
        sys.exit("usage: python -m sim.replay generate DIR")
    for name, n in generate_example_traces(sys.argv[2]).items():
        print(f"{name}: {n} IPIs")

"""The fixed catalogue of timing diagrams (``ipiv sim --timing-diagram DIR``): one request of
each outcome, each on its own small VM, run on Amaranth's simulator and drawn cycle by cycle
(`tb.waves.diagrams`), one set per memory port of the unit (``DIR/classic``,
``DIR/pipelined``), with an index page showing every SVG under its title.

The catalogue does not depend on the ``ipiv sim`` scenario, nor on the test suite: its VM is
laid out by `sim.vm_layout.build_vm` (vCPU 0 sends; vCPUs 1 and 2 run on pCPUs 2 and 3; IDs 3
to 7 have no vCPU, so their PID-pointer entries are not valid) and its requests are built by
`sim.scenarios` (`icr_low`, `guest_ipi`).
"""

import html
import os
from dataclasses import dataclass

from hdl import IPIVirtualizer
from hdl.formats import BUS_KINDS, DestMode, ICRWriteKind, POSTED_INTR_VECTOR, Shorthand
from hdl.params import check_bus
from sim.scenarios import Request, guest_ipi, icr_low
from sim.vm_layout import build_vm, ndst_of, write_routing
from .annotate import request_spans
from .diagrams import wavedrom, write_wavedrom
from .probes import RecordingHarness


__all__ = ["TimingCase", "timing_cases", "timing_run", "timing_diagram",
           "write_timing_diagrams", "catalogue_latency", "memory_timing", "INDEX_NAME"]

INDEX_NAME = "index.html"
SENDER = 0
MAX_VCPU_IDS = 8
#: The catalogue's VM: vCPU id -> state (`sim.vm_layout.TARGET_STATES`).
STATES = {SENDER: "running", 1: "running", 2: "running"}
NO_VCPU = 4                          # an ID below the last index with no vCPU
PIR_READ = 2                         # transfer index of the PIR read: vICR store, entry, PIR


@dataclass(frozen=True)
class TimingCase:
    """One outcome shown alone: ``requests`` on ``memory()``; the last request is the one the
    diagram is about (an xAPIC IPI first writes ICR2)."""
    name: str
    title: str
    memory: object
    requests: list


def _vm():
    return build_vm(STATES, max_vcpu_ids=MAX_VCPU_IDS)


def _memory(*, on=(), error_at=None):
    """A fresh memory of the catalogue's VM; ``on``: targets whose PID has ON set already;
    ``error_at``: the transfer that answers with a bus error."""
    def build():
        vm = _vm()
        for target in on:                # pCPU of vCPU i is i + 1 (build_vm)
            write_routing(vm.memory, vm.pids[target], on=1, sn=0, nv=POSTED_INTR_VECTOR,
                          ndst=ndst_of(target + 1, host_x2apic=True))
        if error_at is not None:
            vm.memory.error_at = {error_at}
        return vm.memory
    return build


def _ipi(dest, low, *, x2apic=True, ipiv=True):
    return guest_ipi(_vm().config(SENDER, x2apic=x2apic, ipiv=ipiv), low, dest)


def timing_cases():
    """One `TimingCase` per outcome: virtualized with notify, suppressed, self-IPI, #GP, and
    every exit (each `ExitCause`, the x2APIC intercept's WRMSR exit among them)."""
    fixed = _memory()
    self_ipi = Request(_vm().config(SENDER, x2apic=False), ICRWriteKind.XAPIC_ICR_LO,
                       icr_low(0x45, shorthand=Shorthand.SELF))
    cases = [
        ("notify", "x2APIC IPI virtualized: PIR set, ON set, notification", fixed,
         _ipi(2, icr_low(0x41))),
        ("suppressed", "x2APIC IPI virtualized, ON already set: no notification",
         _memory(on={1}), _ipi(1, icr_low(0x41))),
        ("xapic-notify", "xAPIC IPI (ICR2 then ICR low) virtualized with notification",
         fixed, _ipi(2, icr_low(0x42), x2apic=False)),
        ("self-ipi", "xAPIC self-IPI: VIRR bit set, self_ipi", fixed, [self_ipi]),
        ("gp", "x2APIC ICR write with reserved bit 13: #GP, nothing stored", fixed,
         _ipi(2, icr_low(0x41, reserved_13=1))),
        ("exit-wrmsr", "x2APIC intercept, IPIv off: WRMSR exit (reason 32), no transfer",
         fixed, _ipi(2, icr_low(0x41), ipiv=False)),
        ("exit-disabled", "xAPIC, IPIv off: APIC-write exit DISABLED", fixed,
         _ipi(2, icr_low(0x41), x2apic=False, ipiv=False)),
        ("exit-unsupported", "x2APIC logical destination: exit UNSUPPORTED", fixed,
         _ipi(2, icr_low(0x41, dest_mode=DestMode.LOGICAL))),
        ("exit-illegal-vector", "x2APIC vector 5: exit ILLEGAL_VECTOR", fixed,
         _ipi(2, icr_low(0x05))),
        ("exit-broadcast", "xAPIC destination 0xFF: exit BROADCAST", fixed,
         _ipi(0xFF, icr_low(0x41), x2apic=False)),
        ("exit-index-range", f"x2APIC destination {MAX_VCPU_IDS} > last index: exit "
         f"INDEX_RANGE", fixed, _ipi(MAX_VCPU_IDS, icr_low(0x41))),
        ("exit-entry-invalid", f"x2APIC destination {NO_VCPU}, no vCPU, entry not valid: "
         f"exit ENTRY_INVALID", fixed, _ipi(NO_VCPU, icr_low(0x41))),
        ("exit-bus-error", "x2APIC IPI, bus error on the PIR read: exit BUS_ERROR",
         _memory(error_at=PIR_READ), _ipi(2, icr_low(0x41))),
    ]
    return [TimingCase(*c) for c in cases]


def catalogue_latency(latency, bus):
    """The memory latency a catalogue of port ``bus`` is drawn at for ``--latency``: a
    pipelined memory answers at least 1 cycle after taking a request (R >= 2), so latency 0
    draws it at 1 (docs/decisions.md#pipelined-issue-order)."""
    return max(1, latency) if bus == "pipelined" else latency


def memory_timing(latency, bus):
    """The memory's timing in words, for titles."""
    if bus == "classic":
        return f"classic port, memory ack {latency} cycle(s) after stb"
    return (f"pipelined port, each answer {latency} cycle(s) after its request is taken, "
            f"R = {latency + 1}")


def timing_run(case, *, latency=1, bus="classic"):
    """Run one `TimingCase` on the unit with memory port ``bus`` on Amaranth's simulator;
    returns (Run, Recording)."""
    harness = RecordingHarness(IPIVirtualizer(bus=bus), case.memory(), latency=latency)
    run = harness.run(case.requests)
    return run, harness.recording


def timing_diagram(case, *, latency=1, bus="classic"):
    """(WaveDrom document, Run, Recording) of one `TimingCase` on port ``bus``: every cycle
    of its run."""
    run, recording = timing_run(case, latency=latency, bus=bus)
    spans = request_spans(run, recording)
    title = f"{case.title} ({memory_timing(latency, bus)})"
    return wavedrom(recording, title=title, spans=spans), run, recording


def write_index(out_dir, cases, *, latencies):
    """``out_dir/index.html``: every outcome under its title, the SVG of each port
    (``latencies``: {bus: latency drawn}, the folders ``out_dir/BUS/``) one under the other,
    in catalogue order."""
    def figure(case, bus):
        return (f'<h3>{html.escape(memory_timing(latencies[bus], bus))}</h3>\n'
                f'<p><img src="{bus}/{case.name}.svg" alt="{html.escape(case.title)}, {bus} '
                f'port"></p>')
    rows = "\n".join(
        f'<h2 id="{c.name}">{html.escape(c.title)} (<code>{c.name}</code>)</h2>\n'
        + "\n".join(figure(c, bus) for bus in latencies) for c in cases)
    timings = "; ".join(memory_timing(lat, bus) for bus, lat in latencies.items())
    path = os.path.join(out_dir, INDEX_NAME)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>IPIv timing diagrams</title></head>
<body>
<h1>IPIv timing diagrams: the fixed catalogue</h1>
<p>One request of each outcome on its own small VM (vCPU 0 sends; vCPUs 1 and 2 run), not
the <code>ipiv sim</code> scenario, on each memory port of the unit; Amaranth's simulator
({html.escape(timings)}), outputs always ready. Each column is one clock cycle; a value is
the one sampled just before the rising edge that ends the cycle.</p>
{rows}
</body></html>
""")
    return path


def write_timing_diagrams(out_dir, *, latency=1, buses=BUS_KINDS, cases=None, progress=None):
    """``out_dir/BUS/NAME.json`` and ``NAME.svg`` for every `timing_cases` entry (or those
    named in ``cases``) on every memory port of ``buses`` (drawn at `catalogue_latency`), then
    the index (`INDEX_NAME`) showing them all; returns the paths, the index last."""
    paths = []
    cases = [c for c in timing_cases() if cases is None or c.name in cases]
    latencies = {bus: catalogue_latency(latency, check_bus(bus)) for bus in buses}
    for bus, lat in latencies.items():
        os.makedirs(os.path.join(out_dir, bus), exist_ok=True)
        for case in cases:
            if progress:
                progress(f"{bus}/{case.name}")
            document, _, _ = timing_diagram(case, latency=lat, bus=bus)
            paths += write_wavedrom(document, os.path.join(out_dir, bus, case.name))
    return paths + [write_index(out_dir, cases, latencies=latencies)]

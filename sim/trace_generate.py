"""Traces from the project's co-simulation (`sim.ipi_world.IPIWorld`), written in the output
forms of the real tools: what a KVM *without* IPIv traces for every ICR write its guests
make, in the event formats of Linux 6.0 or 6.19 (`sim.trace_events`).

Per x2APIC write (a WRMSR exit): ``kvm_exit`` (MSR_WRITE), ``kvm_apic_ipi``, one
``kvm_apic_accept_irq`` for a unicast physical destination (on 6.19's fastpath before the
``kvm_apic_ipi``, which that path traces after delivering), ``kvm_apic: apic_write APIC_ICR``
(64 bits), ``kvm_msr: msr_write 830``, ``kvm_entry``. Per xAPIC write: with APICv, the write
to 310H does not exit and the one to 300H is an APIC-write exit (``kvm_exit`` APIC_WRITE,
``kvm_apic`` APIC_ICR, ``kvm_apic_ipi``, ...); without APICv both are APIC-access exits and
``APIC_ICR2`` is traced too.

Forms (`FORMATS`): ``trace-cmd`` (``trace-cmd report``), ``ftrace`` (the ``trace`` file, with
its header, the irq-info flags and the TGID column), ``perf`` (``perf script``) and ``paste``
(``TIMESTAMP: EVENT: BODY``, as excerpts are pasted into mail).
"""

import os
import random

from hdl.formats import (
    APIC_ACCESS_LINEAR_WRITE, APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO,
    APIC_WRITE_QUALIFICATION_ICR, MSR_X2APIC_ICR, DestMode, Shorthand, X2APICICR, XAPICICRHigh,
)
from .experiments import kvm_fastpath_eligible
from .ipi_world import IPIWorld
from .lapic import APIC_ICR_BUSY
from .trace_events import (
    DEFAULT_KERNEL, DELIVERY_NAMES, check_kernel, entry_body, exit_body, icr_fields, ipi_body,
)


__all__ = ["FORMATS", "EXAMPLES", "generate_trace", "generate_example_traces", "format_line",
           "format_header"]

FORMATS = ("trace-cmd", "ftrace", "perf", "paste")
QEMU_PID = 4000                 # the QEMU process; vCPU thread n is QEMU_PID + 100 + n


def _tid(vcpu):
    return QEMU_PID + 100 + vcpu


def format_line(fmt, vcpu, cpu, ts, event, body):
    """One record of vCPU thread ``vcpu`` (QEMU's name ``CPU n/KVM``) in form ``fmt``."""
    comm, tid = f"CPU {vcpu}/KVM", _tid(vcpu)
    secs, usecs = int(ts), round((ts - int(ts)) * 1e6)
    stamp = f"{secs}.{usecs:06d}"
    if fmt == "trace-cmd":         # trace-read.c: "%16s-%-5d [%03d]" " %6.1000d:" " %s: " pad 20
        return f"{comm:>16}-{tid:<5d} [{cpu:03d}] {stamp:>12}: {event}: " + \
            " " * max(0, 20 - len(event)) + body
    if fmt == "ftrace":   # trace_output.c: "%16s-%-7d " "(%7d) " "[%03d] " flags " %5lu.%06lu: "
        flags = "d...." if event in ("kvm_exit", "kvm_entry") else "....."
        return (f"{comm:>16}-{tid:<7d} ({QEMU_PID:7d}) [{cpu:03d}] {flags} {secs:5d}.{usecs:06d}: "
                f"{event}: {body}")
    if fmt == "perf":              # perf script: comm, tid, [cpu], time, event (right-aligned)
        return f"{comm:>16} {tid:6d} [{cpu:03d}] {stamp}: {'kvm:' + event:>22}: {body}"
    if fmt == "paste":
        return f" {stamp}: {event}: {body}"
    raise ValueError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")


def format_header(fmt, n_cpus, entries, comment):
    """The lines the tool prints before the records, then ``comment`` as ``#`` lines."""
    ours = [f"# {line}" for line in comment]
    if fmt == "trace-cmd":
        return ours + [f"cpus={n_cpus}"]
    if fmt == "ftrace":
        return ["# tracer: nop", "#",
                f"# entries-in-buffer/entries-written: {entries}/{entries}   #P:{n_cpus}",
                "#",
                "#                                          _-----=> irqs-off/BH-disabled",
                "#                                         / _----=> need-resched",
                "#                                        | / _---=> hardirq/softirq",
                "#                                        || / _--=> preempt-depth",
                "#                                        ||| / _-=> migrate-disable",
                "#                                        |||| /     delay",
                "#           TASK-PID       TGID     CPU#  |||||  TIMESTAMP  FUNCTION",
                "#              | |           |         |   |||||     |         |"] + ours
    return ours


def _events(kernel, apicv, n_vcpus, v, x2apic, low, dest, rip):
    """(event, body) of what KVM traces for one ICR write of vCPU ``v``."""
    f = icr_fields(low)
    unicast = (f.shorthand == Shorthand.NONE and f.dest_mode == DestMode.PHYSICAL
               and dest < n_vcpus)
    accept = [("kvm_apic_accept_irq",
               f"apicid {dest:x} vec {f.vector} ({DELIVERY_NAMES[int(f.delivery_mode.value)]}|"
               f"{'level' if f.trigger.value else 'edge'})")] if unicast else []
    ipi = [("kvm_apic_ipi", ipi_body(low, dest))]
    out = []
    if x2apic:
        value = X2APICICR.const({"dest": dest}).as_bits() | low
        out.append(("kvm_exit", exit_body(v, "MSR_WRITE", rip, kernel=kernel)))
        fast = kernel == "6.19" and kvm_fastpath_eligible(low, dest, "x2APIC")
        out += accept + ipi if fast else ipi + accept
        out.append(("kvm_apic", f"apic_write APIC_ICR = {value & ~APIC_ICR_BUSY:#x}"))
        out.append(("kvm_msr", f"msr_write {MSR_X2APIC_ICR:x} = {value:#x}"))
    else:
        if apicv:
            out.append(("kvm_exit", exit_body(v, "APIC_WRITE", rip, APIC_WRITE_QUALIFICATION_ICR,
                                               kernel=kernel)))
        else:
            out.append(("kvm_exit", exit_body(v, "APIC_ACCESS", rip,
                                              APIC_ACCESS_LINEAR_WRITE | APIC_OFFSET_ICR_HI,
                                              kernel=kernel)))
            icr2 = XAPICICRHigh.const({"dest": dest}).as_bits()
            out.append(("kvm_apic", f"apic_write APIC_ICR2 = {icr2:#x}"))
            out.append(("kvm_entry", entry_body(v, rip + 7, kernel=kernel)))
            rip += 7
            out.append(("kvm_exit", exit_body(v, "APIC_ACCESS", rip,
                                              APIC_ACCESS_LINEAR_WRITE | APIC_OFFSET_ICR_LO,
                                              kernel=kernel)))
        out.append(("kvm_apic", f"apic_write APIC_ICR = {low & ~APIC_ICR_BUSY:#x}"))
        out += ipi + accept
    out.append(("kvm_entry", entry_body(v, rip + 4, kernel=kernel)))
    return out


def generate_trace(path, *, steps=300, seed=1, x2apic=None, n_vcpus=4, apicv=True,
                   fmt="trace-cmd", kernel=DEFAULT_KERNEL, events=None):
    """Run `IPIWorld` and write the trace of every ICR write its guests made, in form ``fmt``
    for Linux ``kernel``; ``events``: only these events (as ``trace-cmd record -e`` keeps
    them), default all. Returns the list of (sender, APIC mode, low ICR word, destination)
    written, in order."""
    check_kernel(kernel)
    if fmt not in FORMATS:
        raise ValueError(f"unknown trace format {fmt!r} (known: {', '.join(FORMATS)})")
    rng = random.Random(seed)
    clock = [1000.0]
    records = []
    written = []

    class Recorder(IPIWorld):
        def guest_icr_write(self, sender, low, dest):
            v, cpu = sender.vcpu_id, sender.cpu or 0
            rip = 0xFFFF_FFFF_8100_0000 + 0x40 * rng.randrange(64)
            mode = sender.apic.x2apic
            # xAPIC: the 8-bit ICR2 field keeps the destination's low byte (IPIWorld's write)
            traced = dest if mode else XAPICICRHigh.const({"dest": dest}).dest
            for event, body in _events(kernel, apicv, n_vcpus, v, mode, low, traced, rip):
                clock[0] += rng.uniform(0.000001, 0.00004)
                if events is None or event in events:
                    records.append(format_line(fmt, v, cpu, clock[0], event, body))
            written.append((v, "x2APIC" if mode else "xAPIC", low, traced))
            return (yield from super().guest_icr_write(sender, low, dest))

    world = Recorder(n_vcpus=n_vcpus, n_pcpus=n_vcpus, seed=seed, x2apic=x2apic, kernel=kernel)
    world.run(steps).drain()
    mode = {True: "x2APIC", False: "xAPIC", None: "mixed x2APIC/xAPIC"}[x2apic]
    comment = [
        "Generated by sim.trace_generate.generate_trace from the project's co-simulation",
        f"(IPIWorld: {n_vcpus} vCPUs, {mode} guests, seed {seed}, {steps} steps): what KVM of",
        f"Linux {kernel} without IPIv traces for every ICR write the guests made"
        f"{'' if apicv else ' (APICv off)'}, in {fmt} form"
        f"{'' if events is None else ', events ' + ', '.join(events) + ' only'}.",
        "Regenerate: .venv/bin/python -m sim.replay generate sim/traces",
    ]
    with open(path, "w") as out:
        out.write("\n".join(format_header(fmt, n_vcpus, len(records), comment) + records)
                  + "\n")
    return written


EXAMPLES = {
    "ipiworld-x2apic.trace": dict(x2apic=True, seed=1),
    "ipiworld-xapic.trace": dict(x2apic=False, seed=2, apicv=False),
    "ipiworld-mixed.trace": dict(x2apic=None, seed=3),
    "ipiworld-mixed-ftrace-6.19.trace": dict(x2apic=None, seed=6, fmt="ftrace", kernel="6.19"),
    "ipiworld-x2apic-perf.trace": dict(x2apic=True, seed=5, fmt="perf"),
}


def generate_example_traces(out_dir, *, steps=300):
    """Write the shipped example traces into ``out_dir``; returns {file: IPIs}."""
    os.makedirs(out_dir, exist_ok=True)
    return {name: len(generate_trace(os.path.join(out_dir, name), steps=steps, **kw))
            for name, kw in EXAMPLES.items()}

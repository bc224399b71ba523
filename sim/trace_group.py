"""Grouping trace records into IPIs: one ICR write, however many records describe it.

What KVM traces for one guest ICR write (Linux 6.0 and 6.19, ``arch/x86/kvm/lapic.c`` and
``x86.c``; see `sim.trace_events` for the formats):

- x2APIC, WRMSR exit (no IPIv): ``kvm_exit`` (MSR_WRITE), then ``kvm_apic_ipi`` (from
  ``kvm_apic_send_ipi``), ``kvm_apic: apic_write APIC_ICR`` with the 64-bit value
  (``kvm_x2apic_icr_write``) and ``kvm_msr: msr_write 830``. On 6.19's fastpath the
  ``kvm_apic_ipi`` is traced after the delivery (so after ``kvm_apic_accept_irq``). Kernels
  before the 64-bit x2APIC ICR wrote it as ``APIC_ICR2`` (the whole destination) then
  ``APIC_ICR`` (the low word, which sends: ``kvm_apic_ipi``), then ``kvm_msr``.
- x2APIC, APIC-write exit (IPIv on, value not virtualizable): ``kvm_apic_ipi`` then
  ``kvm_apic: apic_write APIC_ICR`` with the 64-bit value; no ``kvm_msr``.
- xAPIC: ``APIC_ICR2`` (only when the write to 310H exits, i.e. without APICv), then
  ``kvm_apic: apic_write APIC_ICR`` and ``kvm_apic_ipi``.
- A trace may hold only some of these events (``-e kvm_msr``, ``-e kvm_apic_ipi``).

Rules. Records are grouped per sending thread when the form names one (``TASK-PID``, perf's
TID), otherwise by adjacency. An open group takes the next ICR record of its thread if it has
no record of that kind yet (one ``kvm_apic_ipi``, one ``kvm_msr`` 830, one ``APIC_ICR``),
the fields ``kvm_apic_ipi`` prints agree (vector, delivery mode, destination mode, level,
trigger, shorthand), the destinations agree where both say one, and the records are at most
`GAP` seconds apart. ``kvm_exit`` and ``kvm_entry`` close the thread's group (a new exit is a
new instruction). ``APIC_ICR2`` is latched per thread: the destination of the next
``APIC_ICR``. The APIC mode is x2APIC if the group has the ``kvm_msr`` 830 write or a 64-bit
``APIC_ICR``; a 32-bit ``APIC_ICR`` is xAPIC unless its ``APIC_ICR2`` held the whole
destination that ``kvm_apic_ipi`` printed (the older x2APIC path) or the same thread (a
named one) wrote the x2APIC ICR before [model decision: the 6.0 APIC-write path of an x2APIC
write with destination 0 looks like an xAPIC one]. A lone ``kvm_apic_ipi`` takes its
thread's known mode, else "unknown" (the replay's default mode).

The sender is the vCPU of the thread: QEMU's thread name ``CPU n/KVM``, else the ``vcpu N``
of the thread's ``kvm_exit`` / ``kvm_entry`` records; without a thread, the vCPU of the
``kvm_exit`` before the group (or the ``kvm_entry`` after it); else 0 (``sender_known`` False).

Exits alone (a trace of ``kvm_exit`` only, as ``perf kvm stat record`` or ``trace-cmd record -e
kvm_exit`` make): an APIC-write exit at the ICR (``reason APIC_WRITE``, qualification 300H) is
one IPI when no ICR record of its thread follows before the thread's next ``kvm_exit`` or
``kvm_entry`` (`ExitOnlyIPI`: destination and vector unknown). With APICv and without IPIv,
only an xAPIC ICR write ends so (an x2APIC one is a WRMSR exit), so it is taken as xAPIC. A
``MSR_WRITE`` exit says nothing of the MSR: it is an IPI only through its ``kvm_msr`` 830
record; the exits are counted (`Grouping.msr_write_exits`).

``kvm_hypercall`` with ``nr 0xa`` (KVM_HC_SEND_IPI) is counted apart: it is no ICR write. Its
destinations are decoded (`sim.pv_send_ipi`).
"""

import re
from collections import Counter
from dataclasses import dataclass, field

from hdl.formats import APIC_WRITE_QUALIFICATION_ICR, ICR_RESERVED_MASK
from .pv_send_ipi import pv_send_ipi
from .trace_events import (
    EXIT_APIC_WRITE, EXIT_MSR_WRITE, IPI_FIELDS, KVM_HC_SEND_IPI, Boundary, Hypercall,
    ICR2Write, ICRWrite, IPIEvent, check_kernel, split_x2apic, xapic_dest,
)


__all__ = ["TraceIPI", "ExitOnlyIPI", "Grouping", "group_records", "GAP"]

GAP = 100e-6                 # seconds between two records of one ICR write, at most
_QEMU_VCPU = re.compile(r"CPU (\d+)/KVM")


@dataclass(frozen=True)
class TraceIPI:
    """One IPI a guest sent, as reconstructed from the trace."""
    line: int              # line number of its first record
    task: str              # the sending thread as printed ("CPU 0/KVM-7289"), or ""
    sender: int            # the sender's vCPU ID
    mode: str              # "x2APIC", "xAPIC" or "unknown"
    icr_low: int
    dest: int
    sources: tuple         # the records that described it, in trace order
    sender_known: bool = True


@dataclass(frozen=True)
class ExitOnlyIPI:
    """An IPI seen only as its exit: ``kvm_exit`` APIC_WRITE at the ICR (qualification 300H)
    with no record of its thread describing the write. Destination and vector unknown."""
    line: int
    task: str
    sender: int
    mode: str              # "xAPIC": with APICv and without IPIv, only xAPIC ICR writes
    ts: float | None = None
    sender_known: bool = True


@dataclass
class Grouping:
    """What `group_records` found."""
    ipis: list = field(default_factory=list)
    exit_only: list = field(default_factory=list)     # `ExitOnlyIPI`
    pv_send_ipi: int = 0
    pv_send_ipi_lines: list = field(default_factory=list)
    pv_send_ipis: list = field(default_factory=list)  # `sim.pv_send_ipi.PVSendIPI`
    msr_write_exits: int = 0
    notes: list = field(default_factory=list)      # (line or None, message)
    exit_formats: Counter = field(default_factory=Counter)


@dataclass
class _Item:
    line: int
    kind: str             # "ipi", "kvm_msr", "kvm_apic"
    event: object
    ts: float | None

    @property
    def low(self):
        if self.kind == "ipi":
            return self.event.low
        return self.event.value & 0xFFFF_FFFF

    @property
    def dest(self):
        """The destination this record states, or None."""
        if self.kind == "ipi":
            return self.event.dest
        if self.kind == "kvm_msr" or self.event.value >> 32:
            return split_x2apic(self.event.value)[1]
        return None


class _Thread:
    def __init__(self, key, task):
        self.key = key
        self.task = task
        self.items = []
        self.icr2 = None          # (value, line) latched, not yet used
        self.mode = None          # evidence from earlier writes
        self.vcpu = None          # from kvm_exit / kvm_entry
        self.last_vcpu = None     # threadless: the vCPU of the last boundary
        self.exit_ipi = None      # (line, vCPU, ts) of an APIC-write exit at the ICR

    def fits(self, item):
        if any(i.kind == item.kind for i in self.items):
            return False
        if any((i.low & IPI_FIELDS) != (item.low & IPI_FIELDS) for i in self.items):
            return False
        dests = {i.dest for i in self.items + [item]} - {None}
        if len(dests) > 1:
            return False
        last = self.items[-1].ts if self.items else None
        return last is None or item.ts is None or abs(item.ts - last) <= GAP


def _vcpu_of_task(task):
    m = _QEMU_VCPU.search(task or "")
    return int(m.group(1)) if m else None


def group_records(entries, *, kernel):
    """Group ``entries`` (an iterable of (`sim.trace_parse.Record`, decoded event)) into a
    `Grouping`. ``kernel`` ("6.0" or "6.19") is the release that wrote the trace."""
    check_kernel(kernel)
    grouper = _Grouper(kernel)
    for record, event in entries:
        grouper.take(record, event)
    return grouper.finish()


class _Grouper:
    """The state of `group_records`: the threads, and the groups closed so far."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.out = Grouping()
        self.threads = {}
        self.pending = []     # closed groups (thread, items, icr2, hint, mode); senders last

    def thread_of(self, record):
        key = record.thread or ""
        if key not in self.threads:
            label = ""
            if record.task is not None:
                label = record.task + (f"-{record.pid}" if record.pid is not None else "")
            elif record.pid is not None:
                label = f"-{record.pid}"
            self.threads[key] = _Thread(key, label)
        return self.threads[key]

    def close(self, t, next_vcpu=None):
        if not t.items:
            return
        icr2 = t.icr2
        t.icr2 = None
        hint = t.last_vcpu if not t.key else None
        if hint is None and not t.key:
            hint = next_vcpu
        mode = _mode(t.items, icr2, t.mode)
        self.pending.append((t, t.items, icr2, hint, mode))
        if mode != "unknown" and t.key:      # without a thread, the next write is anyone's
            t.mode = mode
        t.items = []

    def settle_exit(self, t):
        """An APIC-write exit at the ICR that no record of its thread described: one IPI
        whose destination and vector the trace does not give."""
        if t.exit_ipi is not None:
            line, vcpu, ts = t.exit_ipi
            t.exit_ipi = None
            sender = vcpu if vcpu is not None else _sender(t, None)
            self.out.exit_only.append(ExitOnlyIPI(line, t.task, sender or 0, "xAPIC", ts,
                                                  sender_known=sender is not None))

    def take(self, record, event):
        t = self.thread_of(record)
        if isinstance(event, Boundary):
            self.boundary(t, record, event)
        elif isinstance(event, Hypercall):
            self.hypercall(t, record, event)
        elif isinstance(event, ICR2Write):
            self.close(t)
            t.icr2 = (event.value, record.line)
        elif isinstance(event, (IPIEvent, ICRWrite)):
            self.icr_record(t, record, event)

    def boundary(self, t, record, event):
        self.out.exit_formats[event.kernel] += 1
        self.settle_exit(t)
        if event.vcpu is not None:
            if t.key:
                t.vcpu = event.vcpu
            self.close(t, next_vcpu=event.vcpu)
            t.last_vcpu = event.vcpu
        else:
            self.close(t)
        if event.event != "kvm_exit":
            return
        if event.reason == EXIT_APIC_WRITE and event.info1 == APIC_WRITE_QUALIFICATION_ICR:
            t.exit_ipi = (record.line, event.vcpu, record.ts)
        elif event.reason == EXIT_MSR_WRITE:
            self.out.msr_write_exits += 1

    def hypercall(self, t, record, event):
        if event.nr != KVM_HC_SEND_IPI:
            return
        self.out.pv_send_ipi += 1
        self.out.pv_send_ipi_lines.append(record.line)
        if event.args is not None:
            sender = _sender(t, t.last_vcpu if not t.key else None)
            self.out.pv_send_ipis.append(pv_send_ipi(record.line, t.task, sender, event.args))

    def icr_record(self, t, record, event):
        t.exit_ipi = None                 # the records describe the exit's write
        if isinstance(event, IPIEvent):
            item = _Item(record.line, "ipi", event, record.ts)
        else:
            item = _Item(record.line, event.source, event, record.ts)
            if self.kernel == "6.19" and event.source == "kvm_msr" and \
                    event.value & ICR_RESERVED_MASK:
                self.out.notes.append((record.line, f"Linux 6.19 refuses x2APIC ICR value "
                                                    f"{event.value:#x} (reserved bits set) "
                                                    f"with #GP, but the trace shows it written"))
        if not t.fits(item):
            self.close(t)
        t.items.append(item)

    def finish(self):
        out = self.out
        for t in self.threads.values():
            self.settle_exit(t)
            self.close(t)
        for t, items, icr2, hint, mode in self.pending:
            out.ipis.append(_ipi(t, items, icr2, hint, mode))
        out.ipis.sort(key=lambda ipi: ipi.line)
        out.exit_only.sort(key=lambda ipi: ipi.line)
        seen = {k for k in out.exit_formats if k is not None}
        if seen and self.kernel not in seen:
            out.notes.append((None, f"the kvm_exit/kvm_entry records have the format of Linux "
                                    f"{' and '.join(sorted(seen))}, not of {self.kernel} "
                                    f"(--kernel)"))
        return out


def _sender(t, hint):
    """The vCPU of thread ``t`` (QEMU's thread name, else its kvm_exit/kvm_entry), else
    ``hint``; None when nothing says."""
    sender = _vcpu_of_task(t.task)
    if sender is None and t.key:
        sender = t.vcpu
    return hint if sender is None else sender


def _mode(items, icr2, known):
    kinds = {i.kind: i for i in items}
    if "kvm_msr" in kinds or ("kvm_apic" in kinds and kinds["kvm_apic"].event.value >> 32):
        return "x2APIC"
    if "kvm_apic" in kinds:
        if icr2 is not None and "ipi" in kinds:
            value = icr2[0]
            if value == kinds["ipi"].dest and xapic_dest(value) != kinds["ipi"].dest:
                return "x2APIC"          # the split write of kernels before the 64-bit ICR
            return "xAPIC"
        return known if known == "x2APIC" else "xAPIC"
    return known or "unknown"


def _ipi(t, items, icr2, hint, mode):
    kinds = {i.kind: i for i in items}
    icr = kinds.get("kvm_msr") or kinds.get("kvm_apic")
    low = icr.low if icr is not None else kinds["ipi"].low
    dests = [i.dest for i in items if i.dest is not None]
    if dests:
        dest = dests[0]
    elif icr2 is not None:
        dest = xapic_dest(icr2[0]) if mode == "xAPIC" else icr2[0]
    else:
        dest = 0
    sources = tuple(["kvm_apic (ICR2)"] if icr2 is not None else []) + \
        tuple("kvm_apic_ipi" if i.kind == "ipi" else i.kind for i in items)
    sender = _sender(t, hint)
    first = min([i.line for i in items] + ([icr2[1]] if icr2 is not None else []))
    return TraceIPI(first, t.task, sender if sender is not None else 0, mode, low, dest,
                    sources, sender_known=sender is not None)

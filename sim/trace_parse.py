"""The line formats of tracepoint output: which lines of a text are trace records, and what
their columns say. Nothing here knows what an event means (`sim.trace_events` does).

Forms recognized (the prefix before ``EVENT: BODY``; Linux ``kernel/trace/trace_output.c``
trace_print_context / lat_print_generic, trace-cmd ``tracecmd/trace-read.c`` trace_show_data,
perf script's default fields for tracepoints):

``ftrace``       ``TASK-PID [(TGID)] [CPU] [FLAGS] SECS.USECS:`` (``trace``, ``trace_pipe``,
                 ``trace-cmd report`` with or without its latency column); FLAGS are the 4 or
                 5 (or, on some kernels, up to 7) irq/preempt columns, e.g. ``d..1`` or ``d..2.``
``latency``      ``TASK8-PID CPUFLAGS SECS.USECS:`` (``trace-cmd report -l``: CPU without
                 brackets, flags glued to it)
``perf``         ``COMM [PID/]TID [FLAGS] [CPU] [FLAGS] SECS.FRACTION:`` and ``SYSTEM:EVENT``,
                 the event name right-aligned
``task``         ``COMM [CPU] [FLAGS] SECS.USECS:`` (a thread name without its id)
``timestamp``    ``SECS.USECS: EVENT: BODY`` (task column cut off when pasted)
``task-pid``     ``COMM-PID: EVENT: BODY``
``bare``         ``EVENT: BODY`` alone (only for the KVM tracepoints, `KVM_EVENTS`, so that
                 prose such as ``Note: ...`` or a ``kvm_intel: ...`` printk is no record)

Task names may hold spaces, slashes and dashes (``CPU 0/KVM``, ``qemu-system-x86``, ``<...>``).
Every Unicode space counts as a space, zero-width characters are dropped, and mail quoting
(``> ``) is removed before a line is read. A line whose record is cut in two by a mail client
(the prefix on one line and ``EVENT: BODY`` on the next, or ``EVENT:`` with its body on the
next) is joined back. ``#`` lines and the headers trace-cmd prints (``cpus=N``, ``CPU N is
empty``, ``CPU:N [EVENTS DROPPED]``...) are comments; anything else is an unknown line.
"""

import re
from dataclasses import dataclass


__all__ = ["Record", "Line", "normalize", "classify_line", "iter_lines", "FORMS", "KVM_EVENTS",
           "is_kvm_event"]

FORMS = ("ftrace", "latency", "perf", "task", "timestamp", "task-pid", "bare")

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACE = re.compile(r"\s+")                     # str patterns: every Unicode space
_QUOTE = re.compile(r"^(?:\s*>)+")

# One ``[SYSTEM:]EVENT:`` token, preceded by a space or the start of the line.
_EVENT = re.compile(r"(?:(?<=\s)|^)(?:(?P<sys>[A-Za-z_]\w*):)?(?P<event>[A-Za-z_]\w*):(?=\s|$)")

_TS = r"(?P<ts>\d+\.\d+)"
_FLAGS = r"[.A-Za-z0-9]{4,7}"
_PREFIXES = (
    ("ftrace", re.compile(
        r"^(?P<task>.*?\S)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>-+|\d+)\)\s+)?\[(?P<cpu>\d+)\]"
        rf"(?:\s+(?P<flags>{_FLAGS}))?\s+{_TS}$")),
    ("latency", re.compile(
        r"^(?P<task>.*?\S)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>[.A-Za-z][.A-Za-z0-9]{3,6})"
        rf"\s+{_TS}$")),
    ("perf", re.compile(
        r"^(?P<task>.*?\S)\s+(?:(?P<tgid>\d+)/)?(?P<pid>\d+)\s+(?:(?P<flags>" + _FLAGS +
        r")\s+)?\[(?P<cpu>\d+)\](?:\s+(?P<flags2>" + _FLAGS + rf"))?\s+{_TS}$")),
    ("task", re.compile(
        rf"^(?P<task>.*?\S)\s+\[(?P<cpu>\d+)\](?:\s+(?P<flags>{_FLAGS}))?\s+{_TS}$")),
    ("timestamp", re.compile(rf"^{_TS}$")),
    ("task-pid", re.compile(r"^(?P<task>.*?\S)-(?P<pid>\d+)$")),
)

# trace-cmd report's own lines (besides the records).
_HEADERS = re.compile(
    r"^(?:cpus=\d+|version\s*=\s*\S+|CPU\s*\d+ is empty|"
    r"CPU:\s*\d+\s*\[(?:\d+\s+)?(?:EVENTS DROPPED|SUBBUFFER START)\].*)$")

# The KVM tracepoints of Linux 6.0 and 6.19 (TRACE_EVENT / DEFINE_EVENT names in
# arch/x86/kvm/trace.h, arch/x86/kvm/mmu/mmutrace.h, include/trace/events/kvm.h): the only
# events accepted in the bare ``EVENT: BODY`` form, so that ``kvm_intel: ...`` printk lines
# and prose are not taken for records. The MMU's events are matched by prefix.
KVM_EVENTS = frozenset({
    "kvm_ack_irq", "kvm_age_hva", "kvm_apic", "kvm_apic_accept_irq", "kvm_apic_ipi",
    "kvm_apicv_accept_irq", "kvm_apicv_inhibit_changed", "kvm_async_pf_not_present",
    "kvm_async_pf_ready", "kvm_async_pf_repeated_fault", "kvm_avic_doorbell",
    "kvm_avic_ga_log", "kvm_avic_incomplete_ipi", "kvm_avic_kick_vcpu_slowpath",
    "kvm_avic_unaccelerated_access", "kvm_cpuid", "kvm_cr", "kvm_dirty_ring_exit",
    "kvm_dirty_ring_push", "kvm_dirty_ring_reset", "kvm_emulate_insn", "kvm_entry", "kvm_eoi",
    "kvm_exit", "kvm_fast_mmio", "kvm_fpu", "kvm_halt_poll_ns", "kvm_hv_flush_tlb",
    "kvm_hv_flush_tlb_ex", "kvm_hv_hypercall", "kvm_hv_hypercall_done",
    "kvm_hv_notify_acked_sint", "kvm_hv_send_ipi", "kvm_hv_send_ipi_ex",
    "kvm_hv_stimer_callback", "kvm_hv_stimer_cleanup", "kvm_hv_stimer_expiration",
    "kvm_hv_stimer_set_config", "kvm_hv_stimer_set_count", "kvm_hv_stimer_start_one_shot",
    "kvm_hv_stimer_start_periodic", "kvm_hv_syndbg_get_msr", "kvm_hv_syndbg_set_msr",
    "kvm_hv_synic_send_eoi", "kvm_hv_synic_set_irq", "kvm_hv_synic_set_msr",
    "kvm_hv_timer_state", "kvm_hypercall", "kvm_inj_exception", "kvm_inj_virq", "kvm_invlpga",
    "kvm_ioapic_delayed_eoi_inj", "kvm_ioapic_set_irq", "kvm_mmio", "kvm_msi_set_irq",
    "kvm_msr", "kvm_nested_intercepts", "kvm_nested_intr_vmexit", "kvm_nested_vmenter",
    "kvm_nested_vmenter_failed", "kvm_nested_vmexit", "kvm_nested_vmexit_inject",
    "kvm_nested_vmrun", "kvm_page_fault", "kvm_pi_irte_update", "kvm_pic_set_irq", "kvm_pio",
    "kvm_ple_window_update", "kvm_pml_full", "kvm_pv_eoi", "kvm_pv_tlb_flush",
    "kvm_pvclock_update", "kvm_rmp_fault", "kvm_set_irq", "kvm_set_spte_hva", "kvm_skinit",
    "kvm_smm_transition", "kvm_test_age_hva", "kvm_track_tsc", "kvm_try_async_get_page",
    "kvm_unmap_hva_range", "kvm_update_master_clock", "kvm_userspace_exit", "kvm_vcpu_wakeup",
    "kvm_vm_set_mem_attributes", "kvm_vmgexit_enter", "kvm_vmgexit_exit",
    "kvm_vmgexit_msr_protocol_enter", "kvm_vmgexit_msr_protocol_exit", "kvm_wait_lapic_expire",
    "kvm_write_tsc_offset", "kvm_xen_hypercall",
})
_KVM_EVENT_PREFIXES = ("kvm_mmu_", "kvm_tdp_mmu_", "kvmmmu_")


def is_kvm_event(name):
    """True for a KVM tracepoint name (see `KVM_EVENTS`)."""
    return name in KVM_EVENTS or name.startswith(_KVM_EVENT_PREFIXES)


@dataclass(frozen=True)
class Record:
    """One trace record: where it was, who traced it, and the event's name and text."""
    line: int                 # 1-based line number (of its first line, if joined)
    form: str                 # one of FORMS
    event: str
    body: str
    task: str | None = None   # thread name as printed ("CPU 0/KVM", "<...>")
    pid: int | None = None    # thread id
    cpu: int | None = None
    ts: float | None = None   # seconds
    system: str | None = None

    @property
    def thread(self):
        """A key for the sending thread, or None when the form does not say."""
        if self.pid is not None:
            return f"pid:{self.pid}"
        if self.task is not None:
            return f"task:{self.task}"
        return None


@dataclass(frozen=True)
class Line:
    """What one input line (or two joined lines) is: ``kind`` is "record", "comment",
    "blank" or "unknown"; ``record`` is set for records; ``lines`` is how many input lines
    it took."""
    number: int
    kind: str
    record: Record | None = None
    lines: int = 1


def normalize(raw):
    """A line with every Unicode space made one space, zero-width characters and mail
    quoting removed, and no surrounding spaces."""
    text = raw.translate(_ZERO_WIDTH)
    text = _SPACE.sub(" ", text).strip()
    m = _QUOTE.match(text)
    if m:
        text = text[m.end():].strip()
    return text


def _prefix(text):
    """(form, match) for a record prefix (without its trailing colon), or None."""
    if not text:
        return "bare", None
    for form, pattern in _PREFIXES:
        m = pattern.match(text)
        if m:
            return form, m
    return None


def _record(number, text):
    """The `Record` in a normalized line, or None."""
    for ev in _EVENT.finditer(text):
        head = text[:ev.start()].rstrip()
        if head.endswith(":"):
            head = head[:-1].rstrip()
        found = _prefix(head)
        if found is None:
            continue
        form, m = found
        event = ev["event"]
        if form == "bare" and not is_kvm_event(event):
            return None
        fields = m.groupdict() if m is not None else {}
        return Record(
            line=number, form=form, event=event, body=text[ev.end():].strip(),
            task=fields.get("task"),
            pid=int(fields["pid"]) if fields.get("pid") else None,
            cpu=int(fields["cpu"]) if fields.get("cpu") else None,
            ts=float(fields["ts"]) if fields.get("ts") else None,
            system=ev["sys"])
    return None


def classify_line(number, raw):
    """The `Line` for one input line, on its own."""
    text = normalize(raw)
    if not text:
        return Line(number, "blank")
    if text.startswith("#") or _HEADERS.match(text):
        return Line(number, "comment")
    record = _record(number, text)
    if record is not None:
        return Line(number, "record", record)
    return Line(number, "unknown")


def _prefix_only(text):
    """True if a normalized line is a record prefix ending in ``TIMESTAMP:`` and nothing
    else (its event was wrapped onto the next line)."""
    if not text.endswith(":"):
        return False
    found = _prefix(text[:-1].rstrip())
    return found is not None and found[0] not in ("bare", "task-pid")


def iter_lines(lines):
    """`Line` after `Line` for an iterable of text lines, joining records a mail client cut
    in two."""
    number = 0
    pending = None            # (number, normalized text) of a wrapped record's first line
    for raw in lines:
        number += 1
        text = normalize(raw)
        line = classify_line(number, raw)
        if pending is not None:
            first, head, wants = pending
            pending = None
            fits = line.kind == "unknown" or (wants == "event" and line.kind == "record" and
                                              line.record.form == "bare")
            joined = _record(first, f"{head} {text}") if fits else None
            if joined is not None and joined.body:
                yield Line(first, "record", joined, lines=2)
                continue
            yield classify_line(first, head)
        if line.kind == "unknown" and _prefix_only(text):
            pending = (number, text, "event")
            continue
        if line.kind == "record" and not line.record.body:
            pending = (number, text, "body")
            continue
        yield line
    if pending is not None:
        yield classify_line(*pending[:2])

"""``perf kvm stat report`` summaries: the tables, and the IPIs they count.

What perf prints (``tools/perf/builtin-kvm.c`` ``print_result``, the same in Linux 6.0 and
6.19 but for the width of the first column: 20 characters in 6.0, ``KVM_EVENT_NAME_LEN`` 40
in 6.19): ``Analyze events for all VMs, all VCPUs:``, a header ``NAME Samples Samples% Time%
Min Time Max Time Avg time``, one row per key ``KEY COUNT P.PP% P.PP% M.MMus M.MMus
A.AAus ( +- S.SS% )``, then ``Total Samples:N, Total events handled time:T.TTus.``. NAME and
KEY depend on ``--event`` (``tools/perf/arch/x86/util/kvm-stat.c``):

- ``vmexit``: ``VM-EXIT``; KEY is Linux's name of the exit reason (``VMX_EXIT_REASONS``).
- ``mmio``: ``MMIO Access``; KEY ``%#lx:%s``, the guest-physical address and ``R``/``W``, from
  ``kvm_mmio`` (an emulated access: the xAPIC page without APICv).
- ``msr``: ``MSR Access``; KEY ``%#llx:%s``, the MSR index and ``R``/``W``, from ``kvm_msr``
  (KVM traces it for every emulated WRMSR, the IPI fastpath's included).
- ``ioport``: ``IO Port Access`` (no IPI).

IPIs (`count_ipis`): each ``0x830:W`` is an x2APIC ICR write; each ``0xfee00300:W`` an xAPIC
ICR write, whose ``0xfee00310:W`` (ICR2, the destination) is half of the same IPI, not
another; each ``APIC_WRITE`` exit an ICR write [model decision: with APICv, an x2APIC guest's
APIC-write exits can only be ICR writes (IPIv on), an xAPIC guest's also writes to the timer,
LVT, ESR, LDR, DFR, SVR or ID registers, which the summary does not tell apart; counted as
ICR writes, an upper bound, and the report says so]. ``MSR_WRITE`` and ``VMCALL`` exits are no
IPI count (the MSR, the hypercall are not in the summary).
"""

import re
from dataclasses import dataclass, field

from hdl.formats import APIC_DEFAULT_PHYS_BASE, MSR_X2APIC_ICR, APICRegister
from .replay_estimate import EstimatedIPIs
from .trace_events import EXIT_APIC_WRITE, EXIT_MSR_WRITE, EXIT_VMCALL
from .trace_parse import normalize


__all__ = ["TABLES", "StatTable", "StatReport", "parse_stat_report", "count_ipis",
           "ICR_MMIO", "ICR2_MMIO", "ICR_MSR"]

TABLES = {"VM-EXIT": "vmexit", "MMIO Access": "mmio", "IO Port Access": "ioport",
          "MSR Access": "msr"}
ICR_MSR = f"{MSR_X2APIC_ICR:#x}:W"
ICR_MMIO = f"{APIC_DEFAULT_PHYS_BASE + APICRegister.ICR:#x}:W"
ICR2_MMIO = f"{APIC_DEFAULT_PHYS_BASE + APICRegister.ICR2:#x}:W"

_HEADER = re.compile(r"^(?P<name>" + "|".join(map(re.escape, TABLES)) +
                     r") Samples Samples% Time% Min Time Max Time Avg time$")
_ROW = re.compile(r"^(?P<key>\S+) (?P<count>\d+) \S+% \S+% \S+us \S+us \S+us "
                  r"\( ?\+- ?\S+% ?\)$")
_ROW_START = re.compile(r"^\S+ \d+ \d+\.\d+%")       # a row cut by a mail client
_COMMENTS = re.compile(r"^(?:Analyze events for .*|Total Samples:\s*\d+,.*|Lost events: \d+|"
                       r"#.*|\d\d:\d\d:\d\d\.\d{6})$")


@dataclass
class StatTable:
    """One table: ``event`` (vmexit, mmio, msr, ioport), the line of its header, and its
    rows {KEY: samples}."""
    event: str
    line: int
    rows: dict = field(default_factory=dict)


@dataclass
class StatReport:
    """The tables of a text, and how its lines were read."""
    tables: list = field(default_factory=list)
    lines: int = 0
    rows: int = 0
    comment_lines: int = 0
    unknown_lines: int = 0

    def samples(self, event, key):
        """Samples of ``key`` over every table of ``event``."""
        return sum(t.rows.get(key, 0) for t in self.tables if t.event == event)

    @property
    def events(self):
        return sorted({t.event for t in self.tables})


def _join_cut_rows(lines):
    """(number, text) per line, a row cut in two by a mail client joined back."""
    texts = [normalize(line) for line in lines]
    i = 0
    while i < len(texts):
        text = texts[i]
        if not _ROW.match(text) and _ROW_START.match(text) and i + 1 < len(texts) and \
                _ROW.match(f"{text} {texts[i + 1]}"):
            yield i + 1, f"{text} {texts[i + 1]}", 2
            i += 2
            continue
        yield i + 1, text, 1
        i += 1


def parse_stat_report(lines):
    """The `StatReport` of a text (a list of lines), or None if it has no table header."""
    out = StatReport()
    table = None
    for number, text, taken in _join_cut_rows(lines):
        out.lines += taken
        header = _HEADER.match(text)
        row = _ROW.match(text) if table is not None else None
        if header:
            table = StatTable(TABLES[header["name"]], number)
            out.tables.append(table)
            out.comment_lines += 1
        elif row:
            table.rows[row["key"]] = table.rows.get(row["key"], 0) + int(row["count"])
            out.rows += 1
        elif not text or _COMMENTS.match(text):
            out.comment_lines += bool(text)
        else:
            out.unknown_lines += 1
    return out if out.tables else None


def count_ipis(report):
    """(list of `EstimatedIPIs`, list of notes, {row: samples} of rows that are no IPI)."""
    estimated, notes = [], []
    x2apic = report.samples("msr", ICR_MSR)
    xapic = report.samples("mmio", ICR_MMIO)
    icr2 = report.samples("mmio", ICR2_MMIO)
    apic_write = report.samples("vmexit", EXIT_APIC_WRITE)
    if x2apic:
        estimated.append(EstimatedIPIs(f"{ICR_MSR} (perf kvm stat --event=msr)", "x2APIC",
                                       x2apic))
    if xapic or icr2:
        estimated.append(EstimatedIPIs(f"{ICR_MMIO} (perf kvm stat --event=mmio)", "xAPIC",
                                       xapic, extra_exits=icr2))
    if icr2:
        notes.append(f"{icr2} ICR2 writes ({ICR2_MMIO}) are the destination halves of the "
                     f"{xapic} xAPIC ICR writes, not more IPIs; their exits go away with APICv, "
                     f"which IPIv needs (counted in the exits removed, not priced)")
    if apic_write:
        estimated.append(EstimatedIPIs(f"{EXIT_APIC_WRITE} exits (perf kvm stat "
                                       f"--event=vmexit)", "xAPIC", apic_write))
        notes.append(f"the {apic_write} {EXIT_APIC_WRITE} exits are counted as ICR writes: in "
                     f"x2APIC mode they can only be ICR writes, in xAPIC mode writes to the "
                     f"timer, LVT, ESR, LDR, DFR, SVR and ID registers exit so too, so this "
                     f"is an upper bound (a kvm_exit trace tells them apart: qualification "
                     f"300 is the ICR)")
    _unattributed_exits(report, notes)
    counted = {("msr", ICR_MSR), ("mmio", ICR_MMIO), ("mmio", ICR2_MMIO),
               ("vmexit", EXIT_APIC_WRITE)}
    others = {}
    for t in report.tables:
        for key, n in t.rows.items():
            if (t.event, key) not in counted:
                others[f"{t.event} {key}"] = others.get(f"{t.event} {key}", 0) + n
    return estimated, notes, others


def _unattributed_exits(report, notes):
    """Notes on the exits of a vmexit table that may hold IPIs the summary cannot show."""
    wrmsr = report.samples("vmexit", EXIT_MSR_WRITE)
    if wrmsr and "msr" not in report.events:
        notes.append(f"{wrmsr} {EXIT_MSR_WRITE} exits: which MSR each wrote is not in this "
                     f"table (x2APIC IPIs are the {ICR_MSR} rows of `perf kvm stat report "
                     f"--event=msr`); not counted")
    vmcall = report.samples("vmexit", EXIT_VMCALL)
    if vmcall:
        notes.append(f"{vmcall} {EXIT_VMCALL} exits: hypercalls, KVM's PV send-IPI among "
                     f"them; a trace of kvm_hypercall tells which (nr 0xa) and to whom")

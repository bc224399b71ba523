"""The report of `sim.replay`: the figures once (`report_json`), and the same as text
(`format_report`).

An IPI is either classified by the golden model (`sim.replay.Classified`: its outcome, its
destination) or known only by count (`sim.replay_estimate.EstimatedIPIs`: an exit-only trace,
a ``perf kvm stat`` summary), virtualized with the assumed share ``virtualizable``; the tables
give the latter as ``destination unknown``. Destinations are told apart by kind: a physical
APIC ID, a logical destination, a shorthand (self, all, all-but-self) or the broadcast ID
(FFH in xAPIC mode, FFFFFFFFH in x2APIC mode), so that logical 2 is not physical ID 2.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from hdl.formats import (
    X2APIC_BROADCAST_ID, XAPIC_BROADCAST_ID, DestMode, ICRLow, Shorthand,
)
from .pv_send_ipi import VARIANTS
from .replay_estimate import estimated_saving
from .trace_events import SHORTHAND_NAMES


__all__ = ["Report", "report_json", "format_report", "destination", "DEST_KINDS", "UNKNOWN",
           "PV_SEND_IPI_NOTE", "TOP"]

UNKNOWN = "destination unknown"
DEST_KINDS = ("physical", "logical", "shorthand", "broadcast", "unknown")
TOP = 10     # rows of the per-vector and per-destination lines in the text report
PV_SEND_IPI_NOTE = (
    "KVM's paravirtual send-IPI hypercall (kvm_hypercall nr 0xa, KVM_HC_SEND_IPI): the guest "
    "asks KVM by VMCALL for a set of destinations and writes no ICR, so IPIv does nothing for "
    "these IPIs; a guest that uses it makes few ICR writes, and the ICR IPIs replayed here "
    "are only part of its IPIs.")


def destination(icr_low, dest, mode):
    """(kind, label) of an IPI's destination: kind is one of `DEST_KINDS`."""
    f = ICRLow.from_bits(icr_low & 0xFFFF_FFFF)
    if f.shorthand != Shorthand.NONE:
        return "shorthand", SHORTHAND_NAMES[int(f.shorthand.value)]
    if dest == (XAPIC_BROADCAST_ID if mode == "xAPIC" else X2APIC_BROADCAST_ID):
        return "broadcast", "broadcast"
    kind = "logical" if f.dest_mode == DestMode.LOGICAL else "physical"
    return kind, f"{kind} {dest:#x}"


@dataclass
class Report:
    """Everything `sim.replay.replay` found, ready for text or JSON. ``source`` is "trace" or
    "perf-kvm-stat"; ``encoding`` "quoted-printable" when the input was decoded first."""
    path: str
    parsed: object                   # `sim.replay.ParseResult`
    classified: list
    vcpus: int | None
    rtl: list | None = None          # disagreements, None when not run
    source: str = "trace"
    encoding: str | None = None
    estimated: list = field(default_factory=list)     # `EstimatedIPIs`
    virtualizable: float = 1.0
    model: object = None             # `sim.round_trip.RoundTripModel`
    pv: object = None                # `sim.pv_send_ipi.PVPricing`, None when no call
    stat: object = None              # `sim.perf_kvm_stat.StatReport`

    def counts(self, key):
        table = defaultdict(Counter)
        for c in self.classified:
            table[key(c)]["ipis"] += 1
            table[key(c)]["virtualized"] += c.virtualized
        return table

    def estimates(self):
        """[(EstimatedIPIs, virtualized, cycles saved, exits removed)]."""
        f = self.virtualizable
        return [(e, e.virtualized(f), e.count * estimated_saving(self.model, e.mode, f),
                 e.exits_removed(f)) for e in self.estimated]


def _num(x):
    """An int when ``x`` is whole (counts), else ``x`` rounded."""
    return int(round(x)) if abs(x - round(x)) < 1e-9 else round(x, 3)


def _add(table, key, ipis, virtualized, **extra):
    row = table.setdefault(key, {**extra, "ipis": 0, "virtualized": 0})
    row["ipis"] += ipis
    row["virtualized"] = _num(row["virtualized"] + virtualized)


def _tables(report):
    """outcomes, per_mode, per_vector, per_destination, per_destination_kind."""
    outcomes = dict(Counter(c.label for c in report.classified))
    per_mode, per_vector, per_dest, per_kind = {}, {}, {}, {}
    for c in report.classified:
        kind, label = destination(c.ipi.icr_low, c.ipi.dest, c.mode)
        _add(per_mode, c.mode, 1, c.virtualized)
        _add(per_vector, str(ICRLow.from_bits(c.ipi.icr_low & 0xFFFF_FFFF).vector), 1,
             c.virtualized)
        _add(per_dest, label, 1, c.virtualized, kind=kind,
             id=c.ipi.dest if kind in ("physical", "logical") else None)
        _add(per_kind, kind, 1, c.virtualized)
    for e, virtualized, _, _ in report.estimates():
        outcomes[UNKNOWN] = outcomes.get(UNKNOWN, 0) + e.count
        _add(per_mode, e.mode, e.count, virtualized)
        _add(per_vector, "unknown", e.count, virtualized)
        _add(per_dest, "unknown", e.count, virtualized, kind="unknown", id=None)
        _add(per_kind, "unknown", e.count, virtualized)
    return {"outcomes": outcomes, "per_mode": per_mode,
            "per_vector": dict(sorted(per_vector.items(), key=_vector_order)),
            "per_destination": per_dest,
            "per_destination_kind": {k: per_kind[k] for k in DEST_KINDS if k in per_kind}}


def _vector_order(item):
    return (item[0] == "unknown", int(item[0]) if item[0] != "unknown" else 0)


def _savings(report, ipis):
    """cycles saved (total, per IPI, per outcome), exits removed, and the rates."""
    per_outcome = defaultdict(float)
    exits = 0.0
    for c in report.classified:
        per_outcome[c.label] += c.saved
        icr2_exit = c.mode == "xAPIC" and "kvm_apic (ICR2)" in c.ipi.sources
        exits += c.virtualized + icr2_exit       # the ICR2 exit goes with APICv
    for _, _, saved, removed in report.estimates():
        per_outcome[UNKNOWN] += saved
        exits += removed
    total = sum(per_outcome.values())
    p = report.parsed
    duration = None
    if p.first_ts is not None and p.last_ts is not None and p.last_ts > p.first_ts:
        duration = p.last_ts - p.first_ts
    return {
        "cycles_saved": total, "cycles_saved_per_ipi": total / max(1, ipis),
        "cycles_saved_per_outcome": dict(per_outcome), "exits_removed": _num(exits),
        "duration_s": duration,
        "ipis_per_s": ipis / duration if duration else None,
        "cycles_saved_per_s": total / duration if duration else None,
    }


def _pv_json(report):
    pv = report.pv
    calls = report.parsed.pv_send_ipis
    dests = Counter(f"physical {d:#x}" for call in calls for d in call.destinations)
    out = {"decoded": len(calls), "destinations": dict(dests), "priced": None}
    if pv is not None:
        out["priced"] = {
            "calls": pv.calls, "destinations": pv.destinations,
            "per_fanout": {str(n): k for n, k in sorted(pv.per_fanout.items())},
            "refused": pv.refused, "empty": pv.empty, "bus": pv.bus,
            "sender_cycles": pv.sender_cycles, "last_target_cycles": pv.last_target_cycles,
            "saved_by_icr_writes": pv.saved_by_icr_writes,
            "saved_keeping_hypercall": pv.saved_keeping_hypercall}
    return out


def report_json(report):
    p = report.parsed
    ipis = len(report.classified) + sum(e.count for e in report.estimated)
    virtualized = _num(sum(c.virtualized for c in report.classified) +
                       sum(v for _, v, _, _ in report.estimates()))
    senders_unknown = sum(not c.ipi.sender_known for c in report.classified) + \
        sum(not i.sender_known for i in p.exit_only)
    stat = report.stat
    return {
        "file": report.path, "source": report.source, "input_encoding": report.encoding,
        "kernel": p.kernel, "lines": p.lines, "records": p.records,
        "ipis": ipis, "pv_send_ipi": p.pv_send_ipi, "pv_send_ipi_note": PV_SEND_IPI_NOTE,
        "unknown_lines": p.unknown_lines, "comment_lines": p.comment_lines,
        "forms": dict(p.forms), "other_events": dict(p.other_events),
        "errors": [{"line": n, "message": m} for n, m in p.errors],
        "notes": [{"line": n, "message": m} for n, m in p.notes],
        "replay_vcpus": report.vcpus, "senders_unknown": senders_unknown,
        "virtualized": virtualized,
        "virtualized_share": virtualized / ipis if ipis else None,
        "destination_unknown": sum(e.count for e in report.estimated),
        "virtualizable_assumed": report.virtualizable,
        "estimated": [{"source": e.source, "mode": e.mode, "ipis": e.count,
                       "virtualized": _num(v), "cycles_saved": s, "exits_removed": _num(x)}
                      for e, v, s, x in report.estimates()],
        **_tables(report), **_savings(report, ipis),
        "pv_send_ipis": _pv_json(report),
        "perf_kvm_stat": None if stat is None else {
            "tables": stat.events,
            "rows": {t.event: t.rows for t in stat.tables}},
        "rtl": None if report.rtl is None else {"agree": not report.rtl,
                                                "problems": report.rtl},
    }


# -- text ---------------------------------------------------------------------------------------

def _share(x):
    return "all" if x == 1 else "none" if x == 0 else f"{x:.0%}"


def _head(j):
    """The lines about the input: what it was, what was skipped, notes."""
    if j["source"] == "perf-kvm-stat":
        tables = ", ".join(j["perf_kvm_stat"]["tables"])
        lines = [f"{j['file']}: perf kvm stat report ({tables}), {j['lines']} lines, "
                 f"{j['records']} table rows, {j['ipis']} IPIs counted",
                 f"  skipped: {j['unknown_lines']} unknown lines, {j['comment_lines']} "
                 f"header lines, {len(j['other_events'])} rows that count no IPI"]
    else:
        forms = ", ".join(f"{k} {v}" for k, v in sorted(j["forms"].items(),
                                                        key=lambda kv: -kv[1]))
        lines = [f"{j['file']}: {j['lines']} lines, {j['records']} trace records ({forms}), "
                 f"{j['ipis']} IPIs; Linux {j['kernel']} event formats",
                 f"  skipped: {j['unknown_lines']} unknown lines, {j['comment_lines']} "
                 f"comment/header lines, {sum(j['other_events'].values())} records of other "
                 f"events"]
    if j["input_encoding"]:
        lines.append(f"  the input was {j['input_encoding']} (as a mail sends it): decoded "
                     f"before parsing (line numbers are those of the decoded text)")
    if j["errors"]:
        lines.append(f"  {len(j['errors'])} malformed records skipped (line numbers on stderr)")
    lines += [f"  note{'' if n['line'] is None else ' (line ' + str(n['line']) + ')'}: "
              f"{n['message']}" for n in j["notes"]]
    return lines


def _pv_lines(j):
    if not j["pv_send_ipi"]:
        return []
    lines = [f"  PV send-IPI hypercalls: {j['pv_send_ipi']}. {PV_SEND_IPI_NOTE}"]
    priced = j["pv_send_ipis"]["priced"]
    if priced is None:
        return lines
    fanout = ", ".join(f"{n} x {k}" for n, k in priced["per_fanout"].items())
    lines.append(f"    {priced['calls']} calls to {priced['destinations']} destinations "
                 f"(destinations x calls: {fanout or 'none'}); multicast model, "
                 f"{priced['bus']} bus; cycles on the senders (until the last target has "
                 f"the interrupt):")
    for name, what in VARIANTS:
        lines.append(f"      {what:54s} {priced['sender_cycles'][name]:12.0f} "
                     f"({priced['last_target_cycles'][name]:.0f})")
    saved = priced["saved_by_icr_writes"]
    lines.append(f"    with IPIv, a guest writing the ICR per destination instead of calling "
                 + (f"would save {saved:.0f} sender cycles" if saved >= 0 else
                    f"would lose {-saved:.0f} sender cycles: the hypercall stays cheaper") +
                 f"; keeping the hypercall saves {priced['saved_keeping_hypercall']:.0f}")
    return lines


def _table_line(title, table, fmt):
    top = sorted(table.items(), key=lambda kv: -kv[1]["ipis"])
    shown = ", ".join(f"{fmt(k)} {_fmt_num(v['virtualized'])}/{v['ipis']}"
                      for k, v in top[:TOP])
    more = f" (+{len(top) - TOP} more; --json lists all)" if len(top) > TOP else ""
    return f"  per {title} (virtualized/IPIs, most frequent first): {shown}{more}"


def _fmt_num(x):
    return f"{x}" if isinstance(x, int) else f"{x:.1f}"


def _body(j, report):
    lines = []
    if report.classified or (report.source == "trace" and not report.estimated):
        lines.append(f"  replayed in a VM of {j['replay_vcpus']} running vCPUs, IPIv on "
                     f"(golden model)" + (f"; sender unknown for {j['senders_unknown']} IPIs "
                                          f"(taken as vCPU 0)" if j["senders_unknown"] else ""))
    if j["destination_unknown"]:
        sources = "; ".join(f"{e['ipis']} {e['mode']} from {e['source']}"
                            for e in j["estimated"])
        lines.append(f"  destination and vector unknown for {j['destination_unknown']} IPIs "
                     f"({sources}): assumed virtualizable: {_share(j['virtualizable_assumed'])}"
                     f" (--virtualizable {j['virtualizable_assumed']:g})")
    share = f" ({j['virtualized_share']:.0%})" if j["virtualized_share"] is not None else ""
    lines.append(f"  virtualized by IPIv: {_fmt_num(j['virtualized'])} of {j['ipis']}{share}")
    for label, n in sorted(j["outcomes"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {label:28s} {n:6d}")
    lines.append("  per APIC mode (virtualized/IPIs): " + ", ".join(
        f"{k} {_fmt_num(v['virtualized'])}/{v['ipis']}" for k, v in sorted(j["per_mode"].items())))
    lines.append(_table_line("vector", j["per_vector"],
                             lambda k: k if k == "unknown" else f"{int(k):#04x}"))
    lines.append(_table_line("destination", j["per_destination"], str))
    lines.append("  per destination kind (virtualized/IPIs): " + ", ".join(
        f"{k} {_fmt_num(v['virtualized'])}/{v['ipis']}"
        for k, v in j["per_destination_kind"].items()))
    return lines


def _cost_lines(j):
    lines = [f"  exits IPIv would remove: {_fmt_num(j['exits_removed'])}",
             f"  cycles saved (round-trip model): {j['cycles_saved']:.0f} in total, "
             f"{j['cycles_saved_per_ipi']:.0f} per IPI"]
    if j["cycles_saved_per_outcome"]:
        lines.append("    per outcome: " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(j["cycles_saved_per_outcome"].items(),
                                              key=lambda kv: -abs(kv[1]))))
    if j["duration_s"]:
        lines.append(f"  over the {j['duration_s']:.6g} s the trace covers: "
                     f"{j['ipis_per_s']:.0f} IPIs/s, {j['cycles_saved_per_s']:.0f} cycles/s "
                     f"saved")
    return lines


def format_report(report):
    j = report_json(report)
    lines = _head(j) + _pv_lines(j) + _body(j, report) + _cost_lines(j)
    if j["rtl"] is not None:
        if j["rtl"]["agree"]:
            lines.append(f"  gateware (Amaranth simulator): agrees with the golden model on "
                         f"all {len(report.classified)} IPIs")
        else:
            lines += [f"  gateware disagrees: {p}" for p in j["rtl"]["problems"]]
    return "\n".join(lines)

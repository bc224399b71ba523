"""The main job (``ipiv sim``) and the benchmark (``ipiv bench``) on Amaranth's simulator."""

import os
import statistics
from collections import Counter
from dataclasses import replace

from hdl import IPIVirtualizer
from hdl.formats import ExitCause, ICRWriteKind
from hdl.params import check_bus
from sim.golden import Outcome
from sim.round_trip import RTL_BENCH
from sim.outcome_text import describe_outcome
from sim.scenarios import (
    build_vm, deliver_pending, guest_ipi, icr_low, make_scenario, scenario_states,
)
from .amaranth_harness import Harness, expected_events
from .waves import RecordingHarness, request_spans, write_gtkw, write_vcd


__all__ = ["run_scenario", "check_latency", "summarize", "what_happened", "format_summary",
           "run_bench", "format_bench", "measure_rtl"]


def pair_events(run, port=0):
    """[(request, accept cycle, golden Result, RTL Event or None)] for one core, in order."""
    events = iter(e for e in run.events if e.port == port)
    pairs = []
    for (cycle, index), result in zip(run.accepted, run.results):
        request = run.requests[index]
        if request.port != port:
            continue
        event = next(events, None) if expected_events(result) else None
        pairs.append((request, cycle, result, event))
    return pairs


def what_happened(run, states):
    """Per IPI of a single-core run, in order: {"request", "kind", "vector", "dest", "what"}
    (`sim.outcome_text`; an xAPIC ICR2 write only stores the destination of the next IPI)."""
    ipis = []
    for (_, index), result in zip(run.accepted, run.results):
        request = run.requests[index]
        text = describe_outcome(request.kind, result, states)
        if text is not None:
            ipis.append({"request": index, "kind": ICRWriteKind(request.kind).name,
                         "vector": result.vector, "dest": result.dest, "what": text})
    return ipis


def summarize(run, states=None):
    """Counts and latencies of a single-core run; with the VM's vCPU ``states``, also what
    happened to each IPI in words (``ipis``, and ``what_happened``: sentence -> count)."""
    pairs = pair_events(run)
    outcomes = Counter(result.outcome for _, _, result, _ in pairs)
    causes = Counter(result.cause for _, _, result, _ in pairs if result.outcome is Outcome.EXIT)
    latency = {"notify": [], "exit": [], "self_ipi": [], "gp": []}
    for _, accepted, _, event in pairs:
        if event is not None:
            latency[event.stream].append(event.valid_cycle - accepted)
    return {
        "requests": len(run.requests),
        "cycles": run.cycles,
        "posted": run.posted,
        "notifications": sum(1 for e in run.events if e.stream == "notify"),
        "suppressed": run.suppressed,
        "self_ipis": outcomes[Outcome.SELF_IPI],
        "exits": sum(causes.values()),
        "exit_causes": {cause.name: causes[cause] for cause in ExitCause},
        "gp": outcomes[Outcome.GP],
        "stored_only": outcomes[Outcome.STORED],
        "latency": {k: v for k, v in latency.items() if v},
        "bus_transfers": len(run.memory_log),
        **_words(run, states),
    }


def _words(run, states):
    if states is None:
        return {}
    ipis = what_happened(run, states)
    return {"ipis": ipis, "what_happened": dict(Counter(ipi["what"] for ipi in ipis))}


def _lat(values):
    return f"{min(values)}/{statistics.mean(values):.1f}/{max(values)}"


def format_summary(summary):
    s = summary
    lines = [
        f"  ICR writes             {s['requests']:6d}   ({s['stored_only']} ICR2 writes only "
        f"stored)",
        f"  IPIs virtualized       {s['posted']:6d}   notifications {s['notifications']}, "
        f"suppressed (ON or SN set) {s['suppressed']}",
        f"  self-IPIs virtualized  {s['self_ipis']:6d}",
        f"  APIC-write exits       {s['exits']:6d}   " + ", ".join(
            f"{k} {v}" for k, v in s["exit_causes"].items() if v),
        f"  #GP                    {s['gp']:6d}",
        f"  cycles                 {s['cycles']:6d}   bus transfers {s['bus_transfers']}",
    ]
    for stream, values in s["latency"].items():
        lines.append(f"  latency icr accepted -> {stream}.valid (min/avg/max cycles): "
                     f"{_lat(values)}")
    if s.get("what_happened"):
        lines.append("  what happened to the IPIs (how many, in order of first occurrence):")
        lines += [f"  {count:6d}  {text}" for text, count in s["what_happened"].items()]
    return "\n".join(lines)


def run_scenario(name, *, count, seed, out_dir="build", latency=1, waves=True, progress=None,
                 bus="classic"):
    """Run a named scenario on the unit with memory port ``bus`` (`hdl.formats.BUS_KINDS`) with
    the golden-model check; returns (summary, vcd, gtkw).

    ``latency``: cycles from a request to its answer (classic: ``ack`` after ``stb``;
    pipelined: the answer after the request is taken, at least 1, `check_latency`).
    With ``waves``: ``out_dir/NAME.vcd`` and ``NAME.gtkw``, the readable view of `tb.waves`
    (the caller checks that ``out_dir`` is writable before the run)."""
    check_latency(latency, bus)
    vm, requests = make_scenario(name, count=count, seed=seed)
    dut = IPIVirtualizer(bus=bus)
    harness = (RecordingHarness if waves else Harness)(
        dut, vm.memory, latency=latency, seed=seed,
        on_barrier=lambda req, *mems: deliver_pending(vm, *mems))
    run = harness.run(requests, progress=progress)
    vcd = gtkw = None
    if waves:
        os.makedirs(out_dir, exist_ok=True)
        vcd = os.path.join(out_dir, f"{name}.vcd")
        gtkw = os.path.join(out_dir, f"{name}.gtkw")
        recording = harness.recording
        write_vcd(vcd, recording, request_spans(run, recording),
                  comment=f"ipiv sim {name} -n {count} --seed {seed} --latency {latency} "
                          f"--bus {bus}")
        write_gtkw(gtkw, vcd, recording)
    return summarize(run, scenario_states(name)), vcd, gtkw


def check_latency(latency, bus):
    """``latency`` if the memory of port ``bus`` can answer that many cycles after a request,
    else `ValueError`: a pipelined memory answers in a later cycle than it takes the request
    (docs/interface.md, "Memory port, pipelined": R >= 2)."""
    check_bus(bus)
    if bus == "pipelined" and latency < 1:
        raise ValueError(f"a pipelined memory answers at least 1 cycle after it takes a "
                         f"request (R >= 2), not {latency}")
    return latency


# -- benchmark ------------------------------------------------------------------------------

BENCH_LATENCIES = (0, 1, 4)


def _bench_vm():
    """vCPUs 0 and 1 running; IDs 2 and 3 without a vCPU (invalid entries)."""
    return build_vm({0: "running", 1: "running"}, max_vcpu_ids=4)


def _isolated_latency(requests, memory_latency, stream, bus="classic"):
    """Latency of each request issued alone (the unit idle and ON cleared before each)."""
    vm = _bench_vm()
    requests = [replace(r, barrier=True) for r in requests]
    harness = Harness(IPIVirtualizer(bus=bus), vm.memory, latency=memory_latency,
                      on_barrier=lambda req, *mems: deliver_pending(vm, *mems))
    values = summarize(harness.run(requests))["latency"].get(stream)
    if not values or min(values) != max(values):
        raise RuntimeError(f"benchmark case: expected one constant {stream} latency, "
                           f"got {values}")
    return values[0]


def _x2apic_ipi(cfg, dest, vector=0x40):
    (request,) = guest_ipi(cfg, icr_low(vector), dest)
    return request


def _xapic_ipi(cfg, dest, vector=0x40):
    return guest_ipi(cfg, icr_low(vector), dest)


def _throughput(memory_latency, *, targets, notify, bus="classic"):
    """Back-to-back virtualized x2APIC IPIs, always-ready outputs.

    Returns (cycles per IPI, IPIs per 1000 cycles, idle bus cycles per IPI)."""
    vm = build_vm({v: "running" for v in range(targets)}, max_vcpu_ids=targets)
    cfg = vm.config(0, x2apic=True)
    # notify: each IPI to a fresh target, so each sets ON and notifies; otherwise the same
    # target again and again: ON stays set and every post is suppressed.
    dests = range(1, targets) if notify else [1] * (targets - 1)
    requests = [_x2apic_ipi(cfg, d, 0x40 + i % 0x80) for i, d in enumerate(dests)]
    run = Harness(IPIVirtualizer(bus=bus), vm.memory, latency=memory_latency).run(requests)
    # From the second acceptance: the first suppressed-mode post still sets ON.
    first, last = run.accepted[1][0], run.accepted[-1][0]
    n = len(requests) - 2
    busy = sum(1 for c in run.bus_cycles if first < c <= last)
    return (last - first) / n, 1000 * n / (last - first), ((last - first) - busy) / n


#: Bench cases: name -> (bus transfers before the output, dependent round trips of the
#: pipelined bus before it).
BENCH_CASES = {
    "notify x2APIC": (6, 3),
    "notify xAPIC": (7, 4),
    # The x2APIC intercept: a WRMSR exit with no transfer (docs/interface.md).
    "exit x2APIC, IPIv off": (0, 0),
    "exit xAPIC, IPIv off": (2, 1),
    "exit x2APIC, index range": (1, 1),
    "exit x2APIC, entry invalid": (2, 1),
}


def bench_latencies(bus):
    """The memory latencies (cycles from a request to its answer, R - 1) benched for ``bus``:
    the pipelined port cannot answer in the cycle a request is taken (R >= 2)."""
    return BENCH_LATENCIES if bus == "classic" else tuple(l for l in BENCH_LATENCIES if l >= 1)


def _bench_cases(lat, bus):
    x2 = _bench_vm().config(0, x2apic=True)
    xa = _bench_vm().config(0, x2apic=False)
    measured = {
        "notify x2APIC": ([_x2apic_ipi(x2, 1)] * 4, "notify"),
        "notify xAPIC": (_xapic_ipi(xa, 1) * 4, "notify"),
        "exit x2APIC, IPIv off": ([_x2apic_ipi(replace(x2, ipiv=False), 1)] * 3, "exit"),
        "exit xAPIC, IPIv off": (_xapic_ipi(replace(xa, ipiv=False), 1) * 3, "exit"),
        "exit x2APIC, index range": ([_x2apic_ipi(x2, 9)] * 3, "exit"),
        "exit x2APIC, entry invalid": ([_x2apic_ipi(x2, 2)] * 3, "exit"),
    }
    return {name: _isolated_latency(requests, lat, stream, bus)
            for name, (requests, stream) in measured.items()}


def _bench_row(lat, bus, targets):
    r = lat + 1        # the memory round trip R: cycles per classic transfer
    row = {"memory_latency": lat, "latency": {}}
    if bus == "pipelined":
        row["round_trip"] = r
    for name, cycles in _bench_cases(lat, bus).items():
        transfers, trips = BENCH_CASES[name]
        if bus == "classic":
            row["latency"][name] = {"cycles": cycles, "transfers": transfers,
                                    "overhead": cycles - transfers * r}
        else:
            row["latency"][name] = {"cycles": cycles, "transfers": transfers,
                                    "round_trips": trips, "overhead": cycles - trips * r}
    for key, notify, transfers in (("throughput_notify", True, 6),
                                   ("throughput_suppressed", False, 5)):
        per_ipi, rate, idle = _throughput(lat, targets=targets, notify=notify, bus=bus)
        row[key] = {"cycles_per_ipi": per_ipi, "ipis_per_1000_cycles": rate,
                    "idle_bus_cycles_per_ipi": idle, "transfers": transfers}
    return row


def run_bench(*, targets=64, bus="classic", progress=None):
    """Latency (cycles from ``icr`` accepted to ``valid``) and throughput, per memory latency,
    of the unit with memory port ``bus``.

    ``targets``: vCPUs of the throughput VM (at least 4: the throughput is timed from the
    second to the last of ``targets - 1`` IPIs); ``progress()`` is called after each memory
    latency. Overhead: cycles beyond the transfers (classic) or the dependent round trips
    (pipelined) themselves, each R cycles."""
    if targets < 4:
        raise ValueError(f"targets must be at least 4, not {targets}")
    rows = []
    for lat in bench_latencies(bus):
        rows.append(_bench_row(lat, bus, targets))
        if progress:
            progress()
    return rows


def format_bench(rows, bus="classic"):
    if bus == "classic":
        lines = ["Latency, cycles from icr accepted to valid (overhead = cycles beyond the bus "
                 "transfers themselves)",
                 f"  {'case':30s} {'transfers':>9s} " + " ".join(
                     f"{'ack+' + str(r['memory_latency']):>14s}" for r in rows)]
        count = "transfers"
    else:
        lines = ["Latency, cycles from icr accepted to valid (overhead = cycles beyond the "
                 "dependent round trips themselves, R cycles each)",
                 f"  {'case':30s} {'trips':>9s} " + " ".join(
                     f"{'R=' + str(r['round_trip']):>14s}" for r in rows)]
        count = "round_trips"
    for name in rows[0]["latency"]:
        cells = [r["latency"][name] for r in rows]
        lines.append(f"  {name:30s} {cells[0][count]:9d} " + " ".join(
            f"{c['cycles']:6d} (+{c['overhead']}) " for c in cells))
    lines.append("Throughput, back-to-back virtualized x2APIC IPIs (outputs always ready)")
    for key, title in (("throughput_notify", "each IPI notifies (6 transfers)"),
                       ("throughput_suppressed", "ON already set (5 transfers)")):
        lines.append(f"  {title}")
        for r in rows:
            t = r[key]
            where = f"ack+{r['memory_latency']}" if bus == "classic" else f"R={r['round_trip']}"
            lines.append(f"    {where}: {t['cycles_per_ipi']:.2f} cycles/IPI, "
                         f"{t['ipis_per_1000_cycles']:.1f} IPIs per 1000 cycles, "
                         f"{t['idle_bus_cycles_per_ipi']:.2f} idle bus cycles/IPI")
    return "\n".join(lines)


def measure_rtl(bus="classic"):
    """Run the RTL bench of the ``bus`` variant (Amaranth's simulator, ~10 s) and return it in
    `sim.round_trip.RTL_BENCH`'s shape."""
    rows = run_bench(bus=bus)
    measured = {}
    for case in RTL_BENCH:
        measured[case] = {"transfers": rows[0]["latency"][case]["transfers"],
                          "cycles": {r["memory_latency"]: r["latency"][case]["cycles"]
                                     for r in rows}}
    return measured

"""What-if sweeps of the round-trip model (`sim.round_trip`), each written as a CSV with a PNG
and an SVG plot beside it (``build/experiments/NAME.{csv,png,svg}``).

Every sweep starts from the fitted seed model (`sim.round_trip.fit`) and changes one thing:

- ``pid-latency``: where the target's PID line is when the sender posts (Levinthal's ladder
  from an L1 hit to another socket's L3); once for the PID line alone, once for every transfer
  of the unit (a unit far from the core's caches).
- ``non-virtualizable``: the fraction of IPIs IPIv leaves to KVM (Linux x2APIC cluster-mode
  logical destinations, the all-but-self shorthand, NMIs), each kind classified by the golden
  model; KVM's own fastpath rule decides the IPIv-off path.
- ``target-state``: a running target (notification vector 0xF2) against a blocked one (the
  golden model sends the wakeup vector 0xF1), for a range of host wakeup latencies.
- ``table-sharing``: n vCPUs of one VM (one PID-pointer table) posting at once through the
  gateware's shared memory port, measured on Amaranth's simulator (`IPIVSystem`).
- ``multicast``: one guest IPI to n = 1..64 destinations through IPIv, KVM's PV send-IPI
  hypercall, or n WRMSR exits (`sim.multicast`), for every bus variant of the unit, and where
  the hypercall would beat IPIv.
- ``bus``: the cycles IPIv saves per IPI with the unit on the classic and on the pipelined
  memory port, for memory round trips R = 1..100 (every transfer of the unit at R).

The model's unit is the one on memory port ``bus`` (`run_sweep`, ``--bus``): its posting cost
enters the fit and every sweep; ``multicast`` and ``bus`` compare the ports themselves.

This module needs only the models. ``table-sharing`` takes its gateware measurement as a
function (``measure_sharing``, `tb.sharing.measure_sharing`) from the caller.
"""

import csv
import os
from dataclasses import dataclass, replace
from statistics import mean

from hdl.formats import DeliveryMode, DestMode, ICRLow, Shorthand, X2APIC_BROADCAST_ID
from .golden import GoldenIPIVirtualizer, Outcome
from .multicast import (
    BUS_VARIANTS, METRICS as MULTICAST_METRICS, PATHS as MULTICAST_PATHS,
    PV_SEND_IPI_DESTINATIONS, crossover, multicast_costs,
)
from .round_trip import (
    MODES, Breakdown, MemoryLatency, fit, posting_transfers, seed_table, software_posting_cost,
)
from .scenarios import build_vm, guest_ipi, icr_low


__all__ = ["Sweep", "SWEEPS", "run_sweep", "write_csv", "write_plot", "LATENCY_LADDER",
           "NON_VIRTUALIZABLE_KINDS", "classify_kind", "kvm_fastpath_eligible", "read_table",
           "format_table", "PLOT_SIZE", "LEVEL_NAMES"]

DEFAULT_OUT = os.path.join("build", "experiments")

# Levinthal (Intel, 2009), "Data Source Latency (approximate)" (see PARAMETERS): cycles.
LATENCY_LADDER = [
    ("L1 hit", 4), ("L2 hit", 10), ("L3 hit, unshared", 40), ("L3 hit, shared in another core",
                                                              65),
    ("L3 hit, modified in another core", 75), ("remote socket L3 (low)", 100),
    ("remote socket L3 (mid)", 200), ("remote socket L3 (high)", 300),
]


#: The ladder's latencies in the architecture's terms, for the x axis.
LEVEL_NAMES = {4: "L1", 10: "L2", 40: "LLC", 65: "LLC", 75: "LLC",
               100: "remote\nsocket", 200: "remote\nsocket", 300: "remote\nsocket"}

#: Plot size in pixels (PNG) and the resolution that gives it.
PLOT_SIZE = (1600, 1000)
PLOT_DPI = 100


@dataclass(frozen=True)
class Sweep:
    """A named sweep: ``run(model, out_dir, progress) -> list of written paths``.

    ``gateware``: the sweep measures the RTL and takes ``measure_sharing`` from its caller.
    """
    name: str
    text: str
    run: object
    gateware: bool = False


# -- output ------------------------------------------------------------------------------------

def write_csv(path, header, rows, comments=()):
    """A CSV with ``# `` comment lines first (what the columns mean, where numbers come from)."""
    with open(path, "w", newline="") as f:
        for line in comments:
            f.write(f"# {line}\n")
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_table(path):
    """(header, rows, comments) of a CSV written by `write_csv`."""
    comments, lines = [], []
    with open(path, newline="") as f:
        for line in f:
            (comments.append(line[2:].rstrip("\n")) if line.startswith("# ")
             else lines.append(line))
    rows = list(csv.reader(lines))
    return rows[0], rows[1:], comments


def format_table(header, rows, comments=()):
    """A sweep's table as aligned text (numbers right-aligned), its notes below."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def cells(row):
        return "  ".join(str(x).rjust(w) if _is_number(x) else str(x).ljust(w)
                         for x, w in zip(row, widths)).rstrip()
    lines = ["  " + cells(header)] + ["  " + cells(r) for r in rows]
    return "\n".join(lines + [f"  note: {c}" for c in comments])


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_plot(fig, stem):
    """Save ``fig`` as ``stem.png`` (`PLOT_SIZE` pixels) and ``stem.svg``; close it."""
    import matplotlib.pyplot as plt
    paths = [f"{stem}.png", f"{stem}.svg"]
    fig.savefig(paths[0], dpi=PLOT_DPI)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")           # files only, never a window
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 15, "axes.titlesize": 18, "legend.fontsize": 13,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _figure(plt):
    return plt.subplots(figsize=(PLOT_SIZE[0] / PLOT_DPI, PLOT_SIZE[1] / PLOT_DPI),
                        layout="constrained")


def _zero_line(ax, values):
    """A zero line where a curve goes negative (a saving below zero is a loss)."""
    if min(values) < 0:
        ax.axhline(0, color="black", lw=1.2, zorder=1)
        ax.annotate("IPIv slower below this line", (0.01, 0), xycoords=("axes fraction",
                    "data"), va="bottom", fontsize=12)


def _finish_saving_plot(fig, ax, stem, savings, *, xlabel, ylabel, title):
    """Label a plot of savings (a zero line if one goes negative), add its legend, and write
    it (`write_plot`)."""
    _zero_line(ax, savings)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return write_plot(fig, stem)


def _port(model):
    """The title's note of the unit whose posting cost the model uses."""
    return f" ({model.bus} memory port)"


def _saving_pct(off, on):
    return 100 * (off - on) / off


# -- seed table plot -------------------------------------------------------------------------

def seed_table_outputs(model, out_dir):
    """The seed's table beside the model's, as CSV and a grouped bar chart."""
    rows = seed_table(model)
    stem = os.path.join(out_dir, "seed-table")
    write_csv(f"{stem}.csv", ["mode", "ipiv", "seed_cycles", "seed_stdev", "model_cycles",
                              "error_pct", "cell"],
              [[r["mode"], "on" if r["ipiv"] else "off", f"{r['seed']:.2f}",
                f"{r['seed_stdev']:.1f}", f"{r['model']:.1f}", f"{r['error_pct']:.2f}",
                r["role"]] for r in rows],
              comments=["kvm-unit-tests vmexit ipi round trip, cycles; seed = mean of 20 runs "
                        "(Zeng Guang, IPIv v7 cover letter); model = sim.round_trip.fit()"])
    plt = _pyplot()
    fig, ax = _figure(plt)
    labels = [f"{r['mode']}, IPIv {'on' if r['ipiv'] else 'off'}" for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["seed"] for r in rows], 0.4,
           label="seed: mean of 20 runs (error bar: \u00b11 standard deviation)",
           yerr=[r["seed_stdev"] for r in rows], capsize=8)
    ax.bar([i + 0.2 for i in x], [r["model"] for r in rows], 0.4,
           label="model (sim/round_trip.py)")
    for i, r in enumerate(rows):
        ax.annotate(f"{r['error_pct']:+.1f}%\n{r['role'].split(' ')[0]}",
                    (i + 0.2, r["model"]), ha="center", va="bottom", fontsize=13)
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1.25 * max(max(r["seed"], r["model"]) for r in rows))
    ax.set_ylabel("cycles per IPI round trip (kvm-unit-tests vmexit ipi)")
    ax.set_title("Seed table vs model (fitted: the IPIv-on row; IPIv off is predicted)" + _port(model))
    ax.legend(loc="upper right")
    return [f"{stem}.csv"] + write_plot(fig, stem)


# -- sweep: PID latency --------------------------------------------------------------------------

def sweep_pid_latency(model, out_dir, progress=None):
    rows = []
    for label, lat in LATENCY_LADDER:
        for scope in ("PID line", "every unit transfer"):
            latency = MemoryLatency(pid_first=lat) if scope == "PID line" else \
                MemoryLatency(pid_first=lat, uniform=lat)
            m = model.with_latency(latency)
            for mode in MODES:
                off, on = m.cell(mode, False).total, m.cell(mode, True).total
                rows.append([label, lat, scope, mode, f"{m.ipiv_post(mode):.0f}",
                             f"{off:.1f}", f"{on:.1f}", f"{_saving_pct(off, on):.2f}"])
    stem = os.path.join(out_dir, "pid-latency")
    paths = [write_csv(f"{stem}.csv", ["where", "latency_cycles", "scope", "mode",
                                       "ipiv_posting_cycles", "round_trip_off", "round_trip_on",
                                       "saving_pct"], rows,
                       comments=["scope 'PID line': the first transfer to the target's PID at "
                                 "this latency, the rest L1 (KVM's software posting pays the "
                                 "same); 'every unit transfer': all of the unit's transfers",
                                 "latencies: Levinthal, Intel 2009, Data Source Latency table"])]
    plt = _pyplot()
    fig, ax = _figure(plt)
    savings = []
    for mode in MODES:
        for scope, style in (("PID line", "-o"), ("every unit transfer", "--s")):
            pts = [(r[1], float(r[7])) for r in rows if r[3] == mode and r[2] == scope]
            savings += [y for _, y in pts]
            ax.plot(*zip(*pts), style, lw=2, ms=8,
                    label=f"{mode}: {'the PID line' if scope == 'PID line' else 'every transfer of the unit'} at latency L")
    ax.set_xscale("log")
    ladder = [lat for _, lat in LATENCY_LADDER]
    # 65 and 75 sit close on a log axis: their level goes on a second line
    ax.set_xticks(ladder, [f"{lat}\n{LEVEL_NAMES[lat]}" if lat in (65, 75) else
                           f"{LEVEL_NAMES.get(lat, '')}\n{lat}" for lat in ladder])
    ax.minorticks_off()
    return paths + _finish_saving_plot(
        fig, ax, stem, savings,
        xlabel="where the data is: latency L in cycles, log scale (Levinthal's ladder; "
               "LLC 65/75: the line shared/modified in another core)",
        ylabel="round-trip saving with IPIv (%)",
        title="IPIv saving vs where the PID (or every line the unit touches) is cached"
              + _port(model))


# -- sweep: non-virtualizable fraction ------------------------------------------------------

# The IPIs IPIv leaves to KVM that a Linux guest sends (besides unicast).
NON_VIRTUALIZABLE_KINDS = ("logical", "all-but-self", "NMI")


def _kind_icr(kind, mode, target=1):
    """(icr_low, destination) of one IPI of ``kind`` to vCPU ``target``."""
    if kind == "unicast":
        return icr_low(0x40), target
    if kind.startswith("logical"):
        # Linux x2APIC cluster mode: cluster in 31:16, one bit per CPU in 15:0; xAPIC: flat.
        dest = (target >> 4) << 16 | 1 << (target & 0xF) if mode == "x2APIC" else 1 << target
        return icr_low(0x40, dest_mode=DestMode.LOGICAL), dest
    if kind == "all-but-self":
        return icr_low(0x40, shorthand=Shorthand.ALL_EXCLUDING_SELF), 0
    if kind == "NMI":
        return icr_low(2, mode=DeliveryMode.NMI), target
    raise ValueError(f"unknown IPI kind {kind!r}")


def classify_kind(kind, mode):
    """The golden model's `Result` for one IPI of ``kind`` from vCPU 0 to vCPU 1 (IPIv on)."""
    vm = build_vm({0: "running", 1: "running"}, max_vcpu_ids=2)
    cfg = vm.config(0, x2apic=mode == "x2APIC")
    low, dest = _kind_icr(kind, mode)
    golden = GoldenIPIVirtualizer()
    result = None
    for request in guest_ipi(cfg, low, dest):
        result = golden.execute(cfg, vm.memory, request.kind, request.value)
    return result


def kvm_fastpath_eligible(icr_low, dest, mode):
    """KVM's x2APIC ICR fastpath (handle_fastpath_set_x2apic_icr_irqoff): no shorthand,
    physical, fixed, and not the broadcast destination; never in xAPIC mode."""
    low = ICRLow.from_bits(icr_low & 0xFFFF_FFFF)
    return (mode == "x2APIC" and low.shorthand == Shorthand.NONE
            and low.dest_mode == DestMode.PHYSICAL and low.delivery_mode == DeliveryMode.FIXED
            and dest != X2APIC_BROADCAST_ID)


def kind_cost(model, kind, mode, ipiv):
    """The round trip (`Breakdown`) of one IPI of ``kind`` in the seed's setting."""
    if ipiv:
        result = classify_kind(kind, mode)
        if result.outcome is Outcome.POSTED:
            return model.cell(mode, True), result
        # IPIv leaves it to KVM: an APIC-write exit (qualification 300H), no fastpath.
        base = model.cell(mode, True)
        parts = [p for p in base.components if p[0] != "ipiv posting (RTL)"]
        exit_parts = model.exit_path(mode, fastpath=False)
        if mode == "x2APIC":   # the x2APIC vICR store happens before the exit too
            exit_parts.insert(1, ("vICR store before exit",
                                  model.unit_cost(mode, ipiv=False)))
        return Breakdown(mode, True, tuple(parts + exit_parts)), result
    low, dest = _kind_icr(kind, mode)
    base = model.cell(mode, False)
    parts = [p for p in base.components if not p[0].startswith("kvm ")
             and p[0] != "vICR store before exit"]
    return Breakdown(mode, False, tuple(parts + model.exit_path(
        mode, fastpath=kvm_fastpath_eligible(low, dest, mode)))), None


def sweep_non_virtualizable(model, out_dir, progress=None):
    fractions = [i / 10 for i in range(11)]
    classified, costs = {}, {}
    for mode in MODES:
        for kind in ("unicast",) + NON_VIRTUALIZABLE_KINDS:
            on, result = kind_cost(model, kind, mode, True)
            off, _ = kind_cost(model, kind, mode, False)
            classified[(mode, kind)] = (result.outcome.value + (
                f" ({result.cause.name})" if result.cause is not None else ""))
            costs[(mode, kind)] = (off.total, on.total)
    rows = []
    for mode in MODES:
        for f in fractions:
            share = [("unicast", 1 - f)] + [(k, f / len(NON_VIRTUALIZABLE_KINDS))
                                            for k in NON_VIRTUALIZABLE_KINDS]
            off = sum(w * costs[(mode, k)][0] for k, w in share)
            on = sum(w * costs[(mode, k)][1] for k, w in share)
            rows.append([mode, f"{f:.1f}", f"{off:.1f}", f"{on:.1f}",
                         f"{_saving_pct(off, on):.2f}"])
    stem = os.path.join(out_dir, "non-virtualizable")
    comments = ["non-virtualizable IPIs split equally among: " + ", ".join(
        NON_VIRTUALIZABLE_KINDS) + " (logical: Linux x2APIC cluster-mode destination in "
        "x2APIC, a flat mask in xAPIC)"] + [
        f"golden model, {mode} {kind}: {classified[(mode, kind)]}; round trip off/on "
        f"{costs[(mode, kind)][0]:.0f}/{costs[(mode, kind)][1]:.0f} cycles"
        for mode in MODES for kind in ("unicast",) + NON_VIRTUALIZABLE_KINDS]
    paths = [write_csv(f"{stem}.csv", ["mode", "non_virtualizable_fraction", "round_trip_off",
                                       "round_trip_on", "saving_pct"], rows, comments)]
    plt = _pyplot()
    fig, ax = _figure(plt)
    savings = []
    for mode in MODES:
        pts = [(float(r[1]), float(r[4])) for r in rows if r[0] == mode]
        savings += [y for _, y in pts]
        ax.plot(*zip(*pts), "-o", lw=2, ms=8, label=f"{mode} guest")
    return paths + _finish_saving_plot(
        fig, ax, stem, savings,
        xlabel="fraction of IPIs IPIv cannot virtualize (logical, shorthand, NMI; split "
               "equally)",
        ylabel="mean round-trip saving with IPIv (%)",
        title="IPIv saving vs non-virtualizable IPIs" + _port(model))


# -- sweep: target running vs blocked --------------------------------------------------------

WAKEUP_LATENCIES = [0, 1000, 2000, 5000, 10000, 20000, 40000]


def notification_for(state, mode="x2APIC"):
    """The golden model's notification (vector, pCPU) for an IPI to a target in ``state``."""
    vm = build_vm({0: "running", 1: state}, max_vcpu_ids=2)
    cfg = vm.config(0, x2apic=mode == "x2APIC")
    golden, result = GoldenIPIVirtualizer(), None
    for request in guest_ipi(cfg, icr_low(0x40), 1):
        result = golden.execute(cfg, vm.memory, request.kind, request.value)
    return result.notify


def sweep_target_state(model, out_dir, progress=None):
    rows = []
    vectors = {s: notification_for(s) for s in ("running", "blocked")}
    for mode in MODES:
        off, on = model.cell(mode, False).total, model.cell(mode, True).total
        rows.append([mode, "running", f"{vectors['running'][0]:#x}", 0, f"{off:.1f}",
                     f"{on:.1f}", f"{_saving_pct(off, on):.2f}"])
        for w in WAKEUP_LATENCIES[1:]:
            rows.append([mode, "blocked", f"{vectors['blocked'][0]:#x}", w, f"{off + w:.1f}",
                         f"{on + w:.1f}", f"{_saving_pct(off + w, on + w):.2f}"])
    stem = os.path.join(out_dir, "target-state")
    paths = [write_csv(f"{stem}.csv", ["mode", "target", "notification_vector",
                                       "wakeup_cycles", "round_trip_off", "round_trip_on",
                                       "saving_pct"], rows,
                       comments=["notification vector from the golden model (0xf2 posted-"
                                 "interrupt vector: running; 0xf1 wakeup vector: blocked)",
                                 "wakeup_cycles is the what-if axis: host wakeup handler, "
                                 "scheduling and VM entry of the target, paid with and "
                                 "without IPIv alike (not a cited figure)"])]
    plt = _pyplot()
    fig, ax = _figure(plt)
    savings = []
    for mode in MODES:
        pts = [(int(r[3]), float(r[6])) for r in rows if r[0] == mode]
        savings += [y for _, y in pts]
        ax.plot(*zip(*pts), "-o", lw=2, ms=8,
                label=f"{mode} guest (at 0: target running, else blocked)")
    return paths + _finish_saving_plot(
        fig, ax, stem, savings,
        xlabel="target wakeup latency (cycles; 0: target running, notification 0xF2)",
        ylabel="round-trip saving with IPIv (%)",
        title="IPIv saving: running vs blocked target (wakeup vector 0xF1)" + _port(model))


# -- sweep: vCPUs sharing one PID-pointer table ---------------------------------------------

SHARING_CORES = (1, 2, 4, 8)


def sweep_table_sharing(model, out_dir, progress=None, *, measure_sharing, cores=SHARING_CORES,
                        ipis_per_core=8):
    # The simulator runs every transfer at one ack delay: the mean of the seed model's
    # per-transfer latencies, so one core reproduces the model's posting cost.
    lats = model.latency.of(posting_transfers("x2APIC", bus=model.bus))
    uniform = round(mean(lats))
    measured = {}
    for n in cores:
        if progress:
            progress(f"table-sharing: simulating {n} core(s), {model.bus} bus")
        measured[n] = measure_sharing(n, ipis_per_core=ipis_per_core, latency=uniform,
                                      bus=model.bus)
    alone = measured[cores[0]][0]
    rows = []
    for n in cores:
        wait = measured[n][0] - alone
        for mode in MODES:
            off = model.cell(mode, False).total
            on = model.cell(mode, True, extra=(("arbitration wait (RTL)", wait),)).total
            rows.append([n, mode, f"{measured[n][0]:.1f}", measured[n][1], f"{wait:.1f}",
                         f"{off:.1f}", f"{on:.1f}", f"{_saving_pct(off, on):.2f}"])
    stem = os.path.join(out_dir, "table-sharing")
    paths = [write_csv(f"{stem}.csv", ["vcpus_posting", "mode", "rtl_cycles_to_notify",
                                       "ipis_timed", "arbitration_wait", "round_trip_off",
                                       "round_trip_on", "saving_pct"], rows,
                       comments=[f"IPIVSystem(n, bus={model.bus!r}) on Amaranth's simulator, "
                                 f"one VM (one PID-pointer table), each core posts "
                                 f"{ipis_per_core} x2APIC IPIs one at a time to vCPUs not "
                                 f"posted to before, every answer {uniform} cycles after its "
                                 f"request (mean of the seed model's per-transfer latencies)",
                                 "arbitration_wait: RTL cycles beyond the single-core case, "
                                 "added to the IPIv posting (the xAPIC rows reuse the x2APIC "
                                 "measurement)"])]
    plt = _pyplot()
    fig, ax1 = _figure(plt)
    rtl, = ax1.plot(cores, [measured[n][0] for n in cores], "-o", lw=2, ms=8, color="C0",
                    label="RTL cycles, icr accepted -> notify (left axis)")
    ax1.set_xlabel("vCPUs posting at once through one PID-pointer table (one memory port)")
    ax1.set_ylabel("RTL cycles, icr accepted -> notify", color="C0")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(list(cores), [str(n) for n in cores])
    ax1.minorticks_off()
    ax2 = ax1.twinx()
    lines, savings = [rtl], []
    for mode, style in zip(MODES, ("--s", ":^")):
        values = [float(r[7]) for r in rows if r[1] == mode]
        savings += values
        line, = ax2.plot(cores, values, style, lw=2, ms=8,
                         label=f"{mode} round-trip saving with IPIv (right axis)",
                         color="C1" if mode == "xAPIC" else "C2")
        lines.append(line)
    _zero_line(ax2, savings)
    ax2.set_ylabel("round-trip saving with IPIv (%)")
    ax2.grid(False)
    ax1.legend(handles=lines, loc="upper center")
    ax1.set_title("Shared PID-pointer table and memory port" + _port(model))
    return paths + write_plot(fig, stem)


# -- sweep: one IPI to n destinations ------------------------------------------------------

MULTICAST_N = range(1, 65)
MULTICAST_LABELS = {
    "ipiv": "(a) IPIv: n virtualized ICR writes",
    "pv_hypercall": "(b) PV send-IPI hypercall (IPIv on)",
    "exits": "(c) no IPIv: n WRMSR exits (x2APIC fastpath)",
    "pv_hypercall_no_ipiv": "(d) no IPIv: PV send-IPI hypercall (the same cycles as (b))",
}


# The table's column suffix of each metric of `sim.multicast.PathCost`.
MULTICAST_COLUMNS = {"sender_cycles": "sender", "last_target_cycles": "last"}


def _multicast_rows(model, progress):
    header = ["bus", "n"] + [f"{p}_{MULTICAST_COLUMNS[m]}" for p in MULTICAST_PATHS
                             for m in MULTICAST_METRICS] + ["hypercall_minus_ipiv"]
    rows = []
    for bus in BUS_VARIANTS:
        if progress:
            progress(f"multicast: {bus} bus")
        for n in MULTICAST_N:
            c = multicast_costs(n, bus=bus, model=model)
            rows.append([bus, n] + [f"{getattr(c.path(p), m):.0f}" for p in MULTICAST_PATHS
                                    for m in MULTICAST_METRICS]
                        + [f"{c.pv_hypercall.sender_cycles - c.ipiv.sender_cycles:.0f}"])
    return header, rows


def _crossover_note(bus, model):
    """Where (if anywhere) the hypercall beats IPIv on ``bus``, and why."""
    one, two = (multicast_costs(n, bus=bus, model=model) for n in (1, 2))
    margin = (two.ipiv.sender_cycles - one.ipiv.sender_cycles) - (
        two.pv_hypercall.sender_cycles - one.pv_hypercall.sender_cycles)
    found = {m: crossover(metric=m, bus=bus, model=model, n_max=MULTICAST_N[-1])
             for m in MULTICAST_METRICS}
    said = ", ".join(f"{MULTICAST_COLUMNS[m]}: " + (f"from n = {n}" if n else
                     f"none for n <= {MULTICAST_N[-1]}") for m, n in found.items())
    head = f"crossover, {bus} bus: the hypercall beats IPIv ({said})"
    if margin <= 0:
        return (f"{head}; per destination the hypercall costs {-margin:.0f} cycle(s) more "
                f"than an IPIv write: it never wins")
    exit_cycles, far = model.value("kvm_full_exit"), crossover(bus=bus, model=model,
                                                               n_max=1024)
    return (f"{head}; per destination it saves {margin:.0f} cycles against an IPIv write, so "
            f"its exit ({exit_cycles:.0f}) pays back past {exit_cycles / margin:.0f} "
            f"destinations (one hypercall carries {PV_SEND_IPI_DESTINATIONS}): "
            + ("none up to n = 1024 either" if far is None else f"from n = {far}")
            + "; the hypercall's last-target figure is an upper bound (its exit counted "
            "whole): its last target is pending first only if the part of its exit before "
            "KVM's postings, plus KVM's uncosted work per destination, stays under "
            f"{margin:.0f} x n cycles ({margin * MULTICAST_N[-1]:.0f} at n = "
            f"{MULTICAST_N[-1]})")


def _multicast_notes(model):
    per_write = {bus: multicast_costs(1, bus=bus, model=model).ipiv.sender_cycles
                 for bus in BUS_VARIANTS}
    no_ipiv = crossover(path="pv_hypercall_no_ipiv", against="exits", model=model)
    return [
        "one guest IPI (x2APIC, physical, fixed) to n running vCPUs with consecutive APIC IDs; "
        "sender: cycles until the sender runs guest code again; last: until the last "
        "destination's posting is done (software paths: an upper bound, each exit round trip "
        "counted whole before its postings)",
        "ipiv: n x the unit's posting, RTL bench x Levinthal latencies: " + ", ".join(
            f"{bus} bus {c:.0f} cycles per write" for bus, c in per_write.items()),
        f"pv_hypercall: one VMCALL exit round trip per {PV_SEND_IPI_DESTINATIONS} destinations "
        f"({model.value('kvm_full_exit'):.0f}: kvm-unit-tests vmexit vmcall, Skylake-SP) + n x "
        f"KVM's software posting ({software_posting_cost(model.latency):.0f}: pi_test_and_set_"
        "pir and pi_test_and_set_on on the target's PID, Levinthal latencies); KVM's per-"
        "destination bookkeeping and the host's notification IPI are not costed (no cited "
        "figure): a best case for the hypercall",
        f"exits: n x (exit round trip {model.value('kvm_full_exit'):.0f} - IPI fastpath saving "
        f"{model.value('kvm_fastpath_saving'):.0f} (commit a9ab13ff6e84) + software posting)",
        "pv_hypercall_no_ipiv: KVM's hypercall path (kvm_emulate_hypercall, kvm_pv_send_ipi) "
        "does not depend on IPIv: the same cycles as pv_hypercall",
        f"without IPIv the hypercall beats n WRMSR exits from n = {no_ipiv}",
    ] + [_crossover_note(bus, model) for bus in BUS_VARIANTS] + [
        _far_unit_note(bus, model) for bus in BUS_VARIANTS]


def _far_unit_note(bus, model):
    """The crossover if every transfer of the unit were farther than the core's L1."""
    found = []
    for label, lat in LATENCY_LADDER[1:]:
        far = model.with_latency(MemoryLatency(model.latency.l1, model.latency.pid_first,
                                               uniform=lat))
        n = crossover(bus=bus, model=far)
        found.append(f"{label} ({lat}): {f'from n = {n}' if n else 'never'}")
    return (f"where the hypercall would beat IPIv (n <= {MULTICAST_N[-1]}, {bus} bus) if every "
            f"transfer of the unit were at latency L, the software posting unchanged: "
            + "; ".join(found))


def _multicast_plot(rows, header, stem):
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(PLOT_SIZE[0] / PLOT_DPI,
                                                  PLOT_SIZE[1] / PLOT_DPI), layout="constrained")
    styles = {"ipiv": "-o", "pv_hypercall": "-s", "exits": "-^", "pv_hypercall_no_ipiv": ":D"}
    for bus in BUS_VARIANTS:
        mine = [r for r in rows if r[0] == bus]
        n = [int(r[1]) for r in mine]
        for path in MULTICAST_PATHS:
            if path != "ipiv" and bus != next(iter(BUS_VARIANTS)):
                continue            # only IPIv depends on the bus
            sender = [float(r[header.index(f"{path}_sender")]) for r in mine]
            last = [float(r[header.index(f"{path}_last")]) for r in mine]
            same = sender == last
            suffix = f", {bus} bus" if path == "ipiv" else ""
            ax1.plot(n, sender, styles[path], lw=2, ms=5, markevery=4,
                     label=f"{MULTICAST_LABELS[path]}{suffix}"
                           + (" (sender = last target)" if same else " (sender)"))
            if not same:
                ax1.plot(n, last, "--", lw=1.5, label=f"{MULTICAST_LABELS[path]}{suffix} "
                                                       "(last target)")
        where = next((k for k, r in zip(n, mine)
                      if float(r[header.index("hypercall_minus_ipiv")]) < 0), None)
        line, = ax2.plot(n, [float(r[header.index("hypercall_minus_ipiv")]) for r in mine],
                         "-o", lw=2, ms=5, markevery=4, label=f"{bus} bus: " + (
                             f"the hypercall wins from n = {where}" if where else
                             f"no crossover for n <= {n[-1]}"))
        if where:
            ax2.axvline(where, color=line.get_color(), ls="--", lw=1.2)
    ax1.set_yscale("log")
    ax1.set_xlabel("destinations n")
    ax1.set_ylabel("cycles (log scale)")
    ax1.set_title("One guest IPI to n destinations")
    ax1.legend(fontsize=11)
    ax2.axhline(0, color="black", lw=1.2, label="below: the hypercall beats IPIv")
    ax2.set_ylim(bottom=min(0, ax2.get_ylim()[0]) - 100)
    ax2.set_xlabel("destinations n")
    ax2.set_ylabel("cycles the hypercall costs beyond n IPIv writes")
    ax2.set_title("PV hypercall minus IPIv, sender cycles")
    ax2.legend()
    return write_plot(fig, stem)


def sweep_multicast(model, out_dir, progress=None):
    header, rows = _multicast_rows(model, progress)
    stem = os.path.join(out_dir, "multicast")
    paths = [write_csv(f"{stem}.csv", header, rows, _multicast_notes(model))]
    return paths + _multicast_plot(rows, header, stem)


# -- sweep: the two memory ports over the memory round trip ------------------------------------

#: Memory round trips R (cycles) of the ``bus`` sweep; the pipelined port starts at 2.
BUS_ROUND_TRIPS = (1, 2, 3, 4, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100)
MIN_ROUND_TRIP = {"classic": 1, "pipelined": 2}


def port_model(model, bus, round_trip):
    """``model`` with the unit on port ``bus`` and every transfer of the unit at memory round
    trip ``round_trip`` (latency R - 1); KVM's software posting keeps its cited latencies."""
    latency = MemoryLatency(model.latency.l1, model.latency.pid_first, uniform=round_trip - 1)
    return replace(model, bus=bus, bench=model.bench if bus == model.bus else None,
                   latency=latency)


def _break_even(model, bus, mode, start, limit=10_000):
    """The smallest R from ``start`` at which IPIv saves nothing on ``bus``, or None."""
    return next((r for r in range(start, limit) if
                 port_model(model, bus, r).saving(mode) <= 0), None)


def _bus_notes(model):
    notes = ["R: the memory round trip of every transfer of the unit (classic: ack R - 1 "
             "cycles after stb; pipelined: each answer R - 1 cycles after its request is "
             "taken, R >= 2); KVM's software posting keeps its cited latencies (L1, PID line)",
             "saved_per_ipi: round trip without IPIv minus with it (the exit path minus the "
             "unit's posting; the fitted base cancels out)"]
    for mode in MODES:
        diff = [port_model(model, "pipelined", r).saving(mode) -
                port_model(model, "classic", r).saving(mode) for r in (2, 5, 100)]
        ends = {bus: _break_even(model, bus, mode, MIN_ROUND_TRIP[bus]) for bus in BUS_VARIANTS}
        notes.append(f"{mode}: the pipelined port saves {diff[0]:.0f} / {diff[1]:.0f} / "
                     f"{diff[2]:.0f} cycles more per IPI at R = 2 / 5 / 100; IPIv stops "
                     f"saving at " + ", ".join(f"R = {r} on the {bus} port" if r else
                                               f"no R below 10000 on the {bus} port"
                                               for bus, r in ends.items()))
    return notes


def sweep_bus(model, out_dir, progress=None):
    rows = []
    for bus in BUS_VARIANTS:
        for mode in MODES:
            for r in (r for r in BUS_ROUND_TRIPS if r >= MIN_ROUND_TRIP[bus]):
                m = port_model(model, bus, r)
                off, on = m.cell(mode, False).total, m.cell(mode, True).total
                rows.append([bus, mode, r, f"{m.ipiv_post(mode):.0f}", f"{off:.1f}",
                             f"{on:.1f}", f"{off - on:.1f}", f"{_saving_pct(off, on):.2f}"])
    stem = os.path.join(out_dir, "bus")
    paths = [write_csv(f"{stem}.csv", ["bus", "mode", "round_trip_R", "ipiv_posting_cycles",
                                       "round_trip_off", "round_trip_on", "saved_per_ipi",
                                       "saving_pct"], rows, _bus_notes(model))]
    plt = _pyplot()
    fig, ax = _figure(plt)
    saved = []
    for mode, color in zip(MODES, ("C0", "C1")):          # a colour per mode, a style per port
        for bus, style in zip(BUS_VARIANTS, ("-o", "--s")):
            pts = [(int(r[2]), float(r[6])) for r in rows if r[0] == bus and r[1] == mode]
            saved += [y for _, y in pts]
            ax.plot(*zip(*pts), style, lw=2, ms=7, color=color,
                    label=f"{mode} guest, {bus} memory port")
    return paths + _finish_saving_plot(
        fig, ax, stem, saved,
        xlabel="memory round trip R of the unit's transfers (cycles; the pipelined port "
               "from R = 2)",
        ylabel="cycles saved per IPI round trip with IPIv",
        title="IPIv saving per IPI: classic vs pipelined memory port")


SWEEPS = {s.name: s for s in [
    Sweep("pid-latency", "PID line (or every unit transfer) from L1 hit to remote socket",
          sweep_pid_latency),
    Sweep("non-virtualizable", "fraction of logical / shorthand / NMI IPIs (golden model)",
          sweep_non_virtualizable),
    Sweep("target-state", "target running (0xF2) vs blocked (wakeup vector 0xF1)",
          sweep_target_state),
    Sweep("table-sharing", "vCPUs posting at once through one PID-pointer table (RTL)",
          sweep_table_sharing, gateware=True),
    Sweep("multicast", "one IPI to n = 1..64 destinations: IPIv, PV hypercall, WRMSR exits",
          sweep_multicast),
    Sweep("bus", "cycles saved per IPI on the classic and the pipelined memory port, memory "
                 "round trip R = 1..100", sweep_bus),
]}


def run_sweep(name, *, out_dir=DEFAULT_OUT, model=None, progress=None, measure_sharing=None,
              bus="classic", **options):
    """Run the named sweep; returns the paths it wrote. Raises KeyError for an unknown name.

    ``model``: the round-trip model (default: fitted with the posting cost of the unit on
    memory port ``bus``, `sim.round_trip.fit`). ``measure_sharing(n_cores, *, ipis_per_core,
    latency, bus)``: the gateware measurement a ``gateware`` sweep needs
    (`tb.sharing.measure_sharing`); ValueError if it is missing.
    """
    sweep = SWEEPS[name]
    if sweep.gateware:
        if measure_sharing is None:
            raise ValueError(f"sweep {name!r} measures the gateware: pass measure_sharing "
                             f"(tb.sharing.measure_sharing)")
        options["measure_sharing"] = measure_sharing
    os.makedirs(out_dir, exist_ok=True)
    return sweep.run(model or fit(bus=bus), out_dir, progress, **options)

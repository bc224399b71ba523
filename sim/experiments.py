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

This module needs only the models. The last sweep takes its gateware measurement as a
function (``measure_sharing``, `tb.sharing.measure_sharing`) from the caller.
"""

import csv
import os
from dataclasses import dataclass
from statistics import mean

from hdl.formats import DeliveryMode, DestMode, ICRLow, Shorthand
from .golden import GoldenIPIVirtualizer, Outcome
from .round_trip import (
    MODES, Breakdown, MemoryLatency, fit, posting_cost, posting_transfers, seed_table,
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
    ax.set_title("Seed table vs model (fitted: the IPIv-on row; IPIv off is predicted)")
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
    _zero_line(ax, savings)
    ax.set_xlabel("where the data is: latency L in cycles, log scale (Levinthal's ladder; "
                  "LLC 65/75: the line shared/modified in another core)")
    ax.set_ylabel("round-trip saving with IPIv (%)")
    ax.set_title("IPIv saving vs where the PID (or every line the unit touches) is cached")
    ax.legend()
    return paths + write_plot(fig, stem)


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
            and dest != 0xFFFF_FFFF)


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
                                  posting_cost(mode, model.latency, ipiv=False,
                                               bench=model.bench)))
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
    _zero_line(ax, savings)
    ax.set_xlabel("fraction of IPIs IPIv cannot virtualize (logical, shorthand, NMI; split "
                  "equally)")
    ax.set_ylabel("mean round-trip saving with IPIv (%)")
    ax.set_title("IPIv saving vs non-virtualizable IPIs")
    ax.legend()
    return paths + write_plot(fig, stem)


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
    _zero_line(ax, savings)
    ax.set_xlabel("target wakeup latency (cycles; 0: target running, notification 0xF2)")
    ax.set_ylabel("round-trip saving with IPIv (%)")
    ax.set_title("IPIv saving: running vs blocked target (wakeup vector 0xF1)")
    ax.legend()
    return paths + write_plot(fig, stem)


# -- sweep: vCPUs sharing one PID-pointer table ---------------------------------------------

SHARING_CORES = (1, 2, 4, 8)


def sweep_table_sharing(model, out_dir, progress=None, *, measure_sharing, cores=SHARING_CORES,
                        ipis_per_core=8):
    # The simulator runs every transfer at one ack delay: the mean of the seed model's
    # per-transfer latencies, so one core reproduces the model's posting cost.
    lats = model.latency.of(posting_transfers("x2APIC"))
    uniform = round(mean(lats))
    measured = {}
    for n in cores:
        if progress:
            progress(f"table-sharing: simulating {n} core(s)")
        measured[n] = measure_sharing(n, ipis_per_core=ipis_per_core, latency=uniform)
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
                       comments=[f"IPIVSystem(n) on Amaranth's simulator, one VM (one PID-"
                                 f"pointer table), each core posts {ipis_per_core} x2APIC IPIs "
                                 f"one at a time to vCPUs not posted to before, memory ack {uniform} cycles after stb "
                                 f"(mean of the seed model's per-transfer latencies)",
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
    ax1.set_title("Shared PID-pointer table and memory port")
    return paths + write_plot(fig, stem)


SWEEPS = {s.name: s for s in [
    Sweep("pid-latency", "PID line (or every unit transfer) from L1 hit to remote socket",
          sweep_pid_latency),
    Sweep("non-virtualizable", "fraction of logical / shorthand / NMI IPIs (golden model)",
          sweep_non_virtualizable),
    Sweep("target-state", "target running (0xF2) vs blocked (wakeup vector 0xF1)",
          sweep_target_state),
    Sweep("table-sharing", "vCPUs posting at once through one PID-pointer table (RTL)",
          sweep_table_sharing, gateware=True),
]}


def run_sweep(name, *, out_dir=DEFAULT_OUT, model=None, progress=None, measure_sharing=None,
              **options):
    """Run the named sweep; returns the paths it wrote. Raises KeyError for an unknown name.

    ``measure_sharing(n_cores, *, ipis_per_core, latency)``: the gateware measurement a
    ``gateware`` sweep needs (`tb.sharing.measure_sharing`); ValueError if it is missing.
    """
    sweep = SWEEPS[name]
    if sweep.gateware:
        if measure_sharing is None:
            raise ValueError(f"sweep {name!r} measures the gateware: pass measure_sharing "
                             f"(tb.sharing.measure_sharing)")
        options["measure_sharing"] = measure_sharing
    os.makedirs(out_dir, exist_ok=True)
    return sweep.run(model or fit(), out_dir, progress, **options)


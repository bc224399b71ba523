"""A system model of the seed's IPI round trip (``docs/architecture.md`` §7), in cycles.

The benchmark is kvm-unit-tests ``vmexit ipi``: vCPU 0 calls ``on_cpu(1, nop, 0)``, which writes
the ICR (xAPIC: a busy-poll read of ICR, then ICR2, then ICR through the APIC-access page;
x2APIC: one WRMSR 0x830) and spins until vCPU 1's IPI handler has run ``nop`` and set
``ipi_done``; vCPU 1 idles in a loop (not HLT), so its side never exits. One round trip is

    T(mode, IPIv) = base + xapic_guest_extra * [xAPIC] + post(mode, IPIv)

``post`` is the only term IPIv changes:

- IPIv on: the processor posts. Its cost is the gateware's, of the selected memory port
  (``bus``): on the classic port, the bus transfers the golden model (transfer-exact with the
  RTL) performs for the ICR write, each costing ``1 + latency`` cycles, plus the unit's fixed
  overhead; on the pipelined port, the golden model's round trips, each as long as its
  requests issued back to back and answered in order (`RTLTrips`), plus the fixed overhead.
  Both are measured from the RTL (`RTL_BENCHES`, re-measured by `tb.runs.measure_rtl`). A
  transfer's latency is L1 except the first touch of the target's PID line, which the target
  left modified in its own cache when it last processed a notification. A latency L is the
  memory round trip R - 1 on either port; the pipelined port has no R = 1 (L >= 1).
- IPIv off, x2APIC: a WRMSR exit handled by KVM's IPI fastpath: the full exit round trip minus
  the fastpath's cited saving, plus KVM's software posting.
- IPIv off, xAPIC: the ICR write is virtualized (the gateware's store and VICR_HI read-back)
  and ends in an APIC-write exit through KVM's full path (no fastpath), plus software posting.
  ICR2 writes never exit (SDM: a write to 310H-313H clears bytes 2:0 of VICR_HI, "no other
  virtualization or VM exit occurs"), so ``xapic_guest_extra`` is the same with IPIv on and off.

Two parameters are fitted, both to the IPIv-on row of the seed table (``base`` to x2APIC,
``xapic_guest_extra`` to xAPIC); the IPIv-off row is a prediction from cited figures. Every
`Parameter` carries its unit and either its source or ``fitted=True``.

Plain Python: the golden model only; the RTL bench is measured by `tb.runs.measure_rtl`.
"""

from dataclasses import dataclass, field, replace
from statistics import mean, stdev

from hdl.formats import ICRWriteKind
from hdl.params import check_bus
from .golden import GoldenIPIVirtualizer
from .scenarios import build_vm, guest_ipi, icr_low


__all__ = [
    "Parameter", "PARAMETERS", "SEED", "SEED_SOURCE", "RTL_BENCH", "RTL_BENCH_PIPELINED",
    "RTL_BENCHES", "RTL_BENCH_COMMAND", "MemoryLatency", "RTLLine", "RTLTrips", "rtl_line",
    "rtl_trips", "compare_rtl", "posting_transfers", "posting_round_trips", "posting_cost",
    "software_posting_cost", "Breakdown", "RoundTripModel", "fit", "seed_table",
    "format_seed_table", "MODES",
]

MODES = ("xAPIC", "x2APIC")


@dataclass(frozen=True)
class Parameter:
    """One named model parameter.

    Parameters
    ----------
    name : str
    value : float
    unit : str
        Never empty.
    source : str or None
        Where the value comes from (paper, SDM, vendor figure, KVM commit message), with enough
        of the citation to find it. None exactly when ``fitted``.
    fitted : bool
        The value was fitted to the seed's figures (`fit`).
    note : str
        What the parameter stands for in the round trip.
    """
    name: str
    value: float
    unit: str
    source: str | None = None
    fitted: bool = False
    note: str = ""

    def __post_init__(self):
        if not self.unit:
            raise ValueError(f"parameter {self.name!r} must have a unit")
        if self.fitted == (self.source is not None):
            raise ValueError(f"parameter {self.name!r} must have either a source or "
                             f"fitted=True, not {'both' if self.fitted else 'neither'}")


# -- the seed's figures ---------------------------------------------------------------------

SEED_SOURCE = ("Zeng Guang et al., \"[PATCH v7 0/8] IPI virtualization support for VM\", "
               "kvm@vger.kernel.org, 2022-03-04, message-id "
               "20220304080725.18135-1-guang.zeng@intel.com (the same table was posted with v1, "
               "2021-07-16): KVM unittest "
               "vmexit/ipi, 2 vCPUs, AP in an idle loop instead of HLT, 20 runs per cell; "
               "measured on the IPI fastpath with the CPU at base frequency (Zeng Guang's reply "
               "to Wanpeng Li in the v1 thread)")

# (mode, IPIv) -> the 20 runs of the cover letter; their means are the seed's table.
SEED = {
    ("xAPIC", False): (6106, 6244, 6165, 5992, 6083, 6238, 6164, 5984, 5931, 5955,
                       5897, 6140, 6183, 5991, 5866, 6032, 6050, 6004, 5961, 6194),
    ("xAPIC", True): (4816, 4656, 4658, 4710, 4741, 4904, 4617, 4763, 4712, 4530,
                      4673, 4794, 4728, 4994, 4665, 4654, 4653, 4792, 4626, 4576),
    ("x2APIC", False): (4265, 4404, 4233, 4363, 4215, 4304, 4263, 4518, 4645, 4332,
                        4283, 4178, 4363, 4509, 4520, 4229, 4185, 4319, 4196, 4433),
    ("x2APIC", True): (3768, 3546, 3474, 3430, 3551, 3547, 3709, 3779, 3667, 3724,
                       3569, 3598, 3628, 3842, 3739, 3701, 3726, 3746, 3392, 3760),
}


# -- cited parameters -------------------------------------------------------------------------

_LEVINTHAL = ("D. Levinthal, \"Performance Analysis Guide for Intel Core i7 Processor and Intel "
              "Xeon 5500 processors\", Intel, 2009, table \"Data Source Latency (approximate)\"")

PARAMETERS = {p.name: p for p in [
    Parameter(
        "kvm_full_exit", 1529, "cycles",
        source="Wanpeng Li, \"[PATCH v2] KVM: VMX: Micro-optimize vmexit time when not "
               "exposing PMU\", kvm@vger.kernel.org, 2020-03-13 (queued by Paolo Bonzini "
               "2020-03-14): kvm-unit-tests vmexit.flat 'vmcall' 1559 -> 1529 cycles on a "
               "Skylake-SP server",
        note="VM exit, KVM's full exit path (vcpu_enter_guest, handle_exit) and VM entry: the "
             "round trip of an exit whose handler does nothing; stands for the APIC-write exit"),
    Parameter(
        "kvm_fastpath_saving", 945, "cycles",
        source="commit a9ab13ff6e84 \"KVM: X86: Improve latency for single target IPI "
               "fastpath\" (Wanpeng Li, Linux 5.8): kvm-unit-tests vmexit.flat ipi on a "
               "Skylake-SP server, 4238 cycles without fastpath -> 3293 with it (22.3%)",
        note="what KVM's WRMSR-ICR fastpath takes off an x2APIC IPI's round trip compared "
             "with the full exit path"),
    Parameter(
        "latency_l1", 4, "cycles", source=_LEVINTHAL + ": L1 cache hit ~4 cycles",
        note="a bus transfer to a line in the posting core's L1 (its virtual-APIC page, the "
             "PID-pointer table entry, the PID line once fetched)"),
    Parameter(
        "latency_pid_line", 75, "cycles",
        source=_LEVINTHAL + ": L3 hit, line modified in another core ~75 cycles",
        note="the first touch of the target's PID line: the busy-idle target cleared ON and "
             "read-and-cleared the PIR when it processed the previous notification"),
]}

# The fitted parameters: their values come from `fit`; these entries say what they mean.
FITTED_NOTES = {
    "base": "everything IPIv and the APIC mode leave unchanged: on_cpu() bookkeeping, the "
            "WRMSR itself, delivery of the notification IPI, posted-interrupt processing and "
            "the handler on the target, ipi_done back to the sender, EOI",
    "xapic_guest_extra": "the xAPIC sequence through the APIC-access page (ICR busy-poll read, "
                         "ICR2 write, ICR write; the target's EOI) beyond x2APIC's WRMSRs",
}


# -- the RTL's posting cost ------------------------------------------------------------------

RTL_BENCH_COMMAND = "ipiv bench --json --bus {bus}"

# Recorded with RTL_BENCH_COMMAND (Amaranth simulation of hdl.IPIVirtualizer) on the tree at
# commit 4756bb8: cycles from ``icr`` accepted to ``notify.valid`` / ``exit.valid`` for a memory
# that acks 0, 1 and 4 cycles after ``stb`` (the x2APIC IPIv-off case re-recorded when the
# x2APIC intercept made it a WRMSR exit without a transfer). `tb.runs.measure_rtl` runs the
# bench again; a test compares the two.
RTL_BENCH = {
    "notify x2APIC": {"transfers": 6, "cycles": {0: 7, 1: 13, 4: 31}},
    "notify xAPIC": {"transfers": 7, "cycles": {0: 8, 1: 15, 4: 36}},
    "exit x2APIC, IPIv off": {"transfers": 0, "cycles": {0: 1, 1: 1, 4: 1}},   # WRMSR exit
    "exit xAPIC, IPIv off": {"transfers": 2, "cycles": {0: 3, 1: 5, 4: 11}},
}

# The pipelined port (``IPIVirtualizer(bus="pipelined")``), recorded the same way when it was
# added (2026-12-06): each answer 1 and 4 cycles after its request is taken (R = 2 and 5; the
# port has no R = 1).
RTL_BENCH_PIPELINED = {
    "notify x2APIC": {"transfers": 6, "cycles": {1: 10, 4: 19}},
    "notify xAPIC": {"transfers": 7, "cycles": {1: 12, 4: 24}},
    "exit x2APIC, IPIv off": {"transfers": 0, "cycles": {1: 1, 4: 1}},   # WRMSR exit
    "exit xAPIC, IPIv off": {"transfers": 2, "cycles": {1: 4, 4: 7}},
}

#: The recorded bench of each memory port (`hdl.formats.BUS_KINDS`).
RTL_BENCHES = {"classic": RTL_BENCH, "pipelined": RTL_BENCH_PIPELINED}


@dataclass(frozen=True)
class RTLLine:
    """``cycles(L) = overhead + transfers * (1 + L)`` for a memory that acks ``L`` cycles late."""
    overhead: int
    transfers: int

    def cycles(self, latencies):
        """Cycles with per-transfer ack delays ``latencies`` (one per transfer)."""
        if len(latencies) != self.transfers:
            raise ValueError(f"{len(latencies)} latencies for {self.transfers} transfers")
        return self.overhead + sum(1 + lat for lat in latencies)


def rtl_line(case, bench=None):
    """The linear cost model of an RTL bench ``case``, checked against every measured point."""
    entry = (bench or RTL_BENCH)[case]
    transfers, points = entry["transfers"], entry["cycles"]
    line = RTLLine(points[0] - transfers, transfers)
    for lat, cycles in points.items():
        if line.cycles([lat] * transfers) != cycles:
            raise ValueError(f"RTL case {case!r} is not linear in the memory latency: "
                             f"{cycles} cycles at ack+{lat}, line predicts "
                             f"{line.cycles([lat] * transfers)}")
    return line


@dataclass(frozen=True)
class RTLTrips:
    """The pipelined port's cost: ``overhead`` plus each round trip (``trips``: its number of
    requests, in order). A round trip's requests are taken one per cycle; request i is answered
    ``L_i`` cycles after it is taken (L_i >= 1), in order; the next round trip starts in the
    cycle after its last answer. With one latency L, a round trip of k requests takes k + L."""
    overhead: int
    trips: tuple

    @property
    def transfers(self):
        return sum(self.trips)

    def cycles(self, latencies):
        """Cycles with per-transfer answer delays ``latencies`` (one per transfer, in order)."""
        if len(latencies) != self.transfers:
            raise ValueError(f"{len(latencies)} latencies for {self.transfers} transfers")
        if any(lat < 1 for lat in latencies):
            raise ValueError(f"a pipelined memory answers at least 1 cycle after it takes a "
                             f"request (R >= 2), not {min(latencies)}")
        total, pending = self.overhead, iter(latencies)
        for k in self.trips:
            last = -1
            for i in range(k):
                last = max(i + next(pending), last + 1)     # in order, one per cycle
            total += last + 1
        return total


def rtl_trips(case, trips, bench=None):
    """The round-trip cost model of a pipelined RTL bench ``case`` whose request makes round
    trips ``trips`` (`posting_round_trips`), checked against every measured point."""
    entry = (bench or RTL_BENCH_PIPELINED)[case]
    if sum(trips) != entry["transfers"]:
        raise ValueError(f"RTL case {case!r}: {sum(trips)} transfers in round trips {trips}, "
                         f"the bench counts {entry['transfers']}")
    points = entry["cycles"]
    first = min(points)
    bare = RTLTrips(0, tuple(trips))
    line = RTLTrips(points[first] - bare.cycles([first] * bare.transfers), tuple(trips))
    for lat, cycles in points.items():
        if line.cycles([lat] * line.transfers) != cycles:
            raise ValueError(f"RTL case {case!r} does not follow its round trips: {cycles} "
                             f"cycles at latency {lat}, the model predicts "
                             f"{line.cycles([lat] * line.transfers)}")
    return line


def compare_rtl(measured, recorded=None):
    """Differences between a measurement and the recorded bench (default: the classic one),
    as readable lines."""
    recorded = recorded or RTL_BENCH
    diffs = []
    for case, entry in recorded.items():
        got = measured.get(case)
        if got is None:
            diffs.append(f"{case}: not measured")
        elif got != entry:
            diffs.append(f"{case}: recorded {entry}, measured {got}")
    return diffs


# -- which transfers a posting makes (from the golden model) -------------------------------

@dataclass(frozen=True)
class MemoryLatency:
    """Ack delay, in cycles, of each kind of transfer the posting makes.

    ``pid_first``: the first transfer to the target's PID line; ``l1``: every other transfer.
    ``uniform``, when set, overrides both (every transfer at that latency).
    """
    l1: float = PARAMETERS["latency_l1"].value
    pid_first: float = PARAMETERS["latency_pid_line"].value
    uniform: float | None = None

    def of(self, regions):
        if self.uniform is not None:
            return [self.uniform] * len(regions)
        out, seen_pid = [], False
        for region in regions:
            out.append(self.pid_first if region == "pid" and not seen_pid else self.l1)
            seen_pid |= region == "pid"
        return out


_TRANSFER_CACHE = {}


class _TripRecorder(GoldenIPIVirtualizer):
    """The pipelined golden model, noting how many requests each round trip it makes has."""

    def __init__(self):
        super().__init__(bus="pipelined")
        self.trips = []

    def _trip(self, memory, requests):
        if requests:
            self.trips.append(len(requests))
        return super()._trip(memory, requests)


def _seed_write(mode, ipiv, bus):
    """(regions, round trips) of the seed's ICR write (the ICR-low write in xAPIC mode) on
    port ``bus``, from the golden model."""
    vm = build_vm({0: "running", 1: "running"}, max_vcpu_ids=2)
    cfg = replace(vm.config(0, x2apic=mode == "x2APIC"), ipiv=ipiv)
    golden = _TripRecorder() if bus == "pipelined" else GoldenIPIVirtualizer()
    for request in guest_ipi(cfg, icr_low(0x40), 1):
        before, trips_before = len(vm.memory.log), len(getattr(golden, "trips", ()))
        golden.execute(cfg, vm.memory, request.kind, request.value)
        if request.kind is ICRWriteKind.XAPIC_ICR_HI:
            continue        # ICR2: its own guest access, counted in xapic_guest_extra
        regions = []
        for access in vm.memory.log[before:]:
            byte = access.adr << 3
            if vm.pid_table <= byte < vm.pid_table + 8 * vm.max_vcpu_ids:
                regions.append("table")
            elif any(pid <= byte < pid + 64 for pid in vm.pids.values()):
                regions.append("pid")
            else:
                regions.append("vapic")
        trips = tuple(getattr(golden, "trips", ())[trips_before:])
    return tuple(regions), trips


def posting_transfers(mode, *, ipiv=True, bus="classic"):
    """The regions (``vapic``, ``table``, ``pid``) of the bus transfers the unit with memory
    port ``bus`` makes for the seed's ICR write (the ICR-low write in xAPIC mode), in order,
    from the golden model."""
    key = (mode, ipiv, check_bus(bus))
    if key not in _TRANSFER_CACHE:
        _TRANSFER_CACHE[key] = _seed_write(mode, ipiv, bus)
    return _TRANSFER_CACHE[key][0]


def posting_round_trips(mode, *, ipiv=True):
    """The pipelined port's round trips for the seed's ICR write: the number of requests of
    each, in order, from the golden model (``bus="pipelined"``)."""
    posting_transfers(mode, ipiv=ipiv, bus="pipelined")
    return _TRANSFER_CACHE[(mode, ipiv, "pipelined")][1]


_RTL_CASE = {("x2APIC", True): "notify x2APIC", ("xAPIC", True): "notify xAPIC",
             ("x2APIC", False): "exit x2APIC, IPIv off", ("xAPIC", False): "exit xAPIC, IPIv off"}


def posting_cost(mode, latency=MemoryLatency(), *, ipiv=True, bench=None, overhead_scale=1.0,
                 bus="classic"):
    """Cycles the unit with memory port ``bus`` takes for the seed's ICR write: its RTL bench
    (``bench``, default the recorded one of ``bus``) evaluated at the per-transfer latencies
    (``ipiv=False``: the store before the APIC-write exit). A latency is R - 1 on either port;
    the pipelined port has none below 1 (`ValueError`)."""
    case = _RTL_CASE[(mode, ipiv)]
    regions = posting_transfers(mode, ipiv=ipiv, bus=bus)
    if bus == "pipelined":
        line = rtl_trips(case, posting_round_trips(mode, ipiv=ipiv), bench)
    else:
        line = rtl_line(case, bench)
    if len(regions) != line.transfers:
        raise AssertionError(f"golden model makes {len(regions)} transfers for {mode}, "
                             f"the RTL bench counts {line.transfers}")
    return line.cycles(latency.of(regions)) + (overhead_scale - 1.0) * line.overhead


# KVM's vmx_deliver_posted_interrupt: pi_test_and_set_pir then pi_test_and_set_on, two locked
# bit-test-and-sets on the target's PID line, accounted like the gateware's locked RMWs.
SOFTWARE_POSTING_REGIONS = ("pid", "pid", "pid", "pid")


def software_posting_cost(latency=MemoryLatency()):
    """Cycles of KVM's software posting (read and write of each locked operation). The core
    runs it, so ``latency.uniform`` (the unit's memory port) does not apply."""
    lat = MemoryLatency(latency.l1, latency.pid_first).of(SOFTWARE_POSTING_REGIONS)
    return sum(1 + x for x in lat)


# -- the model ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Breakdown:
    """The round trip of one cell, by component (cycles); ``total`` is their sum."""
    mode: str
    ipiv: bool
    components: tuple          # ((name, cycles), ...)

    @property
    def total(self):
        return sum(c for _, c in self.components)

    def __getitem__(self, name):
        return dict(self.components)[name]


@dataclass(frozen=True)
class RoundTripModel:
    """The round-trip model with every parameter (cited and fitted) by name.

    Parameters
    ----------
    params : dict
        name -> `Parameter`; must include ``base`` and ``xapic_guest_extra`` (see `fit`).
    latency : MemoryLatency
    bench : dict
        The RTL bench of ``bus`` to take the unit's cost from (default: the recorded one,
        `RTL_BENCHES`).
    bus : str
        The unit's memory port (`hdl.formats.BUS_KINDS`): whose posting cost the model uses.
    """
    params: dict
    latency: MemoryLatency = field(default_factory=MemoryLatency)
    bench: dict | None = None
    bus: str = "classic"

    def value(self, name):
        return self.params[name].value

    def with_latency(self, latency):
        return replace(self, latency=latency)

    def unit_cost(self, mode, *, ipiv=True, bus=None):
        """The unit's cycles for the seed's ICR write on port ``bus`` (default the model's),
        at the model's latencies; a re-measured ``bench`` counts only for the model's bus."""
        bus = self.bus if bus is None else bus
        return posting_cost(mode, self.latency, ipiv=ipiv, bus=bus,
                            bench=self.bench if bus == self.bus else None)

    def ipiv_post(self, mode):
        return self.unit_cost(mode)

    def exit_path(self, mode, *, fastpath=None):
        """The sender's exit path on the round trip; ``fastpath`` defaults to KVM's choice for
        the seed's IPI (x2APIC: yes; xAPIC: there is none)."""
        fastpath = (mode == "x2APIC") if fastpath is None else fastpath
        parts = [("kvm exit round trip", self.value("kvm_full_exit"))]
        if fastpath:
            parts.append(("kvm fastpath saving", -self.value("kvm_fastpath_saving")))
        if mode == "xAPIC":   # the APIC-access page write is virtualized, then the trap
            parts.append(("vICR store before exit", self.unit_cost(mode, ipiv=False)))
        parts.append(("kvm software posting", software_posting_cost(self.latency)))
        return parts

    def cell(self, mode, ipiv, *, extra=()):
        """The `Breakdown` of one cell; ``extra``: more (name, cycles) components."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        parts = [("base", self.value("base"))]
        if mode == "xAPIC":
            parts.append(("xapic guest extra", self.value("xapic_guest_extra")))
        if ipiv:
            parts.append(("ipiv posting (RTL)", self.ipiv_post(mode)))
        else:
            parts += self.exit_path(mode)
        return Breakdown(mode, ipiv, tuple(parts) + tuple(extra))

    def saving(self, mode):
        return self.cell(mode, False).total - self.cell(mode, True).total


def fit(params=None, *, latency=MemoryLatency(), bench=None, seed=None, bus="classic"):
    """Fit ``base`` (to x2APIC, IPIv on) and ``xapic_guest_extra`` (to xAPIC, IPIv on) with
    the posting cost of the unit with memory port ``bus``; return the `RoundTripModel` with
    every parameter."""
    params = dict(params or PARAMETERS)
    seed = seed or SEED
    target = {key: mean(runs) for key, runs in seed.items()}
    base = target[("x2APIC", True)] - posting_cost("x2APIC", latency, bench=bench, bus=bus)
    extra = target[("xAPIC", True)] - base - posting_cost("xAPIC", latency, bench=bench,
                                                          bus=bus)
    params["base"] = Parameter("base", base, "cycles", fitted=True, note=FITTED_NOTES["base"])
    params["xapic_guest_extra"] = Parameter("xapic_guest_extra", extra, "cycles", fitted=True,
                                            note=FITTED_NOTES["xapic_guest_extra"])
    return RoundTripModel(params, latency, bench, check_bus(bus))


FITTED_CELLS = {("x2APIC", True): "base", ("xAPIC", True): "xapic_guest_extra"}


def seed_table(model=None):
    """Rows of the seed's table beside the model's, with the per-cell error (%)."""
    model = model or fit()
    rows = []
    for mode in MODES:
        for ipiv in (False, True):
            runs = SEED[(mode, ipiv)]
            seed_mean, got = mean(runs), model.cell(mode, ipiv).total
            rows.append({
                "mode": mode, "ipiv": ipiv, "seed": seed_mean, "seed_stdev": stdev(runs),
                "model": got, "error_pct": 100 * (got - seed_mean) / seed_mean,
                "role": f"fitted ({FITTED_CELLS[(mode, ipiv)]})" if (mode, ipiv) in
                        FITTED_CELLS else "predicted",
            })
    for mode in MODES:
        off, on = (r for r in rows if r["mode"] == mode)
        for key in ("seed", "model"):
            off[f"{key}_change_pct"] = on[f"{key}_change_pct"] = \
                100 * (on[key] - off[key]) / off[key]
    return rows


def format_seed_table(model=None):
    """The seed's table and the model's side by side, the error per cell, the parameters."""
    model = model or fit()
    rows = seed_table(model)
    out = ["kvm-unit-tests vmexit ipi, 2 vCPUs, target busy-idle: cycles per IPI round trip",
           f"  {'mode':7s} {'IPIv':4s} {'seed (mean +- sd of 20)':>24s} {'model':>8s} "
           f"{'error':>7s}  cell"]
    for r in rows:
        out.append(f"  {r['mode']:7s} {'on' if r['ipiv'] else 'off':4s} "
                   f"{r['seed']:13.2f} +- {r['seed_stdev']:5.1f}  {r['model']:8.1f} "
                   f"{r['error_pct']:+6.2f}%  {r['role']}")
    for mode in MODES:
        off, on = (r for r in rows if r["mode"] == mode)
        out.append(f"  {mode} change with IPIv: seed {on['seed_change_pct']:+.2f}%, model "
                   f"{on['model_change_pct']:+.2f}% (saving {off['seed'] - on['seed']:.1f} vs "
                   f"{off['model'] - on['model']:.1f} cycles)")
    out.append("Parameters (fitted: to the IPIv-on row; the IPIv-off row is predicted)")
    for p in model.params.values():
        origin = "FITTED" if p.fitted else p.source
        out.append(f"  {p.name:20s} {p.value:9.2f} {p.unit:7s} {origin}")
    how = "round trips" if model.bus == "pipelined" else "transfers"
    out.append(f"  unit posting cost, {model.bus} memory port: RTL bench "
               f"({RTL_BENCH_COMMAND.format(bus=model.bus)}) x {how} from the golden model; "
               f"x2APIC {model.ipiv_post('x2APIC'):.0f}, xAPIC {model.ipiv_post('xAPIC'):.0f} "
               f"cycles")
    out.append(f"Seed: {SEED_SOURCE}")
    return "\n".join(out)

"""The figures of the unit alone (``ipiv build --synth-only`` and ``--sweep``): its latency in
cycles and nanoseconds, back-to-back IPIs per microsecond, and their tables.

The cycles come from Amaranth simulation: for ``--synth-only`` the recorded RTL bench
(`sim.round_trip.RTL_BENCHES`, which a test compares with the gateware), for ``--sweep`` the
bench run afresh (`tb.runs.run_bench`), which also gives the back-to-back cycles per IPI.
Nanoseconds are cycles over the median Fmax of each family.
"""


from sim.round_trip import RTL_BENCHES

from .runs import run_bench


__all__ = ["FAMILIES", "bench_at", "recorded_latency", "sweep_rows", "format_sweep",
           "format_unit", "path_text"]

#: The families the unit is built for, each with the device of its board.
FAMILIES = {"ecp5": "ECP5-85F", "ice40": "iCE40UP5K"}


def path_text(path):
    """One line for a worst path (`tb.nextpnr_report.worst_path`)."""
    if not path:
        return "none between registers"
    return (f"{path['start']} -> {path['end']}, {path['logic_levels']} logic levels, "
            f"{path['delay_ns']:.2f} ns ({path['logic_ns']:.2f} logic, "
            f"{path['routing_ns']:.2f} routing)")


def bench_at(bus, round_trip):
    """The x2APIC IPI on port ``bus`` with memory round trip ``round_trip``, simulated:
    cycles from ``icr`` accepted to ``notify.valid``, and cycles per IPI back to back."""
    (row,) = [r for r in run_bench(bus=bus) if r["memory_latency"] == round_trip - 1]
    return {"latency_cycles": row["latency"]["notify x2APIC"]["cycles"],
            "back_to_back_cycles": row["throughput_notify"]["cycles_per_ipi"]}


def recorded_latency(bus, families, round_trip):
    """The x2APIC IPI's latency at ``round_trip`` on port ``bus``: cycles (the recorded RTL
    bench) and nanoseconds at the ECP5 Fmax (None when the unit was not placed)."""
    cycles = RTL_BENCHES[bus]["notify x2APIC"]["cycles"][round_trip - 1]
    fmax = families.get("ecp5", {}).get("fmax_mhz")
    return {"round_trip": round_trip, "cycles": cycles,
            "ns": None if fmax is None else round(1000 * cycles / fmax, 1)}


def sweep_rows(figures, benches):
    """One row per memory port and family: ``figures`` {bus: {family: synth_unit figures}},
    ``benches`` {bus: `bench_at`}."""
    rows = []
    for bus, families in figures.items():
        bench = benches[bus]
        for family, device in FAMILIES.items():
            f = families[family]
            fmax = f["fmax_mhz"]
            rows.append({
                "bus": bus, "family": family, "device": device, "lut": f["lut"],
                "ff": f["ff"], "fmax_mhz": fmax, "fmax_min_mhz": f["fmax_min_mhz"],
                "fmax_max_mhz": f["fmax_max_mhz"], "worst_path": f["worst_path"],
                **bench,
                "latency_ns": round(1000 * bench["latency_cycles"] / fmax, 1),
                "ipis_per_us": round(fmax / bench["back_to_back_cycles"], 2)})
    return rows


def format_sweep(sweep):
    """The sweep as the README's Markdown table, then the worst path of each row."""
    r = sweep["round_trip"]
    lines = [f"IPIVirtualizer(maxphyaddr={sweep['maxphyaddr']}) between registers, Fmax the "
             f"median of {sweep['seeds']} seed{'s' if sweep['seeds'] > 1 else ''} "
             f"(min-max); x2APIC IPIs at memory round trip R = {r}",
             "",
             "| port | device | LUT | FF | Fmax (MHz) | IPI latency at R = 5 | "
             "back-to-back IPIs at R = 5 |",
             "|---|---|---|---|---|---|---|"]
    for row in sweep["rows"]:
        lines.append(
            f"| {row['bus']} | {row['device']} | {row['lut']} | {row['ff']} | "
            f"{row['fmax_mhz']:.1f} ({row['fmax_min_mhz']:.1f}-{row['fmax_max_mhz']:.1f}) | "
            f"{row['latency_cycles']} cycles = {row['latency_ns']:.0f} ns | "
            f"{row['back_to_back_cycles']:g} cycles each = {row['ipis_per_us']:.2f} per us |")
    lines.append("")
    lines.append("Worst paths (the seed nearest the median):")
    for row in sweep["rows"]:
        lines.append(f"  {row['bus']:9s} {row['device']:9s} {path_text(row['worst_path'])}")
    return "\n".join(lines)


def _fmax_text(r):
    spread = (f", {r['fmax_min_mhz']:.2f} to {r['fmax_max_mhz']:.2f} over "
              f"{len(r['seeds'])} seeds" if len(r.get("seeds", ())) > 1 else "")
    return f"  Fmax {r['fmax_mhz']:.2f} MHz (between registers{spread})"


def format_unit(figures, latency, maxphyaddr):
    """``--synth-only``: LUT/FF per port and family, the Fmax and worst path when placed, and
    the x2APIC IPI's latency (``latency``: {bus: `recorded_latency`})."""
    lines = [f"IPIVirtualizer(maxphyaddr={maxphyaddr}), synthesized alone (Yosys):"]
    for bus, families in figures.items():
        for family, r in families.items():
            line = f"  {bus:9s} {family:6s} LUT {r['lut']:5d}  FF {r['ff']:4d}  RAM {r['ram']}"
            if r.get("fmax_mhz") is not None:
                line += _fmax_text(r)
            lines.append(line)
            if r.get("worst_path"):
                lines.append(f"    worst path: {path_text(r['worst_path'])}")
    lines.append(f"x2APIC IPI to notify.valid at memory round trip R = "
                 f"{next(iter(latency.values()))['round_trip']}:")
    for bus, lat in latency.items():
        fmax = figures[bus].get("ecp5", {}).get("fmax_mhz")
        ns = (f" = {lat['ns']:.1f} ns at the ECP5 Fmax {fmax:.2f} MHz" if lat["ns"] is not None
              else " (ns: needs --place for an Fmax)")
        lines.append(f"  {bus:9s} {lat['cycles']:3d} cycles{ns}")
    timed = [lat["ns"] for lat in latency.values() if lat["ns"] is not None]
    if len(timed) == 2:
        lines.append(f"  pipelined / classic: {timed[1] / timed[0]:.2f} of the time")
    return "\n".join(lines)

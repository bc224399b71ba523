"""What-if sweeps: their classification through the golden model, their numbers, their files,
and the ``ipiv experiment`` commands."""

import csv
import json
import os
import subprocess
import sys

import pytest

from sim.experiments import (
    NON_VIRTUALIZABLE_KINDS, SWEEPS, classify_kind, kvm_fastpath_eligible, notification_for,
    run_sweep, seed_table_outputs, sweep_table_sharing,
)
from sim.golden import Outcome
from sim.round_trip import fit
from tb.sharing import measure_sharing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_csv(path):
    with open(path) as f:
        rows = list(csv.reader(line for line in f if not line.startswith("#")))
    return rows[0], rows[1:]


def assert_outputs(paths, stem):
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        f"{stem}.{ext}" for ext in ("csv", "png", "svg"))
    for p in paths:
        assert os.path.getsize(p) > 200, p
    png = next(p for p in paths if p.endswith(".png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    svg = next(p for p in paths if p.endswith(".svg"))
    with open(svg) as f:
        assert "<svg" in f.read()


def column(rows, header, name):
    return [r[header.index(name)] for r in rows]


# -- classification ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["x2APIC", "xAPIC"])
def test_kinds_are_classified_by_the_golden_model(mode):
    assert classify_kind("unicast", mode).outcome is Outcome.POSTED
    for kind in NON_VIRTUALIZABLE_KINDS:
        result = classify_kind(kind, mode)
        assert result.outcome is Outcome.EXIT and result.cause.name == "UNSUPPORTED", kind


def test_kvm_fastpath_rule():
    from hdl.formats import DeliveryMode, DestMode, Shorthand
    from sim.scenarios import icr_low
    assert kvm_fastpath_eligible(icr_low(0x40), 1, "x2APIC")
    assert not kvm_fastpath_eligible(icr_low(0x40), 1, "xAPIC")
    assert not kvm_fastpath_eligible(icr_low(0x40), 0xFFFF_FFFF, "x2APIC")
    assert not kvm_fastpath_eligible(icr_low(0x40, dest_mode=DestMode.LOGICAL), 1, "x2APIC")
    assert not kvm_fastpath_eligible(icr_low(2, mode=DeliveryMode.NMI), 1, "x2APIC")
    assert not kvm_fastpath_eligible(
        icr_low(0x40, shorthand=Shorthand.ALL_EXCLUDING_SELF), 0, "x2APIC")


def test_notification_vector_follows_the_target_state():
    assert notification_for("running") == (0xF2, 2)
    assert notification_for("blocked") == (0xF1, 2)
    assert notification_for("preempted") is None         # SN set: suppressed


# -- sweeps -------------------------------------------------------------------------------------

def test_pid_latency_sweep(tmp_path):
    paths = run_sweep("pid-latency", out_dir=str(tmp_path))
    assert_outputs(paths, "pid-latency")
    header, rows = read_csv(tmp_path / "pid-latency.csv")
    for mode in ("x2APIC", "xAPIC"):
        line = [float(r[header.index("saving_pct")]) for r in rows
                if r[3] == mode and r[2] == "PID line"]
        unit = [float(r[header.index("saving_pct")]) for r in rows
                if r[3] == mode and r[2] == "every unit transfer"]
        # Both paths touch the PID line once: the saving hardly moves with its latency ...
        assert max(line) - min(line) < 2
        # ... but a unit whose every transfer is far loses it.
        assert unit == sorted(unit, reverse=True) and unit[0] - unit[-1] > 15


def test_non_virtualizable_sweep(tmp_path):
    model = fit()
    paths = run_sweep("non-virtualizable", out_dir=str(tmp_path), model=model)
    assert_outputs(paths, "non-virtualizable")
    header, rows = read_csv(tmp_path / "non-virtualizable.csv")
    for mode in ("x2APIC", "xAPIC"):
        mine = [r for r in rows if r[0] == mode]
        saving = [float(r[header.index("saving_pct")]) for r in mine]
        assert saving == sorted(saving, reverse=True)
        off, on = model.cell(mode, False).total, model.cell(mode, True).total
        assert saving[0] == pytest.approx(100 * (off - on) / off, abs=0.01)
        assert abs(saving[-1]) < 0.5         # nothing virtualized: about no change
    with open(tmp_path / "non-virtualizable.csv") as f:
        assert "exit (UNSUPPORTED)" in f.read()


def test_target_state_sweep(tmp_path):
    paths = run_sweep("target-state", out_dir=str(tmp_path))
    assert_outputs(paths, "target-state")
    header, rows = read_csv(tmp_path / "target-state.csv")
    assert set(column(rows, header, "notification_vector")) == {"0xf2", "0xf1"}
    for mode in ("x2APIC", "xAPIC"):
        saving = [float(r[header.index("saving_pct")]) for r in rows if r[0] == mode]
        assert saving == sorted(saving, reverse=True) and saving[-1] < saving[0] / 3


def test_table_sharing_sweep_on_the_gateware(tmp_path):
    messages = []
    paths = sweep_table_sharing(fit(), str(tmp_path), messages.append, cores=(1, 2),
                                ipis_per_core=2, measure_sharing=measure_sharing)
    assert_outputs(paths, "table-sharing")
    assert messages == ["table-sharing: simulating 1 core(s), classic bus",
                        "table-sharing: simulating 2 core(s), classic bus"]
    header, rows = read_csv(tmp_path / "table-sharing.csv")
    one = [r for r in rows if r[0] == "1"]
    two = [r for r in rows if r[0] == "2"]
    # One core alone reproduces the model's posting cost at the mean latency (~102 cycles).
    assert 95 <= float(one[0][header.index("rtl_cycles_to_notify")]) <= 110
    assert float(one[0][header.index("arbitration_wait")]) == 0
    assert float(two[0][header.index("arbitration_wait")]) > 0
    assert int(two[0][header.index("ipis_timed")]) == 4


def test_table_sharing_on_the_pipelined_bus_measures_the_pipelined_system(tmp_path):
    """With the pipelined unit's model, the sweep simulates IPIVSystem(n, bus="pipelined"):
    one core alone takes the pipelined posting cost at the uniform latency it ran at."""
    from sim.round_trip import MemoryLatency, posting_cost
    seen = []

    def measure(n, **kwargs):
        seen.append(kwargs["bus"])
        return measure_sharing(n, **kwargs)
    model = fit(bus="pipelined")
    sweep_table_sharing(model, str(tmp_path), None, cores=(1,), ipis_per_core=2,
                        measure_sharing=measure)
    header, rows = read_csv(tmp_path / "table-sharing.csv")
    with open(tmp_path / "table-sharing.csv") as f:
        uniform = int(f.read().split("every answer ")[1].split()[0])
    assert seen == ["pipelined"]
    assert float(rows[0][header.index("rtl_cycles_to_notify")]) == posting_cost(
        "x2APIC", MemoryLatency(uniform=uniform), bus="pipelined")


def test_bus_sweep_compares_the_ports_over_the_round_trip(tmp_path):
    """Cycles saved per IPI for both ports, R = 1..100 (pipelined from 2): each extra cycle
    of R costs the classic x2APIC posting 6 cycles (6 dependent transfers) and the pipelined
    one 3 (3 round trips), so the pipelined port saves 3R - 3 more (the issue's 6R + 1 and
    3R + 4)."""
    paths = run_sweep("bus", out_dir=str(tmp_path))
    assert_outputs(paths, "bus")
    header, rows = read_csv(tmp_path / "bus.csv")
    saved = {(r[0], r[1], int(r[2])): float(r[header.index("saved_per_ipi")]) for r in rows}
    rs = {bus: sorted(r for b, m, r in saved if b == bus and m == "x2APIC")
          for bus in ("classic", "pipelined")}
    assert rs["classic"][0] == 1 and rs["pipelined"][0] == 2
    assert rs["classic"][-1] == rs["pipelined"][-1] == 100
    for r in rs["pipelined"]:
        assert saved[("pipelined", "x2APIC", r)] - saved[("classic", "x2APIC", r)] == \
            pytest.approx(3 * r - 3)
    for bus, slope in (("classic", 6), ("pipelined", 3)):
        assert saved[(bus, "x2APIC", 10)] - saved[(bus, "x2APIC", 20)] == \
            pytest.approx(10 * slope)
    # the off path of an xAPIC write includes the unit's store and read-back: it moves with R
    off = {(r[0], r[1], int(r[2])): float(r[header.index("round_trip_off")]) for r in rows}
    assert off[("classic", "xAPIC", 20)] > off[("classic", "xAPIC", 10)]
    assert off[("classic", "x2APIC", 20)] == off[("classic", "x2APIC", 10)]
    with open(tmp_path / "bus.csv") as f:
        notes = f.read()
    assert "x2APIC: the pipelined port saves 3 / 12 / 297 cycles more per IPI at R = 2 / 5 / " \
           "100" in notes


def test_multicast_sweep(tmp_path):
    from sim.multicast import BUS_VARIANTS, PATHS, crossover, multicast_costs
    model = fit()
    paths = run_sweep("multicast", out_dir=str(tmp_path), model=model)
    assert_outputs(paths, "multicast")
    header, rows = read_csv(tmp_path / "multicast.csv")
    assert len(rows) == 64 * len(BUS_VARIANTS)
    for row in rows:
        costs = multicast_costs(int(row[1]), bus=row[0], model=model)
        for path in PATHS:
            assert float(row[header.index(f"{path}_sender")]) == pytest.approx(
                costs.path(path).sender_cycles, abs=0.5)
            assert float(row[header.index(f"{path}_last")]) == pytest.approx(
                costs.path(path).last_target_cycles, abs=0.5)
        assert float(row[header.index("hypercall_minus_ipiv")]) == pytest.approx(
            costs.pv_hypercall.sender_cycles - costs.ipiv.sender_cycles, abs=0.5)
    with open(tmp_path / "multicast.csv") as f:
        notes = [line for line in f if line.startswith("# crossover, ")]
    assert len(notes) == len(BUS_VARIANTS)
    for bus, note in zip(BUS_VARIANTS, notes):
        found = crossover(bus=bus, model=model)
        assert (f"sender: from n = {found}" if found else "sender: none for n <= 64") in note


def test_seed_table_outputs(tmp_path):
    paths = seed_table_outputs(fit(), str(tmp_path))
    assert_outputs(paths, "seed-table")
    header, rows = read_csv(tmp_path / "seed-table.csv")
    assert len(rows) == 4 and "error_pct" in header


def test_unknown_sweep():
    with pytest.raises(KeyError):
        run_sweep("nosuch")
    with pytest.raises(ValueError, match="measure_sharing"):
        run_sweep("table-sharing")
    assert set(SWEEPS) == {"pid-latency", "non-virtualizable", "target-state",
                           "table-sharing", "multicast", "bus"}


# -- command line -------------------------------------------------------------------------------

def parser():
    from tb import cli
    return cli.build_parser()


def run(*argv):
    args = parser().parse_args(list(argv))
    return args.func(args)


def ipiv(*argv):
    return subprocess.run([sys.executable, "-m", "tb", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_seed_table(tmp_path, capsys):
    assert run("experiment", "seed-table", "-o", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "FITTED" in out and "seed-table.png" in out
    assert (tmp_path / "seed-table.svg").exists()
    assert run("experiment", "seed-table", "--json", "--no-plot") == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 4 and data["bus"] == "classic"
    assert sum(p["fitted"] for p in data["parameters"].values()) == 2


def test_cli_seed_table_takes_the_posting_cost_of_the_chosen_bus(capsys):
    """``--bus pipelined`` fits and predicts with the pipelined unit's posting: the IPIv-on
    cells still match the seed (fitted) and each IPIv-off prediction moves by what the
    cheaper posting moved the fitted parameters (the xAPIC one also by the store before its
    exit)."""
    from sim.round_trip import posting_cost
    cells = {}
    for bus in ("classic", "pipelined"):
        assert run("experiment", "seed-table", "--json", "--no-plot", "--bus", bus) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["bus"] == bus
        cells[bus] = {(r["mode"], r["ipiv"]): r["model"] for r in data["rows"]}
    shift = posting_cost("x2APIC") - posting_cost("x2APIC", bus="pipelined")
    assert shift > 0
    assert cells["pipelined"][("x2APIC", True)] == cells["classic"][("x2APIC", True)]
    assert cells["pipelined"][("x2APIC", False)] - cells["classic"][("x2APIC", False)] == \
        pytest.approx(shift)
    # base + xapic_guest_extra is fitted to the xAPIC IPIv-on cell, less the xAPIC posting
    xapic_shift = posting_cost("xAPIC") - posting_cost("xAPIC", bus="pipelined")
    store = posting_cost("xAPIC", ipiv=False, bus="pipelined") - posting_cost("xAPIC",
                                                                              ipiv=False)
    assert cells["pipelined"][("xAPIC", False)] - cells["classic"][("xAPIC", False)] == \
        pytest.approx(xapic_shift + store)
    assert run("experiment", "seed-table", "--no-plot", "--bus", "pipelined") == 0
    assert "unit posting cost, pipelined memory port" in capsys.readouterr().out


def test_cli_sweep_and_list(tmp_path, capsys):
    assert run("experiment", "sweep", "target-state", "-o", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "target-state.csv" in out
    # the sweep prints its table, as seed-table does: the CSV's rows, aligned
    header, rows = read_csv(tmp_path / "target-state.csv")
    lines = out.splitlines()
    assert lines[0].split() == header
    assert [line.split() for line in lines[1:1 + len(rows)]] == rows
    assert run("experiment", "sweep", "target-state", "-o", str(tmp_path), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [list(r.values()) for r in data["rows"]] == rows and data["notes"]
    assert run("experiment", "sweep", "--list") == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SWEEPS)
    assert run("experiment", "list") == 0
    assert capsys.readouterr().out == listed
    assert run("experiment", "list", "--json") == 0
    assert set(json.loads(capsys.readouterr().out)) == set(SWEEPS)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plots_are_large_with_named_levels_and_a_zero_line(tmp_path):
    """PNG at least 1600x1000 (and under 300 KB for the README), the latency axis in cache
    levels, every series in the legend, a zero line where a curve goes negative."""
    import matplotlib
    from matplotlib.figure import Figure
    from sim import experiments
    figures = []
    real = experiments.write_plot

    def keep(fig, stem):
        figures.append(fig)
        return real(fig, stem)
    experiments.write_plot = keep
    try:
        paths = run_sweep("pid-latency", out_dir=str(tmp_path))
    finally:
        experiments.write_plot = real
    png = next(p for p in paths if p.endswith(".png"))
    width, height = png_size(png)
    assert width >= 1600 and height >= 1000 and os.path.getsize(png) < 300_000
    (fig,) = figures
    ax = fig.axes[0]
    ticks = " ".join(t.get_text() for t in ax.get_xticklabels())
    for level in ("L1", "L2", "LLC", "remote\nsocket"):
        assert level in ticks
    lines = [l for l in ax.get_lines() if not l.get_label().startswith("_")]
    assert len(lines) == 4
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {l.get_label() for l in lines}
    # the x2APIC far-unit curve goes below zero: a horizontal line at 0 is drawn
    assert any(list(l.get_ydata()) == [0, 0] for l in ax.get_lines())
    assert isinstance(fig, Figure) and matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("argv,message", [
    (["experiment", "sweep", "nosuch"], "unknown sweep 'nosuch'"),
    (["experiment", "sweep"], "give a sweep name"),
    (["experiment", "sweep", "bus", "--bus", "both"], "invalid choice"),
    (["experiment"], "required"),
    (["replay", "/no/such/trace"], "no such file"),
    (["replay", "x", "--vcpus", "0"], "must be from 1 to 4096"),
])
def test_cli_errors_are_one_line(argv, message):
    result = ipiv(*argv)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

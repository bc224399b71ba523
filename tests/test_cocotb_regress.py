"""``ipiv regress`` (`tb.regress`) end to end, on a tiny regression: it passes and reports on the
real unit, and fails (non-zero exit) on a unit built with a deliberate defect."""

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
    with pytest.raises(SystemExit):
        parser.parse_args(["regress", "--seeds", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["regress", "--sim", "modelsim"])


def test_small_regression_passes_and_reports(tmp_path):
    """One seed of the random part passes although it cannot fill the coverage of a full run:
    coverage is reported, said to be not judged (and why), and the result is PASS. The FSM
    coverage and the notification latency are reported too."""
    proc, summary, out = run_regress(tmp_path, "--seeds", "1", "--count", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["ok"] and summary["passed"] == summary["tests"] == 1
    assert summary["random_seeds"] == 1 and summary["icr_writes_checked"] >= 6 * 60
    assert summary["simulated_cycles"] > 0 and summary["cycles_per_s"] > 0
    cov = summary["coverage"]
    assert 0 < cov["percent"] < 100 and not cov["judged"] and "seeds" in cov["not_judged_because"]
    assert "not judged: 1 random seeds < 10" in proc.stdout and "PASS" in proc.stdout
    fsm = summary["fsm_coverage"]
    assert 0 < fsm["hit"] < fsm["reachable"] and not fsm["judged"]
    assert "pid_update transitions" in fsm["groups"] and "FSM coverage" in proc.stdout
    d = summary["delivery"]
    assert d["on_transitions"] > 0 and d["max_cycles"] <= d["bound_cycles"] and d["ok"]
    assert "ipiv regress summary" in proc.stdout and (out / "junit.xml").exists()


def test_regression_fails_on_a_broken_unit(tmp_path):
    proc, summary, _ = run_regress(tmp_path, "--seeds", "1", "--count", "60", "--fault",
                                   "drop_lock")
    assert proc.returncode == 1
    assert not summary["ok"] and summary["failed"] == ["tests.test_cocotb_unit::test_random[0]"]
    assert "FAIL" in proc.stdout

"""The `ipiv` command line: the main job, the benchmark, and one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from sim.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ipiv(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_sim_writes_waves_and_summary(tmp_path, capsys):
    assert main(["sim", "-n", "16", "--seed", "3", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in ("IPIs virtualized", "APIC-write exits", "notifications", "suppressed",
                 "latency icr accepted -> notify.valid", "golden model: every output"):
        assert text in out
    vcd, gtkw = tmp_path / "mixed.vcd", tmp_path / "mixed.gtkw"
    assert vcd.stat().st_size > 10_000
    groups = [line[1:] for line in gtkw.read_text().splitlines() if line.startswith("-")]
    for group in ("icr_in", "bus", "pid_update", "exit", "notify"):
        assert group in groups


@pytest.mark.parametrize("scenario", ["x2apic-unicast", "xapic-unicast"])
def test_other_scenarios(scenario, tmp_path, capsys):
    assert main(["sim", scenario, "-n", "6", "--no-waves", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IPIs virtualized            6" in out and "APIC-write exits            0" in out
    assert not list(tmp_path.iterdir())


def test_sim_list(capsys):
    assert main(["sim", "--list"]) == 0
    assert "mixed" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["sim", "-n", "0"], "must be at least 1"),
    (["sim", "--seed", "x"], "not an integer"),
    (["sim", "nosuch"], "unknown scenario 'nosuch'"),
    (["sim", "--latency", "-1"], "must not be negative"),
    ([], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line(args, message):
    result = ipiv(*args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ipiv("sim", "-n", "2", "-o", str(blocker))
    assert result.returncode != 0 and "cannot write waves" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_json():
    result = ipiv("bench", "--json", "--targets", "8")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["memory_latency"] for r in rows] == [0, 1, 4]
    for row in rows:
        assert row["latency"]["notify x2APIC"]["overhead"] <= 2
        assert row["throughput_notify"]["idle_bus_cycles_per_ipi"] == 0
        assert row["throughput_notify"]["cycles_per_ipi"] == 6 * (row["memory_latency"] + 1)

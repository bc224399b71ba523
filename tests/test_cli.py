"""The `ipiv` command line: the main job, the benchmark, and one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tb.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ipiv(*args):
    return subprocess.run([sys.executable, "-m", "tb", *args], capture_output=True, text=True,
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
    for group in ("icr", "outputs", "bus", "interceptor", "lookup", "pid_update",
                  "virr_update"):
        assert group in groups
    assert main(["sim", "-n", "4", "--seed", "3", "--no-waves", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requests"] >= 4 and data["golden_model_agreed"] and data["vcd"] is None


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
    (["sim", "-n", "0"], "must be from 1 to"),
    (["sim", "--seed", "x"], "not an integer"),
    (["sim", "nosuch"], "unknown scenario 'nosuch'"),
    (["sim", "--latency", "-1"], "must be from 0 to"),
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
    assert result.returncode == 2 and "is a file" in result.stderr
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


def test_vmxcap_text_reads_like_vmxcap(capsys):
    assert main(["vmxcap", "--cpu", "ipiv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Basic VMX Information\n")
    for line in ("tertiary processor-based controls", "  IPI virtualization", "ipi_virt",
                 "KVM (kvm_intel) decisions", "enable_ipiv"):
        assert line in out
    ipiv_line = next(l for l in out.splitlines() if l.startswith("  IPI virtualization"))
    assert ipiv_line.split()[-1] == "yes"


@pytest.mark.parametrize("cpu,tertiary,ipiv", [("no-tertiary", False, False),
                                               ("tertiary-no-ipiv", True, False),
                                               ("ipiv", True, True)])
def test_vmxcap_json(cpu, tertiary, ipiv, capsys):
    assert main(["vmxcap", "--cpu", cpu, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tertiary_controls"] is tertiary and data["ipi_virtualization"] is ipiv
    assert (data["procbased_ctls3"] is None) is (not tertiary)
    assert data["kvm"]["enable_ipiv"] is ipiv and data["kvm"]["enable_apicv"] is True
    assert data["kvm"]["cpu_based_3rd_exec_ctrl"] == (0x10 if ipiv else 0)
    assert ("0x492" in data["msrs_read"]) is tertiary


def test_vmxcap_evmcs_and_msr_file(tmp_path, capsys):
    path = tmp_path / "cpu.msr"
    values = __import__("sim.vmx_caps", fromlist=["PRESETS"]).PRESETS["ipiv"][1]
    path.write_text("# dumped\n" + "".join(f"{int(k):#x} {v:#x}\n" for k, v in values.items()))
    assert main(["vmxcap", "--msrs", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kvm"]["enable_ipiv"] is True
    assert main(["vmxcap", "--msrs", str(path), "--json", "--evmcs"]) == 0
    kvm = json.loads(capsys.readouterr().out)["kvm"]
    assert kvm["enable_ipiv"] is False and kvm["cpu_based_3rd_exec_ctrl"] == 0


@pytest.mark.parametrize("content,message", [
    ("0x480 0x1\n0x481 nope\n", ":2: expected"),
    ("", "no MSR values"),
])
def test_vmxcap_bad_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "bad.msr"
    path.write_text(content)
    result = ipiv("vmxcap", "--msrs", str(path))
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_vmxcap_unknown_cpu_and_conflicting_options():
    result = ipiv("vmxcap", "--cpu", "pentium")
    assert result.returncode != 0 and "unknown CPU preset 'pentium'" in result.stderr
    result = ipiv("vmxcap", "--cpu", "ipiv", "--msrs", "x")
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_vmxcap_lists_cpus_as_json_and_reads_stdin(tmp_path, capsys, monkeypatch):
    import io
    assert main(["vmxcap", "--list-cpus", "--json"]) == 0
    presets = json.loads(capsys.readouterr().out)
    assert "ipiv" in presets and "no-tertiary" in presets
    values = __import__("sim.vmx_caps", fromlist=["PRESETS"]).PRESETS["ipiv"][1]
    text = "".join(f"{int(k):#x} {v:#x}\n" for k, v in values.items())
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["vmxcap", "--msrs", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kvm"]["enable_ipiv"] is True

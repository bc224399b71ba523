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


def test_sim_on_the_pipelined_port(tmp_path, capsys):
    """``--bus pipelined`` runs the pipelined unit, checked the same way, with its own waves:
    notify.valid 3R + 4 cycles after an x2APIC write (the issue's figure), R = latency + 1."""
    assert main(["sim", "x2apic-unicast", "-n", "6", "--latency", "4", "--bus", "pipelined",
                 "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pipelined memory port, each answer 4 cycle(s) after its request is taken (R = 5)" \
        in out and "latency icr accepted -> notify.valid (min/avg/max cycles): 19/" in out
    groups = [line[1:] for line in (tmp_path / "x2apic-unicast.gtkw").read_text().splitlines()
              if line.startswith("-")]
    assert "sequencer" in groups and "issuer" in groups and "interceptor" not in groups
    assert main(["sim", "x2apic-unicast", "-n", "6", "--latency", "4", "--bus", "pipelined",
                 "--no-waves", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bus"] == "pipelined" and data["golden_model_agreed"]
    assert min(data["latency"]["notify"]) == 3 * 5 + 4
    assert main(["sim", "x2apic-unicast", "-n", "6", "--latency", "4", "--no-waves",
                 "--json"]) == 0
    classic = json.loads(capsys.readouterr().out)
    assert classic["bus"] == "classic" and min(classic["latency"]["notify"]) == 6 * 5 + 1


@pytest.mark.parametrize("scenario", ["x2apic-unicast", "xapic-unicast"])
def test_other_scenarios(scenario, tmp_path, capsys):
    assert main(["sim", scenario, "-n", "6", "--no-waves", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IPIs virtualized            6" in out and "APIC-write exits            0" in out
    assert not list(tmp_path.iterdir())


def test_sim_list(capsys):
    """Each scenario's description names the states of the vCPUs it sends to."""
    from sim.scenarios import SCENARIOS, scenario_states
    assert main(["sim", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert list(listed) == list(SCENARIOS)
    for name, text in listed.items():
        for vcpu, state in scenario_states(name).items():
            if vcpu:                                   # vCPU 0 sends
                assert f"{vcpu} ({state if state != 'blocked' else 'blocked in HLT'}" in text
        assert "0xf1" in text and "SN set" in text
    assert main(["sim", "--list"]) == 0
    assert "x2apic-unicast   virtualizable x2APIC unicast IPIs only" in capsys.readouterr().out


@pytest.mark.parametrize("scenario", ["x2apic-unicast", "mixed"])
def test_sim_says_what_happened_to_each_ipi(scenario, capsys):
    """Every IPI is described once, with its target's state and what that state means for the
    notification (docs/architecture.md §6): running -> 0xf2, preempted -> SN, none; blocked ->
    the wakeup vector 0xf1. The words agree with the golden model's results."""
    from sim.scenarios import scenario_states
    states = scenario_states(scenario)
    assert main(["sim", scenario, "-n", "12", "--seed", "5", "--no-waves", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ipis = data["ipis"]
    assert len(ipis) == data["requests"] - data["stored_only"]
    assert sum(data["what_happened"].values()) == len(ipis)
    posted = [i for i in ipis if i["what"].startswith("posted")]
    assert len(posted) == data["posted"] and posted
    for ipi in posted:
        state = states[ipi["dest"]]
        assert ipi["what"].startswith(f"posted to {state} vCPU {ipi['dest']}: PIR bit set")
        if "sent to pCPU" in ipi["what"]:
            assert state != "preempted"
            assert ("wakeup vector 0xf1" in ipi["what"]) is (state == "blocked")
            assert ipi["what"].endswith(f"pCPU {ipi['dest'] + 1}")     # build_vm: pCPU i+1
        else:
            assert ("SN set" in ipi["what"]) is (state == "preempted")
    exits = [i for i in ipis if "exit" in i["what"]]
    assert len(exits) == data["exits"]
    assert main(["sim", scenario, "-n", "12", "--seed", "5", "--no-waves"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index("  what happened to the IPIs (how many, in order of first occurrence):")
    rows = [line.split(None, 1) for line in out[start + 1:] if line[:8].strip().isdigit()]
    assert {text: int(count) for count, text in rows} == data["what_happened"]


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
    # the runs on kept simulators leave their DUTs unelaborated: no warning of each at exit
    assert "UnusedElaboratable" not in result.stderr
    both = json.loads(result.stdout)
    assert set(both) == {"classic", "pipelined"}
    rows = both["classic"]
    assert [r["memory_latency"] for r in rows] == [0, 1, 4]
    for row in rows:
        assert row["latency"]["notify x2APIC"]["overhead"] <= 2
        assert row["throughput_notify"]["idle_bus_cycles_per_ipi"] == 0
        assert row["throughput_notify"]["cycles_per_ipi"] == 6 * (row["memory_latency"] + 1)
    # Pipelined: R >= 2; x2APIC within 3R + 4, xAPIC within 4R + 4, back to back 3R + 3.
    rows = both["pipelined"]
    assert [r["round_trip"] for r in rows] == [2, 5]
    for row in rows:
        r = row["round_trip"]
        assert row["latency"]["notify x2APIC"]["cycles"] <= 3 * r + 4
        assert row["latency"]["notify xAPIC"]["cycles"] <= 4 * r + 4
        assert row["throughput_notify"]["cycles_per_ipi"] <= 3 * r + 3


def test_bench_one_variant_prints_its_list_of_rows():
    result = ipiv("bench", "--json", "--targets", "8", "--bus", "classic")
    assert result.returncode == 0, result.stderr
    assert [r["memory_latency"] for r in json.loads(result.stdout)] == [0, 1, 4]


def test_vmxcap_text_reads_like_vmxcap(capsys):
    assert main(["vmxcap", "--cpu", "ipiv", "--qemu"]) == 0
    assert capsys.readouterr().out.startswith("Basic VMX Information\n")
    assert main(["vmxcap", "--cpu", "ipiv"]) == 0
    out = capsys.readouterr().out
    for line in ("tertiary processor-based controls", "  IPI virtualization", "ipi_virt",
                 "KVM (kvm_intel) decisions", "enable_ipiv"):
        assert line in out
    ipiv_line = next(l for l in out.splitlines() if l.startswith("  IPI virtualization"))
    assert ipiv_line.split()[-1] == "yes"


def test_vmxcap_verdict_first_then_qemu_then_the_rest(capsys):
    """The answer is the first paragraph; ``--summary`` prints only it, ``--qemu`` only the
    QEMU part, which is the block under QEMU_HEADER in the full report."""
    from sim.vmxcap_report import QEMU_HEADER, SEPARATOR
    assert main(["vmxcap", "--cpu", "ipiv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("IPIv: YES. ") and "" in out[:8]
    assert main(["vmxcap", "--cpu", "ipiv", "--summary"]) == 0
    assert capsys.readouterr().out.splitlines() == out[:out.index("")]
    assert main(["vmxcap", "--cpu", "ipiv", "--qemu"]) == 0
    qemu = capsys.readouterr().out.splitlines()
    start = out.index(QEMU_HEADER) + 1
    assert out[start:start + len(qemu)] == qemu and out[start + len(qemu):][:2] == ["",
                                                                                  SEPARATOR]


@pytest.mark.parametrize("argv,answer,reason", [
    (["--cpu", "ipiv"], "YES", "(default parameters) enables it"),
    (["--cpu", "ipiv", "--param", "enable_ipiv=0"], "NO", "IPIv off: enable_ipiv=0"),
    (["--cpu", "ipiv", "--param", "kvm_intel.enable_apicv=off"], "NO",
     "APICv off: enable_apicv=0"),
    (["--cpu", "ipiv", "--param", "enable_ipiv=n", "--param", "enable_ipiv=Y"], "YES",
     "enables it"),
    (["--cpu", "no-tertiary"], "NO", "no tertiary controls"),
    (["--cpu", "tertiary-no-ipiv"], "NO", "bit 4 is not allowed-1"),
    (["--cpu", "ipiv-no-vid"], "NO", "no virtual-interrupt delivery"),
    (["--cpu", "ipiv", "--evmcs"], "NO", "eVMCS has no tertiary controls"),
])
def test_vmxcap_summary_answers_with_the_reason(argv, answer, reason, capsys):
    assert main(["vmxcap", *argv, "--summary"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"IPIv: {answer}. ") and reason in text, text
    assert main(["vmxcap", *argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kvm"]["enable_ipiv"] is (answer == "YES")
    assert " ".join(data["verdict"].split()) == text


def test_vmxcap_param_reaches_kvm(capsys):
    """kvm_intel's enable_apicv / enable_ipiv (vmx.c module_param, 6.0 and 6.19), parsed as
    the kernel's param_set_bool does (kstrtobool)."""
    assert main(["vmxcap", "--param", "enable_ipiv=0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"]["enable_ipiv"] is False and data["params"]["enable_apicv"] is True
    assert data["kvm"]["cpu_based_3rd_exec_ctrl"] == 0x10          # vmcs_config keeps it
    assert data["kvm"]["vcpu"]["cpu_based_3rd_exec_ctrl"] == 0     # the vCPU runs without
    assert data["kvm"]["enable_apicv"] is True


@pytest.mark.parametrize("kernel", ["6.0", "6.19"])
def test_vmxcap_labels_vmcs_config_and_the_vcpus_controls(kernel, capsys):
    """vmcs_config is what kvm_intel may use, a vCPU's VMCS what it runs with: 6.0 drops the
    CR3/INVLPG exits with EPT in setup_vmcs_config, 6.19 keeps them there and drops them in
    vmx_exec_control, per vCPU."""
    from hdl.vmx import Primary
    assert main(["vmxcap", "--kernel", kernel, "--json"]) == 0
    kvm = json.loads(capsys.readouterr().out)["kvm"]
    config, vcpu = kvm["cpu_based_exec_ctrl"], kvm["vcpu"]["cpu_based_exec_ctrl"]
    assert bool(config & Primary.CR3_LOAD_EXITING) is (kernel == "6.19")
    assert not vcpu & Primary.CR3_LOAD_EXITING
    assert main(["vmxcap", "--kernel", kernel]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "vmcs_config" in line and "vCPU" in line)
    row = lines[lines.index(header) + 2].split()
    assert row == ["CPUBased", f"{config:#010x}", f"{vcpu:#010x}"]


def test_vmxcap_warnings_go_to_stderr(tmp_path):
    """An MSR file without 0x48B: the warning is on stderr, the report on stdout is clean
    (it is meant to be diffed against QEMU's vmxcap)."""
    from hdl.vmx import VMXMSR
    from sim.vmx_caps import PRESETS
    values = dict(PRESETS["ipiv"][1])
    del values[VMXMSR.PROCBASED_CTLS2]
    path = tmp_path / "cpu.msr"
    path.write_text("".join(f"{int(k):#x} {v:#x}\n" for k, v in values.items()))
    for extra in ([], ["--qemu"], ["--param", "error_on_inconsistent_vmcs_config=0"]):
        result = ipiv("vmxcap", "--msrs", str(path), *extra)
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stdout and "absent" not in result.stdout
        if extra != ["--qemu"]:      # QEMU's part reads no MSR the way the kernel does
            assert result.stderr == "ipiv vmxcap: warning: MSR 0x48b is absent; a plain " \
                                    "rdmsr read it as 0\n"
        else:
            assert result.stderr == ""


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

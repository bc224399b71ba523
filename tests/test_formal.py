"""Formal checks of `IPIVirtualizer` (tb/formal): every property passes at its depth, every
cover is reached, every injected fault is caught by the property it breaks; plus the fault
parameter's validation, the faults in simulation, and the ``prove`` command line.

The SymbiYosys runs happen once per test session (under a file lock, so pytest-xdist workers
share them) in a pool of two, and the tests read their verdicts. Missing tools are a
failure, not a skip.
"""

import argparse
import fcntl
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil

from hdl import IPIVirtualizer
from hdl.faults import Fault, PID_LOOKUP_FAULTS, PID_UPDATE_FAULTS, STAGE_FAULTS
from hdl.icr_interceptor import ICRInterceptor
from hdl.formats import ICRWriteKind as K
from hdl.pid_lookup import PIDLookup
from hdl.pid_update import PIDUpdate
from hdl.virr_update import VIRRUpdate
from sim.golden import Config
from sim.memory import Memory
from sim.scenarios import Request
from tb.amaranth_harness import Harness, MismatchError
from tb.formal import cli
from tb.formal.harness import CHECKS, COVERS, FormalHarness, completion_bounds
from tb.formal.runner import (
    DEPTHS, LATENCY, PATIENCE, SETTINGS, check_tools, format_table, run_check,
    run_checks,
)

OUT = Path(__file__).resolve().parent.parent / "build" / "formal-tests"
PROPERTIES = [name for name, check in CHECKS.items() if check.mode != "cover"]
# Every mutant run is BMC from the initial state, without the auxiliary invariants (nothing
# assumed can hide the fault), in the harness's witness environment (a subset of the free
# one, so a failure there is a failure of the property; the free environment costs the
# solver minutes per step past step 6). BMC stops at the first failing step.
MUTANT_RUN = {"mode": "bmc", "depth": 12, "witness": True}
# Two postings, the second while the first notification is still offered: the failure is at
# step 13, and only that step is checked (proving that no earlier step fails costs a minute).
DEEP_RUN = {"mode": "bmc", "depth": 14, "skip": 13, "witness": True}
# (fault, the check that must catch it, the assertion that fails, run options). Every fault
# of hdl/faults.py is here, and every property check has at least one fault it catches.
MUTANTS = [
    (Fault.DROP_LOCK, "locked_rmw", "rmw_transfer_locked", MUTANT_RUN),
    (Fault.LOCK_GAP, "locked_rmw", "lock_held_between_transfers", MUTANT_RUN),
    (Fault.ON_DESPITE_SN, "notifications", "notify_has_an_on_transition", MUTANT_RUN),
    (Fault.PIR_WRITE_WITHOUT_READ, "transfers", "transfer_is_spec", MUTANT_RUN),
    (Fault.SKIP_BOUND_CHECK, "transfers", "no_transfer_beyond_spec", MUTANT_RUN),
    (Fault.BOUND_OFF_BY_ONE, "transfers", "no_transfer_beyond_spec", MUTANT_RUN),
    (Fault.ELIGIBLE_LEVEL_TRIGGER, "transfers", "no_transfer_beyond_spec", MUTANT_RUN),
    (Fault.ELIGIBLE_BIT12, "transfers", "no_transfer_beyond_spec", MUTANT_RUN),
    (Fault.POST_DESPITE_EXIT, "transfers", "no_transfer_beyond_spec", MUTANT_RUN),
    (Fault.PIR_BIT_OFF_BY_ONE, "transfers", "transfer_is_spec", MUTANT_RUN),
    (Fault.WRONG_PIR_WORD, "transfers", "transfer_is_spec", MUTANT_RUN),
    (Fault.IRR_WRONG_WORD, "transfers", "transfer_is_spec", MUTANT_RUN),
    (Fault.DROP_NOTIFY_WHILE_OFFERED, "notifications", "conservation", DEEP_RUN),
    (Fault.DOUBLE_NOTIFY, "notifications", "conservation", MUTANT_RUN),
    (Fault.WRONG_NV_BYTE, "notifications", "notify_payload", MUTANT_RUN),
    (Fault.WRONG_NDST_BYTE, "notifications", "notify_payload", MUTANT_RUN),
    (Fault.LOCK_WITHOUT_CYC, "bus_protocol", "lock_in_cyc", MUTANT_RUN),
    (Fault.EXIT_WITHDRAWN, "handshake_exit", "valid_held", MUTANT_RUN),
    (Fault.GP_WITHDRAWN, "handshake_gp", "valid_held", MUTANT_RUN),
    (Fault.SELF_IPI_OVERWRITTEN, "handshake_self_ipi", "payload_stable", MUTANT_RUN),
    (Fault.NOTIFY_OVERWRITTEN, "handshake_notify", "payload_stable", DEEP_RUN),
    (Fault.ELIGIBLE_BIT12, "outcome", "exit_is_spec", MUTANT_RUN),
    (Fault.SKIP_BOUND_CHECK, "outcome", "exit_iff_spec", MUTANT_RUN),
    (Fault.ELIGIBLE_BIT12, "invariants", "inv_done_interceptor_exit", MUTANT_RUN),
]
# completion is a response bound: it is shown able to fail by shortening its bounds by one.
TIGHT_COMPLETION = {"mode": "bmc", "depth": 12, "witness": True}


def _mutant_id(mutant):
    fault, check, _, _ = mutant
    return f"{fault.value}-{check}"


def _run(job):
    key, name, fault, options = job
    faults = frozenset() if fault is None else {Fault(fault)}
    r = run_check(name, faults=faults, out_dir=OUT / key.split("/")[0], **options)
    return {"key": key, "name": name, "fault": fault, "status": r.status, "depth": r.depth,
            "failed": r.failed, "reached": r.reached, "seconds": r.seconds,
            "trace": None if r.trace is None else str(r.trace),
            "table": format_table([r])}


@pytest.fixture(scope="session")
def verdicts():
    """All SymbiYosys verdicts of this test run, computed by whichever worker comes first:
    ``checks/<check>``, ``mutants/<fault>-<check>`` and ``tight/completion``."""
    from concurrent.futures import ThreadPoolExecutor
    check_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    cache = OUT / "verdicts.json"
    with open(OUT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cache.exists():
            saved = json.loads(cache.read_text())
            if saved["run"] == run_id:
                return saved["verdicts"]
        ready, idle = completion_bounds(LATENCY, PATIENCE)
        mutants = [(f"mutants/{_mutant_id(mu)}", mu[1], mu[0].value, mu[3]) for mu in MUTANTS]
        # The slowest first (the deep mutants, then the proofs), so the pool of two
        # finishes together.
        jobs = [job for job in mutants if job[3] is not MUTANT_RUN] + \
            [(f"checks/{name}", name, None, {})
             for name in sorted(CHECKS, key=lambda n: -DEPTHS[n])] + \
            [("tight/completion", "completion", None,
              {**TIGHT_COMPLETION, "latency": LATENCY, "bounds": (ready - 1, idle - 1)})] + \
            [job for job in mutants if job[3] is MUTANT_RUN]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = {r["key"]: r for r in pool.map(_run, jobs)}
        cache.write_text(json.dumps({"run": run_id, "verdicts": results}))
        return results


# -- the proofs --------------------------------------------------------------------------------

def test_formal_tools_are_installed():
    check_tools()       # raises ToolError, failing the test, when one is missing


@pytest.mark.slow
@pytest.mark.parametrize("name", PROPERTIES)
def test_property_holds(verdicts, name):
    v = verdicts[f"checks/{name}"]
    assert v["status"] == "PASS", v["table"]
    assert v["failed"] == []
    assert v["depth"] == DEPTHS[name]


@pytest.mark.slow
@pytest.mark.parametrize("cover", COVERS)
def test_cover_is_reached(verdicts, cover):
    v = verdicts["checks/covers"]
    assert v["reached"].get(cover) is not None, v["table"]
    assert 0 < v["reached"][cover] < DEPTHS["covers"]


@pytest.mark.slow
def test_all_covers_reached(verdicts):
    v = verdicts["checks/covers"]
    assert v["status"] == "PASS", v["table"]
    assert set(v["reached"]) == set(COVERS)


def test_every_fault_and_every_property_has_a_mutant():
    assert {fault for fault, _, _, _ in MUTANTS} == set(Fault)
    caught = {check for _, check, _, _ in MUTANTS}
    assert caught == set(PROPERTIES) - {"completion"}
    for _, check, _, options in MUTANTS:
        assert CHECKS[check].mode != "cover" and options["mode"] == "bmc"


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=_mutant_id)
def test_injected_fault_is_caught(verdicts, mutant):
    fault, check, prop, _ = mutant
    v = verdicts[f"mutants/{fault.value}-{check}"]
    assert v["name"] == check
    assert v["status"] == "FAIL", v["table"]
    assert prop in v["failed"], v["table"]
    assert v["trace"] is not None and Path(v["trace"]).is_file()
    assert Path(v["trace"]).stat().st_size > 0


@pytest.mark.slow
def test_completion_fails_one_cycle_short_of_its_bounds(verdicts):
    v = verdicts["tight/completion"]
    assert v["status"] == "FAIL", v["table"]
    assert set(v["failed"]) & {"ready_again", "idle"}, v["table"]


# -- the fault parameter -----------------------------------------------------------------------

def test_faults_default_to_none():
    assert IPIVirtualizer().faults == frozenset()
    assert IPIVirtualizer(faults={"drop_lock", Fault.SKIP_BOUND_CHECK}).faults == \
        {Fault.DROP_LOCK, Fault.SKIP_BOUND_CHECK}


def test_faults_belong_to_one_stage_each():
    owned = [fault for faults in STAGE_FAULTS.values() for fault in faults]
    assert sorted(owned, key=lambda f: f.value) == sorted(Fault, key=lambda f: f.value)
    assert PID_UPDATE_FAULTS == STAGE_FAULTS["PIDUpdate"]
    assert PID_LOOKUP_FAULTS == STAGE_FAULTS["PIDLookup"]


@pytest.mark.parametrize("cls, bad", [
    (IPIVirtualizer, {"no_such_fault"}),
    (PIDUpdate, {Fault.SKIP_BOUND_CHECK}),
    (PIDLookup, {"drop_lock"}),
    (ICRInterceptor, {Fault.IRR_WRONG_WORD}),
    (VIRRUpdate, {"eligible_bit12"}),
])
def test_unknown_fault_is_a_value_error(cls, bad):
    with pytest.raises(ValueError, match=rf"faults of {cls.__name__} must be among"):
        cls(faults=bad)


@pytest.mark.parametrize("bad", ["drop_lock", Fault.DROP_LOCK, 3, None])
def test_faults_must_be_a_collection(bad):
    with pytest.raises(TypeError, match="faults must be a set of Fault members or names"):
        IPIVirtualizer(faults=bad)


def _sim_memory(sn):
    mem = Memory()
    mem.write(0x8000 + 8 * 1, 0x9000 | 1)                       # T = 1 -> PID 0x9000
    mem.write(0x9000 + 32, 0x0100 << 32 | 0xF2 << 16 | sn << 1)  # NDST 1, NV F2, SN
    return mem


@pytest.mark.parametrize("fault, sn", [
    (Fault.ON_DESPITE_SN, 1), (Fault.DROP_LOCK, 0), (Fault.PIR_WRITE_WITHOUT_READ, 0),
])
def test_faults_are_caught_in_simulation(fault, sn):
    cfg = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=7,
                 pid_table=0x8000, vapic_page=0x4000)
    request = Request(cfg, K.X2APIC_ICR, 1 << 32 | 0x40)     # vector 0x40 to T = 1
    Harness(IPIVirtualizer(), _sim_memory(sn)).run([request])     # the real unit agrees
    with pytest.raises(MismatchError):
        Harness(IPIVirtualizer(faults={fault}), _sim_memory(sn)).run([request])


def test_skip_bound_check_is_caught_in_simulation():
    cfg = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=0,
                 pid_table=0x8000, vapic_page=0x4000)
    request = Request(cfg, K.X2APIC_ICR, 1 << 32 | 0x40)     # T = 1 > last index 0
    Harness(IPIVirtualizer(), _sim_memory(0)).run([request])
    with pytest.raises(MismatchError):
        Harness(IPIVirtualizer(faults={Fault.SKIP_BOUND_CHECK}), _sim_memory(0)).run([request])


# -- the harness and the command line ----------------------------------------------------------

def test_harness_validates_its_parameters():
    with pytest.raises(ValueError, match="check must be one of"):
        FormalHarness("no_such_check")
    with pytest.raises(ValueError, match="latency must be a non-negative integer"):
        FormalHarness("locked_rmw", latency=-1)


def _parser():
    parser = argparse.ArgumentParser(prog="ipiv")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_prove_list_names_every_check():
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--list"])
    assert args.func(args, stream=out) == 0
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == list(CHECKS)
    for line, (name, check) in zip(lines, CHECKS.items()):
        assert f"depth {DEPTHS[name]:3d}" in line
        assert ("unbounded" in line) == (check.mode == "prove")


def test_no_check_is_bounded_at_its_default_depth():
    bounded = {name for name, check in CHECKS.items() if check.mode == "bmc"}
    assert bounded == set()


def test_prove_takes_several_checks_after_one_option():
    args = _parser().parse_args(["prove", "--check", "handshake_notify", "bus_protocol",
                                 "--check", "handshake_notify"])
    assert args.check == ["handshake_notify", "bus_protocol", "handshake_notify"]
    args = _parser().parse_args(["prove", "--fault", "drop_lock", "lock_gap"])
    assert args.fault == [Fault.DROP_LOCK, Fault.LOCK_GAP]


@pytest.mark.parametrize("out", ["/proc/x", "/proc/self/status"])
def test_prove_unwritable_output_is_a_usage_error(capsys, out):
    args = _parser().parse_args(["prove", "--check", "handshake_notify", "-o", out])
    with pytest.raises(SystemExit) as e:
        args.func(args, stream=io.StringIO())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ipiv prove: error:") and err.count("\n") == 1
    assert "running" not in err         # checked before any check runs


def test_prove_list_into_a_closed_pipe_ends_quietly():
    proc = subprocess.run(
        f"{sys.executable} -m tb prove --list | head -1", shell=True, capture_output=True,
        text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.split()[0] == next(iter(CHECKS))
    assert proc.stderr == ""


@pytest.mark.parametrize("argv, message", [
    (["prove", "--check", "nope"], "unknown check 'nope'"),
    (["prove", "--depth", "0"], "must be from 1 to 200"),
    (["prove", "--depth", "x"], "not an integer"),
    (["prove", "--fault", "nope"], "unknown fault 'nope'"),
])
def test_prove_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_prove_runs_a_check_and_prints_the_table(tmp_path, capsys):
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--check", "handshake_notify", "-o", str(tmp_path)])
    assert args.func(args, stream=out) == 0
    table = out.getvalue()
    header = table.splitlines()[0].split()
    assert header == ["property", "mode", "engine", "depth", "requests", "latency", "result",
                      "time"]
    row = next(line for line in table.splitlines() if line.startswith("handshake_notify"))
    assert "prove" in row and "unbounded" in row and "PASS" in row and "smtbmc z3" in row
    depth = DEPTHS["handshake_notify"]
    assert f"handshake_notify: PASS (prove, depth {depth}, unbounded," in \
        capsys.readouterr().err
    assert (tmp_path / "handshake_notify" / "handshake_notify.sby").is_file()

    out = io.StringIO()
    args = _parser().parse_args(["prove", "--check", "handshake_notify", "-o", str(tmp_path),
                                 "--json"])
    assert args.func(args, stream=out) == 0
    report = json.loads(out.getvalue())
    assert report["passed"] is True
    (check,) = report["checks"]
    assert {k: check[k] for k in ("name", "mode", "depth", "requests", "result")} == \
        {"name": "handshake_notify", "mode": "prove", "depth": DEPTHS["handshake_notify"],
         "requests": "unbounded", "result": "PASS"}
    assert check["seconds"] > 0


def test_harness_elaborates_every_check():
    for name in CHECKS:
        for witness in (False, True):
            h = FormalHarness(name, latency=0 if name == "completion" else None,
                              witness=witness)
            text = rtlil.convert(h, name="top", ports=[h.clk])
            assert "spec_n_transfers" in text


def test_every_check_is_unbounded_or_a_cover():
    """No bounded exceptions are left: every safety check is a k-induction proof in an
    environment with any number of memory wait states (but completion's response bound)."""
    for name, check in CHECKS.items():
        assert check.mode in ("prove", "cover"), name
        assert SETTINGS[name][1] is None or name == "completion"


def test_invariants_are_asserted_only_by_their_own_check():
    for name, flavor in (("invariants", "assert"), ("outcome", "assume"), ("covers", "assume")):
        h = FormalHarness(name)
        text = rtlil.convert(h, name="top", ports=[h.clk])
        cells = re.findall(r'parameter \\FORMAT "inv_[a-z_0-9]+"\n(?:\s+parameter .*\n)*?'
                           r'\s+parameter \\FLAVOR "(\w+)"', text)
        assert cells and set(cells) == {flavor}, name


def test_prove_with_a_fault_finds_a_counterexample_from_reset(tmp_path, capsys):
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--check", "transfers", "covers", "--fault",
                                 "eligible_bit12", "-o", str(tmp_path), "--json"])
    assert args.func(args, stream=out) == 1
    report = json.loads(out.getvalue())
    (check,) = report["checks"]         # the covers are left out
    assert check["name"] == "transfers" and check["mode"] == "bmc"
    assert check["result"] == "FAIL" and "no_transfer_beyond_spec" in check["failed"]
    assert Path(check["trace"]).is_file()
    assert "runs as BMC to depth 14" in capsys.readouterr().err


@pytest.mark.slow
def test_a_broken_unit_is_never_reported_proven(tmp_path):
    """The property checks assume the invariants: when the invariants check fails, a check
    that passed is UNPROVEN, and the search from reset turns both into real counterexamples."""
    fault = frozenset({Fault.ELIGIBLE_BIT12})
    unproven = run_checks(["invariants", "outcome"], faults=fault, out_dir=tmp_path / "a")
    assert [r.status for r in unproven][0] == "UNKNOWN"
    assert unproven[1].status in ("UNPROVEN", "UNKNOWN")
    found = run_checks(["invariants", "outcome"], faults=fault, out_dir=tmp_path / "b",
                       search=True)
    for r in found:
        assert r.status == "FAIL" and r.mode == "bmc" and r.step is not None, format_table([r])
        assert r.trace is not None and r.trace.is_file()
    assert "inv_done_interceptor_exit" in found[0].failed
    assert "exit_is_spec" in found[1].failed

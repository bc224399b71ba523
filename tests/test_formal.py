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
from pathlib import Path

import pytest

from hdl import IPIVirtualizer
from hdl.faults import Fault, PID_LOOKUP_FAULTS, PID_UPDATE_FAULTS
from hdl.formats import ICRWriteKind as K
from hdl.pid_lookup import PIDLookup
from hdl.pid_update import PIDUpdate
from sim.golden import Config
from sim.memory import Memory
from sim.scenarios import Request
from tb.amaranth_harness import Harness, MismatchError
from tb.formal import cli
from tb.formal.harness import CHECKS, COVERS, FormalHarness
from tb.formal.runner import DEPTHS, check_tools, format_table, run_check

OUT = Path(__file__).resolve().parent.parent / "build" / "formal-tests"
PROPERTIES = [name for name, check in CHECKS.items() if check.mode != "cover"]
# Each fault and the check (and sub-property) that must catch it.
MUTANTS = {
    Fault.DROP_LOCK: ("locked_rmw", "rmw_read_locked"),
    Fault.ON_DESPITE_SN: ("locked_rmw", "ni_only_if_on_and_sn_clear"),
    Fault.PIR_WRITE_WITHOUT_READ: ("locked_rmw", "write_after_its_locked_read"),
    Fault.SKIP_BOUND_CHECK: ("exit_paths", "no_entry_read_when_a_check_exits"),
}


def _run(job):
    name, fault = job
    faults = frozenset() if fault is None else {Fault(fault)}
    r = run_check(name, faults=faults, out_dir=OUT)
    return {"name": name, "fault": fault, "status": r.status, "depth": r.depth,
            "failed": r.failed, "reached": r.reached, "seconds": r.seconds,
            "trace": None if r.trace is None else str(r.trace),
            "table": format_table([r])}


@pytest.fixture(scope="session")
def verdicts():
    """All SymbiYosys verdicts of this test run, computed by whichever worker comes first."""
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
                return saved
        # Slowest first, so the pool of two finishes together.
        jobs = [(name, None) for name in sorted(CHECKS, key=lambda n: -DEPTHS[n])] + \
            [(check, fault.value) for fault, (check, _) in MUTANTS.items()]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(_run, jobs))
        saved = {"run": run_id,
                 "checks": {r["name"]: r for r in results if r["fault"] is None},
                 "mutants": {r["fault"]: r for r in results if r["fault"] is not None}}
        cache.write_text(json.dumps(saved))
        return saved


# -- the proofs --------------------------------------------------------------------------------

def test_formal_tools_are_installed():
    check_tools()       # raises ToolError, failing the test, when one is missing


@pytest.mark.slow
@pytest.mark.parametrize("name", PROPERTIES)
def test_property_holds(verdicts, name):
    v = verdicts["checks"][name]
    assert v["status"] == "PASS", v["table"]
    assert v["failed"] == []
    assert v["depth"] == DEPTHS[name]


@pytest.mark.slow
@pytest.mark.parametrize("cover", COVERS)
def test_cover_is_reached(verdicts, cover):
    v = verdicts["checks"]["covers"]
    assert v["reached"].get(cover) is not None, v["table"]
    assert 0 < v["reached"][cover] < DEPTHS["covers"]


@pytest.mark.slow
def test_all_covers_reached(verdicts):
    v = verdicts["checks"]["covers"]
    assert v["status"] == "PASS", v["table"]
    assert set(v["reached"]) == set(COVERS)


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(MUTANTS), ids=lambda f: f.value)
def test_injected_fault_is_caught(verdicts, fault):
    check, prop = MUTANTS[fault]
    v = verdicts["mutants"][fault.value]
    assert v["name"] == check
    assert v["status"] == "FAIL", v["table"]
    assert prop in v["failed"], v["table"]
    assert v["trace"] is not None and Path(v["trace"]).is_file()
    assert Path(v["trace"]).stat().st_size > 0


# -- the fault parameter -----------------------------------------------------------------------

def test_faults_default_to_none():
    assert IPIVirtualizer().faults == frozenset()
    assert IPIVirtualizer(faults={"drop_lock", Fault.SKIP_BOUND_CHECK}).faults == \
        {Fault.DROP_LOCK, Fault.SKIP_BOUND_CHECK}


def test_faults_belong_to_one_stage_each():
    assert PID_UPDATE_FAULTS | PID_LOOKUP_FAULTS == set(Fault)
    assert not PID_UPDATE_FAULTS & PID_LOOKUP_FAULTS


@pytest.mark.parametrize("cls, bad", [
    (IPIVirtualizer, {"no_such_fault"}),
    (PIDUpdate, {Fault.SKIP_BOUND_CHECK}),
    (PIDLookup, {"drop_lock"}),
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
    listed = [line.split()[0] for line in out.getvalue().splitlines()]
    assert listed == list(CHECKS)


@pytest.mark.parametrize("argv, message", [
    (["prove", "--check", "nope"], "unknown check 'nope'"),
    (["prove", "--depth", "0"], "must be from 1 to 200"),
    (["prove", "--depth", "x"], "not an integer"),
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
    assert "handshake_notify" in table and "PASS" in table and "smtbmc z3" in table
    assert "handshake_notify: PASS" in capsys.readouterr().err
    assert (tmp_path / "handshake_notify" / "handshake_notify.sby").is_file()

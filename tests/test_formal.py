"""Formal checks of `IPIVirtualizer` (tb/formal), for both memory ports (classic and
pipelined): every property passes at its depth, every cover is reached, every injected fault
is caught by the property it breaks; plus the fault parameter's validation, the faults in
simulation, and the ``prove`` command line.

Each solver run (`JOBS`) is run by the first test that needs it, in whichever
pytest-xdist worker that test runs, under a file lock per run: the other tests of the same
run read its verdict. So both workers prove side by side, one run each at a time. A few of
them are run again with SymbiYosys, which must give the same verdicts.
Missing tools are a failure, not a skip.
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
from hdl.faults import Fault
from hdl.formats import ICRWriteKind as K
from hdl.ipi_virtualizer import PIPELINED_STAGES, STAGES
from hdl.mutants import FAULT_BUS, MUTATION_TABLES, STAGE_FAULTS, mutant
from hdl.pid_update import PIDUpdate
from hdl.pipelined_issuer import PipelinedIssuer
from sim.golden import Config
from sim.memory import Memory
from sim.scenarios import Request
from tb.amaranth_harness import Harness, MismatchError
from tb.formal import cli
from tb.formal.checks import covers_of
from tb.formal.harness import (
    CHECKS, FormalHarness, PIPELINED_CHECKS, checks_for, completion_bounds, covers_for,
    proven_together,
)
from tb.formal.pipelined_properties import PIPELINED_PROPERTIES
from tb.formal.properties import PROPERTIES as CLASSIC_PROPERTIES
from tb.formal.runner import (
    DEPTHS, ENGINES, LATENCY, PATIENCE, PIPELINED_LATENCY, check_tools, depths_for,
    format_table, run_check, run_checks, run_together, settings_for,
)

# The proofs run YoWASP's Yosys (tests/conftest.py schedules them after the others).
pytestmark = pytest.mark.yosys

OUT = Path(__file__).resolve().parent.parent / "build" / "formal-tests"
BUSES = ("classic", "pipelined")
PROPERTIES = [name for name, check in CHECKS.items() if check.mode != "cover"]
BUS_PROPERTIES = [(bus, name) for bus in BUSES
                  for name, check in checks_for(bus).items() if check.mode != "cover"]
BUS_COVER_CHECKS = [(bus, name) for bus in BUSES
                    for name, check in checks_for(bus).items() if check.mode == "cover"]
BUS_COVERS = [(bus, cover) for bus in BUSES for cover in covers_for(bus)]


def counterexample_at(step):
    """The run of a mutant whose shortest counterexample is at ``step``: BMC from the initial
    state, without the auxiliary invariants (nothing assumed can hide the fault), to that
    step and checking only it (proving that no earlier step fails is most of a deep run's
    cost), in the harness's witness environment (a subset of the free one, so a failure
    there is a failure of the property; the free environment costs the solver minutes per
    step past step 6)."""
    return {"mode": "bmc", "depth": step + 1, "skip": step, "witness": True}


# (fault, the check that must catch it, the assertion that fails (or a tuple: one of them),
# the step of its shortest counterexample: `ipiv prove --fault NAME --check CHECK` finds it,
# FAIL at step N). Every fault of the classic unit is here, and every property check has at
# least one fault it catches. The step-13 ones take two postings, the second while the first
# notification is still offered.
MUTANTS = [
    (Fault.DROP_LOCK, "locked_rmw", "rmw_transfer_locked", 3),
    (Fault.LOCK_GAP, "locked_rmw", "lock_held_between_transfers", 4),
    (Fault.ON_DESPITE_SN, "notifications", "notify_has_an_on_transition", 7),
    (Fault.PIR_WRITE_WITHOUT_READ, "transfers", "transfer_is_spec", 4),
    (Fault.SKIP_BOUND_CHECK, "transfers", "no_transfer_beyond_spec", 2),
    (Fault.BOUND_OFF_BY_ONE, "transfers", "no_transfer_beyond_spec", 2),
    (Fault.ELIGIBLE_LEVEL_TRIGGER, "transfers", "no_transfer_beyond_spec", 2),
    (Fault.ELIGIBLE_BIT12, "transfers", "no_transfer_beyond_spec", 2),
    (Fault.POST_DESPITE_EXIT, "transfers", "no_transfer_beyond_spec", 3),
    (Fault.PIR_BIT_OFF_BY_ONE, "transfers", "transfer_is_spec", 4),
    (Fault.WRONG_PIR_WORD, "transfers", "transfer_is_spec", 3),
    (Fault.IRR_WRONG_WORD, "transfers", "transfer_is_spec", 3),
    (Fault.DROP_NOTIFY_WHILE_OFFERED, "notifications", "conservation", 13),
    (Fault.DOUBLE_NOTIFY, "notifications", "conservation", 7),
    (Fault.WRONG_NV_BYTE, "notifications", "notify_payload", 7),
    (Fault.WRONG_NDST_BYTE, "notifications", "notify_payload", 7),
    (Fault.LOCK_WITHOUT_CYC, "bus_protocol", "lock_in_cyc", 5),
    (Fault.EXIT_WITHDRAWN, "handshake_exit", "valid_held", 4),
    (Fault.GP_WITHDRAWN, "handshake_gp", "valid_held", 2),
    (Fault.SELF_IPI_OVERWRITTEN, "handshake_self_ipi", "payload_stable", 10),
    (Fault.NOTIFY_OVERWRITTEN, "handshake_notify", "payload_stable", 13),
    (Fault.ELIGIBLE_BIT12, "outcome", "exit_is_spec", 2),
    (Fault.SKIP_BOUND_CHECK, "outcome", "exit_iff_spec", 3),
    (Fault.ELIGIBLE_BIT12, "invariants", "inv_done_interceptor_exit", 2),
]
# The faults of the pipelined unit, on it (the same witness environment, BMC from reset).
PIPELINED_MUTANTS = [
    (Fault.WRITE_BEFORE_READ_ANSWERED, "issue_order", "after_earlier_round_trips_answered", 6),
    (Fault.NEXT_REQUEST_EARLY, "issue_order", "after_previous_request_answered", 2),
    (Fault.NEXT_REQUEST_EARLY, "no_issue_after_err", "none_after_err", 2),
    (Fault.NEXT_REQUEST_EARLY, "bus_protocol", "cyc_held_while_answers_outstanding", 2),
    (Fault.NEXT_REQUEST_EARLY, "outcome", "request_complete", 1),
    # Two invariants break at step 2; which of them the counterexample shows varies.
    (Fault.NEXT_REQUEST_EARLY, "invariants",
     ("inv_outstanding_are_this_requests", "inv_at_stores"), 2),
    (Fault.LOCK_DROPPED_WITH_WRITE_OUTSTANDING, "lock_window", "lock_held_in_window", 5),
    # The answers swapped in the PID reads show at the PIR write (the PIR word is read from
    # its register, so a stale one shows only where it differs: step 8).
    (Fault.ANSWER_MISMATCHED, "transfers", "transfer_is_spec", 8),
    (Fault.NOTIFY_BEFORE_LAST_ANSWER, "notifications", "notify_has_an_on_transition", 7),
]
BUS_MUTANTS = [("classic", *mu) for mu in MUTANTS] + \
    [("pipelined", *mu) for mu in PIPELINED_MUTANTS]
# completion is a response bound: it is shown able to fail by shortening its bounds by one,
# from reset in the witness environment. The classic unit's shortened bounds fail at step 9;
# the pipelined unit's ready bound at step 13 (an xAPIC ICR-low posting whose last write
# errs).
TIGHT_COMPLETION = {
    "classic": {**counterexample_at(9), "latency": LATENCY},
    "pipelined": {**counterexample_at(13), "latency": PIPELINED_LATENCY},
}


def _mutant_key(bus, fault, check):
    return f"{bus}/mutants/{fault.value}-{check}"


def _jobs():
    """Every SymbiYosys run of the tests: key -> (bus, check, fault or None, run options);
    the checks that share one proof (`proven_together`) are one run, ``<bus>/together``,
    whose check is the tuple of their names."""
    jobs = {}
    for bus in BUSES:
        for name in checks_for(bus):
            if name not in proven_together(bus):
                jobs[f"{bus}/checks/{name}"] = (bus, name, None, {})
        jobs[f"{bus}/together"] = (bus, tuple(proven_together(bus)), None, {})
        options = TIGHT_COMPLETION[bus]
        ready, idle = completion_bounds(options["latency"], PATIENCE, bus)
        jobs[f"{bus}/tight/completion"] = (bus, "completion", None,
                                           {**options, "bounds": (ready - 1, idle - 1)})
    for bus, fault, check, _, step in BUS_MUTANTS:
        jobs[_mutant_key(bus, fault, check)] = (bus, check, fault, counterexample_at(step))
    return jobs


JOBS = _jobs()


def _summary(r):
    return {"name": r.name, "bus": r.bus, "status": r.status, "depth": r.depth,
            "failed": r.failed, "reached": r.reached, "step": r.step,
            "seconds": r.seconds, "trace": None if r.trace is None else str(r.trace),
            "together": list(r.together), "rtlil": str(r.workdir / "top.il"),
            "table": format_table([r])}


def _run(key):
    bus, name, fault, options = JOBS[key]
    if isinstance(name, tuple):
        return {r.name: _summary(r) for r in run_together(name, bus=bus, out_dir=OUT / "checks")}
    return _summary(run_check(name, bus=bus, faults=frozenset() if fault is None else {fault},
                              out_dir=OUT / key.split("/")[1], **options))


def verdict(key):
    """The verdict of the run ``key`` of `JOBS` in this test session: run by the first test
    that asks (one run at a time per xdist worker), read by the others."""
    check_tools()
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    saved = OUT / "verdicts" / f"{key.replace('/', '+')}.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    with open(saved.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if saved.exists():
            known = json.loads(saved.read_text())
            if known["run"] == run_id:
                return known["verdict"]
        result = _run(key)
        saved.write_text(json.dumps({"run": run_id, "verdict": result}))
        return result


def check_verdict(bus, name):
    """The verdict of check ``name`` of the ``bus`` unit at its own settings: its own run's,
    or the verdict it got in the run it shares (`run_together`)."""
    if name in proven_together(bus):
        return verdict(f"{bus}/together")[name]
    return verdict(f"{bus}/checks/{name}")


# -- the proofs --------------------------------------------------------------------------------

def test_formal_tools_are_installed():
    check_tools()       # raises ToolError, failing the test, when one is missing


@pytest.mark.slow
@pytest.mark.parametrize("bus, name", BUS_PROPERTIES)
def test_property_holds(bus, name):
    v = check_verdict(bus, name)
    assert v["status"] == "PASS", v["table"]
    assert v["failed"] == [] and v["bus"] == bus
    assert v["depth"] == depths_for(bus)[name]


def test_the_proofs_that_share_a_run_assume_nothing_of_their_own():
    """`run_together` may prove only checks at the common setting (1-induction, any
    latency) that add no assumption: invariants and completion each keep a run of their
    own, and a harness refuses any other group."""
    for bus in BUSES:
        shared = proven_together(bus)
        assert len(shared) >= 9 and "invariants" not in shared and "completion" not in shared
        assert {settings_for(bus)[name] for name in shared} == {(1, None, None)}
        for alone in ("invariants", "completion", "covers"):
            with pytest.raises(ValueError, match="cannot share a run"):
                FormalHarness("transfers", bus=bus, together=[alone])


@pytest.mark.slow
def test_a_shared_proof_that_fails_gives_each_check_its_own_verdict(tmp_path):
    """A run of several proofs that does not pass says nothing of any one of them: each then
    runs on its own. With lock raised outside a bus cycle, the bus protocol fails (already in
    the initial state, whatever the invariants) and the #GP handshake still passes."""
    bus, gp = run_together(["bus_protocol", "handshake_gp"], faults={Fault.LOCK_WITHOUT_CYC},
                           out_dir=tmp_path)
    assert "failed assertion" in (tmp_path / "together" / "proof.log").read_text()
    assert bus.name == "bus_protocol" and bus.status == "FAIL" and not bus.together
    assert bus.failed == ["lock_in_cyc"], format_table([bus])
    assert gp.passed and not gp.together, format_table([gp])
    assert (tmp_path / "handshake_gp+lock_without_cyc" / "proof.log").is_file()


def test_the_cover_checks_share_out_every_cover():
    for bus in BUSES:
        groups = [covers_of(bus, name) for b, name in BUS_COVER_CHECKS if b == bus]
        assert sorted(c for group in groups for c in group) == sorted(covers_for(bus))
        assert all(groups)


@pytest.mark.slow
@pytest.mark.parametrize("bus, check", BUS_COVER_CHECKS)
def test_cover_check_reaches_all_its_covers(bus, check):
    v = verdict(f"{bus}/checks/{check}")
    assert v["status"] == "PASS", v["table"]
    assert set(v["reached"]) == set(covers_of(bus, check))


@pytest.mark.slow
@pytest.mark.parametrize("bus, cover", BUS_COVERS)
def test_cover_is_reached(bus, cover):
    (check,) = [name for b, name in BUS_COVER_CHECKS if b == bus and cover in covers_of(b, name)]
    v = verdict(f"{bus}/checks/{check}")
    assert v["reached"].get(cover) is not None, v["table"]
    assert 0 < v["reached"][cover] < depths_for(bus)[check]


# -- the same verdicts from SymbiYosys -------------------------------------------------------

def sby_verdict(folder, check):
    """Run SymbiYosys on the ``.sby`` file the runner left in ``folder`` (in ``folder/sby``);
    return its verdict in the runner's terms: status, failed assertions, the step of a BMC
    counterexample, covers reached (name -> step)."""
    from tb.formal.runner import _env, _messages
    from tb.formal.smtbmc import REACHED_LINE, STEP_LINE
    proc = subprocess.run(["yowasp-sby", "-f", "-d", "sby", f"{check}.sby"], cwd=folder,
                          env=_env(), capture_output=True, text=True, timeout=900)
    log = proc.stdout
    status = (folder / "sby" / "status").read_text().split()[0]
    names = _messages((folder / "top.il").read_text())
    # the failed assertions from sby's own summary; the covers and steps are smtbmc's lines,
    # which sby passes on
    failed = {names[cell] for cell in
              re.findall(r"failed assertion top\._witness_\.check_(\d+)", log)}
    steps = STEP_LINE.findall(log)
    reached = {names[cell]: int(step) for step, cell in REACHED_LINE.findall(log)}
    return {"status": status, "failed": failed, "reached": reached,
            "step": int(steps[-1]) if status == "FAIL" and steps else None}


def same_as_sby(verdict_, check):
    """Assert that SymbiYosys gives ``verdict_`` (the runner's) for the same run, from the
    same SMT-LIB model byte for byte."""
    from tb.formal.smtbmc import MODEL
    folder = Path(verdict_["rtlil"]).parent
    theirs = sby_verdict(folder, check)
    (model,) = (folder / "sby" / "model").glob("design_smt2*.smt2")
    assert model.read_bytes() == (folder / "work" / MODEL).read_bytes(), \
        f"{folder}: the runner's SMT-LIB model is not SymbiYosys's"
    ours = {"status": verdict_["status"], "failed": set(verdict_["failed"]),
            "reached": {k: v for k, v in verdict_["reached"].items() if v is not None},
            "step": verdict_["step"]}
    assert ours == theirs, f"{folder}: runner {ours}, SymbiYosys {theirs}"


@pytest.mark.slow
@pytest.mark.parametrize("key, check", [
    ("classic/checks/invariants", "invariants"),                    # a proof that passes
    ("classic/checks/deep_covers", "deep_covers"),                  # covers, from a step on
    (_mutant_key("classic", Fault.GP_WITHDRAWN, "handshake_gp"), "handshake_gp"),  # BMC fails
])
def test_symbiyosys_gives_the_same_verdict(key, check):
    """The runner builds the model and starts smtbmc itself (`tb.formal.smtbmc`); SymbiYosys
    on the ``.sby`` file it leaves gives the same verdict, failed assertions, step and covers
    reached (the failed induction step: `test_a_broken_unit_is_never_reported_proven`)."""
    same_as_sby(verdict(key), check)


def test_symbiyosys_verdicts_are_read_in_full(tmp_path, monkeypatch):
    """`same_as_sby` tells verdicts apart: a wrong status, assertion, step or cover fails, and
    so does a model that differs from SymbiYosys's."""
    folder = tmp_path / "x"
    (folder / "sby").mkdir(parents=True)
    (folder / "top.il").write_text('cell $check $7\n  parameter \\FORMAT "lock_in_cyc"\n'
                                   '  parameter \\FLAVOR "assert"\n')
    (folder / "sby" / "status").write_text("FAIL 2\n")
    from tb.formal.smtbmc import MODEL
    ours, theirs = folder / "work" / MODEL, folder / "sby" / "model" / "design_smt2.smt2"
    for path in (ours, theirs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("(declare-sort |top_s| 0)\n")
    log = ("Checking assertions in step 2..\n"
           "summary:   failed assertion top._witness_.check_7 at x.py:1 step 2\n")
    monkeypatch.setattr(subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 2, log, ""))
    good = {"rtlil": str(folder / "top.il"), "status": "FAIL", "failed": ["lock_in_cyc"],
            "reached": {}, "step": 2}
    same_as_sby(good, "x")
    for bad in ({"status": "PASS"}, {"failed": []}, {"step": 3},
                {"reached": {"lock_in_cyc": 1}}):
        with pytest.raises(AssertionError, match="SymbiYosys"):
            same_as_sby({**good, **bad}, "x")
    theirs.write_text("(declare-sort |top_s| 0)\n; another cell order\n")
    with pytest.raises(AssertionError, match="model is not SymbiYosys's"):
        same_as_sby(good, "x")


def test_every_fault_and_every_property_has_a_mutant():
    """Each fault is caught on the unit that has it; every classic property is shown failing
    by a fault, and every pipelined one too but the handshakes, which are the classic
    checks themselves (the same property functions)."""
    assert {fault for _, fault, _, _, _ in BUS_MUTANTS} == set(Fault)
    for bus, fault, check, _, step in BUS_MUTANTS:
        assert FAULT_BUS[fault] == bus
        assert checks_for(bus)[check].mode != "cover" and step >= 1
    assert {check for _, check, _, _ in MUTANTS} == set(PROPERTIES) - {"completion"}
    shared = {f"handshake_{name}" for name in ("exit", "notify", "self_ipi", "gp")}
    assert {check for _, check, _, _ in PIPELINED_MUTANTS} == \
        {name for name, check in PIPELINED_CHECKS.items() if check.mode != "cover"} - \
        {"completion"} - shared
    for name in shared:
        assert PIPELINED_PROPERTIES[name].__code__ is CLASSIC_PROPERTIES[name].__code__


@pytest.mark.slow
@pytest.mark.parametrize("mutant", BUS_MUTANTS, ids=lambda mu: f"{mu[0]}-{mu[1].value}-{mu[2]}")
def test_injected_fault_is_caught(mutant):
    bus, fault, check, prop, _ = mutant
    v = verdict(_mutant_key(bus, fault, check))
    assert v["name"] == check and v["bus"] == bus
    assert v["status"] == "FAIL", v["table"]
    assert set(prop if isinstance(prop, tuple) else (prop,)) & set(v["failed"]), v["table"]
    assert v["trace"] is not None and Path(v["trace"]).is_file()
    assert Path(v["trace"]).stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("bus", BUSES)
def test_completion_fails_one_cycle_short_of_its_bounds(bus):
    v = verdict(f"{bus}/tight/completion")
    assert v["status"] == "FAIL", v["table"]
    assert set(v["failed"]) & {"ready_again", "idle"}, v["table"]


# -- the pipelined spec model -------------------------------------------------------------------

def _spec_path(kind, data, *, cfg, hi=0, entry=0, ni=0):
    """The pipelined spec's path for one request: [(what, needs)] of its transfers."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator
    from hdl.formats import VMCSConfig
    from tb.formal.pipelined_spec import PipelinedRequestSpec
    m = Module()
    inputs = {"kind": Signal(K), "data": Signal(64), "cfg": Signal(VMCSConfig),
              "hi": Signal(32), "entry": Signal(64), "rmw": Signal(64), "ni": Signal(64)}
    spec = PipelinedRequestSpec(m, maxphyaddr=36, **inputs)
    slots = [spec.transfer(i) for i in range(7)]
    path = []

    async def bench(ctx):
        for name, value in (("kind", kind), ("data", data), ("hi", hi), ("entry", entry),
                            ("ni", ni)):
            ctx.set(inputs[name], value)
        ctx.set(inputs["cfg"], cfg)
        for t in slots[:ctx.get(spec.n_transfers)]:
            (what,) = [w for w, flag in t.what.items() if ctx.get(flag)]
            path.append((what, ctx.get(t.needs)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return path


_SPEC_CFG = {"ipiv": 1, "vid": 1, "x2apic": 1, "host_x2apic": 1, "last_pid_index": 7,
             "pid_table": 0x8000, "vapic_page": 0x4000}
_ENTRY = 0x9000 | 1             # PID at 9000H, valid
def _icr_low(vector, shorthand=0):
    from hdl.formats import ICRLow
    return ICRLow.const({"vector": vector, "shorthand": shorthand}).as_bits()


def test_pipelined_spec_orders_an_x2apic_posting_in_three_round_trips():
    """docs/interface.md, the pipelined port: the vICR store and the entry read back to back;
    after the entry's answer both PID reads; after both, the PIR write and (notifying) the
    NotifyInfo write."""
    path = _spec_path(K.X2APIC_ICR, 1 << 32 | _icr_low(0x40), cfg=_SPEC_CFG, entry=_ENTRY)
    assert path == [("store_lo", 0), ("entry", 0), ("pir_read", 2), ("ni_read", 2),
                    ("pir_write", 4), ("ni_write", 4)]
    suppressed = _spec_path(K.X2APIC_ICR, 1 << 32 | _icr_low(0x40), cfg=_SPEC_CFG,
                            entry=_ENTRY, ni=1)                     # ON already set
    assert suppressed == path[:-1]


def test_pipelined_spec_orders_xapic_writes_and_the_self_ipi():
    xapic = {**_SPEC_CFG, "x2apic": 0, "host_x2apic": 0}
    dest_1 = 1 << 24                                    # VICR_HI: destination 1
    assert _spec_path(K.XAPIC_ICR_LO, _icr_low(0x40), cfg=xapic, hi=dest_1, entry=_ENTRY) == [
        ("store_lo", 0), ("read_hi", 0), ("entry", 2), ("pir_read", 3), ("ni_read", 3),
        ("pir_write", 5), ("ni_write", 5)]
    assert _spec_path(K.XAPIC_ICR_LO, _icr_low(0x40, shorthand=1), cfg=xapic) == [
        ("store_lo", 0), ("read_hi", 0), ("irr_read", 2), ("irr_write", 3)]
    assert _spec_path(K.SENDUIPI, 0x0100 << 32 | 0x40, cfg=xapic, entry=_ENTRY) == [
        ("store_hi", 0), ("store_lo", 0), ("entry", 0), ("pir_read", 3), ("ni_read", 3),
        ("pir_write", 5), ("ni_write", 5)]
    assert _spec_path(K.XAPIC_ICR_HI, dest_1, cfg=xapic) == [("store_hi", 0)]


def test_pipelined_spec_cuts_a_path_at_an_exit_like_the_classic_one():
    illegal = _spec_path(K.X2APIC_ICR, 1 << 32 | _icr_low(0x08), cfg=_SPEC_CFG, entry=_ENTRY)
    assert illegal == [("store_lo", 0)]                 # vector < 16: no entry read
    invalid = _spec_path(K.X2APIC_ICR, 1 << 32 | _icr_low(0x40), cfg=_SPEC_CFG, entry=0)
    assert invalid == [("store_lo", 0), ("entry", 0)]


# -- the fault parameter -----------------------------------------------------------------------

def test_faults_default_to_none():
    assert IPIVirtualizer().faults == frozenset()
    assert IPIVirtualizer(faults={"drop_lock", Fault.SKIP_BOUND_CHECK}).faults == \
        {Fault.DROP_LOCK, Fault.SKIP_BOUND_CHECK}


def test_faults_belong_to_one_stage_each():
    owned = [fault for faults in STAGE_FAULTS.values() for fault in faults]
    assert sorted(owned, key=lambda f: f.value) == sorted(Fault, key=lambda f: f.value)
    assert set(MUTATION_TABLES) == {stage.component for stage in STAGES + PIPELINED_STAGES} | \
        {PipelinedIssuer}


def test_a_mutant_is_its_stage_with_the_faults_it_owns():
    assert mutant(PIDUpdate, {Fault.SKIP_BOUND_CHECK}) is PIDUpdate     # not its fault
    gap = mutant(PIDUpdate, {Fault.LOCK_GAP, Fault.SKIP_BOUND_CHECK})
    assert issubclass(gap, PIDUpdate) and gap is not PIDUpdate
    unit = IPIVirtualizer(faults={Fault.LOCK_GAP})
    assert type(unit.pid_update) is not PIDUpdate and type(unit.lookup) is STAGES[1].component


def test_the_real_stages_carry_no_fault_parameter():
    for stage in STAGES + PIPELINED_STAGES:
        with pytest.raises(TypeError):
            stage.component(faults={Fault.DROP_LOCK})
    with pytest.raises(TypeError):
        PipelinedIssuer(addr_width=33, faults={Fault.ANSWER_MISMATCHED})


def test_unknown_fault_is_a_value_error():
    with pytest.raises(ValueError, match="faults of IPIVirtualizer must be among"):
        IPIVirtualizer(faults={"no_such_fault"})


def test_a_transition_missing_from_a_published_table_fails_the_invariants(tmp_path,
                                                                          monkeypatch):
    """The tables the FSM coverage is judged by are proven complete: drop one pair that the
    PID update takes in every posting, and the invariants check fails, from reset, at the
    PIR write of the first posting (step 4)."""
    S = PIDUpdate.State
    monkeypatch.setenv("IPIV_PROOF_CACHE", "0")     # the sources do not show the patch
    monkeypatch.setattr(PIDUpdate, "TRANSITIONS",
                        PIDUpdate.TRANSITIONS - {(S.IDLE, S.PIR_WRITE)})
    r = run_check("invariants", out_dir=tmp_path, **counterexample_at(4))
    assert r.status == "FAIL" and "inv_transition_tables" in r.failed, format_table([r])


def test_a_transition_missing_from_the_sequencers_table_fails_its_invariants(tmp_path,
                                                                            monkeypatch):
    """The same for the pipelined unit: its sequencer goes from the PID reads to the writes
    in every posting (step 7 from reset)."""
    from hdl.pipelined_sequencer import PipelinedSequencer
    S = PipelinedSequencer.State
    monkeypatch.setenv("IPIV_PROOF_CACHE", "0")
    monkeypatch.setattr(PipelinedSequencer, "TRANSITIONS",
                        PipelinedSequencer.TRANSITIONS - {(S.READS, S.WRITES)})
    r = run_check("invariants", bus="pipelined", out_dir=tmp_path, **counterexample_at(7))
    assert r.status == "FAIL" and "inv_transition_tables" in r.failed, format_table([r])


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
    with pytest.raises(ValueError, match="bus must be one of classic, pipelined"):
        FormalHarness("transfers", bus="wishbone")
    with pytest.raises(ValueError, match="check must be one of"):
        FormalHarness("locked_rmw", bus="pipelined")       # the lock window replaces it
    with pytest.raises(ValueError, match="latency must be at least 1"):
        FormalHarness("completion", bus="pipelined", latency=0)


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
        assert f"depth {DEPTHS[name]:3d}" in line and line.split()[1] == "classic"
        assert ("unbounded" in line) == (check.mode == "prove")


def test_prove_list_both_buses():
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--list", "--bus", "both"])
    assert args.func(args, stream=out) == 0
    rows = [line.split()[:2] for line in out.getvalue().splitlines()]
    assert rows == [[name, bus] for bus in BUSES for name in checks_for(bus)]
    pipelined = [line for line in out.getvalue().splitlines() if " pipelined " in line]
    for line, (name, check) in zip(pipelined, PIPELINED_CHECKS.items()):
        assert f"depth {depths_for('pipelined')[name]:3d}" in line
        assert ("unbounded" in line) == (check.mode == "prove")
    for line in out.getvalue().splitlines():        # the deep covers: only from their step
        name, bus = line.split()[:2]
        skip = settings_for(bus)[name].skip
        assert (f"from step {skip}" in line) == (skip is not None) == (name == "deep_covers")


@pytest.mark.parametrize("argv, message", [
    (["--bus", "classic", "--check", "issue_order"],
     "unknown check 'issue_order' for --bus classic"),
    (["--bus", "pipelined", "--check", "locked_rmw"],
     "unknown check 'locked_rmw' for --bus pipelined"),
    (["--fault", "next_request_early"],
     "fault 'next_request_early' is not a fault of the classic unit"),
    (["--bus", "pipelined", "--fault", "drop_lock"],
     "fault 'drop_lock' is not a fault of the pipelined unit"),
])
def test_prove_rejects_what_the_bus_lacks(capsys, tmp_path, argv, message):
    args = _parser().parse_args(["prove", *argv, "-o", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        args.func(args, stream=io.StringIO())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ipiv prove: error: {message}") and err.count("\n") == 1


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


def test_prove_runs_a_check_and_prints_the_table(tmp_path, capsys, monkeypatch):
    """The table of a real run; then the same run again, as JSON, from the proof cache (a
    cache of this test's own, on even under CI): one sby run, and the cache shown working on
    a real verdict."""
    from tb.formal import runner
    monkeypatch.setattr(runner, "CACHE", tmp_path / "cache")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("IPIV_PROOF_CACHE", "1")
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--check", "handshake_notify", "-o", str(tmp_path)])
    assert args.func(args, stream=out) == 0
    table = out.getvalue()
    header = table.splitlines()[0].split()
    assert header == ["property", "bus", "mode", "engine", "depth", "requests", "latency",
                      "result", "time"]
    row = next(line for line in table.splitlines() if line.startswith("handshake_notify"))
    assert "prove" in row and "unbounded" in row and "PASS" in row
    assert ENGINES["prove"].split(" z3")[0] + " z3" in row        # without z3's parameters
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
    assert {k: check[k] for k in ("name", "bus", "mode", "depth", "requests", "result")} == \
        {"name": "handshake_notify", "bus": "classic", "mode": "prove",
         "depth": DEPTHS["handshake_notify"], "requests": "unbounded", "result": "PASS"}
    assert check["seconds"] > 0 and check["cached"] is True
    assert (tmp_path / "handshake_notify" / "proof.log").read_text().splitlines()[-1] == \
        "handshake_notify: PASS"


def test_prove_runs_the_pipelined_checks(tmp_path, capsys):
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--bus", "both", "--check", "handshake_gp",
                                 "issue_order", "-o", str(tmp_path), "--json", "-j", "1"])
    assert args.func(args, stream=out) == 0
    report = json.loads(out.getvalue())
    assert [(c["bus"], c["name"], c["result"], c["requests"]) for c in report["checks"]] == [
        ("classic", "handshake_gp", "PASS", "unbounded"),
        ("pipelined", "handshake_gp", "PASS", "unbounded"),
        ("pipelined", "issue_order", "PASS", "unbounded")]
    assert "pipelined/issue_order: PASS (prove, depth 1, unbounded," in capsys.readouterr().err
    # the pipelined unit's two proofs share one run (`run_together`); the classic one is alone
    assert (tmp_path / "pipelined" / "together" / "together.sby").is_file()
    assert [c["together"] for c in report["checks"]] == [[]] + 2 * [["handshake_gp",
                                                                    "issue_order"]]


def test_prove_with_a_pipelined_fault_runs_on_the_pipelined_unit(tmp_path):
    out = io.StringIO()
    args = _parser().parse_args(["prove", "--bus", "both", "--check", "issue_order",
                                 "no_issue_after_err", "covers", "--fault", "next_request_early",
                                 "-o", str(tmp_path), "--json", "-j", "1"])
    assert args.func(args, stream=out) == 1
    report = json.loads(out.getvalue())
    assert [(c["bus"], c["name"], c["mode"], c["result"], c["step"])
            for c in report["checks"]] == [
        ("pipelined", "issue_order", "bmc", "FAIL", 2),
        ("pipelined", "no_issue_after_err", "bmc", "FAIL", 2)]
    assert "after_previous_request_answered" in report["checks"][0]["failed"]


def _property_code(bus, name):
    """What check ``name`` of the ``bus`` unit elaborates beyond the unit, its environment and
    monitor: its property function's code (the four handshakes share one, so do the two
    cover checks)."""
    return (PIPELINED_PROPERTIES if bus == "pipelined" else CLASSIC_PROPERTIES)[name].__code__


def test_harness_elaborates_every_check():
    """Every check elaborates in both environments (free and witness): the proof runs of
    `JOBS` elaborate most (their tests fail if one does not), this test one check of each
    property function they leave out."""
    elaborated = {(bus, _property_code(bus, name), options.get("witness", False))
                  for bus, names, _, options in JOBS.values()
                  for name in (names if isinstance(names, tuple) else (names,))}
    rest = {(bus, _property_code(bus, name), witness): name for bus in BUSES
            for name in checks_for(bus) for witness in (False, True)}
    rest = {key: name for key, name in rest.items() if key not in elaborated}
    assert 0 < len(rest) < len(elaborated)
    for (bus, _, witness), name in rest.items():
        h = FormalHarness(name, bus=bus, witness=witness,
                          latency=settings_for(bus)[name].latency)
        text = rtlil.convert(h, name="top", ports=[h.clk])
        assert "spec_n_transfers" in text
        assert bus == "classic" or "spec_slot_answered" in text


@pytest.mark.parametrize("bus", BUSES)
def test_every_check_is_unbounded_or_a_cover(bus):
    """No bounded exceptions are left: every safety check is a k-induction proof in an
    environment with any number of memory wait states (but completion's response bound)."""
    for name, check in checks_for(bus).items():
        assert check.mode in ("prove", "cover"), name
        assert settings_for(bus)[name][1] is None or name == "completion"


@pytest.mark.parametrize("bus", BUSES)
def test_invariants_are_asserted_only_by_their_own_check(bus):
    """Read in the RTLIL of the proof runs (`JOBS`)."""
    for name, flavor in (("invariants", "assert"), ("outcome", "assume"), ("covers", "assume")):
        text = Path(check_verdict(bus, name)["rtlil"]).read_text()
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
    that passed is UNPROVEN, and the search from reset turns both into real counterexamples.
    One run: the verdicts before the search are those the progress reports as done first."""
    first = {}

    def progress(event, name, result):
        if event == "done":
            first.setdefault(name, result)
    found = run_checks(["invariants", "outcome"], faults={Fault.ELIGIBLE_BIT12},
                       out_dir=tmp_path, jobs=1, progress=progress, search=True)
    assert first["invariants"].status == "UNKNOWN"
    assert first["outcome"].status in ("UNPROVEN", "UNKNOWN")
    for r in found:
        assert r.status == "FAIL" and r.mode == "bmc" and r.step is not None, format_table([r])
        assert r.trace is not None and r.trace.is_file()
        assert r is not first[r.name]
    assert "inv_done_interceptor_exit" in found[0].failed
    assert "exit_is_spec" in found[1].failed
    # SymbiYosys on the same failed induction: the same verdict
    invariants = first["invariants"]
    same_as_sby({"rtlil": str(invariants.workdir / "top.il"), "status": invariants.status,
                 "failed": invariants.failed, "reached": {}, "step": None}, "invariants")

"""FSM state and transition coverage (`tb.fsm_coverage`): the model is read from the design,
every unreachable bin says why, and the bursty random stimulus of the Amaranth backend
(`tb.amaranth_harness.stress_run`) reaches every reachable state and transition of every
stage and of the arbiter, and the "previous notification still offered" path. The crosses with
the request kind are judged by ``ipiv regress`` over the cocotb runs; here they are reported."""

import pytest

from hdl import IPIVirtualizer
from hdl.faults import Fault
from tb import fsm_coverage as fc
from tb.amaranth_harness import stress_run

SEEDS = 16          # runs of 60 ICR writes: about 15,000 cycles, 30 s on one core
COUNT = 60


def test_tables_come_from_the_design():
    tables = fc.fsm_tables(IPIVirtualizer())
    pid = tables["pid_update"]
    assert set(pid.states) == {"IDLE", "PIR_WRITE", "NOTIFY_INFO_READ", "NOTIFY_INFO_WRITE",
                               "NOTIFY", "OUTPUT"}
    assert ("NOTIFY_INFO_WRITE", "NOTIFY") in pid.transitions      # previous still offered
    assert ("NOTIFY", "NOTIFY") in pid.transitions
    assert ("IDLE", "NOTIFY") not in pid.transitions
    assert ("STORE_LO", "READ_HI") in tables["interceptor"].transitions
    # a design with another FSM gives another table
    if hasattr(Fault, "LOCK_GAP"):
        gap = fc.fsm_tables(IPIVirtualizer(faults={Fault.LOCK_GAP}))["pid_update"]
        assert "PIR_GAP" in gap.states and ("PIR_GAP", "PIR_WRITE") in gap.transitions


def test_every_unreachable_bin_says_why():
    model = fc.model(IPIVirtualizer(), system_cores=2)
    bins = model["bins"]
    assert all(reason is None or len(reason) > 20 for reason in bins.values())
    assert bins["pid_update:NOTIFY_INFO_WRITE->NOTIFY"] is None
    assert bins["virr_update:WRITE->OFFER@X2APIC_ICR"] is not None
    assert bins["arbiter:pid_update->lookup"] is not None
    assert bins["event:notify_while_offered@SENDUIPI"] is None
    # every transition of the design's table is a bin
    for stage, table in model["tables"].items():
        for a, b in table["transitions"]:
            assert f"{stage}:{a}->{b}" in bins


def test_bursty_random_stimulus_reaches_every_state_and_transition():
    design = IPIVirtualizer()
    sampler = fc.Sampler(fc.fsm_tables(design))
    for seed in range(SEEDS):
        stress_run(seed, count=COUNT, coverage=sampler)
    model = fc.model(design)
    plain = [g for g in fc.report({}, model)["groups"] if "x kind" not in g and g != "events"]
    rep = fc.report(sampler.hits, model, groups=plain)
    print("\n".join(fc.format_report(fc.report(sampler.hits, model))))
    assert rep["hit"] == rep["reachable"], "\n".join(fc.format_report(rep))
    # nothing declared unreachable was hit, crossed bins included
    assert not fc.report(sampler.hits, model)["unexpected"]
    events = [b for b in sampler.hits if b.startswith("event:notify_while_offered")]
    assert events, "no notification was ready while the previous one was still offered"


@pytest.mark.parametrize("bad", [{"x": 1}])
def test_merge_sums_hits(bad, tmp_path):
    s = fc.Sampler(fc.fsm_tables(IPIVirtualizer()))
    s.hits["pid_update:IDLE"] = 3
    s.export(tmp_path / "a.json")
    merged = fc.merge([tmp_path / "a.json", s, bad])
    assert merged["pid_update:IDLE"] == 6 and merged["x"] == 1

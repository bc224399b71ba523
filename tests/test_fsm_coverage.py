"""FSM state and transition coverage (`tb.fsm_coverage`): the model is the stages' published tables,
every unreachable bin says why, and the bursty random stimulus of the Amaranth backend
(`tb.amaranth_harness.stress_run`) reaches every reachable state and transition of every
stage and of the arbiter, and the "previous notification still offered" path. The crosses with
the request kind are judged by ``ipiv regress`` over the cocotb runs; here they are reported."""

import pytest

from hdl import IPIVirtualizer
from hdl.fsm import transition_table
from hdl.pid_update import PIDUpdate
from tb import fsm_coverage as fc, fsm_coverage_pipelined as fp
from tb.amaranth_harness import stress_run

SEEDS = 16          # runs of 60 ICR writes: about 15,000 cycles, 30 s on one core
COUNT = 60


def test_tables_are_the_stages_published_ones():
    tables = fc.fsm_tables(IPIVirtualizer())
    pid = tables["pid_update"]
    assert set(pid.states) == {"IDLE", "PIR_WRITE", "NOTIFY_INFO_READ", "NOTIFY_INFO_WRITE",
                               "NOTIFY", "OUTPUT"}
    assert ("NOTIFY_INFO_WRITE", "NOTIFY") in pid.transitions      # previous still offered
    assert ("NOTIFY", "NOTIFY") in pid.transitions
    assert ("IDLE", "NOTIFY") not in pid.transitions
    assert ("STORE_LO", "READ_HI") in tables["interceptor"].transitions
    assert tables["pid_update"].states[PIDUpdate.State.NOTIFY.value] == "NOTIFY"


def test_a_transition_outside_the_table_is_reported():
    model = fc.model(IPIVirtualizer())
    hits = {"pid_update:IDLE->NOTIFY": 1, "pid_update:IDLE->IDLE": 5}
    assert fc.report(hits, model)["unexpected"] == ["pid_update:IDLE->NOTIFY"]


def test_a_table_naming_an_unknown_state_is_an_error():
    with pytest.raises(ValueError, match="no state 'PIR_GAP'"):
        transition_table(PIDUpdate.State, "IDLE -> PIR_GAP")
    with pytest.raises(ValueError, match="no transitions given"):
        transition_table(PIDUpdate.State, "IDLE -> IDLE")


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


# -- the pipelined unit ------------------------------------------------------------------------

# The first 16 seeds hit every bin but an xAPIC ICR-low notification ready while the previous
# one is still offered (a consumer stall longer than the xAPIC request's five round trips),
# which about one seed in twenty has: seed 84 is the first.
PIPELINED_SEEDS = (*range(16), 84)


def test_pipelined_bins_are_its_sequencers_table():
    model = fp.model()
    bins = model["bins"]
    assert all(reason is None or len(reason) > 20 for reason in bins.values())
    for a, b in model["tables"]["sequencer"]["transitions"]:
        assert f"sequencer:{a}->{b}" in bins
    assert bins["sequencer:STORES->ENTRY@X2APIC_ICR"] is not None
    assert bins["sequencer:WRITES->NOTIFY@SENDUIPI"] is None
    assert fc.report({"sequencer:IDLE->NOTIFY": 1}, model)["unexpected"] == \
        ["sequencer:IDLE->NOTIFY"]


def test_pipelined_stimulus_reaches_every_state_transition_and_cross():
    sampler = fp.Sampler()
    for seed in PIPELINED_SEEDS:
        stress_run(seed, count=COUNT, coverage=sampler, bus="pipelined")
    rep = fc.report(sampler.hits, fp.model())
    print("\n".join(fc.format_report(rep)))
    assert rep["hit"] == rep["reachable"], "\n".join(fc.format_report(rep))
    assert not rep["unexpected"]

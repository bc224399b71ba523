"""`tb.amaranth_reuse`: a design's Amaranth simulator is kept and reset between the runs of
`tb.amaranth_harness.Harness`, and a run on it is the run a new simulator gives (same records,
cycles and memory), whatever ran before; a failed run's simulator is dropped; no testbench
coroutine is left un-awaited."""

import gc
import warnings

import pytest

from hdl import IPIVirtualizer, IPIVSystem
from hdl.faults import Fault
from hdl.mutants import FAULT_BUS
from tb import directed
from tb.amaranth_harness import Harness, MismatchError, stress_run
from tb.amaranth_reuse import design_key, forget_designs, kept_designs
from tb.directed import low, vm_memory, x2
from tb.sharing import measure_sharing


BUSES = ("classic", "pipelined")
CASE = "unsupported_fields"      # 39 writes: exits, postings and self-IPIs


def _directed_run(bus, seed, **run_args):
    """The directed case under bursty timing, seeded; returns the `Run` and the final memory."""
    case = directed.case(CASE)
    memory = case.memory.copy()
    run = Harness(IPIVirtualizer(maxphyaddr=case.maxphyaddr, bus=bus), memory, latency=1,
                  wait_states=0.3, backpressure=0.3, bursts=0.05, seed=seed
                  ).run(case.requests, **run_args)
    return run, memory.written_words()


@pytest.mark.parametrize("bus", BUSES)
def test_a_run_after_another_equals_the_run_alone_and_on_a_new_simulator(bus, tmp_path):
    forget_designs()
    stress_run(3, bus=bus)                  # another run on the same design (MAXPHYADDR 52)
    assert len(kept_designs()) == 1
    after = _directed_run(bus, seed=7)
    assert len(kept_designs()) == 1         # it ran on the kept simulator
    forget_designs()
    alone = _directed_run(bus, seed=7)
    vcd = tmp_path / "run.vcd"              # a run writing waves gets a simulator of its own
    new = _directed_run(bus, seed=7, vcd=str(vcd))
    assert vcd.stat().st_size > 0
    assert after[0].cycles > 0 and after[0].events and after[0].memory_log
    assert after == alone == new            # every record, cycle and the memory written
    assert _directed_run(bus, seed=8)[0] != alone[0]        # the seed matters


def test_a_system_run_is_independent_of_the_run_before():
    forget_designs()
    measure_sharing(2, ipis_per_core=3, latency=2, seed=2)
    after = measure_sharing(2, ipis_per_core=3, latency=2, seed=1)
    assert len(kept_designs()) == 1
    forget_designs()
    assert after == measure_sharing(2, ipis_per_core=3, latency=2, seed=1)


def test_designs_are_told_apart_by_what_they_are_made_of():
    one_fault = {bus: {next(f for f, b in FAULT_BUS.items() if b == bus)} for bus in BUSES}
    keys = {design_key(IPIVirtualizer(maxphyaddr=m, bus=b, faults=f), c)
            for m in (52, 36) for b in BUSES for f in (frozenset(), one_fault[b])
            for c in (False, True)}
    keys |= {design_key(IPIVSystem(n), False) for n in (1, 2)}
    assert len(keys) == 18
    assert design_key(IPIVirtualizer(), False) == design_key(IPIVirtualizer(), False)


def test_a_failed_run_drops_its_simulator():
    forget_designs()
    unit = dict(faults={Fault.DROP_LOCK})
    post = [x2(3, low(0x40)), x2(1, low(0x41))]
    messages = []
    for _ in range(2):
        with pytest.raises(MismatchError) as caught:
            Harness(IPIVirtualizer(**unit), vm_memory(on={1})).run(post)
        messages.append(str(caught.value))
        assert kept_designs() == []
    assert messages[0] == messages[1]
    with pytest.raises(TimeoutError):
        Harness(IPIVirtualizer(), vm_memory(on={1})).run(post, max_cycles=3)
    assert kept_designs() == []


def test_no_testbench_coroutine_is_left_unawaited():
    forget_designs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            _directed_run("classic", seed)
        forget_designs()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]

"""Every deliberate defect of `hdl.faults` is caught in simulation on Amaranth's simulator by
the one checker (`tb.checker`: golden-model replay, output order, stream protocol, locked
read-modify-writes, allowed words, notification conservation and delivery bound), with the same
stimulus for every defect, on the unit (classic or pipelined) that has the defect's component: bursty random runs (`tb.amaranth_harness.stress_run`), then the
directed suite. The cocotb/Icarus half is ``tests/test_cocotb_faults.py``."""

import pytest

from hdl import IPIVirtualizer
from hdl.faults import Fault
from hdl.mutants import FAULT_BUS
from tb import directed
from tb.amaranth_harness import Harness, MismatchError, stress_run

STRESS_SEEDS = 8


def _campaign(faults, bus="classic"):
    """(what caught it, message) of the first run of the campaign that fails, or None."""
    for seed in range(STRESS_SEEDS):
        try:
            stress_run(seed, faults=faults, bus=bus)
        except MismatchError as e:
            return f"random seed {seed}", str(e)
    for case in directed.all_cases():
        for k, (latency, wait_states, backpressure) in enumerate(case.timings):
            memory = case.memory.copy()
            try:
                run = Harness(IPIVirtualizer(maxphyaddr=case.maxphyaddr, bus=bus, faults=faults),
                              memory,
                              latency=latency, wait_states=wait_states,
                              backpressure=backpressure, seed=k).run(case.requests)
                directed.verify(case, run.results, case.memory, memory)
            except MismatchError as e:
                return f"directed {case.name}", str(e)
            except AssertionError as e:
                return f"directed {case.name} (spec)", str(e)
    return None


@pytest.mark.parametrize("bus", ["classic", "pipelined"])
def test_the_real_unit_passes_the_campaign_stimulus(bus):
    for seed in range(STRESS_SEEDS):
        stress_run(seed, bus=bus)


@pytest.mark.parametrize("fault", [f.value for f in Fault])
def test_mutant_is_caught_on_amaranth(fault, record_property):
    caught = _campaign({Fault(fault)}, FAULT_BUS[Fault(fault)])
    assert caught is not None, f"fault {fault} passed every run on Amaranth's simulator"
    record_property("caught_by", f"{caught[0]}: {caught[1][:300]}")
    print(fault, "caught by", caught[0], ":", caught[1][:200])

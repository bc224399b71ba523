"""cocotb testbenches of `IPIVSystem(n)`: n senders and a software agent contending for the
same PIDs, and the co-simulation of the KVM model (`sim.ipi_world.IPIWorld`) with the gateware.
Sizes: `tb.cocotb.config`; ``IPIV_LONG=1`` adds the long co-simulation (100k IPIs)."""

import pytest

from tb.cocotb import runner
from tb.cocotb.config import sizes
from tb.verilog import Design

SIZES = sizes()
FAULTS = runner.fault_from_env()
N_CORES = 3


@pytest.mark.parametrize("seed", range(SIZES.contention_seeds))
def test_contention(seed, request, record_property):
    """No PIR bit lost, every notification matches an ON transition, every transfer as the
    golden model says, while a software agent works on the same PIDs."""
    params = {"seed": seed, "n_cores": N_CORES, "count": SIZES.contention_count}
    result = runner.run_checked(Design(n_cores=N_CORES, faults=FAULTS),
                                "tb.cocotb.system_tests", "contention", params,
                                test_name=request.node.name, record_property=record_property)
    agent = result.stats["agent"]
    assert agent["lost"] == 0 and agent["operations"] > 0
    assert agent["gateware_notifications"] == agent["gateware_on_transitions"] > 0


def _cosim(seed, ipis, request, record_property, *, n_vcpus, n_pcpus, kernel, timing=None):
    params = {"seed": seed, "ipis": ipis, "n_vcpus": n_vcpus, "n_pcpus": n_pcpus,
              "kernel": kernel, **({"timing": timing} if timing else {})}
    result = runner.run_checked(Design(n_cores=n_pcpus, faults=FAULTS),
                                "tb.cocotb.system_tests", "cosim", params,
                                test_name=request.node.name, record_property=record_property)
    s = result.stats
    assert s["ipis"] >= ipis and s["lost"] == 0
    assert s["exits"] == s["golden_exits"]
    assert s["world"]["notifications"] > 0 and s["world"]["migrations"] > 0
    assert s["kernel"] == kernel
    # x2APIC ICR writes while IPIv is not active reached KVM's WRMSR handling
    assert s["world"].get("wrmsr:fastpath", 0) + s["world"].get("wrmsr:full", 0) > 0
    # timely delivery: every ON transition notified within the bound, in cycles (gateware)
    # and in steps (the world); the distributions are reported
    d, w = s["delivery"], s["world_delivery"]
    assert d["on_transitions"] == d["latency_cycles"]["n"] > 0
    assert d["latency_cycles"]["max"] <= d["bound_cycles"]
    assert w["latency_steps"]["n"] > 0 and w["latency_steps"]["max"] <= w["bound_steps"]
    return s


# two short runs: x2APIC and xAPIC host, different vCPU/pCPU counts, each kernel, both with
# back-pressure in bursts (tb.timing) and the second with random wait states too
@pytest.mark.parametrize("seed, n_vcpus, n_pcpus, kernel, timing", [
    (0, 5, 3, "6.0", [1, 0.0, 0.3]), (1, 4, 2, "6.19", [0, 0.3, 0.3])])
def test_cosim(seed, n_vcpus, n_pcpus, kernel, timing, request, record_property):
    s = _cosim(seed, SIZES.cosim_ipis, request, record_property, n_vcpus=n_vcpus,
               n_pcpus=n_pcpus, kernel=kernel, timing=timing)
    assert s["bursts"] > 0 and s["longest_output_stall"] > 6


if SIZES.long:
    # seed 109 first: its timing (tb.cocotb.common.TIMINGS[9]) has random wait states and
    # back-pressure
    @pytest.mark.slow
    @pytest.mark.parametrize("seed", range(109, 109 + SIZES.cosim_seeds))
    def test_cosim_long(seed, request, record_property):
        s = _cosim(seed, SIZES.long_cosim_ipis, request, record_property, n_vcpus=6,
                   n_pcpus=4, kernel=SIZES.kernel)
        assert s["world"]["halt_races"] > 0 and s["world"]["preemptions"] > 0

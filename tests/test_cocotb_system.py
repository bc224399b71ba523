"""cocotb testbenches of `IPIVSystem(n)`, for each memory port (``IPIV_BUSES``): n senders and a
software agent contending for the same PIDs, and the co-simulation of the KVM model
(`sim.ipi_world.IPIWorld`) with the gateware. Sizes: `tb.cocotb.config`; ``IPIV_LONG=1`` adds
the long co-simulation (100k IPIs)."""

import pytest

from tb.cocotb import runner
from tb.cocotb.config import sizes
from tb.verilog import Design

SIZES = sizes()
N_CORES = 3


def _design(n_cores, bus):
    return Design(n_cores=n_cores, faults=runner.faults_for_bus(bus), bus=bus)


@pytest.mark.parametrize("seed", range(SIZES.contention_seeds))
@pytest.mark.parametrize("bus", SIZES.buses)
def test_contention(bus, seed, request, record_property):
    """No PIR bit lost, every notification matches an ON transition, every transfer as the
    golden model says, while a software agent works on the same PIDs."""
    params = {"seed": seed, "n_cores": N_CORES, "count": SIZES.contention_count}
    result = runner.run_checked(_design(N_CORES, bus),
                                "tb.cocotb.system_tests", "contention", params,
                                test_name=request.node.name, record_property=record_property)
    agent = result.stats["agent"]
    assert agent["lost"] == 0 and agent["operations"] > 0
    assert agent["gateware_notifications"] == agent["gateware_on_transitions"] > 0


def _cosim(seed, ipis, request, record_property, *, n_vcpus, n_pcpus, kernel, timing=None,
           bus="classic"):
    params = {"seed": seed, "ipis": ipis, "n_vcpus": n_vcpus, "n_pcpus": n_pcpus,
              "kernel": kernel, **({"timing": timing} if timing else {})}
    result = runner.run_checked(_design(n_pcpus, bus),
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
# back-pressure in bursts (tb.timing) and the second with random wait states too. The
# pipelined port runs the second only: what the first adds is the KVM model's side (the other
# kernel and host mode), which the classic run covers.
COSIMS = [(0, 5, 3, "6.0", [1, 0.0, 0.3]), (1, 4, 2, "6.19", [0, 0.3, 0.3])]


@pytest.mark.parametrize("bus, seed, n_vcpus, n_pcpus, kernel, timing", [
    (bus, *cosim) for bus in SIZES.buses for cosim in COSIMS
    if bus == "classic" or cosim is COSIMS[1]])
def test_cosim(bus, seed, n_vcpus, n_pcpus, kernel, timing, request, record_property):
    s = _cosim(seed, SIZES.cosim_ipis, request, record_property, n_vcpus=n_vcpus,
               n_pcpus=n_pcpus, kernel=kernel, timing=timing, bus=bus)
    assert s["bursts"] > 0 and s["longest_output_stall"] > 6


if SIZES.long:
    # seed 109 first: its timing (tb.cocotb.common.TIMINGS[9]) has random wait states and
    # back-pressure
    @pytest.mark.slow
    @pytest.mark.parametrize("seed", range(109, 109 + SIZES.cosim_seeds))
    @pytest.mark.parametrize("bus", SIZES.buses)
    def test_cosim_long(bus, seed, request, record_property):
        s = _cosim(seed, SIZES.long_cosim_ipis, request, record_property, n_vcpus=6,
                   n_pcpus=4, kernel=SIZES.kernel, bus=bus)
        assert s["world"]["halt_races"] > 0 and s["world"]["preemptions"] > 0

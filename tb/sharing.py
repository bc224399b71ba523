"""Gateware measurement for the ``table-sharing`` sweep (`sim.experiments`): several cores of
`IPIVSystem` posting through one memory port, on Amaranth's simulator."""

import random
from dataclasses import replace
from statistics import mean

from hdl import IPIVSystem
from sim.scenarios import build_vm, guest_ipi, icr_low
from .amaranth_harness import Harness
from .runs import pair_events


__all__ = ["measure_sharing"]


def measure_sharing(n_cores, *, ipis_per_core=8, latency=16, seed=1, bus="classic"):
    """Mean cycles from ``icr`` accepted to ``notify.valid`` when ``n_cores`` vCPUs of one VM
    post x2APIC IPIs at once through `IPIVSystem`'s shared memory port of kind ``bus``
    (Amaranth's simulator; every output and the final memory checked against the golden
    model; ``latency``: cycles from a request to its answer).

    Each core issues its next IPI when its unit is idle (a sender posts one IPI at a time);
    every IPI goes to a vCPU nobody posted to before, so each sets ON and notifies, as in the
    seed's benchmark where the target takes every notification before the next IPI.
    Returns (mean cycles, number of IPIs timed).
    """
    n_vcpus = n_cores * (ipis_per_core + 1)
    vm = build_vm({v: "running" for v in range(n_vcpus)}, max_vcpu_ids=n_vcpus)
    targets = list(range(n_cores, n_vcpus))
    random.Random(seed).shuffle(targets)
    requests = []
    for i in range(ipis_per_core):
        for core in range(n_cores):
            cfg = vm.config(core, x2apic=True)
            for r in guest_ipi(cfg, icr_low(0x20 + (i * n_cores + core) % 0xC0), targets.pop(),
                               barrier=True):
                requests.append(replace(r, port=core))
    run = Harness(IPIVSystem(n_cores, bus=bus), vm.memory, latency=latency, seed=seed).run(requests)
    latencies = [event.valid_cycle - cycle for port in range(n_cores)
                 for _, cycle, _, event in pair_events(run, port)
                 if event is not None and event.stream == "notify"]
    return mean(latencies), len(latencies)

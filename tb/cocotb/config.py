"""Sizes of the cocotb suite, from the environment (plain Python).

The defaults make the short suite of ``make test``; ``ipiv regress`` sets larger values and
``IPIV_LONG=1`` for the long runs (many seeds, the 100k-IPI co-simulation).

| variable | default | meaning |
|---|---|---|
| ``IPIV_BUSES`` | classic,pipelined | the memory ports the tests run, each with the sizes below |
| ``IPIV_SEEDS`` | 4 | constrained-random seeds on one `IPIVirtualizer` |
| ``IPIV_RANDOM_COUNT`` | 150 | ICR writes per random VM image |
| ``IPIV_RANDOM_CHUNKS`` | 2 | random VM images per seed |
| ``IPIV_CONTENTION_SEEDS`` | 2 | seeds of the contention test |
| ``IPIV_CONTENTION_COUNT`` | 60 | ICR writes per core in the contention test |
| ``IPIV_COSIM_IPIS`` | 1200 | IPIs of each short co-simulation |
| ``IPIV_LONG`` | off | also run the long co-simulation |
| ``IPIV_LONG_COSIM_IPIS`` | 100000 | IPIs of the long co-simulation |
| ``IPIV_COSIM_SEEDS`` | 1 | number of long co-simulations (seeds) |
| ``IPIV_KERNEL`` | 6.0 | Linux release of the long co-simulation's KVM model (6.0, 6.19) |
"""

import os

from hdl.formats import BUS_KINDS
from sim.kvm_kernel import DEFAULT_KERNEL, check_kernel


__all__ = ["SIMULATORS", "BUSES", "Sizes", "sizes"]

SIMULATORS = ("icarus", "verilator")     # what SIM / --sim may name; icarus is the default
BUSES = BUS_KINDS                        # what IPIV_BUSES may name


def _int(name, default, minimum=0):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


class Sizes:
    """The suite's sizes as read from the environment when constructed."""

    def __init__(self):
        self.buses = _buses("IPIV_BUSES")
        self.seeds = _int("IPIV_SEEDS", 4)
        self.random_count = _int("IPIV_RANDOM_COUNT", 150, 1)
        self.random_chunks = _int("IPIV_RANDOM_CHUNKS", 2, 1)
        self.contention_seeds = _int("IPIV_CONTENTION_SEEDS", 2)
        self.contention_count = _int("IPIV_CONTENTION_COUNT", 60, 1)
        self.cosim_ipis = _int("IPIV_COSIM_IPIS", 1200, 1)
        self.long = os.environ.get("IPIV_LONG", "").strip().lower() in ("1", "yes", "true", "on")
        self.long_cosim_ipis = _int("IPIV_LONG_COSIM_IPIS", 100_000, 1)
        self.cosim_seeds = _int("IPIV_COSIM_SEEDS", 1, 1)
        # The Linux release whose KVM the long co-simulation models (`ipiv regress --kernel`).
        self.kernel = check_kernel(os.environ.get("IPIV_KERNEL", "").strip() or DEFAULT_KERNEL)


def _buses(name):
    text = os.environ.get(name, "").strip()
    if not text:
        return BUSES
    buses = tuple(b.strip() for b in text.split(",") if b.strip())
    bad = [b for b in buses if b not in BUSES]
    if bad or not buses:
        raise ValueError(f"{name} must name some of {', '.join(BUSES)}, not {text!r}")
    return tuple(b for b in BUSES if b in buses)


def sizes():
    return Sizes()

"""Simulator speed on one workload: Amaranth's simulator (`tb.amaranth_harness`), Icarus and
Verilator (cocotb), each checking every request against the golden model (`tb.checker`).

``python -m tb.cocotb.bench [COUNT] [SEED]`` prints, per engine: simulated cycles, wall time
of the simulation (start-up and build excluded), cycles/s and ICR writes/s.
"""

import random
import sys
import time

from hdl import IPIVirtualizer
from sim.stimulus import random_case
from tb.amaranth_harness import Harness
from tb.verilog import Design
from . import runner


__all__ = ["amaranth", "cocotb_sim", "main"]


def amaranth(count, seed, latency=1):
    case = random_case(random.Random(seed), maxphyaddr=52, count=count)
    harness = Harness(IPIVirtualizer(), case.memory, latency=latency, seed=seed)
    start = time.perf_counter()
    run = harness.run(case.requests)
    wall = time.perf_counter() - start
    assert len(run.results) == count
    return {"cycles": run.cycles, "wall_s": wall}


def cocotb_sim(sim, count, seed, latency=1):
    result = runner.run(Design(), "tb.cocotb.unit_tests", "bench_run",
                        {"seed": seed, "count": count, "latency": latency},
                        test_name=f"bench_{count}_{seed}", sim=sim)
    assert result.ok, result.explain()
    return {"cycles": result.stats["cycles"], "wall_s": result.stats["wall_s"]}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 10_000
    seed = int(argv[1]) if len(argv) > 1 else 1
    engines = {"amaranth": lambda: amaranth(count, seed),
               "icarus": lambda: cocotb_sim("icarus", count, seed),
               "verilator": lambda: cocotb_sim("verilator", count, seed)}
    print(f"{count} random ICR writes (seed {seed}), memory ack 1 cycle after stb, every "
          f"request checked against the golden model")
    print(f"{'engine':10s} {'cycles':>8s} {'wall s':>8s} {'cycles/s':>9s} {'writes/s':>9s}")
    for name, fn in engines.items():
        r = fn()
        print(f"{name:10s} {r['cycles']:8d} {r['wall_s']:8.2f} {r['cycles'] / r['wall_s']:9.0f} "
              f"{count / r['wall_s']:9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

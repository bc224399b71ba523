"""Simulator speed on one workload (``ipiv bench --simulators``): Amaranth's simulator
(`tb.amaranth_harness`), Icarus and Verilator (cocotb), per bus variant of the unit (every
engine speaks both: `ENGINE_BUSES`), each checking every request against the golden model
(`tb.checker`) the same way.

The workload: one random VM image and ``count`` random ICR writes (`sim.stimulus.random_case`,
seed ``seed``), a memory that answers 1 cycle after the request (classic: ``ack`` 1 cycle
after ``stb``; pipelined: 1 cycle after the request is taken), no back-pressure, the checker with
its shadow run of the golden model and the allowed-words check. A row: the engine, the bus
variant, simulated cycles, wall seconds of the simulation (start-up and build excluded),
cycles/s and ICR writes/s.

``python -m tb.cocotb.bench [COUNT] [SEED]`` prints the table.
"""

import json
import random
import sys
import time

from hdl import IPIVirtualizer
from sim.commands.args import fail, progress_bar
from sim.stimulus import random_case
from tb.amaranth_harness import Harness
from tb.verilog import Design
from . import runner


__all__ = ["ENGINES", "BUSES", "ENGINE_BUSES", "COUNT", "amaranth", "cocotb_sim", "measure",
           "pairs", "run_matrix", "format_rows", "bench_simulators", "main"]

ENGINES = ("amaranth", "icarus", "verilator")
#: The unit's memory-port variants (``IPIVirtualizer(bus=...)``); one row per engine each.
BUSES = ("classic", "pipelined")
#: The variants each engine's testbench speaks (all of them: the one testbench top,
#: `tb.testbench_top`, has a memory helper for each port).
ENGINE_BUSES = {engine: BUSES for engine in ENGINES}
COUNT = 5000
LATENCY = 1


def _unit_args(bus):
    return {} if bus == "classic" else {"bus": bus}


def amaranth(count, seed, bus="classic", latency=LATENCY, wait_states=0.0, bursts=0.0):
    case = random_case(random.Random(seed), maxphyaddr=52, count=count)
    harness = Harness(IPIVirtualizer(**_unit_args(bus)), case.memory, latency=latency,
                      wait_states=wait_states, bursts=bursts, seed=seed,
                      allowed_words=case.allowed_words())
    start = time.perf_counter()
    run = harness.run(case.requests)
    wall = time.perf_counter() - start
    assert len(run.results) == count
    return {"cycles": run.cycles, "wall_s": wall}


def cocotb_sim(sim, count, seed, bus="classic", latency=LATENCY, wait_states=0.0, bursts=0.0):
    result = runner.run(Design(**_unit_args(bus)), "tb.cocotb.unit_tests", "bench_run",
                        {"seed": seed, "count": count, "latency": latency,
                         "wait_states": wait_states, "bursts": bursts},
                        test_name=f"bench_{bus}_{count}_{seed}", sim=sim)
    assert result.ok, result.explain()
    return {"cycles": result.stats["cycles"], "wall_s": result.stats["wall_s"]}


def measure(engine, bus, count=COUNT, seed=1, **timing):
    """One row: {"engine", "bus", "cycles", "wall_s", "cycles_per_s", "writes_per_s"};
    ``timing``: ``wait_states``, ``bursts`` of the memory (default none, `tb.timing`)."""
    if engine == "amaranth":
        r = amaranth(count, seed, bus, **timing)
    else:
        r = cocotb_sim(engine, count, seed, bus, **timing)
    wall = max(r["wall_s"], 1e-9)
    return {"engine": engine, "bus": bus, "cycles": r["cycles"], "wall_s": round(wall, 3),
            "cycles_per_s": round(r["cycles"] / wall), "writes_per_s": round(count / wall)}


def pairs(engines=ENGINES, buses=BUSES):
    """The (engine, bus variant) pairs that run, in order."""
    return [(e, b) for b in buses for e in engines if b in ENGINE_BUSES[e]]


def run_matrix(count=COUNT, seed=1, engines=ENGINES, buses=BUSES, progress=None, **timing):
    """A row per (engine, bus variant) the engine speaks; ``progress(row)`` after each."""
    rows = []
    for engine, bus in pairs(engines, buses):
        rows.append(measure(engine, bus, count, seed, **timing))
        if progress is not None:
            progress(rows[-1])
    return rows


def format_rows(rows, count=COUNT, seed=1):
    lines = [f"{count} random ICR writes (seed {seed}), memory answer {LATENCY} cycle after "
             f"the request (classic: ack after stb), every request checked against the golden "
             f"model",
             f"{'engine':10s} {'bus':10s} {'cycles':>8s} {'wall s':>8s} {'cycles/s':>9s} "
             f"{'writes/s':>9s}"]
    for r in rows:
        lines.append(f"{r['engine']:10s} {r['bus']:10s} {r['cycles']:8d} {r['wall_s']:8.2f} "
                     f"{r['cycles_per_s']:9d} {r['writes_per_s']:9d}")
    return "\n".join(lines)


def bench_simulators(*, as_json=False, bus="both", count=COUNT, seed=1):
    """``ipiv bench --simulators [--bus B]``: the rows as a table or JSON; a missing
    simulator or a failing run ends in a one-line error (status 1)."""
    buses = BUSES if bus == "both" else (bus,)
    with progress_bar(len(pairs(buses=buses)), "bench", " runs") as bar:
        try:
            rows = run_matrix(count, seed, buses=buses, progress=lambda row: bar.update())
        except (runner.SimulatorMissing, AssertionError, RuntimeError) as e:
            fail("ipiv bench", str(e).splitlines()[0], status=1)
    print(json.dumps(rows, indent=2) if as_json else format_rows(rows, count, seed))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else COUNT
    seed = int(argv[1]) if len(argv) > 1 else 1
    print(format_rows(run_matrix(count, seed), count, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

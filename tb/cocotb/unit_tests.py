"""cocotb tests of one `IPIVirtualizer` (started by `tb.cocotb.runner`, parameters from pytest).

``random_run``: constrained-random VMs and ICR writes (`sim.stimulus.random_case`) under one
memory timing and back-pressure, every transfer and output checked by `tb.checker`, memory
against a shadow run of the golden model, coverage sampled. ``directed``: one family of the
directed suite (`tb.directed`, shared with the Amaranth backend), each case under its timings,
checked by `tb.checker` and against the spec's expected outcome (`tb.directed.verify`);
``directed_families``: several families in one simulator run (the families of one design
share a simulator process). ``random_side_by_side``: ``random_run`` on each design of a batch
side by side (the checkers' fault tests).
"""

import random

import cocotb

from sim.stimulus import (
    dense_errors, host_side, more_self_ipis, posting_bursts, random_case, with_barriers,
)
from tb import directed as suite
from .common import Report, params, timing as timing_of
from .env import TB, stop_clock


def _max_cycles(n_requests, latency, wait_states, bursts=0.0):
    per_transfer = latency + 1 + (4 if wait_states else 0) + (8 if bursts else 0)
    return 500 + n_requests * 8 * per_transfer * 4


async def _random_chunks(dut, p, report, *, coverage=True):
    """The ``random_run`` workload on ``dut``: ``chunks`` random VM images of ``count`` ICR
    writes each, under the timing of ``p`` (or of its seed); coverage sampled into
    ``report`` unless told not to."""
    seed = p["seed"]
    timing = timing_of(p, seed)
    latency, wait_states = timing["latency"], timing["wait_states"]
    rng = random.Random(seed)
    for chunk in range(p.get("chunks", 1)):
        case = posting_bursts(random_case(rng, maxphyaddr=p["maxphyaddr"],
                                          count=p["count"]), rng)
        if rng.random() < p.get("error_runs", 0.5):
            dense_errors(case, rng)
        requests = with_barriers(more_self_ipis(case.requests, rng), rng)
        tb = TB(dut, memory=case.memory, maxphyaddr=p["maxphyaddr"],
                seed=rng.getrandbits(32), gap=rng.choice([0.0, 0.2]), shadow=True,
                allowed_words=case.allowed_words(),
                on_resolved=report.sampler(timing) if coverage else None,
                on_barrier=host_side(case.pids, random.Random(rng.getrandbits(32))),
                fsm_coverage=report.fsm_sampler() if coverage else None, **timing)
        stats = await tb.run(requests, _max_cycles(len(case.requests), latency, wait_states,
                                                   timing["bursts"]))
        assert stats["checked"] == len(requests) == stats["icr_writes"], stats
        report.add_tb(stats)
    report.data.update(seed=seed, **timing)


@cocotb.test()
async def random_run(dut):
    p = params()
    report = Report(f"random seed {p['seed']}")
    await report.run(lambda: _random_chunks(dut, p, report))


@cocotb.test()
async def random_side_by_side(dut):
    """``random_run``'s workload on every design of a `tb.verilog.Batch` at once (the
    instance names in the parameter ``instances``), no coverage: each runs until it ends or
    its checker stops it. ``stats.json`` has, per instance, ``ended``: the error that
    stopped it, or None."""
    p = params()
    report = Report(f"random seed {p['seed']} on {len(p['instances'])} designs")
    ended = {}

    async def one(name):
        instance = getattr(dut, name)
        try:
            await _random_chunks(instance, p, Report(name), coverage=False)
            ended[name] = None
        except Exception as e:      # the checker's, the testbench's, a time-out
            ended[name] = f"{type(e).__name__}: {e}"
        stop_clock(instance)        # the simulator need not run it any further

    async def body():
        for task in [cocotb.start_soon(one(name)) for name in p["instances"]]:
            await task
        report.data["ended"] = ended
    await report.run(body)


async def _family(dut, rule, report, compare_lock=True):
    """Run every case of directed family ``rule`` under each of its timings."""
    cases = suite.family(rule)
    checked = 0
    for case in cases:
        for seed, (latency, wait_states, backpressure) in enumerate(case.timings):
            memory = case.memory.copy()
            timing = {"latency": latency, "wait_states": wait_states,
                      "backpressure": backpressure}
            tb = TB(dut, memory=memory, maxphyaddr=case.maxphyaddr, seed=seed, shadow=True,
                    on_resolved=report.sampler(timing), locked_rmw=True,
                    fsm_coverage=report.fsm_sampler(), compare_lock=compare_lock, **timing)
            stats = await tb.run(case.requests,
                                 _max_cycles(len(case.requests), latency, wait_states))
            suite.verify(case, [r.result for r in tb.checker.in_order()], case.memory, memory)
            report.add_tb(stats)
            checked += stats["checked"]
    return {"cases": len(cases), "runs": sum(len(c.timings) for c in cases),
            "checked": checked}


@cocotb.test()
async def directed(dut):
    """One directed family (``rule``)."""
    p = params()
    rule = p["rule"]
    report = Report(f"directed {rule}")

    async def body():
        report.data.update(rule=rule, **await _family(dut, rule, report,
                                                      p.get("compare_lock", True)))
    await report.run(body)


@cocotb.test()
async def directed_families(dut):
    """Several directed families (``rules``) in one simulator run, one after the other; a
    family that fails is reported (``families``: per family its figures or its error) and
    the others still run."""
    p = params()
    report = Report(f"directed {len(p['rules'])} families")

    async def body():
        families, failed = {}, []
        for rule in p["rules"]:
            try:
                families[rule] = await _family(dut, rule, report)
            except Exception as e:      # the checker's, the spec's, a time-out
                families[rule] = {"error": f"{type(e).__name__}: {e}"}
                failed.append(rule)
        report.data.update(families=families)
        assert not failed, "; ".join(f"{r}: {families[r]['error']}" for r in failed)
    await report.run(body)


@cocotb.test()
async def bench_run(dut):
    """The benchmark workload (`tb.cocotb.bench`): one random VM image, ``count`` ICR writes,
    memory answer 1 cycle after the request (``latency``; ``wait_states`` and ``bursts`` if
    given), no back-pressure, through the checker (no coverage)."""
    p = params()
    report = Report(f"bench seed {p['seed']}")

    async def body():
        case = random_case(random.Random(p["seed"]), maxphyaddr=52, count=p["count"])
        tb = TB(dut, memory=case.memory, seed=p["seed"], latency=p.get("latency", 1),
                wait_states=p.get("wait_states", 0.0), bursts=p.get("bursts", 0.0),
                shadow=p.get("shadow", True), allowed_words=case.allowed_words())
        stats = await tb.run(case.requests, _max_cycles(
            len(case.requests), p.get("latency", 1), p.get("wait_states", 0.0),
            p.get("bursts", 0.0)))
        assert stats["checked"] == len(case.requests), stats
        report.add_tb(stats)
    await report.run(body)

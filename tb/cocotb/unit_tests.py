"""cocotb tests of one `IPIVirtualizer` (started by `tb.cocotb.runner`, parameters from pytest).

``random_run``: constrained-random VMs and ICR writes (`sim.stimulus.random_case`) under one
memory timing and back-pressure, every transfer and output checked by `tb.checker`, memory
against a shadow run of the golden model, coverage sampled. ``directed``: one family of the
directed suite (`tb.directed`, shared with the Amaranth backend), each case under its timings,
checked by `tb.checker` and against the spec's expected outcome (`tb.directed.verify`).
"""

import random
from dataclasses import replace

import cocotb

from hdl.formats import ICRWriteKind, NotifyInfo, PID_NOTIFY_INFO_OFFSET, Shorthand
from sim.scenarios import icr_low
from sim.stimulus import random_case
from tb import directed as suite
from .common import Report, params, timing_for_seed
from .env import TB


_ON = NotifyInfo.const({"on": 1}).as_bits()
_SN = NotifyInfo.const({"sn": 1}).as_bits()


def _host_side(pids, rng):
    """A barrier's host side: each PID's notification was handled (ON cleared, and sometimes
    the PIR taken), so later postings notify again; and some vCPUs were preempted or loaded
    (SN flipped)."""
    def handle(request, *memories):
        take = rng.random() < 0.5
        flip = {pid for pid in pids if rng.random() < 0.3}
        for memory in memories:
            for pid in pids:
                info = memory.read(pid + PID_NOTIFY_INFO_OFFSET) & ~_ON
                memory.write(pid + PID_NOTIFY_INFO_OFFSET, info ^ _SN if pid in flip else info)
                if take:
                    for k in range(4):
                        memory.write(pid + 8 * k, 0)
    return handle


def _more_self_ipis(requests, rng, share=0.15):
    """random_case makes few well-formed self-IPIs; turn a share of the xAPIC ICR-low writes
    into them (vector and level random), so each coverage bin of the outcome sees several."""
    return [replace(r, value=icr_low(rng.randrange(16, 256), shorthand=Shorthand.SELF,
                                     level=rng.getrandbits(1)))
            if r.kind == ICRWriteKind.XAPIC_ICR_LO and rng.random() < share else r
            for r in requests]


def _max_cycles(n_requests, latency, wait_states):
    per_transfer = latency + 1 + (4 if wait_states else 0)
    return 500 + n_requests * 8 * per_transfer * 4


@cocotb.test()
async def random_run(dut):
    p = params()
    seed = p["seed"]
    report = Report(f"random seed {seed}")
    latency, wait_states, backpressure = p.get("timing") or timing_for_seed(seed)
    rng = random.Random(seed)

    async def body():
        for chunk in range(p.get("chunks", 1)):
            case = random_case(rng, maxphyaddr=p["maxphyaddr"], count=p["count"])
            if rng.random() < p.get("error_runs", 0.5):
                # denser than random_case's own: every path meets bus errors (about 1 transfer
                # in 40; a request makes 2 to 3 transfers on average)
                n = len(case.requests) * 3
                case.memory.error_at = {rng.randrange(n) for _ in range(max(1, n // 40))}
            timing = {"latency": latency, "wait_states": wait_states,
                      "backpressure": backpressure}
            requests = [replace(r, barrier=True) if rng.random() < 0.08 else r
                        for r in _more_self_ipis(case.requests, rng)]
            tb = TB(dut, memory=case.memory, maxphyaddr=p["maxphyaddr"],
                    seed=rng.getrandbits(32), gap=rng.choice([0.0, 0.2]), shadow=True,
                    allowed_words=case.allowed_words(), on_resolved=report.sampler(timing),
                    on_barrier=_host_side(case.pids, random.Random(rng.getrandbits(32))),
                    **timing)
            stats = await tb.run(requests, _max_cycles(len(case.requests), latency, wait_states))
            assert stats["checked"] == len(case.requests) == stats["icr_writes"], stats
            report.add_tb(stats)
        report.data.update(seed=seed, latency=latency, wait_states=wait_states,
                           backpressure=backpressure)
    await report.run(body)


@cocotb.test()
async def directed(dut):
    p = params()
    rule = p["rule"]
    report = Report(f"directed {rule}")

    async def body():
        cases = suite.family(rule)
        for case in cases:
            for seed, (latency, wait_states, backpressure) in enumerate(case.timings):
                memory = case.memory.copy()
                timing = {"latency": latency, "wait_states": wait_states,
                          "backpressure": backpressure}
                tb = TB(dut, memory=memory, maxphyaddr=case.maxphyaddr, seed=seed, shadow=True,
                        on_resolved=report.sampler(timing), locked_rmw=True,
                        compare_lock=p.get("compare_lock", True), **timing)
                stats = await tb.run(case.requests,
                                     _max_cycles(len(case.requests), latency, wait_states))
                suite.verify(case, [r.result for r in tb.checker.in_order()], case.memory,
                             memory)
                report.add_tb(stats)
        report.data.update(rule=rule, cases=len(cases),
                           runs=sum(len(c.timings) for c in cases))
    await report.run(body)


@cocotb.test()
async def bench_run(dut):
    """The benchmark workload (`tb.cocotb.bench`): one random VM image, ``count`` ICR writes,
    memory ack 1 cycle after stb, no back-pressure, through the checker (no coverage)."""
    p = params()
    report = Report(f"bench seed {p['seed']}")

    async def body():
        case = random_case(random.Random(p["seed"]), maxphyaddr=52, count=p["count"])
        tb = TB(dut, memory=case.memory, seed=p["seed"], latency=p.get("latency", 1),
                shadow=p.get("shadow", True), allowed_words=case.allowed_words())
        stats = await tb.run(case.requests, _max_cycles(len(case.requests), 1, 0.0))
        assert stats["checked"] == len(case.requests), stats
        report.add_tb(stats)
    await report.run(body)

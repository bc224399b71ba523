"""``ipiv replay --rtl``: every IPI of a trace through the gateware on Amaranth's simulator,
compared with the replay's own classification (`sim.replay`)."""

from hdl import IPIVirtualizer
from sim.golden import Outcome
from sim.replay import replay_requests, replay_vm
from sim.scenarios import deliver_pending
from .amaranth_harness import Harness, MismatchError


__all__ = ["check_rtl"]


def check_rtl(parsed, classified, *, vcpus, progress=None):
    """Run every IPI through the gateware on Amaranth's simulator (the harness checks every
    output and bus transfer against its own golden run) and compare that run's results with
    ``classified``. Returns a list of disagreements (empty: they agree)."""
    vm, _ = replay_vm(parsed.ipis, vcpus, parsed.default_mode)
    per_ipi = replay_requests(vm, parsed.ipis, parsed.default_mode)
    requests = [r for _, reqs in per_ipi for r in reqs]
    harness = Harness(IPIVirtualizer(), vm.memory,
                      on_barrier=lambda req, *mems: deliver_pending(vm, *mems))
    try:
        run = harness.run(requests, progress=progress)
    except (MismatchError, TimeoutError) as e:
        return [f"gateware and golden model disagree: {e}"]
    results = iter(run.results)
    problems = []
    for c, (_, reqs) in zip(classified, per_ipi):
        rtl = None
        for _ in reqs:
            rtl = next(results)
        same = rtl.outcome is c.result.outcome and rtl.cause == c.result.cause
        if not same:
            problems.append(f"line {c.ipi.line}: replay {c.label}, gateware run "
                            f"{rtl.outcome.value} ({rtl.cause})")
    if sum(1 for e in run.events if e.stream == "notify") != sum(
            1 for c in classified if c.result.outcome is Outcome.POSTED and c.result.notify):
        problems.append("notification count differs between the gateware and the replay")
    return problems

"""The shared testbench (`tb.testbench`) on Amaranth's simulator: the body of
`tb.amaranth_harness.Harness` for a unit or system on either memory port.

The simulated design is the testbench top (`tb.testbench_top.TestbenchTop`) around the DUT. The
coroutine steps cycle by cycle, reads the top's ``status`` once a cycle and hands the cycle to
`Testbench.wake`, which acts only on what the helpers report. It iterates over one
``ctx.tick()`` (Amaranth builds the trigger once, not at every ``await ctx.tick()``: about a
twentieth of the run); a wrapped context such as `tb.waves.RecordingHarness`'s hooks in
through that iteration and still samples every cycle.
"""

from .testbench import Testbench


__all__ = ["run_on_top"]


def _access(ctx, top):
    """``read(name)``, ``write(name)`` of the top's ports. A write of the value an input
    already holds is skipped: each ``ctx.set`` of a testbench settles the whole design."""
    signals = {s.name: s for s in top.top_ports()}
    held = {}           # input name -> the value last written (every writer of it shares this)

    def read(name):
        signal = signals[name]
        return lambda: ctx.get(signal)

    def write(name):
        signal = signals[name]

        def set_input(value):
            if held.get(name) != value:
                ctx.set(signal, value)
                held[name] = value
        return set_input
    return read, write


async def run_on_top(harness, ctx, top, run, limit, progress):
    """Run ``run.requests`` on ``top`` for ``harness`` (its timing, checker options,
    coverage); fill ``run``; raise `tb.checker.MismatchError` or `TimeoutError`."""
    read, write = _access(ctx, top)
    bench = Testbench(top.layouts, read, write, memory=harness.memory, seed=harness.seed,
                      check=harness.check, **harness.testbench_args)
    harness.checker = bench.checker if harness.check else None
    index_of = {id(r): k for k, r in enumerate(run.requests)}

    def accepted(core, request, cycle):
        run.accepted.append((cycle, index_of.get(id(request))))
        if progress:
            progress(len(run.accepted), len(run.requests))
    bench.on_accept = accepted
    bench.on_event = run.events.append
    bench.on_transfer = lambda lock_cycle: run.lock_cycles.append(lock_cycle)
    bench.reset_inputs(write)
    bench.submit(run.requests)
    ticks = ctx.tick().__aiter__()
    try:
        cycle = await _cycles(bench, run, top, limit, ticks)
    finally:
        await ticks.aclose()
    bench.finish_coverage(cycle)
    run.cycles = cycle
    run.memory_log = harness.memory.log
    run.grant_switches_in_cycle = bench.counters()["grant_switches"]


async def _cycles(bench, run, top, limit, ticks):
    """Wake the testbench every cycle until everything is settled; returns the last cycle."""
    layout = bench.status
    cyc_bit = layout.offset["cyc"]
    pulses = [(layout.offset[f"posted{i}"], layout.offset[f"suppressed{i}"])
              for i in range(top.n)]
    while True:
        cycle = bench.wake()
        s = bench.last_status
        if s >> cyc_bit & 1:
            run.bus_cycles.append(cycle)
        for posted, suppressed in pulses:
            run.posted += s >> posted & 1
            run.suppressed += s >> suppressed & 1
        if bench.settled():
            return cycle
        if cycle >= limit:
            raise TimeoutError(f"no completion after {cycle} cycles "
                               f"({len(run.accepted)}/{len(run.requests)} accepted)")
        await ticks.__anext__()

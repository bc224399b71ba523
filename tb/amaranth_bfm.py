"""Small async helpers for unit tests on Amaranth's simulator (one stage at a time)."""

from sim.memory import BusError
from .timing import TransferTimer


__all__ = ["stream_put", "stream_get", "answer_transfer", "serve_memory", "collect",
           "simulate"]


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` (we drive valid/payload) until it is taken."""
    ctx.set(stream.p, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, timeout=200):
    """Take one payload from ``stream`` (we drive ready); returns the payload."""
    ctx.set(stream.ready, 1)
    for _ in range(timeout):
        payload, valid = ctx.get(stream.p), ctx.get(stream.valid)
        await ctx.tick()
        if valid:
            ctx.set(stream.ready, 0)
            return payload
    raise TimeoutError(f"nothing on {stream!r} after {timeout} cycles")


def answer_transfer(ctx, bus, memory):
    """Perform the transfer on ``bus`` in ``memory`` and answer it with ``ack`` (and read
    data) or ``err``, in the current cycle."""
    try:
        data = memory.transfer(adr=ctx.get(bus.adr), write=bool(ctx.get(bus.we)),
                               sel=ctx.get(bus.sel), data=ctx.get(bus.dat_w),
                               lock=bool(ctx.get(bus.lock)))
        ctx.set(bus.dat_r, data)
        ctx.set(bus.ack, 1)
    except BusError:
        ctx.set(bus.err, 1)


SETTLE = 1e-9   # look at the bus this long after each clock edge (period must be longer)


async def serve_memory(ctx, bus, memory, *, latency=0):
    """Answer Wishbone transfers from ``memory`` forever (run as a background testbench).

    It looks at the bus `SETTLE` after each edge, once the other testbenches have driven
    their inputs for the cycle, so a request withdrawn at the edge is never served.
    """
    timer = TransferTimer(None, latency)
    await ctx.delay(SETTLE)
    while True:
        ctx.set(bus.ack, 0)
        ctx.set(bus.err, 0)
        if timer.step(ctx.get(bus.cyc) and ctx.get(bus.stb)):
            answer_transfer(ctx, bus, memory)
        await ctx.tick()
        await ctx.delay(SETTLE)


async def collect(ctx, stream, into):
    """Always-ready sink: append every payload taken from ``stream`` to ``into`` (forever)."""
    ctx.set(stream.ready, 1)
    while True:
        payload, valid = ctx.get(stream.p), ctx.get(stream.valid)
        await ctx.tick()
        if valid:
            into.append(payload)


def simulate(dut, bench, *, memory=None, latency=0, sinks=()):
    """Run ``bench(ctx)`` on ``dut`` with ``memory`` on ``dut.bus`` and always-ready sinks.

    ``sinks``: names of output streams; returns {name: [payloads taken]}.
    """
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    taken = {name: [] for name in sinks}
    if memory is not None:
        async def serve(ctx):
            await serve_memory(ctx, dut.bus, memory, latency=latency)
        sim.add_testbench(serve, background=True)
    for name in sinks:
        async def sink(ctx, name=name):
            await collect(ctx, getattr(dut, name), taken[name])
        sim.add_testbench(sink, background=True)
    sim.add_testbench(bench)
    sim.run()
    return taken

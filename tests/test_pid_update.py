"""The PID update unit on its own: two locked read-modify-writes and the notification."""

import pytest

from hdl.formats import ExitCause
from hdl.pid_update import PIDUpdate
from sim.golden import Config
from sim.memory import Memory
from tb.amaranth_bfm import simulate

PID = 0x9040


def post(vectors, memory, host_x2apic=True, latency=0):
    dut = PIDUpdate()
    pulses = {"posted": 0, "suppressed": 0}

    async def bench(ctx):
        ctx.set(dut.cfg.as_value(), Config(host_x2apic=host_x2apic).as_bits())
        for v in vectors:
            ctx.set(dut.request.p, {"vector": v, "pid_line": PID >> 6, "icr": v})
            ctx.set(dut.request.valid, 1)
            while True:     # values as sampled at each clock edge
                *_, ready, posted, suppressed = await ctx.tick().sample(
                    dut.request.ready, dut.posted, dut.suppressed)
                pulses["posted"] += posted
                pulses["suppressed"] += suppressed
                if ready:
                    break
            ctx.set(dut.request.valid, 0)
        for _ in range(4):
            await ctx.tick()

    out = simulate(dut, bench, memory=memory, latency=latency, sinks=("notify", "exit"))
    return out, pulses


@pytest.mark.parametrize("latency", [0, 3])
def test_post_sets_pir_then_on_and_notifies(latency):
    memory = Memory()
    memory.write(PID + 32, 0x0000_0007_00F2_0000)
    memory.write(PID + 24, 1)
    out, pulses = post([0xC5, 0xC6], memory, latency=latency)
    assert memory.read(PID + 24) == 1 | 1 << 5 | 1 << 6
    assert memory.read(PID + 32) == 0x0000_0007_00F2_0001
    assert [(n.vector, n.dest) for n in out["notify"]] == [(0xF2, 7)]
    assert pulses == {"posted": 2, "suppressed": 1}
    assert all(a.lock for a in memory.log)
    assert [a.write for a in memory.log] == [False, True, False, True, False, True, False]


def test_sn_suppresses():
    memory = Memory()
    memory.write(PID + 32, 0x0000_0007_00F2_0002)
    out, pulses = post([0x20], memory)
    assert out["notify"] == [] and pulses["suppressed"] == 1
    assert memory.read(PID + 32) == 0x0000_0007_00F2_0002 and memory.read(PID) == 1 << 32


def test_xapic_host_ndst():
    memory = Memory()
    memory.write(PID + 32, 0x0000_0A00_00F1_0000)
    out, _ = post([0x20], memory, host_x2apic=False)
    assert [(n.vector, n.dest) for n in out["notify"]] == [(0xF1, 0x0A)]


@pytest.mark.parametrize("step", range(4))
def test_bus_error_at_each_transfer(step):
    memory = Memory(error_at={step})
    out, pulses = post([0x20], memory)
    assert [e.cause for e in out["exit"]] == [ExitCause.BUS_ERROR]
    assert out["notify"] == [] and pulses["posted"] == 0
    assert len(memory.log) == step + 1

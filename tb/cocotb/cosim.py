"""Co-simulation of the KVM model with the gateware (runs inside cocotb).

`sim.ipi_world.IPIWorld` creates a VM and its vCPUs in one `Memory`, schedules them at random
(load, put, block, preempt, migrate, APICv inhibits) and has running vCPUs send IPIs (unicast,
logical, shorthands, NMI, INIT, device interrupts). Its processor side is the gateware: each
core of `IPIVSystem(n)` is a pCPU; an ICR write of a vCPU is driven on the core of its pCPU
with the VMCS-derived ``cfg``, every transfer and output checked by `tb.checker`, and the
`Result` handed back to the world is built from the gateware's outputs (a notification goes to
``kvm.host.send_ipi``, an exit to the vCPU's APIC-write handler, by the world itself).

Checks: the world's §6 invariants after every step (no lost vector, no vCPU asleep with ON
set, no vCPU running with SN set); `IPIWorld.drain` at the end (every IPI taken exactly once,
coalescing of a pending vector counted); and a twin world with the golden model as processor,
same seed, stepped in lockstep: the same statistics, exit counts per cause included.

Timely delivery, in two parts. The gateware's: an ICR write retires when the unit has
resolved it (`TB.post`), not when its notification is taken, so the next write on the same
pCPU may meet the previous notification still offered (the stall model of `tb.timing` holds
outputs for up to 50 cycles); every ON transition the unit makes must be notified within
`tb.checker.DELIVERY_BOUND` = 101 cycles of the NotifyInfo write (`DeliveryMonitor`). The
world's: a posting that set ON for a vCPU in guest mode must have its vector out of the PIR,
and a blocked target must be awake, by the end of the step (`sim.ipi_world.DELIVERY_BOUND_STEPS`
= 0). Both latency distributions go to the test's stats (``delivery``, ``world_delivery``).
"""

import logging

from sim.kvm_kernel import DEFAULT_KERNEL
from sim.ipi_world import DELIVERY_BOUND_STEPS, IPIWorld
from sim.scenarios import Request
from tb.checker import MismatchError, allowed_words, percentiles
from .common import timing as timing_of
from .env import TB


__all__ = ["run_cosim", "world_words", "ipis"]


def world_words(world):
    """Words the unit may write: each vCPU's vICR and VIRR words and its PID."""
    return allowed_words([v.vapic_page for v in world.vcpus], [v.pi_desc for v in world.vcpus])


def ipis(stats):
    """IPIs the processor side handled: every ICR write but the xAPIC ICR2 stores."""
    return sum(n for key, n in stats.items() if key.startswith("outcome:"))


def _diff(a, b):
    return {k: (a.get(k, 0), b.get(k, 0)) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}


async def run_cosim(dut, p, report):
    seed = p["seed"]
    kwargs = dict(seed=seed, n_vcpus=p["n_vcpus"], n_pcpus=p["n_pcpus"], x2apic=None,
                  host_x2apic=p.get("host_x2apic", seed % 2 == 0),
                  kernel=p.get("kernel", DEFAULT_KERNEL))
    world, twin = IPIWorld(**kwargs), IPIWorld(**kwargs)
    timing = timing_of(p, seed)
    tb = TB(dut, n_cores=p["n_pcpus"], memory=world.memory, seed=seed,
            allowed_words=world_words(world), on_resolved=report.sampler(timing),
            fsm_coverage=report.fsm_sampler() if p.get("fsm_coverage", True) else None,
            **timing)
    await tb.start()

    async def aposter(request):
        core = request.sender.cpu
        if not (request.sender.in_guest and 0 <= core < p["n_pcpus"]):
            raise MismatchError(f"vCPU {request.sender.vcpu_id} writes its ICR outside the "
                                f"guest or on pCPU {core}")
        return await tb.post(core, Request(request.cfg, request.kind, request.value,
                                           port=core))

    log = logging.getLogger("cocotb.ipiv.cosim")
    steps = 0
    target = p["ipis"]
    next_report = 10_000
    while ipis(world.stats) < target:
        await world.astep(aposter)
        twin.step()
        steps += 1
        if ipis(world.stats) >= next_report:
            log.info("%d IPIs, %d steps, %d cycles", ipis(world.stats), steps, tb.cycle)
            next_report += 10_000
        if steps % 256 == 0 and world.stats != twin.stats:
            raise MismatchError(f"step {steps}: the world on the gateware and its golden twin "
                                f"differ: {_diff(world.stats, twin.stats)}")
    world.drain()
    twin.drain()
    await tb.finish()
    if world.stats != twin.stats or world.vm.exits != twin.vm.exits:
        raise MismatchError(f"after {steps} steps the world on the gateware and its golden "
                            f"twin differ: stats {_diff(world.stats, twin.stats)}, exits "
                            f"{_diff(world.vm.exits, twin.vm.exits)}")
    outstanding = sum(sum(c.values()) for c in world.outstanding.values())
    assert outstanding == 0, f"{outstanding} interrupts never taken"
    stats = tb.stats()
    assert stats["checked"] == stats["icr_writes"] > 0, stats
    report.add_tb(stats)
    s = world.stats
    report.data.update(
        seed=seed, steps=steps, ipis=ipis(s), n_vcpus=p["n_vcpus"], n_pcpus=p["n_pcpus"],
        kernel=kwargs["kernel"],
        **timing, lost=outstanding,
        world_delivery={"bound_steps": DELIVERY_BOUND_STEPS,
                        "latency_steps": percentiles(world.delivery_steps),
                        "guest": s.get("delivered:guest", 0),
                        "blocked": s.get("delivered:blocked", 0)},
        exits={k[5:]: n for k, n in sorted(s.items()) if k.startswith("exit:")},
        golden_exits={k[5:]: n for k, n in sorted(twin.stats.items()) if k.startswith("exit:")},
        world={k: n for k, n in sorted(s.items()) if not k.startswith("exit:")})

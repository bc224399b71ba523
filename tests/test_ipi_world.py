"""docs/architecture.md §6 invariants under randomized interleavings of posting (virtualized by the golden
model and by software), load, put, halt, preemption, migration and APICv inhibits."""

import dataclasses

import pytest

from sim.ipi_world import DELIVERY_BOUND_STEPS, InvariantError, IPIWorld, golden_poster
from sim.kvm import VCPU


@pytest.mark.parametrize("seed", range(8))
def test_no_interrupt_lost(seed):
    world = IPIWorld(seed=seed, n_vcpus=3 + seed % 3, n_pcpus=2 + seed % 2,
                     x2apic=[None, True, False][seed % 3], host_x2apic=seed % 2 == 0)
    world.run(2000).drain()
    s = world.stats
    # the run really exercised what it claims to
    assert s["notifications"] > 10 and s["suppressed"] > 0 and s["preemptions"] > 10
    assert s["outcome:exit"] > 0 and s["taken"] > 100 and s["migrations"] > 0
    assert sum(sum(c.values()) for c in world.outstanding.values()) == 0


def test_blocked_vcpus_are_woken():
    world = IPIWorld(seed=99, n_vcpus=4, n_pcpus=3, x2apic=True)
    world.OPS = dict(world.OPS, halt=20, halt_race=25, take=40, device=1)
    world.run(3000).drain()
    assert world.stats["halts"] > 20 and world.stats["halt_races"] > 20


def test_the_checker_catches_a_missing_wakeup(monkeypatch):
    """Break KVM: no self-IPI when blocking with ON set. The invariants must notice."""
    def broken(self):
        self.host.pcpus[self.cpu].wakeup_list.append(self)
        self._update_notify_info(nv=0xF1)
    monkeypatch.setattr(VCPU, "_pi_enable_wakeup_handler", broken)
    world = IPIWorld(seed=3, n_vcpus=4, n_pcpus=3, x2apic=True)
    world.OPS = dict(world.OPS, halt_race=25, take=40, device=1, special_ipi=0, inhibit=0)
    with pytest.raises(InvariantError, match="sleeps with ON set"):
        world.run(3000).drain()


def test_the_checker_catches_sn_not_cleared(monkeypatch):
    """Break KVM: loading a vCPU leaves SN set (no notifications ever)."""
    original = VCPU._update_notify_info

    def keep_sn(self, **fields):
        if fields.get("sn") == 0:
            fields.pop("sn")
        original(self, **fields)
    monkeypatch.setattr(VCPU, "_update_notify_info", keep_sn)
    with pytest.raises(InvariantError, match="SN set"):
        IPIWorld(seed=4).run(500)


def test_async_poster_drives_the_same_world():
    """`astep` with an asynchronous poster (how the gateware plugs in) matches `step`."""
    import asyncio
    from sim.ipi_world import golden_poster
    plain = IPIWorld(seed=11).run(400)
    post = golden_poster()
    requests = []

    async def aposter(request):
        assert request.sender.in_guest          # only a running vCPU writes its ICR
        requests.append(request)
        await asyncio.sleep(0)
        return post(request.cfg, plain_async.memory, request.kind, request.value)

    plain_async = IPIWorld(seed=11)

    async def main():
        for _ in range(400):
            await plain_async.astep(aposter)
    asyncio.run(main())
    assert plain_async.stats == plain.stats and len(requests) > 100


# -- timely delivery (sim.ipi_world.DELIVERY_BOUND_STEPS) --------------------------------------

def test_postings_that_set_on_are_delivered_within_the_bound():
    """With the golden model as processor every ON transition for a vCPU in guest mode is
    delivered (vector out of the PIR), and every blocked target woken, within the step."""
    world = IPIWorld(seed=1, n_vcpus=5, n_pcpus=3).run(1500)
    world.drain()
    assert world.stats["delivered:guest"] > 20 and world.stats["delivered:blocked"] > 0
    assert len(world.delivery_steps) == world.stats["delivered:guest"] + \
        world.stats["delivered:blocked"]
    assert max(world.delivery_steps) <= DELIVERY_BOUND_STEPS


def test_a_lost_notification_fails_the_delivery_bound():
    """A processor side that posts but never notifies: the vector stays in the PIR of a vCPU
    in guest mode (or a blocked vCPU sleeps on), which the step's delivery check reports at
    once instead of the final drain."""
    golden = golden_poster()

    def dropping(cfg, memory, kind, value):
        result = golden(cfg, memory, kind, value)
        return dataclasses.replace(result, notify=None) if result.notify else result
    world = IPIWorld(seed=1, poster=dropping)
    with pytest.raises(InvariantError, match="not delivered within 0 steps|sleeps with ON"):
        world.run(2000)
    assert world.steps < 200

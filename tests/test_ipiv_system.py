"""`IPIVSystem`: several units on one memory port, with PIDs shared between senders, for both
kinds of memory port (the pipelined arbiter never switches masters while answers are
outstanding or a lock is held)."""

import random

import pytest

from hdl import IPIVSystem
from hdl.formats import ICRWriteKind as K, X2APICICR
from sim.scenarios import Request, build_vm, icr_low
from tb.amaranth_harness import Harness


def x2(cfg, dest, vector, port):
    return Request(cfg, K.X2APIC_ICR, X2APICICR.const({"dest": dest}).as_bits() |
                   icr_low(vector), port=port)


@pytest.mark.parametrize("bus", ["classic", "pipelined"])
@pytest.mark.parametrize("latency", [0, 2])
def test_disjoint_targets_match_the_golden_model(latency, bus):
    """Each core posts to its own targets: every output and bus transfer is checked."""
    n = 3
    vm = build_vm({v: "running" for v in range(8)})
    rng = random.Random(latency)
    requests = []
    for i in range(30):
        port = i % n
        requests.append(x2(vm.config(port, x2apic=True), 3 + port + rng.choice([0, 3]) % 5,
                           rng.randrange(0x20, 0xF0), port))
    run = Harness(IPIVSystem(n, bus=bus), vm.memory, latency=latency, backpressure=0.3,
                  seed=latency).run(requests)
    assert len(run.accepted) == 30 and run.grant_switches_in_cycle == 0


@pytest.mark.parametrize("bus", ["classic", "pipelined"])
def test_shared_pids_lose_no_bit_and_notify_once(bus):
    """Three cores hammer the same two PIDs: no PIR bit is lost, ON is set once per PID (no
    one clears it here), so exactly one notification per PID; the checker replays every
    transfer of each core through the golden model and holds every PID write to a whole
    locked read-modify-write."""
    n = 3
    vm = build_vm({v: "running" for v in range(4)})
    rng = random.Random(5)
    sent = {1: set(), 2: set()}
    requests = []
    for i in range(60):
        dest, vector = rng.choice([1, 2]), rng.randrange(0x20, 0x100)
        sent[dest].add(vector)
        requests.append(x2(vm.config(i % n, x2apic=True), dest, vector, i % n))
    run = Harness(IPIVSystem(n, bus=bus), vm.memory, latency=1, wait_states=0.3,
                  seed=5).run(requests)
    for dest, vectors in sent.items():
        pid = vm.pids[dest]
        pir = sum(vm.memory.read(pid + 8 * k) << (64 * k) for k in range(4))
        assert pir == sum(1 << v for v in vectors)
    notifies = [e.payload for e in run.events if e.stream == "notify"]
    assert sorted(notifies) == [(0xF2, 2), (0xF2, 3)]
    assert run.grant_switches_in_cycle == 0
    assert run.posted == 60 and run.suppressed == 58
    assert len(run.results) == 60


@pytest.mark.parametrize("latency", [1, 2])
def test_answers_to_the_owner_change_no_cycle(latency):
    """With a memory that never answers at once, ``answers_later`` (answers routed by the
    registered owner) gives the same run cycle for cycle: the same acceptances, outputs and
    bus transfers."""
    n = 2
    vm = build_vm({v: "running" for v in range(4)})
    rng = random.Random(latency)
    requests = [x2(vm.config(i % n, x2apic=True), rng.choice([1, 2, 3]),
                   rng.randrange(0x20, 0x100), i % n) for i in range(40)]

    def run(**options):
        memory = build_vm({v: "running" for v in range(4)}).memory
        return Harness(IPIVSystem(n, **options), memory, latency=latency, wait_states=0.3,
                       backpressure=0.2, seed=latency).run(requests)

    plain, later = run(), run(answers_later=True)
    assert later.accepted == plain.accepted and later.cycles == plain.cycles
    assert later.events == plain.events and later.memory_log == plain.memory_log
    assert len(later.accepted) == len(requests) and later.grant_switches_in_cycle == 0


@pytest.mark.parametrize("kind", ["exclusive", "pipelined"])
def test_answers_later_is_for_the_classic_shared_arbiter(kind):
    """An exclusive arbiter has no owner to answer, a pipelined one answers its owner
    anyway: asking for either is a one-line error."""
    from hdl import wishbone
    with pytest.raises(ValueError, match="classic arbiter that is not exclusive"):
        wishbone.Arbiter(2, addr_width=8, answers_later=True, **{kind: True})

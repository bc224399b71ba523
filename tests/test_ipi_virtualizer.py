"""`IPIVirtualizer` on Amaranth's simulator: the contract, the directed suite of every rule of
docs/architecture.md §4 (`tb.directed`, shared with the cocotb backend), latency and
back-pressure, and seeded random runs, all checked transfer by transfer against the golden
model by `tb.checker`; and the checker catching a unit with an unlocked PID write."""

import random

import pytest
from amaranth.back import verilog
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from hdl import IPIVirtualizer, IPIVSystem
from hdl.faults import Fault
from hdl.formats import APICWriteExit, ICRWrite, Notification, VMCSConfig
from sim.stimulus import random_case
from tb import directed
from tb.amaranth_harness import Harness, MismatchError
from tb.directed import low, self_ipi, vm_memory, x2, xapic
from tb.waves import run_with_waves_on_failure


BUSES = ("classic", "pipelined")


def run_case(case, timing, *, seed=0, bus="classic", **harness_args):
    """Run a directed case under one timing (latency, wait states, back-pressure) on the
    gateware; the harness's checker raises on any disagreement with the golden model (and
    writes the failing run's waves to build/failures/), then the spec's expectations of the
    case are verified."""
    latency, wait_states, backpressure = timing
    memory = case.memory.copy()
    run = run_with_waves_on_failure(
        lambda: IPIVirtualizer(maxphyaddr=case.maxphyaddr, bus=bus), memory, case.requests,
        name=f"{case.name}-{bus}-{latency}", latency=latency, wait_states=wait_states,
        backpressure=backpressure, seed=seed, **harness_args)
    assert run.grant_switches_in_cycle == 0
    directed.verify(case, run.results, case.memory, memory)
    return run


# -- the contract ----------------------------------------------------------------------------

def test_signature_matches_interface_md():
    dut = IPIVirtualizer()
    members = dut.signature.members
    assert members["cfg"] == In(VMCSConfig)
    assert members["icr"] == In(stream.Signature(ICRWrite))
    assert members["exit"] == Out(stream.Signature(APICWriteExit))
    assert members["notify"] == Out(stream.Signature(Notification))
    assert members["self_ipi"] == Out(stream.Signature(8))
    assert members["gp"] == Out(stream.Signature(64))
    assert members["busy"] == Out(1)
    bus = members["bus"].signature.members
    widths = {"cyc": 1, "stb": 1, "we": 1, "adr": 49, "sel": 8, "dat_w": 64, "lock": 1}
    for name, width in widths.items():
        assert bus[name] == Out(width), name
    for name, width in {"dat_r": 64, "ack": 1, "err": 1}.items():
        assert bus[name] == In(width), name
    assert IPIVirtualizer(maxphyaddr=36).signature.members["bus"].signature.members["adr"] == \
        Out(33)
    assert "stall" not in bus


def test_pipelined_signature_adds_only_stall():
    classic = IPIVirtualizer().signature.members
    pipelined = IPIVirtualizer(bus="pipelined").signature.members
    assert {n: m for n, m in pipelined.items() if n != "bus"} == \
        {n: m for n, m in classic.items() if n != "bus"}
    bus = dict(pipelined["bus"].signature.members)
    assert bus.pop("stall") == In(1)
    assert bus == dict(classic["bus"].signature.members)


@pytest.mark.parametrize("bad", ["Classic", "wishbone", None, 1])
def test_bus_must_be_classic_or_pipelined(bad):
    with pytest.raises(ValueError, match=r"bus must be one of 'classic', 'pipelined', not"):
        IPIVirtualizer(bus=bad)
    with pytest.raises(ValueError, match=r"bus must be one of"):
        IPIVSystem(2, bus=bad)


def test_a_fault_of_the_other_variant_is_a_value_error():
    with pytest.raises(ValueError, match=r"not faults of the pipelined unit"):
        IPIVirtualizer(bus="pipelined", faults={Fault.DROP_LOCK})
    with pytest.raises(ValueError, match=r"not faults of the classic unit"):
        IPIVirtualizer(faults={Fault.ANSWER_MISMATCHED})


@pytest.mark.parametrize("bad", [35, 53, 0, "52", 52.0, True, None])
def test_maxphyaddr_must_be_36_to_52(bad):
    with pytest.raises(ValueError, match=r"maxphyaddr must be an integer from 36 to 52, not"):
        IPIVirtualizer(maxphyaddr=bad)


@pytest.mark.parametrize("bad", [0, -1, 2.0, "2", True])
def test_system_core_count_validation(bad):
    with pytest.raises(ValueError, match="n_cores must be a positive integer"):
        IPIVSystem(bad)


@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("maxphyaddr", [36, 52])
def test_verilog_convert(maxphyaddr, bus):
    text = verilog.convert(IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus), name="ipiv")
    assert "module ipiv" in text and "bus__lock" in text and "icr__payload" in text
    assert ("bus__stall" in text) == (bus == "pipelined")


@pytest.mark.parametrize("bus", BUSES)
def test_verilog_convert_system(bus):
    """Also: the pipelined arbiter routes answers by its registered owner, so no answer feeds
    back into the grant through a unit (a combinational loop Verilog cannot have)."""
    text = verilog.convert(IPIVSystem(2, bus=bus), name="ipiv_system")
    assert "module ipiv_system" in text and "cores__1__notify__valid" in text


# -- every rule of docs/architecture.md §4 and docs/interface.md: the directed suite ----------

@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("name", [c.name for c in directed.all_cases()])
def test_directed(name, bus):
    case = directed.case(name)
    for seed, timing in enumerate(case.timings):
        run_case(case, timing, seed=seed, bus=bus)


def test_notification_pulses():
    """PIDUpdate's posted/suppressed pulses: four postings, the three with ON or SN set
    suppressed."""
    run = run_case(directed.case("notify_on_sn"), directed.TIMINGS[0])
    assert run.posted == 4 and run.suppressed == 3


# -- the locked read-modify-write rule is real ------------------------------------------------

POST = [x2(3, low(0x40)), x2(1, low(0x41))]      # one notifying post, one suppressed


def test_unlocked_pid_write_fails_the_locked_rmw_rule():
    """A unit whose PIR and NotifyInfo read-modify-writes run without ``lock`` (the test-only
    fault ``drop_lock``) is caught by the checker's locked-RMW rule on its own: with the
    golden model's lock comparison off, and only then with that rule off too, it passes."""
    unlocked = dict(compare_lock=False)
    Harness(IPIVirtualizer(), vm_memory(on={1}), **unlocked).run(POST)       # the real unit
    with pytest.raises(MismatchError, match="not the second half of a locked read-modify-"
                                            "write"):
        Harness(IPIVirtualizer(faults={Fault.DROP_LOCK}), vm_memory(on={1}),
                **unlocked).run(POST)
    Harness(IPIVirtualizer(faults={Fault.DROP_LOCK}), vm_memory(on={1}), compare_lock=False,
            locked_rmw=False).run(POST)


def test_unlocked_pid_write_fails_the_checker():
    """With every check on, the transfer-by-transfer comparison sees the missing ``lock``."""
    with pytest.raises(MismatchError, match=r"gateware R .* -, golden model R .* L"):
        Harness(IPIVirtualizer(faults={Fault.DROP_LOCK}), vm_memory(on={1})).run(POST)


# -- latency, wait states, back-pressure -----------------------------------------------------

MIX = [x2(1, low(0x40)), x2(2, low(0x41)), *xapic(3, low(0x42)), x2(9, low(0x40)),
       x2(2, low(0x00, reserved_13=1)), self_ipi(0x45), x2(3, low(0x43)), x2(4, low(0x44)),
       *xapic(0xFF, low(0x45)), x2(2, low(0x46))]


def check(requests, memory=None, **harness_args):
    """Run on the gateware; the checker raises on any disagreement with the golden model."""
    memory = vm_memory() if memory is None else memory
    run = Harness(IPIVirtualizer(), memory, **harness_args).run(requests)
    assert run.grant_switches_in_cycle == 0
    return run


@pytest.mark.parametrize("latency", range(5))
@pytest.mark.parametrize("backpressure", [0.0, 0.6])
def test_latency_and_backpressure(latency, backpressure):
    run = check(MIX, latency=latency, backpressure=backpressure, seed=latency)
    assert {e.stream for e in run.events} == {"exit", "notify", "self_ipi", "gp"}
    if backpressure:
        assert any(e.taken_cycle > e.valid_cycle for e in run.events)


def test_random_wait_states():
    check(MIX * 3, latency=1, wait_states=0.5, backpressure=0.3, seed=7)


def test_latency_targets():
    """The goal (docs/interface.md, figures): a virtualized IPI at most 2 cycles beyond its 6
    transfers, and back-to-back IPIs with no idle bus cycle."""
    for latency in (0, 1, 4):
        run = check([x2(t, low(0x40)) for t in (1, 2, 3)], latency=latency)
        accepted = [c for c, _ in run.accepted]
        notifies = [e.valid_cycle for e in run.events if e.stream == "notify"]
        per_transfer = latency + 1
        assert notifies[0] - accepted[0] <= 6 * per_transfer + 2
        assert accepted[1] - accepted[0] == 6 * per_transfer     # the bus never idles
        assert all(accepted[0] < c <= accepted[2] for c in run.bus_cycles[:1])
        assert len([c for c in run.bus_cycles if accepted[0] < c <= accepted[2]]) == \
            accepted[2] - accepted[0]


def test_pipelined_figures():
    """The pipelined port's goals (issue order of docs/interface.md): a virtualized x2APIC IPI
    within 3R + 4 cycles, xAPIC within 4R + 4, back-to-back notifying x2APIC IPIs 3R + 3
    cycles apart, for memory round trips R = latency + 1 from 2 to 5."""
    for latency in (1, 2, 4):
        r = latency + 1
        run = Harness(IPIVirtualizer(bus="pipelined"), vm_memory(),
                      latency=latency).run([x2(t, low(0x40)) for t in (1, 2, 3)])
        accepted = [c for c, _ in run.accepted]
        notifies = [e.valid_cycle for e in run.events if e.stream == "notify"]
        assert notifies[0] - accepted[0] <= 3 * r + 4
        assert accepted[2] - accepted[1] <= 3 * r + 3
        run = Harness(IPIVirtualizer(bus="pipelined"), vm_memory(),
                      latency=latency).run(xapic(1, low(0x40)))
        notifies = [e.valid_cycle for e in run.events if e.stream == "notify"]
        assert notifies[0] - run.accepted[1][0] <= 4 * r + 4


# -- seeded random runs against the golden model ---------------------------------------------

@pytest.mark.parametrize("bus", BUSES)
@pytest.mark.parametrize("seed", range(24))
def test_random(seed, bus):
    rng = random.Random(seed * 2 + (bus == "pipelined"))
    maxphyaddr = rng.choice([36, 39, 46, 52])
    case = random_case(rng, maxphyaddr=maxphyaddr, count=30, errors=rng.random() < 0.3)
    # back-pressure and wait states as coin flips, and in bursts of 0..50 cycles (tb.timing)
    run = run_with_waves_on_failure(
        lambda: IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus), case.memory, case.requests,
        name=f"test_random-{bus}-{seed}", latency=rng.randrange(5),
        wait_states=rng.choice([0.0, 0.3]), backpressure=rng.choice([0.0, 0.5]),
        bursts=(0.0, 0.05)[seed % 2], seed=seed, allowed_words=case.allowed_words())
    assert len(run.results) == len(case.requests)
    assert run.grant_switches_in_cycle == 0

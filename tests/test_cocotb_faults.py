"""The checkers can fail: `tb.checker` on hand-made transfer logs, and the cocotb regression
on gateware built with deliberate defects (`hdl.faults`), each on the unit (classic or
pipelined memory port, ``IPIV_BUSES``) that has it."""

import re

import pytest

from hdl.faults import Fault
from hdl.mutants import FAULT_BUS
from hdl.formats import ExitCause, ICRWriteKind as K, NotifyInfo, pid_pointer_entry
from sim.golden import Config, GoldenIPIVirtualizer
from sim.memory import Access, Memory
from sim.scenarios import Request
from tb.checker import Checker, MismatchError, ReplayMemory, expected_events
from tb.cocotb import runner
from tb.cocotb.agent import AgentError, SoftwareAgent
from tb.cocotb.config import sizes
from tb.verilog import Batch, Design, generate

CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=3,
             pid_table=0x8000, vapic_page=0x4000)
PID = 0x9000
POST = Request(CFG, K.X2APIC_ICR, 2 << 32 | 0x45)


def memory():
    m = Memory()
    m.write(0x8000 + 16, pid_pointer_entry(PID))
    m.write(PID + 32, NotifyInfo.const({"nv": 0xF2, "ndst": 7}).as_bits())
    return m


def golden_log(request=POST):
    m = memory()
    result = GoldenIPIVirtualizer().execute(request.cfg, m, request.kind, request.value)
    return result, list(m.log)


def feed(checker, log, request=POST):
    """Accept ``request`` on core 0 and hand over ``log``; each locked read opens a locked bus
    cycle that its locked write closes."""
    checker.accepted(0, request, 0)
    lock_cycle = 0
    for access in log:
        lock_cycle += access.lock and not access.write
        checker.transfer(0, access, lock_cycle if access.lock else None)


# -- the checker on hand-made logs (no simulator) ------------------------------------------

def test_replay_of_the_golden_transfers_passes():
    result, log = golden_log()
    checker = Checker(1)
    feed(checker, log)
    checker.offered(0, [("notify", (0xF2, 7))], 9)
    checker.taken(0, "notify")
    checker.finish(10)
    assert checker.outcomes["notified"] == 1 and result.notify == (0xF2, 7)


@pytest.mark.parametrize("change, message", [
    (lambda a: Access(a.write, a.adr, a.sel, a.data, False), "golden model"),  # lock dropped
    (lambda a: Access(a.write, a.adr, a.sel, a.data ^ 1, a.lock), "golden model"),  # data
    (lambda a: Access(a.write, a.adr + 1, a.sel, a.data, a.lock), "golden model"),  # address
])
def test_replay_catches_a_changed_pir_write(change, message):
    _, log = golden_log()
    log[3] = change(log[3])                  # the PIR write of the locked RMW
    with pytest.raises(MismatchError, match=message):
        GoldenIPIVirtualizer().execute(CFG, ReplayMemory(log), POST.kind, POST.value)


@pytest.mark.parametrize("split", ["no lock", "two locked bus cycles"])
def test_locked_rmw_rule_catches_a_split_pid_write(split):
    """Without the golden model's lock comparison, the locked-RMW rule alone catches a PIR
    write made without ``lock``, or in another locked bus cycle than its read."""
    _, log = golden_log()
    checker = Checker(1, compare_lock=False)
    if split == "no lock":
        log[2:4] = [Access(a.write, a.adr, a.sel, a.data, False) for a in log[2:4]]
        feed(checker, log)
    else:
        checker.accepted(0, POST, 0)
        for i, access in enumerate(log):
            checker.transfer(0, access, i if access.lock else None)
    with pytest.raises(MismatchError, match="not the second half of a locked read-modify-write"):
        checker.offered(0, [("notify", (0xF2, 7))], 9)


def test_missing_transfer_and_wrong_output_are_caught():
    _, log = golden_log()
    checker = Checker(1)
    feed(checker, log[:-1])                  # no NotifyInfo write
    with pytest.raises(MismatchError, match="still needs a bus transfer"):
        checker.offered(0, [("notify", (0xF2, 7))], 9)
    checker = Checker(1)
    feed(checker, log)
    with pytest.raises(MismatchError, match="the golden model expects"):
        checker.offered(0, [("notify", (0xF2, 8))], 9)


def test_next_write_accepted_before_the_exit_is_caught():
    off = Request(Config(ipiv=False, x2apic=False, vapic_page=0x4000), K.XAPIC_ICR_LO, 0x45)
    result, log = golden_log(off)
    assert expected_events(result)[0][1][2] is ExitCause.DISABLED
    checker = Checker(1)
    feed(checker, log, off)
    with pytest.raises(MismatchError, match="before offering the exit"):
        checker.accepted(0, off, 3)


def test_write_outside_the_allowed_words_is_caught():
    checker = Checker(1, allowed_words={1, 2})
    with pytest.raises(MismatchError, match="does not allow"):
        checker.transfer(0, Access(True, 3, 0xFF, 0, False))


def test_agent_sees_a_split_read_modify_write():
    """The gateware reads a PIR word, the agent takes it, the gateware writes back what it
    read: the taken vectors come back (resurrected)."""
    m = memory()
    m.write(PID, 1 << 0x30)
    agent = SoftwareAgent(m, [PID], rng=None)
    agent.observe(0, Access(False, PID >> 3, 0xFF, 1 << 0x30, False))
    agent._take(0, 0)
    m.write(PID, 1 << 0x30 | 1 << 0x31)      # the stale write-back
    with pytest.raises(AgentError, match="resurrected"):
        agent.observe(0, Access(True, PID >> 3, 0xFF, 1 << 0x30 | 1 << 0x31, False))


# -- broken gateware makes the cocotb regression fail --------------------------------------

@pytest.mark.parametrize("bus", sizes().buses)
def test_broken_units_fail_the_random_regression(bus, request, record_property):
    """Each deliberate defect fails a short random run on Icarus with the checker, on the unit
    (classic or pipelined port) that has it: the same stimulus for every defect, with
    back-pressure and wait states in bursts (`tb.timing`; pipelined: stalls too) and bursts of
    back-to-back postings (the "previous notification still offered" path). The pipelined
    defects fail the checker's golden-model replay or the memory helper's protocol checks
    (`tb.testbench_pipelined`: lock window, cyc held while answers are outstanding).
    Every defective unit of the port runs in one simulator, side by side (`Batch`), each with
    its own testbench, and is stopped by its own checker."""
    params = {"seed": 4, "count": 150, "chunks": 4, "maxphyaddr": 52,
              "timing": [1, 0.2, 0.3, 0.06]}
    faults = [f.value for f in Fault if FAULT_BUS[f] == bus]
    batch = Batch({fault: Design(faults=(fault,), bus=bus) for fault in faults})
    result = runner.run(batch, "tb.cocotb.unit_tests", "random_side_by_side",
                        {**params, "instances": faults}, test_name=request.node.name)
    assert result.ok, result.explain()
    ended = result.stats["ended"]
    assert sorted(ended) == sorted(faults)
    passed = [fault for fault, error in ended.items() if error is None]
    assert not passed, f"the regression passed a {bus} unit with fault {passed}"
    for fault, error in ended.items():
        assert error.startswith(("MismatchError", "ProtocolError")), f"{fault}: {error}"
        record_property(f"caught_by[{fault}]", error[:200])


def test_unlocked_pid_write_fails_the_locked_rmw_rule_on_cocotb(request, record_property):
    """The same rule on the cocotb backend: with the golden model's lock comparison off, the
    checker's locked-RMW rule alone fails a unit built with ``drop_lock``."""
    result = runner.run(Design(faults=("drop_lock",)), "tb.cocotb.unit_tests", "directed",
                        {"rule": "pir_rmw", "compare_lock": False}, test_name=request.node.name)
    assert not result.ok and result.failures
    assert result.error.startswith("MismatchError"), result.error
    assert "not the second half of a locked read-modify-write" in result.error, result.error
    record_property("caught_by", result.error[:200])


@pytest.mark.parametrize("fault, message", [
    ("drop_lock", "lost bits|resurrected"),      # split RMWs lose or resurrect PID bits
    ("on_despite_sn", "while SN = 1"),           # a notification although SN = 1
])
def test_broken_system_fails_the_contention_invariants(fault, message, request,
                                                       record_property):
    """With the checker's lock checks off (golden-model lock comparison and locked-RMW rule),
    the no-loss bookkeeping alone catches the broken unit: it is a check of its own, not a
    shadow of the golden model."""
    params = {"seed": 1, "n_cores": 3, "count": 80, "compare_lock": False, "n_pids": 1,
              "vectors": [0x20, 0x40], "agent_rate": 0.3, "timing": [1, 0.0, 0.0]}
    result = runner.run(Design(n_cores=3, faults=(fault,)), "tb.cocotb.system_tests",
                        "contention", params, test_name=request.node.name)
    assert not result.ok and result.failures
    assert result.error.startswith("AgentError"), result.error
    assert re.search(message, result.error), result.error
    record_property("caught_by", result.error[:200])


def test_lost_notification_fails_the_cosimulation(request, record_property):
    """The co-simulation's timely-delivery check: a unit that drops a notification while the
    previous one is still offered fails a short co-simulation (the ICR write retires before
    its notification is taken, so the next write on the pCPU meets it still offered; the
    `DeliveryMonitor` or the checker's output order names the loss)."""
    params = {"seed": 0, "ipis": 600, "n_vcpus": 5, "n_pcpus": 3, "kernel": "6.0",
              "timing": [1, 0.0, 0.3, 0.06], "fsm_coverage": False}
    result = runner.run(Design(n_cores=3, faults=("drop_notify_while_offered",)),
                        "tb.cocotb.system_tests", "cosim", params, test_name=request.node.name)
    assert not result.ok and result.failures
    assert result.error.startswith("MismatchError"), result.error
    assert re.search(r"lost notification|the golden model expects \[\('notify'", result.error), \
        result.error
    record_property("caught_by", result.error[:200])


def test_a_batch_is_one_top_instancing_each_design():
    """`Batch`: each design's testbench top as an instance named by the caller, in one file;
    the designs share a memory port and MAXPHYADDR."""
    designs = {"first": Design(faults=("drop_lock",)), "second": Design(faults=("lock_gap",))}
    batch = Batch(designs)
    text = generate(batch).read_text()
    top = text[text.index(f"module {batch.toplevel}("):]
    for name, design in designs.items():
        assert f"module {design.toplevel}(" in text
        assert f"  {design.toplevel} {name} ();" in top
    assert batch.bus == "classic" and batch.maxphyaddr == 52 and batch.faults == ()
    with pytest.raises(ValueError, match="share one memory port"):
        Batch({"a": Design(), "b": Design(bus="pipelined")})
    with pytest.raises(ValueError, match="at least one design"):
        Batch({})

"""The checkers can fail: the scoreboard on hand-made transfer logs, and the cocotb regression
on gateware built with deliberate defects (`hdl.faults`)."""

import re

import pytest

from hdl.faults import Fault
from hdl.formats import ExitCause, ICRWriteKind as K, NotifyInfo
from sim.golden import Config, GoldenIPIVirtualizer
from sim.memory import Access, Memory
from sim.scenarios import Request
from tb.cocotb import runner
from tb.cocotb.agent import AgentError, SoftwareAgent
from tb.cocotb.scoreboard import MismatchError, ReplayMemory, Scoreboard, expected_events
from tb.verilog import Design

CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=3,
             pid_table=0x8000, vapic_page=0x4000)
PID = 0x9000
POST = Request(CFG, K.X2APIC_ICR, 2 << 32 | 0x45)


def memory():
    m = Memory()
    m.write(0x8000 + 16, PID | 1)
    m.write(PID + 32, NotifyInfo.const({"nv": 0xF2, "ndst": 7}).as_bits())
    return m


def golden_log(request=POST):
    m = memory()
    result = GoldenIPIVirtualizer().execute(request.cfg, m, request.kind, request.value)
    return result, list(m.log)


# -- the scoreboard on hand-made logs (no simulator) ---------------------------------------

def test_replay_of_the_golden_transfers_passes():
    result, log = golden_log()
    sb = Scoreboard(1)
    sb.cores[0].accepted(POST, 0)
    for access in log:
        sb.transfer(0, access)
    sb.cores[0].offered([("notify", (0xF2, 7))], 9)
    sb.cores[0].taken("notify")
    sb.finish(10)
    assert sb.outcomes["notified"] == 1 and result.notify == (0xF2, 7)


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


def test_missing_transfer_and_wrong_output_are_caught():
    _, log = golden_log()
    sb = Scoreboard(1)
    sb.cores[0].accepted(POST, 0)
    for access in log[:-1]:                  # no NotifyInfo write
        sb.transfer(0, access)
    with pytest.raises(MismatchError, match="still needs a bus transfer"):
        sb.cores[0].offered([("notify", (0xF2, 7))], 9)
    sb = Scoreboard(1)
    sb.cores[0].accepted(POST, 0)
    for access in log:
        sb.transfer(0, access)
    with pytest.raises(MismatchError, match="the golden model expects"):
        sb.cores[0].offered([("notify", (0xF2, 8))], 9)


def test_next_write_accepted_before_the_exit_is_caught():
    off = Request(Config(ipiv=False, x2apic=True, vapic_page=0x4000), K.X2APIC_ICR, 0x45)
    sb = Scoreboard(1)
    sb.cores[0].accepted(off, 0)
    sb.transfer(0, Access(True, 0x4300 >> 3, 0xFF, 0x45, False))
    assert expected_events(GoldenIPIVirtualizer().execute(off.cfg, Memory(), off.kind,
                                                          off.value))[0][1][2] is \
        ExitCause.DISABLED
    with pytest.raises(MismatchError, match="before offering the exit"):
        sb.cores[0].accepted(off, 3)


def test_write_outside_the_allowed_words_is_caught():
    sb = Scoreboard(1, allowed_words={1, 2})
    with pytest.raises(MismatchError, match="does not allow"):
        sb.transfer(0, Access(True, 3, 0xFF, 0, False))


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

@pytest.mark.parametrize("fault", [f.value for f in Fault])
def test_broken_unit_fails_the_random_regression(fault, request, record_property):
    params = {"seed": 3, "count": 150, "chunks": 2, "maxphyaddr": 52}
    result = runner.run(Design(faults=(fault,)), "tb.cocotb.unit_tests", "random_run", params,
                        test_name=request.node.name)
    assert not result.ok, f"the regression passed a unit with fault {fault}"
    assert result.failures, "cocotb's results XML must record the failure"
    assert result.error.startswith(("MismatchError", "ProtocolError")), result.error
    record_property("caught_by", result.error[:200])


@pytest.mark.parametrize("fault, message", [
    ("drop_lock", "lost bits|resurrected"),      # split RMWs lose or resurrect PID bits
    ("on_despite_sn", "while SN = 1"),           # a notification although SN = 1
])
def test_broken_system_fails_the_contention_invariants(fault, message, request,
                                                       record_property):
    """With the scoreboard's lock comparison off, the no-loss bookkeeping alone catches the
    broken unit: it is a check of its own, not a shadow of the golden model."""
    params = {"seed": 1, "n_cores": 3, "count": 80, "compare_lock": False, "n_pids": 1,
              "vectors": [0x20, 0x40], "agent_rate": 0.3, "timing": [1, 0.0, 0.0]}
    result = runner.run(Design(n_cores=3, faults=(fault,)), "tb.cocotb.system_tests",
                        "contention", params, test_name=request.node.name)
    assert not result.ok and result.failures
    assert result.error.startswith("AgentError"), result.error
    assert re.search(message, result.error), result.error
    record_property("caught_by", result.error[:200])

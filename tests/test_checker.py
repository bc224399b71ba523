"""`tb.checker` with a shadow memory, on hand-made transfer logs (no simulator): the golden
model runs once per request, each replayed transfer is also made on the shadow memory and
must give what the gateware got (read data, ``err``), the transfers that stand after an err
on the pipelined bus are made there too, and the memories must be equal at the end."""


import pytest

from hdl.formats import BUS_BYTES, ExitCause, ICRWriteKind as K, NotifyInfo, PID_NOTIFY_INFO_OFFSET
from hdl.formats import pid_pointer_entry
from sim.golden import Config, GoldenIPIVirtualizer
from sim.memory import Access, Memory
from sim.scenarios import Request
from tb.checker import Checker, MismatchError, ReplayMemory, expected_events

CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=3,
             pid_table=0x8000, vapic_page=0x4000)
PID = 0x9000
POST = Request(CFG, K.X2APIC_ICR, 2 << 32 | 0x45)      # vector 0x45 to T = 2
NI_WORD = (PID + PID_NOTIFY_INFO_OFFSET) // BUS_BYTES


def memory(**errors):
    m = Memory(**errors)
    m.write(0x8000 + 16, pid_pointer_entry(PID))
    m.write(PID + PID_NOTIFY_INFO_OFFSET, NotifyInfo.const({"nv": 0xF2, "ndst": 7}).as_bits())
    return m


def gateware(requests, bus="classic", **errors):
    """What a correct unit does: the golden results, the transfers of each request and the
    final memory."""
    m = memory(**errors)
    golden = GoldenIPIVirtualizer(bus=bus)
    results, logs = [], []
    for r in requests:
        start = len(m.log)
        results.append(golden.execute(r.cfg, m, r.kind, r.value))
        logs.append(m.log[start:])
    return results, logs, m


def run(checker, requests, logs, results):
    """Per request on core 0: accepted, its transfers, then the outputs the golden model
    expects (each locked read opens a locked bus cycle that its locked write closes)."""
    lock_cycle = 0
    for cycle, (request, log, result) in enumerate(zip(requests, logs, results)):
        checker.accepted(0, request, 10 * cycle)
        for access in log:
            lock_cycle += access.lock and not access.write
            checker.transfer(0, access, lock_cycle if access.lock else None)
        for stream, payload in expected_events(result):
            checker.offered(0, [(stream, payload)], 10 * cycle + 5)
            checker.taken(0, stream)


def test_shadow_run_passes_makes_every_transfer_and_compares_the_memories():
    requests = [POST, POST]                 # notified, then suppressed (ON set)
    results, logs, final = gateware(requests)
    shadow = memory()
    checker = Checker(1, shadow=shadow)
    run(checker, requests, logs, results)
    checker.finish(200, final)
    assert shadow.log == final.log and dict(checker.outcomes) == {"notified": 1, "suppressed:ON": 1}
    final.write(PID, 1)                     # the gateware's memory differs at the end
    with pytest.raises(MismatchError, match="memory differs from the golden model's"):
        checker.finish(201, final)


def test_golden_model_runs_once_per_request(monkeypatch):
    requests = [POST, POST, POST]
    results, logs, final = gateware(requests)
    calls = []
    execute = GoldenIPIVirtualizer.execute
    monkeypatch.setattr(GoldenIPIVirtualizer, "execute",
                        lambda self, *a: calls.append(a) or execute(self, *a))
    checker = Checker(1, shadow=memory())
    run(checker, requests, logs, results)
    checker.finish(200, final)
    assert len(calls) == len(requests)


def _other_pir(log):
    """The shadow's PIR word holds a bit the gateware did not read."""
    shadow = memory()
    shadow.write(PID + 8, 1 << 3)
    return shadow, log


def _shadow_error(log):
    """The shadow memory ends the entry read in err, the gateware's did not."""
    return memory(error_words={log[1].adr}), log


def _gateware_error(log):
    """The gateware got err on the PIR read, the shadow memory does not."""
    return memory(), log[:2] + [log[2]._replace(data=0, error=True)]


@pytest.mark.parametrize("plant", [_other_pir, _shadow_error, _gateware_error])
def test_shadow_catches_what_the_replay_alone_cannot(plant):
    """Each log replays cleanly (the golden model is given the gateware's read data and err),
    but the shadow memory, which holds what the memory should, answers otherwise."""
    results, logs, _ = gateware([POST])
    shadow, log = plant(logs[0])
    replayed = GoldenIPIVirtualizer().execute(CFG, ReplayMemory(log), POST.kind, POST.value)
    checker = Checker(1, shadow=shadow)
    with pytest.raises(MismatchError, match="on the shadow memory"):
        run(checker, [POST], [log], [replayed])


def _standing_run(change=lambda access: access):
    """Pipelined: the PIR read (transfer 2) ends in err; the NotifyInfo read of the same round
    trip, already issued, stands. The checker gets the log with it."""
    results, (log,), final = gateware([POST], bus="pipelined", error_at={2})
    assert results[0].cause is ExitCause.BUS_ERROR and len(log) == 3
    standing = results[0].stand[0]
    assert (standing.adr, standing.write) == (NI_WORD, False)
    log.append(change(Access(False, NI_WORD, standing.sel, final.read_word(NI_WORD), True)))
    shadow = memory(error_at={2})
    checker = Checker(1, shadow=shadow, bus="pipelined")
    run(checker, [POST], [log], results)
    checker.finish(200, final)
    return shadow, log


def test_standing_transfers_after_an_err_are_made_on_the_shadow():
    shadow, log = _standing_run()
    assert shadow.log == log


def test_a_standing_read_with_other_data_is_caught():
    with pytest.raises(MismatchError, match="on the shadow memory"):
        _standing_run(lambda a: a._replace(data=a.data ^ 1))

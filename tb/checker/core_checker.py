"""The checks of one core: each accepted ICR write is replayed through the golden model
against the core's transfers (`ReplayMemory`), its outputs must come in request order, its
writes must be locked read-modify-writes, and (one core alone) a shadow memory must agree."""

from collections import deque
from dataclasses import dataclass
from itertools import islice

from hdl.formats import EXIT_REASON_WRMSR, ICRWriteKind
from sim.golden import Outcome, Result
from ..codec import NOTIFY_INFO
from .errors import MismatchError
from .events import expected_events
from .replay import NeedMore, ReplayMemory


__all__ = ["outcome_class", "Resolved", "CoreChecker"]

_EXIT_OR_GP = ("exit", "gp")


def outcome_class(result, consumed):
    """A name for what a request did, finer than `Outcome`: posts tell why they were
    suppressed (from the NotifyInfo word the unit read), exits their cause (the x2APIC
    intercept's WRMSR exit is ``wrmsr-exit``)."""
    if result.outcome is Outcome.EXIT and result.reason == EXIT_REASON_WRMSR:
        return "wrmsr-exit"
    if result.outcome is Outcome.EXIT:
        return f"exit:{result.cause.name}"
    if result.outcome is Outcome.POSTED:
        if result.notify is not None:
            return "notified"
        info = NOTIFY_INFO.unpack(consumed[-1].data)    # the last transfer: NotifyInfo read
        return "suppressed:ON" if info["on"] else "suppressed:SN"
    return result.outcome.value


@dataclass(frozen=True)
class Resolved:
    """One request, checked: what the golden model says it did, and the gateware's transfers.
    ``seq`` numbers the requests of the run in the order they were accepted (all cores)."""
    core: int
    seq: int
    request: object
    accept_cycle: int
    result: Result
    transfers: tuple
    outcome: str


class CoreChecker:
    """The checks of one core (see the `tb.checker` docstring); fed by `Checker`."""

    def __init__(self, index, golden, *, shadow=None, on_resolved=None, compare_lock=True,
                 locked_rmw=True):
        self.index = index
        self.golden = golden
        self.shadow = shadow
        self.on_resolved = on_resolved
        self.compare_lock = compare_lock
        self.locked_rmw = locked_rmw
        self.pending = deque()          # (seq, request, accept cycle)
        self.transfers = []             # transfers not yet consumed by a replay
        self.lock_cycles = []           # their locked bus cycles
        self.expected = deque()         # (stream, payload, seq) not yet offered
        self.offered_exit_or_gp = 0     # exits/#GPs offered and not yet taken
        self.resolved = 0

    def _fail(self, message):
        raise MismatchError(f"core {self.index}: {message}")

    def accepted(self, request, cycle, seq):
        """An ICR write was accepted: every earlier request is complete by now."""
        if self.offered_exit_or_gp:
            self._fail(f"accepted an ICR write at cycle {cycle} while an exit/#GP was still "
                       f"offered")
        self._resolve_all(lambda: f"accepted the next ICR write at cycle {cycle}")
        waiting = [s for s, _, _ in self.expected if s in _EXIT_OR_GP]
        if waiting:
            self._fail(f"accepted an ICR write at cycle {cycle} before offering the "
                       f"{waiting[0]} of an earlier one")
        self.pending.append((seq, request, cycle))

    def transfer(self, access, lock_cycle):
        self.transfers.append(access)
        self.lock_cycles.append(lock_cycle)

    def offered(self, rising, cycle):
        """Outputs whose ``valid`` rose in this cycle: [(stream, payload)]. They must be the
        next outputs the golden model predicts, in request order (any order within a cycle)."""
        while len(self.expected) < len(rising) and self.pending:
            self._resolve_one(lambda: f"offered {rising} at cycle {cycle}")
        want = [(s, p) for s, p, _ in islice(self.expected, len(rising))]
        if len(rising) == 1:            # most cycles offer one output: no sorting
            differ = len(want) != 1 or rising[0] != want[0]
        else:
            differ = sorted(rising, key=repr) != sorted(want, key=repr)
        if differ:
            self._fail(f"at cycle {cycle} the gateware offers {rising}, the golden model "
                       f"expects {want or 'nothing'}")
        for _ in rising:
            self.expected.popleft()
        self.offered_exit_or_gp += sum(1 for s, _ in rising if s in _EXIT_OR_GP)

    def taken(self, stream):
        if stream in _EXIT_OR_GP:
            self.offered_exit_or_gp -= 1

    def idle(self, cycle):
        """``busy`` is low: everything accepted is finished and every output taken."""
        self._resolve_all(lambda: f"went idle at cycle {cycle}")
        if self.expected:
            self._fail(f"idle at cycle {cycle} without offering {list(self.expected)}")

    def finish(self, cycle):
        self.idle(cycle)
        if self.transfers:
            self._fail(f"bus transfers no request accounts for: "
                       f"{[str(a) for a in self.transfers[:4]]}")

    # -- resolution ------------------------------------------------------------------------------
    def resolve_pending(self, why):
        """Check every accepted request against its transfers now (``why``: the event that
        says they are complete, for the message of a failure)."""
        self._resolve_all(lambda: why)

    def _resolve_all(self, why):
        while self.pending:
            self._resolve_one(why)

    def _describe(self, seq, request, cycle):
        return (f"request {seq} ({ICRWriteKind(request.kind).name} {request.value:#x}, "
                f"accepted at cycle {cycle})")

    def _resolve_one(self, why):
        """Replay the oldest pending request; ``why()`` names the event that says it is
        complete (built only for a failure's message)."""
        seq, request, cycle = self.pending[0]
        replay = ReplayMemory(self.transfers, compare_lock=self.compare_lock, shadow=self.shadow)
        try:
            result = self.golden.execute(request.cfg, replay, request.kind, request.value)
            self._consume_standing(result, replay)
        except NeedMore as e:
            w = e.expected
            self._fail(f"{why()}, but {self._describe(seq, request, cycle)} still needs a bus "
                       f"transfer: golden model {'W' if w.write else 'R'} {w.adr << 3:#014x} "
                       f"sel={w.sel:02x} lock={int(w.lock)}")
        except MismatchError as e:
            self._fail(f"{self._describe(seq, request, cycle)}: {e}")
        self.pending.popleft()
        locks = self.lock_cycles[:replay.pos]
        del self.transfers[:replay.pos]
        del self.lock_cycles[:replay.pos]
        if self.locked_rmw:
            self._check_locked_rmw(seq, request, cycle, replay.consumed, locks)
        for stream, payload in expected_events(result):
            self.expected.append((stream, payload, seq))
        self.resolved += 1
        if self.on_resolved is not None:
            self.on_resolved(Resolved(self.index, seq, request, cycle, result,
                                      tuple(replay.consumed),
                                      outcome_class(result, replay.consumed)))

    def _consume_standing(self, result, replay):
        """Pipelined bus, after an err: the requests of the same round trip that the unit had
        issued before the err came back stand (docs/interface.md). They are the start of the
        golden model's `Result.stand`, each exactly as planned (a store among them changed
        memory, so they are made on the shadow memory too)."""
        for want in result.stand:
            if replay.pos >= len(self.transfers):
                return
            got = self.transfers[replay.pos]
            if (got.write, got.adr, got.sel, got.lock) != (want.write, want.adr, want.sel,
                                                           want.lock) or \
                    (want.write and not got.error and got.data != want.data):
                return
            replay.take(got)

    def _rmw_read(self, consumed, locks, i):
        """The index of the locked read that the write ``consumed[i]`` completes, or None:
        the transfer just before it (classic); pipelined, the latest read of the same word
        before it (both reads come before both writes), no write to the word in between."""
        write = consumed[i]
        candidates = [i - 1] if self.golden.bus == "classic" else range(i - 1, -1, -1)
        for j in candidates:
            a = consumed[j]
            if a.adr != write.adr:
                continue
            if a.write or not (a.lock and write.lock) or locks[j] is None or \
                    locks[j] != locks[i]:
                return None
            return j
        return None

    def _check_locked_rmw(self, seq, request, cycle, consumed, locks):
        """Every write after the request's first read (i.e. every write but the vICR stores)
        is the second half of a locked read-modify-write of its word, in the same locked bus
        cycle."""
        first_read = len(consumed)
        for i, access in enumerate(consumed):
            if not access.write:
                first_read = i
                break
        for i in range(first_read + 1, len(consumed)):
            write, read = consumed[i], consumed[i - 1]
            if not write.write:
                continue
            j = self._rmw_read(consumed, locks, i)
            if j is None:
                self._fail(f"{self._describe(seq, request, cycle)}: write {write} is not the "
                           f"second half of a locked read-modify-write (the transfer before "
                           f"it: {read}; locked bus cycles {locks[i - 1]}, {locks[i]})")

"""The scoreboard: every output and every bus transfer of the gateware, predicted by the golden
model (plain Python, no simulator import).

The golden model (`sim.golden.GoldenIPIVirtualizer`) performs the same bus transfers in the
same order as the RTL. For each core, the transfers the RTL made are collected (attributed to
the core by the arbiter's grant on `IPIVSystem`), and each accepted ICR write is *replayed*
through the golden model with a `ReplayMemory`: every transfer the model asks for must be the
next one the RTL made (direction, address, byte enables, ``lock``, written data), and the model
is given the data the RTL read. So the check holds with several cores and a software agent on
the same memory, where no copy of the memory could predict read data. The model's `Result` then
fixes the outputs the core must offer, in request order. A single core without other masters
is also run against a shadow copy of the memory (``shadow``): the same results, the same
transfers and the same final memory, independently of the replay.

A request is resolved when its transfers must all have happened: when the core offers an
output, accepts the next write, or goes idle (``busy`` low).
"""

from collections import Counter, deque
from dataclasses import dataclass

from hdl.formats import APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE, ICRWriteKind
from sim.golden import GoldenIPIVirtualizer, Outcome, Result
from sim.memory import Access, BusError, sel_mask
from .codec import NOTIFY_INFO


__all__ = ["MismatchError", "ReplayMemory", "expected_events", "outcome_class", "CoreChecker",
           "Scoreboard", "Resolved"]


class MismatchError(AssertionError):
    """The gateware did something the golden model (or the contract) does not allow."""


class _NeedMore(Exception):
    """The golden model asks for a transfer the RTL has not made (yet)."""

    def __init__(self, expected):
        super().__init__(expected)
        self.expected = expected


class ReplayMemory:
    """A `sim.memory.Memory` stand-in that answers the golden model with the RTL's transfers.

    Parameters
    ----------
    observed : list of sim.memory.Access
        The RTL's transfers, in bus order; the replay consumes them from ``start``.
    compare_lock : bool
        Compare ``lock`` too (False only to show that other checkers catch a missing lock).
    """

    def __init__(self, observed, start=0, *, compare_lock=True):
        self.observed = observed
        self.pos = start
        self.consumed = []
        self.compare_lock = compare_lock

    def transfer(self, *, adr, write, sel=0xFF, data=0, lock=False):
        want = Access(bool(write), adr, sel, data & sel_mask(sel) if write else None, bool(lock))
        if self.pos >= len(self.observed):
            raise _NeedMore(want)
        got = self.observed[self.pos]
        same = (got.write, got.adr, got.sel) == (want.write, want.adr, want.sel) and \
            (got.lock == want.lock or not self.compare_lock)
        if same and write and not got.error:
            same = got.data == want.data
        if not same:
            shown = want if write else Access(want.write, want.adr, want.sel, 0, want.lock)
            hint = " (or an extra transfer of the request before)" if not self.consumed else ""
            raise MismatchError(f"bus transfer {len(self.consumed)} of the request{hint}: "
                                f"gateware {got}, golden model {shown}")
        self.pos += 1
        self.consumed.append(got)
        if got.error:
            raise BusError(f"replayed bus error at word {adr:#x}")
        return 0 if write else got.data


def expected_events(result):
    """[(stream, payload)] a golden `Result` makes the core offer (payloads as the monitors
    decode them)."""
    if result.outcome is Outcome.EXIT:
        return [("exit", (EXIT_REASON_APIC_WRITE, APIC_WRITE_QUALIFICATION_ICR, result.cause,
                          result.icr))]
    if result.outcome is Outcome.GP:
        return [("gp", result.icr)]
    if result.outcome is Outcome.SELF_IPI:
        return [("self_ipi", result.vector)]
    if result.outcome is Outcome.POSTED and result.notify is not None:
        return [("notify", tuple(result.notify))]
    return []


def outcome_class(result, consumed):
    """A name for what a request did, finer than `Outcome`: posts tell why they were
    suppressed (from the NotifyInfo word the unit read), exits their cause."""
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
    """One request, checked: what the golden model says it did, and the RTL's transfers."""
    core: int
    seq: int
    request: object
    accept_cycle: int
    result: Result
    transfers: tuple
    outcome: str


class CoreChecker:
    """The checks of one core (see the module docstring).

    Parameters
    ----------
    index : int
    golden : GoldenIPIVirtualizer
    shadow : sim.memory.Memory or None
        A copy of the initial memory to run the golden model on directly (single master only).
    on_resolved : callable(Resolved) or None
    """

    def __init__(self, index, golden, *, shadow=None, on_resolved=None, compare_lock=True):
        self.index = index
        self.compare_lock = compare_lock
        self.golden = golden
        self.shadow = shadow
        self.on_resolved = on_resolved
        self.pending = deque()          # (seq, request, accept cycle)
        self.transfers = []             # RTL transfers not yet consumed by a replay
        self.expected = deque()         # (stream, payload, seq) not yet offered
        self.offered_exit_or_gp = 0     # exits/#GPs offered and not yet taken
        self.resolved = 0
        self._seq = 0

    def _fail(self, message):
        raise MismatchError(f"core {self.index}: {message}")

    # -- events from the monitors --------------------------------------------------------
    def accepted(self, request, cycle):
        """An ICR write was accepted: every earlier request is complete by now."""
        if self.offered_exit_or_gp:
            self._fail(f"accepted an ICR write at cycle {cycle} while an exit/#GP was still "
                       f"offered")
        self._resolve_all(f"accepted the next ICR write at cycle {cycle}")
        waiting = [s for s, _, _ in self.expected if s in ("exit", "gp")]
        if waiting:
            self._fail(f"accepted an ICR write at cycle {cycle} before offering the "
                       f"{waiting[0]} of an earlier one")
        self.pending.append((self._seq, request, cycle))
        self._seq += 1

    def transfer(self, access):
        self.transfers.append(access)

    def offered(self, rising, cycle):
        """Outputs whose ``valid`` rose in this cycle: [(stream, payload)]. They must be the
        next outputs the golden model predicts, in request order (any order within a cycle)."""
        while len(self.expected) < len(rising) and self.pending:
            self._resolve_one(f"offered {rising} at cycle {cycle}")
        want = [(s, p) for s, p, _ in list(self.expected)[:len(rising)]]
        if sorted(rising, key=repr) != sorted(want, key=repr):
            self._fail(f"at cycle {cycle} the gateware offers {rising}, the golden model "
                       f"expects {want or 'nothing'}")
        for _ in rising:
            self.expected.popleft()
        self.offered_exit_or_gp += sum(1 for s, _ in rising if s in ("exit", "gp"))

    def taken(self, stream):
        if stream in ("exit", "gp"):
            self.offered_exit_or_gp -= 1

    def idle(self, cycle):
        """``busy`` is low: everything accepted is finished and every output taken."""
        self._resolve_all(f"went idle at cycle {cycle}")
        if self.expected:
            self._fail(f"idle at cycle {cycle} without offering {list(self.expected)}")

    def finish(self, cycle):
        self.idle(cycle)
        if self.transfers:
            self._fail(f"bus transfers no request accounts for: "
                       f"{[str(a) for a in self.transfers[:4]]}")

    # -- resolution ------------------------------------------------------------------------
    def _resolve_all(self, why):
        while self.pending:
            self._resolve_one(why)

    def _resolve_one(self, why):
        seq, request, cycle = self.pending[0]
        replay = ReplayMemory(self.transfers, compare_lock=self.compare_lock)
        try:
            result = self.golden.execute(request.cfg, replay, request.kind, request.value)
        except _NeedMore as e:
            w = e.expected
            self._fail(f"{why}, but request {seq} ({ICRWriteKind(request.kind).name} "
                       f"{request.value:#x}, accepted at cycle {cycle}) still needs a bus "
                       f"transfer: golden model {'W' if w.write else 'R'} "
                       f"{w.adr << 3:#014x} sel={w.sel:02x} lock={int(w.lock)}")
        except MismatchError as e:
            self._fail(f"request {seq} ({ICRWriteKind(request.kind).name} {request.value:#x}, "
                       f"accepted at cycle {cycle}): {e}")
        self.pending.popleft()
        del self.transfers[:replay.pos]
        if self.shadow is not None:
            self._check_shadow(seq, request, result, replay.consumed)
        for stream, payload in expected_events(result):
            self.expected.append((stream, payload, seq))
        self.resolved += 1
        if self.on_resolved is not None:
            self.on_resolved(Resolved(self.index, seq, request, cycle, result,
                                      tuple(replay.consumed),
                                      outcome_class(result, replay.consumed)))

    def _check_shadow(self, seq, request, result, consumed):
        start = len(self.shadow.log)
        shadow = self.golden.execute(request.cfg, self.shadow, request.kind, request.value)
        if shadow != result or self.shadow.log[start:] != list(consumed):
            self._fail(f"request {seq}: golden model on the shadow memory gives {shadow} with "
                       f"{[str(a) for a in self.shadow.log[start:]]}, the replay of the "
                       f"gateware {result} with {[str(a) for a in consumed]}")


class Scoreboard:
    """The checkers of all cores, plus run-wide bookkeeping.

    Parameters
    ----------
    n_cores : int
    maxphyaddr : int
    shadow : sim.memory.Memory or None
        Initial memory copy for the shadow check (only with one core and no other master).
    allowed_words : set of int or None
        Word addresses the spec allows the unit to write; any other write is an error.
    on_resolved : callable(Resolved) or None
    compare_lock : bool
        See `ReplayMemory`.
    """

    def __init__(self, n_cores, *, maxphyaddr=52, shadow=None, allowed_words=None,
                 on_resolved=None, compare_lock=True):
        if shadow is not None and n_cores != 1:
            raise ValueError("the shadow-memory check needs a single core")
        self.golden = GoldenIPIVirtualizer(maxphyaddr)
        self.allowed_words = allowed_words
        self.shadow = shadow
        self.listeners = [self._count] + ([on_resolved] if on_resolved else [])
        self.cores = [CoreChecker(i, self.golden, shadow=shadow, on_resolved=self._resolved,
                                  compare_lock=compare_lock) for i in range(n_cores)]
        self.outcomes = Counter()
        self.transfers = 0
        self.results = []

    def _resolved(self, resolved):
        for listener in self.listeners:
            listener(resolved)

    def _count(self, resolved):
        self.outcomes[resolved.outcome] += 1
        self.results.append(resolved)

    def transfer(self, core, access):
        self.transfers += 1
        if self.allowed_words is not None and access.write and not access.error and \
                access.adr not in self.allowed_words:
            raise MismatchError(f"core {core}: write to word {access.adr:#x} (byte address "
                                f"{access.adr << 3:#x}), which the spec does not allow: {access}")
        self.cores[core].transfer(access)

    def finish(self, cycle, memory=None):
        """End of run: every request resolved, every transfer accounted for, and (shadow
        mode) the final memory equal to the golden model's."""
        for core in self.cores:
            core.finish(cycle)
        if self.shadow is not None and memory is not None and \
                memory.words != self.shadow.words:
            diff = sorted(a for a in set(memory.words) | set(self.shadow.words)
                          if memory.read_word(a) != self.shadow.read_word(a))
            raise MismatchError(f"memory differs from the golden model's at words "
                                f"{[hex(a) for a in diff[:8]]}")

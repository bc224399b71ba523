"""The checker: every output and every bus transfer of the gateware, predicted by the golden
model. One scoreboard for both simulator backends (plain Python: it imports `hdl.formats`,
`sim.golden` and `sim.memory`, never a simulator).

A backend (`tb.amaranth_harness` on Amaranth's simulator, `tb.cocotb.env` on cocotb) only turns
signals into records and hands them over, per core and with the cycle:

- ``accepted(core, request, cycle)``: an ICR write (`sim.scenarios.Request`) was taken;
- ``transfer(core, access, lock_cycle)``: a bus transfer (`sim.memory.Access`) completed, with
  the id of the locked bus cycle it belongs to (`LockTracker`) or None;
- ``offered(core, [(stream, payload)], cycle)`` / ``taken(core, stream)``: outputs whose
  ``valid`` rose, and handshakes (both found by a `StreamMonitor` per output stream);
- ``idle(core, cycle)``: ``busy`` fell; ``finish(cycle, memory)`` at the end.

What is checked:

- **Every bus transfer.** The transfers of a core (attributed to it by the arbiter's grant on
  `IPIVSystem`) are collected, and each accepted ICR write is *replayed* through the golden
  model with a `ReplayMemory`: every transfer the model asks for must be the next one the
  gateware made (direction, word address, byte enables, ``lock``, written data), and the model
  is given the data the gateware read. So the check holds with several cores and another master
  on the same memory, where no copy of the memory could predict read data. A single core
  without other masters is also run against a shadow copy of the memory (``shadow``): the same
  results, the same transfers, and at the end the same memory.
- **Every output**, in order: the golden `Result` fixes the events a request must produce
  (`expected_events`); they must appear (``valid`` rise) in the order of the requests, in any
  order within one cycle; a core that goes idle owes nothing.
- **Ordering** (docs/interface.md): after an exit or #GP the next write is not accepted before it
  was taken; a request is resolved (all its transfers made) when the core offers an output,
  accepts the next write, or goes idle.
- **Locked read-modify-writes**: after the request's vICR store(s), every write (PIR,
  NotifyInfo, VIRR) is the second half of a locked read-modify-write: it follows a locked read
  of the same word in the same locked bus cycle (``cyc`` and ``lock`` held, no other master).
  This rule does not use the golden model.
- **Allowed write targets**: a write outside ``allowed_words`` (see `allowed_words`) fails.
- **Conservation and timely delivery of notifications** (`DeliveryMonitor`, from the bus and
  the ``notify`` port alone, not the golden model): every ON transition the unit makes (its
  locked NotifyInfo read saw ON = 0, its write sets ON) is followed, in order, by exactly one
  notification handshake carrying the NV and NDST of the word written, within
  `DELIVERY_BOUND` cycles; no notification without an ON transition. Fed when the backend
  gives transfers a ``cycle``.
"""

from collections import Counter, deque
from dataclasses import dataclass, replace

from hdl.formats import (
    EXIT_REASON_WRMSR, OUTPUT_STREAMS, ExitCause, ICRWriteKind, PID_NOTIFY_INFO_OFFSET,
)
from sim.golden import GoldenIPIVirtualizer, Outcome, Result
from sim.memory import Access, BusError, sel_mask
from sim.vm_layout import allowed_words
from .codec import EXIT, NOTIFY, NOTIFY_INFO
from .timing import MAX_STALL


__all__ = ["OUTPUT_STREAMS", "MismatchError", "ProtocolError", "Event", "decode_event",
           "expected_events", "result_from_events", "allowed_words", "StreamMonitor",
           "OutputMonitors", "LockTracker", "ReplayMemory", "outcome_class", "Resolved",
           "CoreChecker", "Checker", "DeliveryMonitor", "DELIVERY_BOUND", "percentiles"]

_EXIT_OR_GP = ("exit", "gp")


class MismatchError(AssertionError):
    """The gateware did something the golden model (or the contract) does not allow."""


class ProtocolError(MismatchError):
    """A port broke its protocol (Wishbone, stream valid/ready, the contract's ``busy``)."""


# -- the encoding of output events --------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One output handshake: ``payload`` as `decode_event` gives it."""
    port: int
    stream: str
    payload: object
    valid_cycle: int     # first cycle ``valid`` was high for this payload
    taken_cycle: int     # cycle of the handshake


def decode_event(stream, bits):
    """The payload of ``stream`` from its raw bits: exit ``(reason, qualification, cause, icr)``
    (cause an `ExitCause`, or the raw int if no member has it), notify ``(vector, dest)``,
    self_ipi the vector, gp the 64-bit value."""
    if stream == "exit":
        f = EXIT.unpack(bits)
        try:
            cause = ExitCause(f["cause"])
        except ValueError:
            cause = f["cause"]
        return (f["reason"], f["qualification"], cause, f["icr"])
    if stream == "notify":
        f = NOTIFY.unpack(bits)
        return (f["vector"], f["dest"])
    if stream in ("self_ipi", "gp"):
        return int(bits)
    raise ValueError(f"no output stream {stream!r}")


def expected_events(result):
    """[(stream, payload)] a golden `Result` makes the core offer (an exit's reason and
    qualification as the golden model gives them)."""
    if result.outcome is Outcome.EXIT:
        return [("exit", (result.reason, result.qualification, result.cause, result.icr))]
    if result.outcome is Outcome.GP:
        return [("gp", result.icr)]
    if result.outcome is Outcome.SELF_IPI:
        return [("self_ipi", result.vector)]
    if result.outcome is Outcome.POSTED and result.notify is not None:
        return [("notify", tuple(result.notify))]
    return []


def result_from_events(request, events):
    """A `sim.golden.Result` from the events (`Event` or (stream, payload)) the gateware gave
    for one request: the inverse of `expected_events`."""
    if not events:
        if request.kind == ICRWriteKind.XAPIC_ICR_HI:
            return Result(Outcome.STORED)
        return Result(Outcome.POSTED)               # posted, no notification needed
    event = events[0]
    stream, payload = (event.stream, event.payload) if isinstance(event, Event) else event
    if stream == "exit":
        reason, qualification, cause, icr = payload
        return Result(Outcome.EXIT, icr=icr, cause=cause, reason=reason,
                      qualification=qualification)
    if stream == "gp":
        return Result(Outcome.GP, icr=payload)
    if stream == "self_ipi":
        return Result(Outcome.SELF_IPI, vector=payload)
    return Result(Outcome.POSTED, notify=tuple(payload))


# -- from signals to records (used by both backends each cycle) ---------------------------------

class StreamMonitor:
    """The valid/ready rules of one output stream (``valid`` stays high and the payload
    stable until taken), its offers and its handshakes.

    Parameters
    ----------
    port : int
        The core.
    stream : str
        One of `hdl.formats.OUTPUT_STREAMS`.
    """

    def __init__(self, port, stream):
        self.port = port
        self.stream = stream
        self.offered = None         # (first cycle valid, payload) while offered
        self.stalls = 0             # cycles offered and not taken

    def sample(self, cycle, valid, bits, ready):
        """One cycle: ``valid``, the raw payload ``bits`` (only looked at while valid) and
        ``ready`` as they are at the clock edge. Returns (the payload whose ``valid`` rose in
        this cycle or None, the `Event` taken at this edge or None)."""
        if not valid:
            if self.offered is not None:
                raise ProtocolError(f"core {self.port}: {self.stream}.valid dropped at cycle "
                                    f"{cycle} before the payload {self.offered[1]} was taken")
            return None, None
        payload = decode_event(self.stream, bits)
        rising = None
        if self.offered is None:
            self.offered = (cycle, payload)
            rising = payload
        elif self.offered[1] != payload:
            raise ProtocolError(f"core {self.port}: {self.stream} payload changed at cycle "
                                f"{cycle} while valid: {self.offered[1]} -> {payload}")
        if ready:
            event = Event(self.port, self.stream, payload, self.offered[0], cycle)
            self.offered = None
            return rising, event
        self.stalls += 1
        return rising, None


class OutputMonitors:
    """The `StreamMonitor` of each output stream of one core."""

    def __init__(self, port):
        self.monitors = [StreamMonitor(port, name) for name in OUTPUT_STREAMS]

    @property
    def offered(self):
        """Some output is offered and not taken yet."""
        return any(m.offered is not None for m in self.monitors)

    @property
    def stalls(self):
        return sum(m.stalls for m in self.monitors)

    def sample(self, cycle, observed):
        """One cycle: ``observed`` holds (valid, raw payload, ready) of each stream, in the
        order of `hdl.formats.OUTPUT_STREAMS`. Returns ([(stream, payload)] whose ``valid``
        rose in this cycle, [`Event`] taken at this edge)."""
        rising, events = [], []
        for monitor, (valid, bits, ready) in zip(self.monitors, observed):
            offer, event = monitor.sample(cycle, valid, bits, ready)
            if offer is not None:
                rising.append((monitor.stream, offer))
            if event is not None:
                events.append(event)
        return rising, events


class LockTracker:
    """Numbers the locked bus cycles: call `step` once a cycle; a new id each time ``cyc`` and
    ``lock`` rise together or the arbiter hands a held lock to another master."""

    def __init__(self):
        self.current = None
        self._ids = 0
        self._grant = None

    def step(self, cyc, lock, grant=None):
        """Returns the id of the locked bus cycle in progress, or None."""
        if not (cyc and lock):
            self.current = None
        elif self.current is None or grant != self._grant:
            self._ids += 1
            self.current = self._ids
        self._grant = grant
        return self.current


# -- notifications: conservation and timely delivery ----------------------------------------------

#: Cycles from the ``ack`` of the NotifyInfo write that set ON to the handshake of its
#: notification, at most: the previous notification may still be offered at that ``ack`` and
#: is taken within `tb.timing.MAX_STALL` cycles (no consumer holds ``ready`` low longer); the
#: new one is registered at that handshake's edge and is itself taken within MAX_STALL + 1
#: cycles of being offered. 2 * 50 + 1 = 101 cycles.
DELIVERY_BOUND = 2 * MAX_STALL + 1

_NI_WORD = PID_NOTIFY_INFO_OFFSET // 8      # NotifyInfo's word in the 64-byte PID


def percentiles(values):
    """{"n", "min", "median", "p99", "max"} of a list of numbers (empty: n = 0 only)."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]
    return {"n": len(v), "min": v[0], "median": pick(0.5), "p99": pick(0.99), "max": v[-1]}


class DeliveryMonitor:
    """Every ON transition the unit makes gets exactly one notification, in order, with the
    NV/NDST of the word written, within ``bound`` cycles (see the module docstring).

    An ON transition is a full-word write to word 4 of a 64-byte line (NotifyInfo) setting
    ON, right after the same core's read of that word saw ON = 0 (the locked read-modify-write
    of docs/architecture.md §4 step 5). NDST is decoded as the request's ``cfg.host_x2apic``
    says (§3).
    """

    def __init__(self, n_cores, bound=DELIVERY_BOUND):
        self.bound = bound
        self.last = [None] * n_cores            # the core's previous transfer
        self.host_x2apic = [True] * n_cores
        self.pending = [deque() for _ in range(n_cores)]    # (cycle, (nv, dest), word address)
        self.latencies = []                     # cycles, ON write ack -> notification taken
        self.transitions = 0

    def _fail(self, core, message):
        raise MismatchError(f"core {core}: {message}")

    def accepted(self, core, request):
        self.host_x2apic[core] = bool(request.cfg.host_x2apic)

    def transfer(self, core, access, cycle):
        prev, self.last[core] = self.last[core], access
        if not access.write or access.error or access.sel != 0xFF or \
                access.adr & 7 != _NI_WORD or prev is None or prev.write or prev.error or \
                prev.adr != access.adr:
            return
        before, after = NOTIFY_INFO.unpack(prev.data), NOTIFY_INFO.unpack(access.data)
        if before["on"] or not after["on"]:
            return
        dest = after["ndst"] if self.host_x2apic[core] else (after["ndst"] >> 8) & 0xFF
        self.pending[core].append((cycle, (after["nv"], dest), access.adr))
        self.transitions += 1

    def taken(self, core, event):
        """A notification handshake (`Event` of the ``notify`` stream)."""
        if not self.pending[core]:
            self._fail(core, f"notification {event.payload} taken at cycle {event.taken_cycle} "
                       f"for no ON transition (each ON transition is notified once)")
        cycle, payload, adr = self.pending[core].popleft()
        if tuple(event.payload) != payload:
            self._fail(core, f"notification {event.payload} taken at cycle "
                       f"{event.taken_cycle}, but the NotifyInfo word {adr << 3:#x} written at "
                       f"cycle {cycle} asks for "
                       f"(NV, NDST) = {payload}")
        self.latencies.append(event.taken_cycle - cycle)
        self.check(core, event.taken_cycle)

    def check(self, core, cycle):
        """Fail if the oldest ON transition of ``core`` is older than the bound and was not
        notified."""
        if self.pending[core] and cycle - self.pending[core][0][0] > self.bound:
            on_cycle, payload, adr = self.pending[core][0]
            self._fail(core, f"ON set at cycle {on_cycle} (NotifyInfo word {adr << 3:#x}) and no "
                       f"notification {payload} taken within {self.bound} cycles (cycle "
                       f"{cycle}): a lost notification")

    def idle(self, core, cycle):
        if self.pending[core]:
            on_cycle, payload, adr = self.pending[core][0]
            self._fail(core, f"idle at cycle {cycle}, but ON was set at cycle {on_cycle} "
                       f"(NotifyInfo word {adr << 3:#x}) and no notification {payload} was "
                       f"taken: a lost "
                       f"notification")

    def stats(self):
        return {"on_transitions": self.transitions, "latency_cycles":
                percentiles(self.latencies), "bound_cycles": self.bound}


# -- the replay ----------------------------------------------------------------------------------

class _NeedMore(Exception):
    """The golden model asks for a transfer the gateware has not made (yet)."""

    def __init__(self, expected):
        super().__init__(expected)
        self.expected = expected


class ReplayMemory:
    """A `sim.memory.Memory` stand-in that answers the golden model with the gateware's
    transfers.

    Parameters
    ----------
    observed : list of sim.memory.Access
        The gateware's transfers, in bus order; the replay consumes them from ``start``.
    compare_lock : bool
        Compare ``lock`` too (False only to show that other checks catch a missing lock).
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
    """The checks of one core (see the module docstring); fed by `Checker`."""

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
        self._resolve_all(f"accepted the next ICR write at cycle {cycle}")
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
            self._resolve_one(f"offered {rising} at cycle {cycle}")
        want = [(s, p) for s, p, _ in list(self.expected)[:len(rising)]]
        if sorted(rising, key=repr) != sorted(want, key=repr):
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
        self._resolve_all(f"went idle at cycle {cycle}")
        if self.expected:
            self._fail(f"idle at cycle {cycle} without offering {list(self.expected)}")

    def finish(self, cycle):
        self.idle(cycle)
        if self.transfers:
            self._fail(f"bus transfers no request accounts for: "
                       f"{[str(a) for a in self.transfers[:4]]}")

    # -- resolution ------------------------------------------------------------------------------
    def _resolve_all(self, why):
        while self.pending:
            self._resolve_one(why)

    def _describe(self, seq, request, cycle):
        return (f"request {seq} ({ICRWriteKind(request.kind).name} {request.value:#x}, "
                f"accepted at cycle {cycle})")

    def _resolve_one(self, why):
        seq, request, cycle = self.pending[0]
        replay = ReplayMemory(self.transfers, compare_lock=self.compare_lock)
        try:
            result = self.golden.execute(request.cfg, replay, request.kind, request.value)
        except _NeedMore as e:
            w = e.expected
            self._fail(f"{why}, but {self._describe(seq, request, cycle)} still needs a bus "
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
        if self.shadow is not None:
            self._check_shadow(seq, request, result, replay.consumed)
        for stream, payload in expected_events(result):
            self.expected.append((stream, payload, seq))
        self.resolved += 1
        if self.on_resolved is not None:
            self.on_resolved(Resolved(self.index, seq, request, cycle, result,
                                      tuple(replay.consumed),
                                      outcome_class(result, replay.consumed)))

    def _check_locked_rmw(self, seq, request, cycle, consumed, locks):
        """Every write after the request's first read (i.e. every write but the vICR stores)
        is the second half of a locked read-modify-write of its word."""
        first_read = next((i for i, a in enumerate(consumed) if not a.write), len(consumed))
        for i in range(first_read + 1, len(consumed)):
            write, read = consumed[i], consumed[i - 1]
            if not write.write:
                continue
            if read.write or read.adr != write.adr or not (read.lock and write.lock) or \
                    locks[i] is None or locks[i] != locks[i - 1]:
                self._fail(f"{self._describe(seq, request, cycle)}: write {write} is not the "
                           f"second half of a locked read-modify-write (the transfer before "
                           f"it: {read}; locked bus cycles {locks[i - 1]}, {locks[i]})")

    def _check_shadow(self, seq, request, result, consumed):
        start = len(self.shadow.log)
        shadow = self.golden.execute(request.cfg, self.shadow, request.kind, request.value)
        golden, gateware = self.shadow.log[start:], list(consumed)
        if not self.compare_lock:
            golden, gateware = ([replace(a, lock=False) for a in log]
                                for log in (golden, gateware))
        if shadow != result or golden != gateware:
            self._fail(f"request {seq}: golden model on the shadow memory gives {shadow} with "
                       f"{[str(a) for a in self.shadow.log[start:]]}, the replay of the "
                       f"gateware {result} with {[str(a) for a in consumed]}")


class Checker:
    """The checks of all cores of one run, and its bookkeeping.

    Parameters
    ----------
    n_cores : int
    maxphyaddr : int
    shadow : sim.memory.Memory or None
        A copy of the initial memory to run the golden model on directly (one core, no other
        master); the backend applies its barrier actions to it as to the real memory.
    allowed_words : set of int or None
        Word addresses the unit may write (see `allowed_words`); any other write fails.
    on_resolved : callable(Resolved) or None
    compare_lock : bool
        Compare ``lock`` with the golden model's, in the replay (`ReplayMemory`) and against the
        shadow memory.
    locked_rmw : bool
        Check the locked read-modify-writes (False, with ``compare_lock``, only to show that
        another checker catches a missing lock on its own).
    """

    def __init__(self, n_cores, *, maxphyaddr=52, shadow=None, allowed_words=None,
                 on_resolved=None, compare_lock=True, locked_rmw=True):
        if shadow is not None and n_cores != 1:
            raise ValueError("the shadow-memory check needs a single core")
        self.golden = GoldenIPIVirtualizer(maxphyaddr)
        self.allowed_words = allowed_words
        self.shadow = shadow
        self.listeners = [self._count] + ([on_resolved] if on_resolved else [])
        self.cores = [CoreChecker(i, self.golden, shadow=shadow, on_resolved=self._resolved,
                                  compare_lock=compare_lock, locked_rmw=locked_rmw)
                      for i in range(n_cores)]
        self.delivery = DeliveryMonitor(n_cores)
        self.outcomes = Counter()
        self.transfers = 0
        self.accepted_count = 0
        self.results = []           # `Resolved`, in the order resolved

    def _resolved(self, resolved):
        for listener in self.listeners:
            listener(resolved)

    def _count(self, resolved):
        self.outcomes[resolved.outcome] += 1
        self.results.append(resolved)

    def in_order(self):
        """The `Resolved` requests in the order they were accepted."""
        return sorted(self.results, key=lambda r: r.seq)

    # -- the records ---------------------------------------------------------------------------
    def accepted(self, core, request, cycle):
        self.cores[core].accepted(request, cycle, self.accepted_count)
        self.delivery.accepted(core, request)
        self.accepted_count += 1

    def transfer(self, core, access, lock_cycle=None, cycle=None):
        """A completed transfer; with its ``cycle``, it feeds the `DeliveryMonitor` too."""
        self.transfers += 1
        if cycle is not None:
            self.delivery.transfer(core, access, cycle)
        if self.allowed_words is not None and access.write and not access.error and \
                access.adr not in self.allowed_words:
            raise MismatchError(f"core {core}: write to word {access.adr:#x} (byte address "
                                f"{access.adr << 3:#x}), which the spec does not allow: {access}")
        self.cores[core].transfer(access, lock_cycle)

    def offered(self, core, rising, cycle):
        self.cores[core].offered(rising, cycle)

    def taken(self, core, stream):
        self.cores[core].taken(stream)

    def outputs(self, core, cycle, rising, events):
        """What `OutputMonitors.sample` found in one cycle: the offers, then the handshakes."""
        self.delivery.check(core, cycle)
        if rising:
            self.offered(core, rising, cycle)
        for event in events:
            self.taken(core, event.stream)
            if event.stream == "notify":
                self.delivery.taken(core, event)

    def idle(self, core, cycle):
        self.delivery.idle(core, cycle)     # first: it names a lost notification as such
        self.cores[core].idle(cycle)

    def finish(self, cycle, memory=None):
        """End of run: every request resolved, every transfer accounted for, and (shadow
        mode) the final memory equal to the golden model's."""
        for core in self.cores:
            core.finish(cycle)
            self.delivery.idle(core.index, cycle)
        if self.shadow is not None and memory is not None and \
                memory.words != self.shadow.words:
            diff = sorted(a for a in set(memory.words) | set(self.shadow.words)
                          if memory.read_word(a) != self.shadow.read_word(a))
            raise MismatchError(f"memory differs from the golden model's at words "
                                f"{[hex(a) for a in diff[:8]]}")

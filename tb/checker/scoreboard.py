"""The scoreboard: the records of all cores of one run go to their `CoreChecker`, the
`DeliveryMonitor` and the allowed-write check; it keeps the run's tallies."""

from collections import Counter

from sim.golden import GoldenIPIVirtualizer
from .core_checker import CoreChecker
from .delivery import DeliveryMonitor
from .errors import MismatchError


__all__ = ["Checker"]


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
        Word addresses the unit may write (see `sim.vm_layout.allowed_words`); any other
        write fails.
    on_resolved : callable(Resolved) or None
    compare_lock : bool
        Compare ``lock`` with the golden model's, in the replay (`ReplayMemory`) and against the
        shadow memory.
    locked_rmw : bool
        Check the locked read-modify-writes (False, with ``compare_lock``, only to show that
        another checker catches a missing lock on its own).
    bus : str
        The unit's memory port (`hdl.formats.BUS_KINDS`): the golden model follows its
        transfer order.
    """

    def __init__(self, n_cores, *, maxphyaddr=52, shadow=None, allowed_words=None,
                 on_resolved=None, compare_lock=True, locked_rmw=True, bus="classic"):
        if shadow is not None and n_cores != 1:
            raise ValueError("the shadow-memory check needs a single core")
        self.golden = GoldenIPIVirtualizer(maxphyaddr, bus=bus)
        self.allowed_words = allowed_words
        self.shadow = shadow
        self.listeners = [self._count, self._excuse_standing] + \
            ([on_resolved] if on_resolved else [])
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

    def _excuse_standing(self, resolved):
        """Pipelined bus: a request that ended in a bus error may leave ON set by a NotifyInfo
        write that stood (taken before the err came back); it owes no notification
        (docs/decisions.md, "pipelined-standing-writes")."""
        if resolved.result.stand:
            for access in resolved.transfers:
                if access.write and not access.error:
                    self.delivery.excuse(resolved.core, access.adr)

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
        if self.golden.bus == "pipelined":
            try:                # first: a bus error may excuse an ON transition
                self.cores[core].resolve_pending(f"went idle at cycle {cycle}")
            except MismatchError:
                self.delivery.idle(core, cycle)
                raise
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

"""The replay memory: the golden model runs against the gateware's own bus transfers, so a
request is checked transfer by transfer whatever else is on the memory."""

from hdl.formats import SEL_QWORD
from sim.memory import Access, BusError, sel_mask
from .errors import MismatchError


__all__ = ["NeedMore", "ReplayMemory"]


class NeedMore(Exception):
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

    def transfer(self, *, adr, write, sel=SEL_QWORD, data=0, lock=False):
        want = Access(bool(write), adr, sel, data & sel_mask(sel) if write else None, bool(lock))
        if self.pos >= len(self.observed):
            raise NeedMore(want)
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

"""The replay memory: the golden model runs against the gateware's own bus transfers, so a
request is checked transfer by transfer whatever else is on the memory; with a ``shadow``
memory (one core alone), each transfer is also made there and must give what the gateware
got, so one run of the golden model checks both."""

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
    shadow : sim.memory.Memory or None
        A memory no one else uses (one core, no other master): every transfer the golden
        model asks for is made on it too, and the shadow's log entry must equal the
        gateware's transfer (read data, written data, ``err``; ``lock`` as ``compare_lock``
        says). A failed request may leave it part-way.
    """

    def __init__(self, observed, start=0, *, compare_lock=True, shadow=None):
        self.observed = observed
        self.pos = start
        self.consumed = []
        self.compare_lock = compare_lock
        self.shadow = shadow

    def transfer(self, *, adr, write, sel=SEL_QWORD, data=0, lock=False):
        if self.pos >= len(self.observed):
            raise NeedMore(Access(bool(write), adr, sel, data & sel_mask(sel) if write else None,
                                  bool(lock)))
        got = self.observed[self.pos]
        same = got.write == bool(write) and got.adr == adr and got.sel == sel and \
            (got.lock == bool(lock) or not self.compare_lock)
        if same and write and not got.error:
            same = got.data == data & sel_mask(sel)
        if not same:
            shown = Access(bool(write), adr, sel, data & sel_mask(sel) if write else 0,
                           bool(lock))
            hint = " (or an extra transfer of the request before)" if not self.consumed else ""
            raise MismatchError(f"bus transfer {len(self.consumed)} of the request{hint}: "
                                f"gateware {got}, golden model {shown}")
        if self.shadow is not None:
            self._mirror(got, adr, write, sel, data, lock)
        self.pos += 1
        self.consumed.append(got)
        if got.error:
            raise BusError(f"replayed bus error at word {adr:#x}")
        return 0 if write else got.data

    def take(self, got):
        """Consume the gateware's transfer ``got`` as it was made (one that stands after an
        err, pipelined bus); with a shadow memory, it is made there too."""
        if self.shadow is not None:
            self._mirror(got, got.adr, got.write, got.sel, got.data, got.lock)
        self.pos += 1
        self.consumed.append(got)

    def _mirror(self, got, adr, write, sel, data, lock):
        """Make the transfer on the shadow memory; what the shadow logs must be ``got``."""
        log = self.shadow.log
        try:
            self.shadow.transfer(adr=adr, write=write, sel=sel, data=data, lock=lock)
        except BusError:
            pass            # logged with ``error``, compared below
        made = log[-1]
        if not self.compare_lock:
            made = made._replace(lock=got.lock)
        if made != got:
            raise MismatchError(f"bus transfer {len(self.consumed)} of the request: gateware "
                                f"{got}, the same transfer on the shadow memory (golden model, "
                                f"one core alone) {made}")

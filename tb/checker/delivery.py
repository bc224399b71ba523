"""Conservation and timely delivery of notifications, from the bus and the ``notify`` port
alone (not the golden model): every ON transition the unit makes is notified once, in
order, with the NV/NDST of the word written, within `DELIVERY_BOUND` cycles."""

from collections import deque

from hdl.formats import BUS_BYTES, PID_BYTES, PID_NOTIFY_INFO_OFFSET, SEL_QWORD
from ..codec import NOTIFY_INFO, XAPIC_NDST
from ..timing import MAX_STALL
from .errors import MismatchError
from .stats import percentiles


__all__ = ["DELIVERY_BOUND", "DeliveryMonitor"]

#: Cycles from the ``ack`` of the NotifyInfo write that set ON to the handshake of its
#: notification, at most: the previous notification may still be offered at that ``ack`` and
#: is taken within `tb.timing.MAX_STALL` cycles (no consumer holds ``ready`` low longer); the
#: new one is registered at that handshake's edge and is itself taken within MAX_STALL + 1
#: cycles of being offered. 2 * 50 + 1 = 101 cycles.
DELIVERY_BOUND = 2 * MAX_STALL + 1

_NI_WORD = PID_NOTIFY_INFO_OFFSET // BUS_BYTES      # NotifyInfo's word in the 64-byte PID
_PID_WORD_MASK = PID_BYTES // BUS_BYTES - 1         # a word's index within its PID


class DeliveryMonitor:
    """Every ON transition the unit makes gets exactly one notification, in order, with the
    NV/NDST of the word written, within ``bound`` cycles.

    An ON transition is a full-word write to word 4 of a 64-byte line (NotifyInfo) setting
    ON, when the same core's latest read of that word saw ON = 0 (the locked read-modify-write
    of docs/architecture.md §4 step 5: the read comes right before the write on the classic
    bus, both PID reads before both writes on the pipelined one). NDST is decoded as the
    request's ``cfg.host_x2apic`` says (§3). Transfers are reported as they are answered.
    """

    def __init__(self, n_cores, bound=DELIVERY_BOUND):
        self.bound = bound
        self.reads = [{} for _ in range(n_cores)]   # word -> the core's latest read of it
        self.host_x2apic = [True] * n_cores
        self.pending = [deque() for _ in range(n_cores)]    # (cycle, (nv, dest), word address)
        self.latencies = []                     # cycles, ON write ack -> notification taken
        self.transitions = 0

    def _fail(self, core, message):
        raise MismatchError(f"core {core}: {message}")

    def accepted(self, core, request):
        self.host_x2apic[core] = bool(request.cfg.host_x2apic)

    def transfer(self, core, access, cycle):
        reads = self.reads[core]
        if not access.write:
            reads[access.adr] = access
            return
        prev = reads.pop(access.adr, None)
        if access.error or access.sel != SEL_QWORD or \
                access.adr & _PID_WORD_MASK != _NI_WORD or prev is None or prev.error:
            return
        before, after = NOTIFY_INFO.unpack(prev.data), NOTIFY_INFO.unpack(access.data)
        if before["on"] or not after["on"]:
            return
        dest = after["ndst"] if self.host_x2apic[core] else \
            XAPIC_NDST.unpack(after["ndst"])["apic_id"]
        self.pending[core].append((cycle, (after["nv"], dest), access.adr))
        self.transitions += 1

    def excuse(self, core, adr):
        """The ON transition of NotifyInfo word ``adr`` owes no notification (its request
        ended in a bus error after the write stood)."""
        pending = self.pending[core]
        for i in range(len(pending) - 1, -1, -1):
            if pending[i][2] == adr:
                del pending[i]
                self.transitions -= 1
                return

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

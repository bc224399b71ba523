"""The memory side of a Wishbone B4 pipelined port, cycle by cycle (plain Python, for either
simulator backend): ``stall`` in bursts and coin flips, each request performed on a
`sim.memory.Memory` when it is taken and answered (``ack`` with its data, or ``err``) at
least ``latency`` cycles later, in the order taken, never in the cycle it was taken
(docs/interface.md, "The pipelined memory port": the round trip R is ``latency + 1``).

It also checks the master's side of the protocol: a request taken while answers are
outstanding keeps ``cyc``, and ``cyc`` never falls with answers outstanding
(`tb.checker.ProtocolError`).
"""

from collections import deque

from sim.memory import BusError
from .checker import ProtocolError
from .timing import OutputStall, validate_timing, wait_cycles


__all__ = ["PipelinedResponder"]


class PipelinedResponder:
    """Answers one pipelined master from ``memory``.

    Parameters
    ----------
    memory : sim.memory.Memory
    rng : random.Random
    latency : int
        Cycles from a request taken to its answer, at least 1 (R - 1).
    wait_states, bursts : float
        `tb.timing`'s model: the same probabilities draw extra answer delays per request
        (`wait_cycles`) and ``stall`` cycles (bursts of 0..MAX_STALL, coin flips).
    """

    def __init__(self, memory, rng, *, latency=1, wait_states=0.0, bursts=0.0):
        validate_timing(latency, wait_states, bursts=bursts)
        if latency < 1:
            raise ValueError(f"a pipelined memory answers at least 1 cycle after a request is "
                             f"taken, not {latency}")
        self.memory, self.rng = memory, rng
        self.latency, self.wait_states, self.bursts = latency, wait_states, bursts
        self._stall = OutputStall(rng, wait_states, bursts)
        self.queue = deque()        # (due cycle, data or None for err, access, tag)
        self.last_due = -1
        self.taken = 0

    @property
    def outstanding(self):
        return len(self.queue)

    def stall(self):
        """``stall`` for this cycle."""
        if not (self.wait_states or self.bursts):
            return False
        return not self._stall.step()

    def answer(self, cycle):
        """The answer due in ``cycle``: None, or (``ack``, read data, the request as the
        memory logged it (`sim.memory.Access`), its tag)."""
        if self.queue and self.queue[0][0] <= cycle:
            _, data, access, tag = self.queue.popleft()
            return (data is not None, data or 0, access, tag)
        return None

    def take(self, cycle, *, adr, we, sel, dat_w, lock, tag=None):
        """A request taken in ``cycle``: perform it now, answer it later (``tag`` comes back
        with the answer)."""
        try:
            data = self.memory.transfer(adr=adr, write=bool(we), sel=sel, data=dat_w,
                                        lock=bool(lock))
        except BusError:
            data = None
        wait = wait_cycles(self.rng, self.latency, self.wait_states, self.bursts)
        due = max(cycle + wait, self.last_due + 1)
        self.last_due = due
        self.queue.append((due, data, self.memory.log[-1], tag))
        self.taken += 1

    def check_cyc(self, cycle, cyc):
        """``cyc`` must stay high while an answer is outstanding."""
        if self.queue and not cyc:
            raise ProtocolError(f"cycle {cycle}: cyc fell with {len(self.queue)} answer(s) "
                                f"outstanding")

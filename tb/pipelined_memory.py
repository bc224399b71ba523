"""The Python side of the testbench top's pipelined memory (`tb.testbench_pipelined`), a
Wishbone B4 pipelined slave (docs/interface.md, "Memory port, pipelined"), for either
simulator backend: what each request gets, drawn when it is taken.

- A request is performed on a `sim.memory.Memory` in the cycle it is taken (that is where it
  takes effect, before anything later), and its answer, ``ack`` with the data read or ``err``
  (a `sim.memory.BusError`), comes at least ``latency`` cycles later (round trip R =
  ``latency`` + 1; a latency of 0 counts as 1: the port has no R = 1), plus wait states and
  bursts (`tb.timing.wait_cycles`), in the order taken and never two in one cycle: an answer
  ready before the one ahead of it waits for the cycle after.
- Each request is kept waiting with ``stall`` for a number of cycles drawn when the request
  before it is taken (the first one's at reset): coin flips with probability
  ``wait_states`` and bursts of 0..`tb.timing.MAX_STALL` cycles with probability ``bursts``,
  at most `MAX_STALL` in all, counted over the cycles the request is presented.
"""

from sim.memory import BusError
from .timing import validate_timing, wait_cycles


__all__ = ["PipelinedMemory"]


class PipelinedMemory:
    """The draws and the transfers of one pipelined memory.

    Parameters
    ----------
    memory : sim.memory.Memory
    rng : random.Random
    latency : int
        Cycles from a request taken to its answer (R - 1); 0 counts as 1.
    wait_states, bursts : float
        `tb.timing`'s model, for the answers' extra delays and the requests' stalls.
    """

    def __init__(self, memory, rng, *, latency=1, wait_states=0.0, bursts=0.0):
        validate_timing(latency, wait_states, bursts=bursts)
        self.memory, self.rng = memory, rng
        self.latency = max(1, latency)
        self.wait_states, self.bursts = wait_states, bursts
        self.last_due = -1          # the cycle of the last answer planned
        self.taken = 0

    def stall(self):
        """The cycles the next request is stalled before it is taken."""
        return wait_cycles(self.rng, 0, self.wait_states, self.bursts)

    def take(self, cycle, *, adr, we, sel, dat_w, lock):
        """A request taken in ``cycle``: perform it now; returns (read data, ``err``, the
        cycle of its answer)."""
        try:
            data = self.memory.transfer(adr=adr, write=bool(we), sel=sel,
                                        data=dat_w if we else 0, lock=bool(lock))
            err = 0
        except BusError:
            data, err = 0, 1
        due = max(cycle + wait_cycles(self.rng, self.latency, self.wait_states, self.bursts),
                  self.last_due + 1)
        self.last_due = due
        self.taken += 1
        return data, err, due

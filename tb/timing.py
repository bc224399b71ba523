"""Memory timing and output back-pressure, as both simulator backends apply them (plain
Python): the parameters, the wait cycles of a transfer, and ``ready`` of an output.

The stall model, one definition for both backends (the shared testbench `tb.testbench`, and the
pipelined memory of `tb.pipelined_memory`):

- **latency**: a fixed number of cycles from ``stb`` to ``ack``/``err``;
- **coin flips** (``wait_states`` on the bus, ``backpressure`` on an output): one more wait
  cycle, or ``ready`` low for this cycle, with that probability, drawn again each cycle;
- **bursts** (``bursts``): with that probability a transfer gets a burst of 0..`MAX_STALL`
  extra wait cycles, and an output not already stalled starts a burst of 0..`MAX_STALL`
  cycles with ``ready`` low, so a consumer or a memory is sometimes slow for longer than a
  whole request takes (the "previous notification still offered" path needs that);
- **the cap**: no output is held off for more than `MAX_STALL` cycles in a row and no transfer
  waits more than `MAX_STALL` cycles beyond ``latency``, whatever the dice say. The cap is the
  consumer's side of the contract the delivery bound of `tb.checker.DeliveryMonitor` relies
  on (a notification offered is taken within `MAX_STALL` + 1 cycles).

With ``bursts`` = 0 the random draws are exactly those of the coin flips alone, so runs made
before bursts existed are reproduced cycle for cycle.

The testbenches draw all of this per transaction, not per cycle (`tb.testbench`): a transfer's
wait when it starts (`wait_cycles`), an output's stall when its ``valid`` rises
(`OutputStall.stall_at`: the chain stepped over the cycles since its last offer, then up to
``ready``), and runs of idle cycles by coin flips (`coin_run`), so the simulator plays them
without waking Python every cycle.
"""


__all__ = ["MAX_STALL", "validate_cycles", "validate_timing", "wait_cycles", "ready", "coin_run",
           "TransferTimer", "OutputStall"]

#: The longest stall of the model, in cycles: a burst is 0..MAX_STALL cycles, and no output
#: (no transfer) is held off (kept waiting) for more than MAX_STALL cycles in a row.
MAX_STALL = 50


def validate_cycles(name, value):
    """Raise `ValueError` unless ``value`` (the parameter ``name``) is a number of cycles: a
    non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def validate_timing(latency=0, wait_states=0.0, backpressure=0.0, bursts=0.0):
    """Raise `ValueError` unless ``latency`` is a non-negative integer (cycles from ``stb`` to
    ``ack``/``err``) and ``wait_states``, ``backpressure`` and ``bursts`` are probabilities in
    [0, 1)."""
    validate_cycles("latency", latency)
    for name, p in (("wait_states", wait_states), ("backpressure", backpressure),
                    ("bursts", bursts)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), not {p!r}")


def wait_cycles(rng, latency, wait_states, bursts=0.0):
    """Cycles a new transfer waits before its answer: ``latency``, plus (probability
    ``bursts``) a burst of 0..`MAX_STALL` cycles, plus one more with probability
    ``wait_states``, drawn again after each extra cycle; at most `MAX_STALL` beyond
    ``latency``."""
    extra = 0
    if bursts and rng.random() < bursts:
        extra = rng.randint(0, MAX_STALL)
    while wait_states and extra < MAX_STALL and rng.random() < wait_states:
        extra += 1
    return latency + extra


def coin_run(rng, p, cap):
    """How many coin flips in a row come up with probability ``p`` before the first that does
    not, at most ``cap``: the idle cycles before an event drawn once a cycle with probability
    1 - ``p``, drawn at once."""
    n = 0
    while p and n < cap and rng.random() < p:
        n += 1
    return n


def ready(rng, backpressure):
    """An output's ``ready`` for one cycle by a coin flip alone: low with probability
    ``backpressure`` (no bursts, no cap; `OutputStall` is the full model)."""
    return not (backpressure and rng.random() < backpressure)


class OutputStall:
    """``ready`` of one output stream, cycle by cycle: bursts of 0..`MAX_STALL` cycles low
    (probability ``bursts`` of one starting in a cycle not already stalled), coin flips
    (probability ``backpressure``), and never more than `MAX_STALL` cycles low in a row."""

    def __init__(self, rng, backpressure=0.0, bursts=0.0):
        validate_timing(backpressure=backpressure, bursts=bursts)
        self.rng = rng
        self.backpressure = backpressure
        self.bursts = bursts
        self.burst = 0              # cycles of the current burst still to come
        self.low = 0                # cycles ready has been low in a row
        self.longest = 0            # the longest such run so far
        self.cycle = 0              # the cycle the next `step` is for (`stall_at`)

    def step(self):
        """``ready`` for the next cycle."""
        if self.burst:
            self.burst -= 1
            value = False
        elif self.bursts and self.rng.random() < self.bursts:
            self.burst = self.rng.randint(0, MAX_STALL)
            value = self.burst == 0
            self.burst = max(self.burst - 1, 0)
        else:
            value = ready(self.rng, self.backpressure)
        if not value and self.low >= MAX_STALL:
            value, self.burst = True, 0         # the cap: the consumer takes it now
        self.low = 0 if value else self.low + 1
        self.longest = max(self.longest, self.low)
        return value

    def stall_at(self, cycle):
        """Cycles ``ready`` stays low for an offer whose ``valid`` rises in ``cycle`` (cycles
        count up from 0 and never go back): the chain is stepped over the cycles since its
        last use, the consumer keeping its pace while nothing is offered, then until
        ``ready`` is high."""
        if not (self.backpressure or self.bursts):
            return 0
        for _ in range(cycle - self.cycle):
            self.step()
        stall = 0
        while not self.step():
            stall += 1
        self.cycle = cycle + stall + 1
        return stall


class TransferTimer:
    """When a memory answers a bus transfer: ``latency`` cycles after ``stb`` rose, plus
    random wait states and bursts (`wait_cycles`), counted while ``cyc`` and ``stb`` stay
    high."""

    def __init__(self, rng, latency=0, wait_states=0.0, bursts=0.0):
        validate_timing(latency, wait_states, bursts=bursts)
        self.rng = rng
        self.latency = latency
        self.wait_states = wait_states
        self.bursts = bursts
        self.wait = None            # cycles left before the answer, None: no transfer
        self.longest = 0            # the longest wait drawn so far

    @property
    def waiting(self):
        """A transfer was requested and not answered yet."""
        return self.wait is not None

    def step(self, requested, *, hold=False):
        """One cycle with ``cyc & stb`` = ``requested``; ``hold``: the memory is taken by
        another master this cycle (the count stands still). True: answer it in this cycle."""
        if not requested:
            self.wait = None
            return False
        if self.wait is None:
            self.wait = wait_cycles(self.rng, self.latency, self.wait_states, self.bursts)
            self.longest = max(self.longest, self.wait)
        if hold:
            return False
        if self.wait == 0:
            self.wait = None
            return True
        self.wait -= 1
        return False

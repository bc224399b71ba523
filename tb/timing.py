"""Memory timing and output back-pressure, as both simulator backends apply them (plain
Python): the parameters, the wait cycles of a transfer, and ``ready`` of an output."""


__all__ = ["validate_timing", "wait_cycles", "ready", "TransferTimer"]


def validate_timing(latency=0, wait_states=0.0, backpressure=0.0):
    """Raise `ValueError` unless ``latency`` is a non-negative integer (cycles from ``stb`` to
    ``ack``/``err``) and ``wait_states`` and ``backpressure`` are probabilities in [0, 1)."""
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise ValueError(f"latency must be a non-negative integer, not {latency!r}")
    for name, p in (("wait_states", wait_states), ("backpressure", backpressure)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), not {p!r}")


def wait_cycles(rng, latency, wait_states):
    """Cycles a new transfer waits before its answer: ``latency``, plus one more with
    probability ``wait_states``, drawn again after each extra cycle."""
    wait = latency
    while wait_states and rng.random() < wait_states:
        wait += 1
    return wait


def ready(rng, backpressure):
    """An output's ``ready`` for one cycle: low with probability ``backpressure``."""
    return not (backpressure and rng.random() < backpressure)


class TransferTimer:
    """When a memory answers a bus transfer: ``latency`` cycles after ``stb`` rose, plus
    random wait states (`wait_cycles`), counted while ``cyc`` and ``stb`` stay high."""

    def __init__(self, rng, latency=0, wait_states=0.0):
        validate_timing(latency, wait_states)
        self.rng = rng
        self.latency = latency
        self.wait_states = wait_states
        self.wait = None            # cycles left before the answer, None: no transfer

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
            self.wait = wait_cycles(self.rng, self.latency, self.wait_states)
        if hold:
            return False
        if self.wait == 0:
            self.wait = None
            return True
        self.wait -= 1
        return False

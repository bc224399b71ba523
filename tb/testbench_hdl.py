"""What the testbench top's helpers (`tb.testbench_top`, `tb.testbench_pipelined`) are built
from: the widths of the values Python loads, and the small HDL pieces every helper uses."""

from amaranth import Cat, Module, Signal, Value

from .timing import MAX_STALL


__all__ = ["CYCLE_BITS", "WAIT_BITS", "STALL_BITS", "DELAY_BITS", "HOLD_BITS",
           "AGENT_WAIT_BITS", "LOCK_ID_BITS", "COUNTER_BITS", "sub", "flag", "fields", "width",
           "Armed", "request_changed"]

CYCLE_BITS = 32
WAIT_BITS = 8               # memory wait cycles after a request (latency + stalls)
STALL_BITS = 6              # consumer (and pipelined request) stall cycles, 0..MAX_STALL
DELAY_BITS = 8              # idle cycles before an ICR write is offered
HOLD_BITS = 4               # cycles one agent operation owns the memory
AGENT_WAIT_BITS = 16        # eligible cycles before the agent's next operation
LOCK_ID_BITS = 16           # locked bus cycles are numbered modulo 2**16
COUNTER_BITS = 32
assert MAX_STALL < 2 ** STALL_BITS


def sub(m, name):
    """A new module, a submodule ``name`` of ``m``."""
    module = Module()
    m.submodules[name] = module
    return module


def flag(m, name, expr):
    """``expr`` as a signal driven in ``m``: evaluated there, where its inputs are, not in
    the module that reads it (simulators re-evaluate a module on any change of its inputs)."""
    signal = Signal(len(Value.cast(expr)), name=name)
    m.d.comb += signal.eq(expr)
    return signal


def fields(name, signal, layout):
    """Split the input ``signal`` into named slices: ``layout`` is [(field, width)], LSB
    first; returns {field: Value}."""
    out, offset = {}, 0
    for field, bits in layout:
        out[field] = signal[offset:offset + bits]
        offset += bits
    assert offset == len(signal), name
    return out


def width(layout):
    return sum(w for _, w in layout)


class Armed:
    """A value Python loads by flipping a toggle bit: ``armed`` in the cycle the toggle differs
    from the copy registered at the last clock edge."""

    def __init__(self, m, toggle, name):
        seen = Signal(name=f"{name}_seen")
        m.d.sync += seen.eq(toggle)
        self.armed = Signal(name=f"{name}_armed")
        m.d.comb += self.armed.eq(toggle != seen)


def request_changed(m, load, parts):
    """Whether any of ``parts`` (the values of a bus request) differs from its copy registered
    in the last cycle with ``load`` high. Part by part, not as one concatenation: a simulator
    rebuilds a concatenation bit by bit whenever a part changes."""
    diffs = []
    for k, part in enumerate(parts):
        copy = Signal(len(Value.cast(part)), name=f"request_q{k}")
        with m.If(load):
            m.d.sync += copy.eq(part)
        diffs.append(part != copy)
    return Cat(diffs).any()

"""The output digest: a 32-bit sum over every output the units produce in a run.

Each output payload (as its layout's bits) is folded to 32 bits by XOR of its 32-bit chunks
and rotated left by its stream's amount, so equal payloads on different streams differ; the
terms are added modulo 2**32. Addition commutes, so the digest does not depend on the order
in which the cores' outputs interleave, which timing decides. Both the gateware (`term`) and
the host's prediction (`term_of`) are defined here.
"""

from amaranth import Cat, Const
from amaranth.lib import data

from ..formats import (
    APIC_WRITE_QUALIFICATION_ICR, APICWriteExit, EXIT_REASON_APIC_WRITE, Notification,
)


__all__ = ["ROTATE", "term", "term_of", "exit_bits", "notify_bits"]

ROTATE = {"exit": 0, "notify": 8, "gp": 16, "self_ipi": 24}
_MASK = 0xFFFF_FFFF


def _fold(value, width):
    """XOR of the 32-bit chunks of a ``width``-bit Amaranth value."""
    value = Cat(value, Const(0, -width % 32))
    out = value[:32]
    for k in range(32, len(value), 32):
        out = out ^ value[k:k + 32]
    return out


def term(stream, payload):
    """The digest term (an Amaranth value, 32 bits) of an output ``payload`` on ``stream``."""
    bits = payload.as_value() if isinstance(payload, data.View) else payload
    folded = _fold(bits, len(bits))
    r = ROTATE[stream]
    return Cat(folded[32 - r:], folded[:32 - r]) if r else folded


def term_of(stream, bits):
    """The digest term of an output whose payload is the integer ``bits``."""
    folded = 0
    while bits:
        folded ^= bits & _MASK
        bits >>= 32
    r = ROTATE[stream]
    return ((folded << r) | (folded >> (32 - r))) & _MASK if r else folded


def exit_bits(cause, icr, reason=EXIT_REASON_APIC_WRITE,
              qualification=APIC_WRITE_QUALIFICATION_ICR):
    """The `APICWriteExit` payload bits of an exit (an APIC-write exit unless told)."""
    return data.Layout.cast(APICWriteExit).const({
        "reason": reason, "qualification": qualification, "cause": cause,
        "icr": icr}).as_bits()


def notify_bits(vector, dest):
    """The `Notification` payload bits."""
    return data.Layout.cast(Notification).const({"vector": vector, "dest": dest}).as_bits()

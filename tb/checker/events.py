"""The output events: a stream's raw bits as a payload, and the events a golden `Result`
makes a core offer (and back)."""

from dataclasses import dataclass

from hdl.formats import ExitCause, ICRWriteKind
from sim.golden import Outcome, Result
from ..codec import EXIT, NOTIFY


__all__ = ["Event", "decode_event", "expected_events", "result_from_events"]

_CAUSES = {cause.value: cause for cause in ExitCause}     # the enum's call is slow per offer


@dataclass(frozen=True)
class Event:
    """One output handshake: ``payload`` as `decode_event` gives it."""
    port: int
    stream: str
    payload: object
    valid_cycle: int     # first cycle ``valid`` was high for this payload
    taken_cycle: int     # cycle of the handshake


def decode_event(stream, bits):
    """The payload of ``stream`` from its raw bits: exit ``(reason, qualification, cause, icr)``
    (cause an `ExitCause`, or the raw int if no member has it), notify ``(vector, dest)``,
    self_ipi the vector, gp the 64-bit value."""
    if stream == "exit":
        f = EXIT.unpack(bits)
        return (f["reason"], f["qualification"], _CAUSES.get(f["cause"], f["cause"]), f["icr"])
    if stream == "notify":
        f = NOTIFY.unpack(bits)
        return (f["vector"], f["dest"])
    if stream in ("self_ipi", "gp"):
        return int(bits)
    raise ValueError(f"no output stream {stream!r}")


def expected_events(result):
    """[(stream, payload)] a golden `Result` makes the core offer (an exit's reason and
    qualification as the golden model gives them)."""
    if result.outcome is Outcome.EXIT:
        return [("exit", (result.reason, result.qualification, result.cause, result.icr))]
    if result.outcome is Outcome.GP:
        return [("gp", result.icr)]
    if result.outcome is Outcome.SELF_IPI:
        return [("self_ipi", result.vector)]
    if result.outcome is Outcome.POSTED and result.notify is not None:
        return [("notify", tuple(result.notify))]
    return []


def result_from_events(request, events):
    """A `sim.golden.Result` from the events (`Event` or (stream, payload)) the gateware gave
    for one request: the inverse of `expected_events`."""
    if not events:
        if request.kind == ICRWriteKind.XAPIC_ICR_HI:
            return Result(Outcome.STORED)
        return Result(Outcome.POSTED)               # posted, no notification needed
    event = events[0]
    stream, payload = (event.stream, event.payload) if isinstance(event, Event) else event
    if stream == "exit":
        reason, qualification, cause, icr = payload
        return Result(Outcome.EXIT, icr=icr, cause=cause, reason=reason,
                      qualification=qualification)
    if stream == "gp":
        return Result(Outcome.GP, icr=payload)
    if stream == "self_ipi":
        return Result(Outcome.SELF_IPI, vector=payload)
    return Result(Outcome.POSTED, notify=tuple(payload))

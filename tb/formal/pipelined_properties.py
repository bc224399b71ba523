"""The properties of the pipelined unit's formal checks, one function per check
(`PIPELINED_PROPERTIES`, keyed like `tb.formal.checks.PIPELINED_CHECKS`), against the
`tb.formal.pipelined_monitor.PipelinedMonitor` ``mon`` (docs/interface.md, "The pipelined
memory port"). The handshakes, the outcome and the notifications are the classic ones
(`tb.formal.properties`): they read only the monitor's dues and the unit's outputs."""

from .checks import completion_bounds
from .environment import past
from .properties import (
    COMMON_PROPERTIES, add_covers, assert_named as _assert, common_covers, notifications,
    outcome, request_rules, response_bound, transfer_is_spec,
)


__all__ = ["PIPELINED_PROPERTIES"]


def bus_protocol(m, dut, mon, options):
    bus = dut.bus
    p_stalled = past(m, bus.cyc & bus.stb & bus.stall, "stalled")
    # B4 pipelined: a stalled request stays on the bus until taken; only an err withdraws it.
    request_rules(m, bus, held=p_stalled & ~(mon.answer & bus.err), on_bus=bus.cyc & bus.stb)
    with m.If(mon.outstanding != 0):
        _assert(m, "cyc_held_while_answers_outstanding", bus.cyc)


def transfers(m, dut, mon, options):
    transfer_is_spec(m, dut.bus, mon.exp, when=mon.take, due=mon.in_path)


def issue_order(m, dut, mon, options):
    with m.If(mon.take):
        # Answered in an earlier cycle: the registered counts.
        _assert(m, "after_earlier_round_trips_answered", mon.answered >= mon.exp.needs)
        _assert(m, "after_previous_request_answered",
                mon.outstanding == mon.taken - mon.answered)


def no_issue_after_err(m, dut, mon, options):
    bus = dut.bus
    with m.If(bus.cyc & bus.stb):
        _assert(m, "none_after_err", ~mon.err & ~(mon.answer & bus.err))


def lock_window(m, dut, mon, options):
    bus = dut.bus
    with m.If(mon.window):
        _assert(m, "lock_held_in_window", bus.cyc & bus.lock)
    _assert(m, "lock_only_in_window", ~bus.lock | mon.window)


def completion(m, dut, mon, options):
    # The stream rule lets ``ready`` wait for ``valid``: ready again means a write offered
    # is taken.
    since = response_bound(m, dut, mon, options, ready=~dut.icr.valid | dut.icr.ready,
                           bounds=completion_bounds(options.latency, options.patience,
                                                    "pipelined"))
    if options.latency == 1:
        _pace(m, mon, since)


def _pace(m, mon, since):
    """Lemmas of the completion check at R = 2 (each answer the cycle after its request,
    nothing stalls), so that it closes by induction over a few cycles: one answer at most is
    outstanding, and due now; while a request has transfers on the bus, none has erred and
    each cycle since its acceptance went to one request taken or one round trip ended
    (``since`` = transfers taken + round trips before the next answer's)."""
    memory = mon.memory
    _assert(m, "pace_one_outstanding",
            (mon.outstanding == 0) | ((mon.outstanding == 1) & (memory.oldest_age >= 1)))
    with m.If(mon.on_bus):
        _assert(m, "pace_on_bus", ~mon.err & (since == mon.taken + mon.ans.trip))


def covers(m, dut, mon, options):
    bus = dut.bus
    found = common_covers(dut, mon, mon.answered == mon.n)
    found.update({
        "two_answers_outstanding": mon.outstanding == 2,
        "taken_while_answered": mon.take & mon.answer,
        "err_with_a_request_standing": mon.answer & bus.err & (mon.outstanding == 2),
    })
    add_covers(m, options, found)


#: Check name -> ``check(m, dut, monitor, options)``.
PIPELINED_PROPERTIES = {
    **COMMON_PROPERTIES,
    "bus_protocol": bus_protocol,
    "transfers": transfers,
    "issue_order": issue_order,
    "no_issue_after_err": no_issue_after_err,
    "lock_window": lock_window,
    "outcome": outcome,
    "notifications": notifications,
    "completion": completion,
    "covers": covers,
    "deep_covers": covers,
}

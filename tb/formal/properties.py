"""The properties of the formal checks, one function per check (`PROPERTIES`, keyed like
`tb.formal.checks.CHECKS`). Each asserts, in ``m``, what its check proves of the unit ``dut``
against the `tb.formal.monitor.Monitor` ``mon``; the assertion names are what a failure
report shows."""

from amaranth import Cat, Signal, Value
from amaranth.hdl import Assert, Cover

from hdl.formats import (
    APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause,
)

from .checks import completion_bounds, covers_of
from .environment import assume_patience, past


__all__ = ["PROPERTIES", "COMMON_PROPERTIES", "byte_mask", "handshake", "outcome",
           "notifications", "response_bound", "assert_named", "common_covers", "add_covers",
           "request_rules", "transfer_is_spec"]


def _assert(m, name, test):
    # The message names the sub-property in the RTLIL, for the failure report.
    m.d.comb += Assert(test, name)


assert_named = _assert


def byte_mask(sel):
    return Cat(sel[k].replicate(8) for k in range(8))


def handshake(stream_name):
    def check(m, dut, mon, options):
        out = getattr(dut, stream_name)
        p_valid = past(m, out.valid, "valid")
        p_ready = past(m, out.ready, "ready")
        p_payload = past(m, out.p, "payload")
        with m.If(p_valid & ~p_ready):
            _assert(m, "valid_held", out.valid)
            _assert(m, "payload_stable", Value.cast(out.p) == p_payload)
    return check


def request_rules(m, bus, *, held, on_bus):
    """The Wishbone rules of every request: stb and lock only inside cyc; while ``held`` (the
    previous cycle's request is not over) it stays on the bus (``on_bus``), unchanged."""
    p_adr, p_we = past(m, bus.adr, "adr"), past(m, bus.we, "we")
    p_sel, p_dat_w = past(m, bus.sel, "sel"), past(m, bus.dat_w, "dat_w")
    _assert(m, "stb_in_cyc", ~bus.stb | bus.cyc)
    _assert(m, "lock_in_cyc", ~bus.lock | bus.cyc)
    with m.If(held):
        _assert(m, "stb_held", on_bus)
        _assert(m, "request_stable", (bus.adr == p_adr) & (bus.we == p_we) &
                (bus.sel == p_sel) & (~bus.we | (bus.dat_w == p_dat_w)))


def transfer_is_spec(m, bus, exp, *, when, due):
    """When ``when`` (a transfer starts), one is ``due`` and it is the spec's ``exp``."""
    with m.If(when):
        _assert(m, "no_transfer_beyond_spec", due)
        mask = byte_mask(exp.sel)
        _assert(m, "transfer_is_spec",
                (bus.adr == exp.adr) & (bus.we == exp.we) & (bus.sel == exp.sel) &
                (bus.lock == exp.lock) &
                (~exp.we | ((bus.dat_w & mask) == (exp.data & mask))))


def bus_protocol(m, dut, mon, options):
    p_open = past(m, mon.active & ~mon.answer, "xfer_open")
    request_rules(m, dut.bus, held=p_open, on_bus=mon.active)


def transfers(m, dut, mon, options):
    transfer_is_spec(m, dut.bus, mon.exp, when=mon.active, due=mon.in_flight)


def locked_rmw(m, dut, mon, options):
    bus = dut.bus
    with m.If(mon.active & mon.in_flight & mon.exp.lock):
        _assert(m, "rmw_transfer_locked", bus.lock)
    with m.If(mon.in_flight & mon.locked & mon.exp.lock):
        _assert(m, "lock_held_between_transfers", bus.cyc & bus.lock)


def _exits(m, dut, mon):
    x, spec = dut.exit.p, mon.spec
    with m.If(dut.exit.valid):
        _assert(m, "exit_iff_spec", mon.exit_due & ~dut.gp.valid)
        with m.If(mon.err):
            _assert(m, "bus_error_exit",
                    (x.reason == EXIT_REASON_APIC_WRITE) &
                    (x.qualification == APIC_WRITE_QUALIFICATION_ICR) &
                    (x.cause == ExitCause.BUS_ERROR) & (x.icr == spec.image))
        with m.Else():
            _assert(m, "exit_is_spec",
                    (x.reason == spec.exit_reason) &
                    (x.qualification == spec.exit_qualification) &
                    (x.cause.as_value() == spec.exit_cause) & (x.icr == spec.exit_icr))
    with m.If(dut.gp.valid):
        _assert(m, "gp_iff_spec", mon.live & spec.gp & ~mon.err & (dut.gp.p == mon.data))


def outcome(m, dut, mon, options):
    _exits(m, dut, mon)
    sb = mon.sb
    with m.If(mon.accepted | ~dut.busy):
        _assert(m, "request_complete", mon.complete)
        _assert(m, "exit_offered", ~mon.exit_owed & ~mon.gp_owed)
    with m.If(dut.self_ipi.valid):
        _assert(m, "self_ipi_iff_spec", (sb.count != 0) & (dut.self_ipi.p == sb.head))
    waiting = mon.self_ipi_waiting
    _assert(m, "self_ipi_conservation", sb.count == dut.self_ipi.valid + waiting)
    with m.If(~dut.busy):
        _assert(m, "nothing_offered_when_idle",
                ~dut.exit.valid & ~dut.gp.valid & ~dut.notify.valid &
                ~dut.self_ipi.valid & (sb.count == 0))


def notifications(m, dut, mon, options):
    nb = mon.nb
    with m.If(dut.notify.valid):
        _assert(m, "notify_has_an_on_transition", nb.count != 0)
        _assert(m, "notify_payload", dut.notify.p.as_value() == nb.head)
    waiting = mon.notify_waiting
    _assert(m, "conservation", nb.count == dut.notify.valid + waiting)
    with m.If(~dut.busy):
        _assert(m, "nothing_pending_when_idle", nb.count == 0)


def completion(m, dut, mon, options):
    since = response_bound(m, dut, mon, options, ready=dut.icr.ready,
                           bounds=completion_bounds(options.latency, options.patience))
    if options.latency == 0:
        # A lemma (proven with the check), so that it closes by induction over a few cycles:
        # with no wait states the transfers go out back to back from the cycle after the
        # acceptance, so while transfers are due the cycles since it are those answered.
        with m.If(mon.in_flight):
            _assert(m, "pace_on_bus", since == mon.pos)


def response_bound(m, dut, mon, options, *, ready, bounds):
    """``ready`` (the unit takes a new write) from ``bounds[0]`` cycles after the latest
    acceptance, idle from ``bounds[1]`` (``options.bounds`` overrides ``bounds``). Returns
    the cycle count since the acceptance (0 in the cycle after it)."""
    assume_patience(m, dut, options.patience)
    ready_bound, idle_bound = options.bounds or bounds
    since = Signal(range(idle_bound + 2))
    with m.If(mon.accepted):
        m.d.sync += since.eq(0)
    with m.Elif(since <= idle_bound):
        m.d.sync += since.eq(since + 1)
    with m.If(mon.live & (since >= ready_bound)):
        _assert(m, "ready_again", ready)
    with m.If(mon.live & (since >= idle_bound)):
        _assert(m, "idle", ~dut.busy)
    return since


def common_covers(dut, mon, request_over):
    """The covers both units share, by name (``request_over``: the request's transfers are
    all answered)."""
    spec = mon.spec
    found = {
        "notify": dut.notify.valid,
        "second_notification_while_offered":
            mon.on_set & dut.notify.valid & ~dut.notify.ready,
        "suppressed_post": mon.live & spec.post & ~spec.notify & request_over & dut.icr.ready,
        "self_ipi": dut.self_ipi.valid,
        "gp": dut.gp.valid,
        "wrmsr_exit": dut.exit.valid & (dut.exit.p.reason == EXIT_REASON_WRMSR),
    }
    for cause in ExitCause:
        found[f"exit_{cause.name.lower()}"] = dut.exit.valid & (dut.exit.p.cause == cause)
    return found


def add_covers(m, options, found):
    """Cover the statements of ``found`` (name -> condition) that the cover check of
    ``options`` (``covers`` or ``deep_covers``) reaches."""
    for name in covers_of(options.bus, options.check):
        m.d.comb += Cover(found[name], name)


def covers(m, dut, mon, options):
    add_covers(m, options, common_covers(dut, mon, mon.pos == mon.n))


def invariants(m, dut, mon, options):
    """Nothing beyond the invariants themselves, asserted where they are stated
    (`tb.formal.invariants`, `tb.formal.pipelined_invariants`)."""


#: The checks both bus variants open their tables with (they read only the unit's outputs).
COMMON_PROPERTIES = {
    "invariants": invariants,
    **{f"handshake_{name}": handshake(name) for name in ("exit", "notify", "self_ipi", "gp")},
}

#: Check name -> ``check(m, dut, monitor, options)``.
PROPERTIES = {
    **COMMON_PROPERTIES,
    "bus_protocol": bus_protocol,
    "transfers": transfers,
    "locked_rmw": locked_rmw,
    "outcome": outcome,
    "notifications": notifications,
    "completion": completion,
    "covers": covers,
    "deep_covers": covers,
}

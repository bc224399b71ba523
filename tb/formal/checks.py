"""The formal checks, by name, of each bus variant: what each proves (tb/formal/README.md), and
the bounds of the response check."""

from dataclasses import dataclass

from hdl.formats import ExitCause

from .pipelined_spec import MAX_ROUND_TRIPS
from .spec import MAX_TRANSFERS


__all__ = ["Check", "CHECKS", "COVERS", "DEEP_COVERS", "PIPELINED_CHECKS", "PIPELINED_COVERS",
           "BUSES", "checks_for", "covers_for", "covers_of", "completion_bounds",
           "proven_together"]


@dataclass(frozen=True)
class Check:
    """One named property check (one SymbiYosys run)."""
    name: str
    mode: str           # sby mode: "bmc", "prove" or "cover"
    text: str


CHECKS = {c.name: c for c in [
    Check("invariants", "prove",
          "the auxiliary invariants: the monitor's request position determines every stage's "
          "state and registers; the scoreboards hold what the stages still owe"),
    Check("handshake_exit", "prove", "exit: valid held and payload stable until ready"),
    Check("handshake_notify", "prove", "notify: valid held and payload stable until ready"),
    Check("handshake_self_ipi", "prove", "self_ipi: valid held and payload stable until ready"),
    Check("handshake_gp", "prove", "gp: valid held and payload stable until ready"),
    Check("bus_protocol", "prove",
          "Wishbone master: stb/lock only in cyc; a transfer holds stb, adr, we, sel, dat_w "
          "until ack or err"),
    Check("transfers", "prove",
          "every bus transfer is the spec's next one (address, we, sel, write data, lock): "
          "vICR stores, read-back, entry, PIR/NotifyInfo/IRR read-modify-writes; none beyond "
          "the spec's path, none after err, none for #GP or the x2APIC intercept"),
    Check("locked_rmw", "prove",
          "a read-modify-write keeps cyc and lock high from its read to its write; the PIR and "
          "NotifyInfo RMWs share one locked bus cycle"),
    Check("outcome", "prove",
          "exit (reason, qualification, cause, image), #GP and self-IPI iff the spec says so; "
          "a request's transfers and its exit are complete before the next is accepted and "
          "before the unit idles; an idle unit offers and owes nothing"),
    Check("notifications", "prove",
          "conservation: ON transitions = notifications taken + pending; notify only for an "
          "ON transition, once, with the NV and decoded NDST its NotifyInfo read returned"),
    Check("completion", "prove",
          "an accepted request is done (unit ready again) within the bound; the unit idles "
          "after it"),
    Check("covers", "cover",
          "reachability: notification, each exit cause, #GP, suppressed post, self-IPI"),
    Check("deep_covers", "cover",
          "reachability of what takes two postings: a notification while the previous one "
          "is offered"),
]}

COVERS = (["notify", "second_notification_while_offered", "suppressed_post", "self_ipi",
           "gp", "wrmsr_exit"] +
          [f"exit_{cause.name.lower()}" for cause in ExitCause])


PIPELINED_CHECKS = {c.name: c for c in [
    CHECKS["invariants"],
    *(CHECKS[f"handshake_{name}"] for name in ("exit", "notify", "self_ipi", "gp")),
    Check("bus_protocol", "prove",
          "Wishbone B4 pipelined master: stb/lock only in cyc; a stalled request holds stb, "
          "adr, we, sel, dat_w until taken (or an err arrives); cyc held while an answer is "
          "outstanding"),
    Check("transfers", "prove",
          "every request taken is the spec's next one in the pipelined order (address, we, "
          "sel, write data, lock): vICR stores and VICR_HI read, entry, both PID reads then "
          "the writes, the VIRR read then its write; none beyond the spec's path, none for "
          "#GP or the x2APIC intercept"),
    Check("issue_order", "prove",
          "a request is taken only after every request of the earlier round trips of its ICR "
          "write is answered (entry after VICR_HI, PID reads after the entry, writes after "
          "both reads), and a write's first request only after every request of the previous "
          "write is answered"),
    Check("no_issue_after_err", "prove",
          "no request is presented (stb) in or after the cycle an err arrives, until the "
          "next write is accepted"),
    Check("lock_window", "prove",
          "lock (with cyc) high exactly from the cycle the first locked read is taken until "
          "the answer of the last locked write (after an err, the last answer)"),
    Check("outcome", "prove",
          "exit (reason, qualification, cause, image), #GP and self-IPI iff the spec says so, "
          "and only after every answer; a request's transfers and its exit are complete "
          "before the next is accepted and before the unit idles; an idle unit offers and "
          "owes nothing"),
    Check("notifications", "prove",
          "conservation: ON transitions = notifications taken + pending; notify only after "
          "the answer of the NotifyInfo write, once, with the NV and decoded NDST its read "
          "returned"),
    CHECKS["completion"],
    Check("covers", "cover",
          "reachability: as classic, and two answers outstanding, a request taken in the "
          "cycle an answer arrives, an err with a request of its round trip standing"),
    CHECKS["deep_covers"],
]}

PIPELINED_COVERS = COVERS + ["two_answers_outstanding", "taken_while_answered",
                             "err_with_a_request_standing"]

#: The covers of the ``deep_covers`` check: they take two postings, so the solver searches for
#: them only near their depth (the runner's ``skip``); ``covers`` has the others, which need
#: one request at most.
DEEP_COVERS = ["second_notification_while_offered"]

#: The bus variants the checks know (`hdl.IPIVirtualizer`'s ``bus``).
BUSES = ("classic", "pipelined")


def checks_for(bus):
    """The checks of the unit with memory port ``bus``, by name."""
    return {"classic": CHECKS, "pipelined": PIPELINED_CHECKS}[bus]


def proven_together(bus):
    """The proofs of the ``bus`` unit that may share one solver run: each asserts its
    properties and assumes nothing of its own (not the invariants check, which asserts the
    lemmas the others assume, nor completion, which assumes patient consumers), so a proof of
    all their properties at once is a proof of each."""
    return [name for name, check in checks_for(bus).items()
            if check.mode == "prove" and name not in ("invariants", "completion")]


def covers_for(bus):
    """Every cover of the unit with memory port ``bus`` (its cover checks together)."""
    return {"classic": COVERS, "pipelined": PIPELINED_COVERS}[bus]


def covers_of(bus, check):
    """The covers that the cover check ``check`` of the ``bus`` unit reaches."""
    if check == "deep_covers":
        return list(DEEP_COVERS)
    return [name for name in covers_for(bus) if name not in DEEP_COVERS]


def completion_bounds(latency, patience, bus="classic"):
    """Cycles after the acceptance cycle by which the unit must be ready again, and idle.

    Classic: a request makes at most `MAX_TRANSFERS` transfers of at most ``latency + 1``
    cycles each. Pipelined: at most `MAX_ROUND_TRIPS` round trips, each of back-to-back
    requests (one cycle each, nothing stalls) whose last answer comes at most ``latency``
    cycles after it is taken; the next round trip starts in the cycle after. Then an exit
    (or #GP) is offered in the next cycle, taken within ``patience``, and the unit is ready
    the cycle after; a notification or self-IPI is registered as the last transfer ends and
    taken within ``patience`` (a previous one is always taken by then). The count starts at
    0 in the cycle after acceptance.
    """
    if bus == "pipelined":
        ready = MAX_TRANSFERS + MAX_ROUND_TRIPS * latency + patience + 1
    else:
        ready = MAX_TRANSFERS * (latency + 1) + patience + 1
    return ready, ready + patience + 1

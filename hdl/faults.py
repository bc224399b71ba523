"""Test-only fault injection: named defects the gateware can be built with.

A unit built with ``faults=frozenset()`` (the default) is the real design. Each `Fault` is one
deliberate bug in the stage that owns it, built as a small mixin that overrides one named step
of that stage (`hdl.mutants`, one mutation table per stage), so that the formal properties and
the simulation checkers can be shown to catch it; which check catches which fault is listed
in ``tb/formal/README.md`` and shown by ``tests/test_mutants.py``,
``tests/test_cocotb_faults.py`` and ``tests/test_formal.py``. Never build a real design with a
fault.

The defects are chosen so that most of them pass a single request at zero wait states and
show only under back-pressure, a second request, or a particular ICR or memory value: the
kinds of bug that a one-request test misses.
"""

import enum


__all__ = ["Fault", "check_faults"]


class Fault(enum.Enum):
    """A deliberate defect (test-only). The value is the name used on the command line."""
    # -- PIDUpdate (PIR and NotifyInfo read-modify-writes, the notification) -----------------
    #: `PIDUpdate`: the PIR and NotifyInfo read-modify-writes run without ``lock``.
    DROP_LOCK = "drop_lock"
    #: `PIDUpdate`: ON is set (and a notification sent) even when SN = 1.
    ON_DESPITE_SN = "on_despite_sn"
    #: `PIDUpdate`: the PIR word is written (``1 << V % 64``) without being read first.
    PIR_WRITE_WITHOUT_READ = "pir_write_without_read"
    #: `PIDUpdate`: an ON set while the previous notification is still offered is never notified.
    DROP_NOTIFY_WHILE_OFFERED = "drop_notify_while_offered"
    #: `PIDUpdate`: an ON set while the previous notification is still offered overwrites it.
    NOTIFY_OVERWRITTEN = "notify_overwritten"
    #: `PIDUpdate`: every ON transition is notified twice.
    DOUBLE_NOTIFY = "double_notify"
    #: `PIDUpdate`: the notification vector is NotifyInfo bits 31:24 instead of NV (23:16).
    WRONG_NV_BYTE = "wrong_nv_byte"
    #: `PIDUpdate`: with an xAPIC host the destination is NDST bits 7:0 instead of 15:8.
    WRONG_NDST_BYTE = "wrong_ndst_byte"
    #: `PIDUpdate`: the PIR write sets bit (V + 1) % 64 instead of V % 64.
    PIR_BIT_OFF_BY_ONE = "pir_bit_off_by_one"
    #: `PIDUpdate`: the PIR read-modify-write addresses word (V / 32) % 4 instead of V / 64.
    WRONG_PIR_WORD = "wrong_pir_word"
    #: `PIDUpdate`: cyc and lock drop for one cycle between the PIR read and its write.
    LOCK_GAP = "lock_gap"
    #: `PIDUpdate`: drives ``lock`` while idle, without ``cyc`` (a Wishbone protocol error).
    LOCK_WITHOUT_CYC = "lock_without_cyc"
    # -- PIDLookup (bound check, entry) ----------------------------------------------------
    #: `PIDLookup`: T is not checked against the last PID-pointer index; the entry is read.
    SKIP_BOUND_CHECK = "skip_bound_check"
    #: `PIDLookup`: the bound check is off by one: T = last index + 1 counts as in range.
    BOUND_OFF_BY_ONE = "bound_off_by_one"
    #: `PIDLookup`: an unusable entry exits (ENTRY_INVALID) and is still posted into its PID.
    POST_DESPITE_EXIT = "post_despite_exit"
    #: `PIDLookup`: its exits are offered for one cycle only, withdrawn if not taken.
    EXIT_WITHDRAWN = "exit_withdrawn"
    # -- ICRInterceptor (eligibility, #GP) -------------------------------------------------
    #: `ICRInterceptor`: a level-triggered ICR value (bit 15 = 1) is eligible and posted.
    ELIGIBLE_LEVEL_TRIGGER = "eligible_level_trigger"
    #: `ICRInterceptor`: an ICR value with bit 12 set is eligible and posted.
    ELIGIBLE_BIT12 = "eligible_bit12"
    #: `ICRInterceptor`: a #GP is offered for one cycle only, withdrawn if not taken.
    GP_WITHDRAWN = "gp_withdrawn"
    # -- VIRRUpdate (self-IPI) -------------------------------------------------------------
    #: `VIRRUpdate`: the IRR read-modify-write hits the upper 8 bytes of the register's slot.
    IRR_WRONG_WORD = "irr_wrong_word"
    #: `VIRRUpdate`: a self-IPI finishing while the previous one is still offered overwrites it.
    SELF_IPI_OVERWRITTEN = "self_ipi_overwritten"
    # -- the pipelined unit (PipelinedSequencer, PipelinedIssuer) ---------------------------
    #: `PipelinedSequencer`: the PIR write goes out with the PID reads, before they are
    #: answered (written as the bit alone, the word unread).
    WRITE_BEFORE_READ_ANSWERED = "write_before_read_answered"
    #: `PipelinedIssuer`: ``lock`` falls once a round trip's last request is taken, with its
    #: answers (the last write's among them) still outstanding.
    LOCK_DROPPED_WITH_WRITE_OUTSTANDING = "lock_dropped_with_write_outstanding"
    #: `PipelinedIssuer`: in a locked round trip the answers land in the wrong slots (the PID
    #: reads' two answers in each other's).
    ANSWER_MISMATCHED = "answer_mismatched"
    #: `PipelinedIssuer`: a round trip ends when its last request is taken, not answered, so
    #: the next one (and the next request's first transfer) is issued early.
    NEXT_REQUEST_EARLY = "next_request_early"
    #: `PipelinedSequencer`: the notification is sent as soon as the PID reads say so, before
    #: the PID writes are even issued.
    NOTIFY_BEFORE_LAST_ANSWER = "notify_before_last_answer"


def check_faults(faults, allowed, owner):
    """Return ``faults`` as a frozenset of `Fault`, or raise.

    ``faults`` is a collection of `Fault` members or their names (``"drop_lock"``). A name
    that is not a `Fault`, or a fault that ``owner`` (a class name, for the message) does not
    implement, is a `ValueError`; anything but a collection is a `TypeError`.
    """
    if isinstance(faults, (str, bytes, Fault)) or \
            not isinstance(faults, (set, frozenset, list, tuple)):
        raise TypeError(f"faults must be a set of Fault members or names, not {faults!r}")
    result = set()
    for fault in faults:
        try:
            fault = Fault(fault)
        except ValueError:
            known = ", ".join(sorted(f.value for f in allowed))
            raise ValueError(f"faults of {owner} must be among {known}, not {fault!r}") from None
        if fault not in allowed:
            known = ", ".join(sorted(f.value for f in allowed))
            raise ValueError(f"faults of {owner} must be among {known}, not {fault.value!r}")
        result.add(fault)
    return frozenset(result)

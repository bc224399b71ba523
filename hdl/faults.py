"""Test-only fault injection: named defects the gateware can be built with.

A unit built with ``faults=frozenset()`` (the default) is the real design. Each `Fault` turns
on one deliberate bug in the stage that owns it, so that the formal properties
(``tb/formal``) and the simulation checkers can be shown to catch it. Never build a real
design with a fault.
"""

import enum


__all__ = ["Fault", "PID_LOOKUP_FAULTS", "PID_UPDATE_FAULTS", "check_faults"]


class Fault(enum.Enum):
    """A deliberate defect (test-only). The value is the name used on the command line."""
    #: `PIDUpdate`: the PIR and NotifyInfo read-modify-writes run without ``lock``.
    DROP_LOCK = "drop_lock"
    #: `PIDUpdate`: ON is set (and a notification sent) even when SN = 1.
    ON_DESPITE_SN = "on_despite_sn"
    #: `PIDUpdate`: the PIR word is written (``1 << V % 64``) without being read first.
    PIR_WRITE_WITHOUT_READ = "pir_write_without_read"
    #: `PIDLookup`: T is not checked against the last PID-pointer index; the entry is read.
    SKIP_BOUND_CHECK = "skip_bound_check"


PID_UPDATE_FAULTS = frozenset({Fault.DROP_LOCK, Fault.ON_DESPITE_SN,
                               Fault.PIR_WRITE_WITHOUT_READ})
PID_LOOKUP_FAULTS = frozenset({Fault.SKIP_BOUND_CHECK})


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

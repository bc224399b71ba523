"""Helpers for building `APICWriteExit` payloads."""

from .formats import APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE


def load_exit(m, exit_, *, cause, icr):
    """Load the ``exit_`` stream's payload register and raise ``valid`` (call in sync context)."""
    m.d.sync += [
        exit_.valid.eq(1),
        exit_.p.reason.eq(EXIT_REASON_APIC_WRITE),
        exit_.p.qualification.eq(APIC_WRITE_QUALIFICATION_ICR),
        exit_.p.cause.eq(cause),
        exit_.p.icr.eq(icr),
    ]

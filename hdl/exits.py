"""Helpers for building `APICWriteExit` payloads."""

from .formats import APIC_WRITE_QUALIFICATION_ICR, EXIT_REASON_APIC_WRITE


def load_exit(m, exit_, *, cause, icr, reason=EXIT_REASON_APIC_WRITE,
              qualification=APIC_WRITE_QUALIFICATION_ICR):
    """Load the ``exit_`` stream's payload register and raise ``valid`` (call in sync context).

    Every exit is an APIC-write exit (56, qualification 300H) but the x2APIC intercept
    (WRMSR, 32, qualification 0; docs/interface.md).
    """
    m.d.sync += [exit_.valid.eq(1), exit_.p.cause.eq(cause)]
    preload_exit(m, exit_, icr=icr, reason=reason, qualification=qualification)


def preload_exit(m, exit_, *, icr, reason=EXIT_REASON_APIC_WRITE,
                 qualification=APIC_WRITE_QUALIFICATION_ICR):
    """Load the payload of ``exit_`` but its cause, offering nothing: a stage that offers no
    output while it decides loads it ahead, so that only ``valid`` and the cause wait on the
    decision."""
    m.d.sync += [exit_.p.reason.eq(reason), exit_.p.qualification.eq(qualification),
                 exit_.p.icr.eq(icr)]

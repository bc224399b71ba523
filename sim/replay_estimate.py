"""What IPIv saves per IPI, in cycles of the round-trip model (`sim.round_trip`): for an IPI
the golden model classified, and for IPIs whose destination and vector the input does not
give (an exit-only trace, a ``perf kvm stat`` summary), with an assumed share virtualizable.

Per IPI, against KVM without IPIv (the sender's exit path, ``RoundTripModel.exit_path``; the
x2APIC fastpath when KVM would take it):

- posted by IPIv: the exit path minus the unit's posting (``ipiv_post``);
- not virtualized: an APIC-write exit either way, through KVM's full path; in x2APIC mode IPIv
  also pays the unit's vICR store first, so the saving is slightly negative.

An IPI of unknown destination is posted with probability ``virtualizable``, off the fastpath
if x2APIC (the seed's IPI: fixed, physical, unicast), and otherwise exits either way
(logical or shorthand: no fastpath).
"""

from dataclasses import dataclass

from .round_trip import posting_cost


__all__ = ["saving", "EstimatedIPIs", "estimated_saving", "check_fraction"]


def saving(model, mode, posted, *, fastpath):
    """Cycles IPIv saves on one IPI in ``mode`` that it posts (``posted``) or leaves to an
    exit; ``fastpath``: KVM without IPIv takes its x2APIC IPI fastpath."""
    off = sum(c for _, c in model.exit_path(mode, fastpath=fastpath))
    if posted:
        return off - model.ipiv_post(mode)
    on = sum(c for _, c in model.exit_path(mode, fastpath=False))
    if mode == "x2APIC":
        on += posting_cost(mode, model.latency, ipiv=False, bench=model.bench)
    return off - on


def check_fraction(virtualizable):
    if not 0 <= virtualizable <= 1:
        raise ValueError(f"the share assumed virtualizable must be from 0 to 1, "
                         f"not {virtualizable}")
    return virtualizable


@dataclass(frozen=True)
class EstimatedIPIs:
    """``count`` IPIs in ``mode`` known only by their exits: ``source`` says from what.
    ``extra_exits``: exits that go with them besides the ICR writes' own (xAPIC ICR2 writes
    without APICv)."""
    source: str
    mode: str
    count: int
    extra_exits: int = 0

    def virtualized(self, virtualizable):
        return self.count * virtualizable

    def exits_removed(self, virtualizable):
        return self.count * virtualizable + self.extra_exits


def estimated_saving(model, mode, virtualizable):
    """Expected cycles saved per IPI of unknown destination in ``mode``."""
    check_fraction(virtualizable)
    posted = saving(model, mode, True, fastpath=mode == "x2APIC")
    exits = saving(model, mode, False, fastpath=False)
    return virtualizable * posted + (1 - virtualizable) * exits

"""Mutants of `hdl.icr_interceptor.ICRInterceptor` (eligibility, the #GP handshake)."""

from ..faults import Fault


class _EligibleLevelTrigger:
    def ineligible_mask(self):
        return super().ineligible_mask() & ~(1 << 15)


class _EligibleBit12:
    def ineligible_mask(self):
        return super().ineligible_mask() & ~(1 << 12)


class _GPWithdrawn:
    """The #GP is cleared every cycle, and the stage moves on as if it had been taken."""
    def withdraw_outputs(self, m):
        super().withdraw_outputs(m)
        m.d.sync += self.gp.valid.eq(0)

    def output_taken(self):
        return super().output_taken() | self.gp.valid


MUTANTS = {
    Fault.ELIGIBLE_LEVEL_TRIGGER: _EligibleLevelTrigger,
    Fault.ELIGIBLE_BIT12: _EligibleBit12,
    Fault.GP_WITHDRAWN: _GPWithdrawn,
}

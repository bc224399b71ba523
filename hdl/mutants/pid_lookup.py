"""Mutants of `hdl.pid_lookup.PIDLookup` (the bound check, the entry decision, the exit
handshake)."""

from amaranth import C

from ..faults import Fault


class _SkipBoundCheck:
    def in_range(self, req):
        return C(1)


class _BoundOffByOne:
    def in_range(self, req):
        return req.dest <= self.cfg.last_pid_index + 1


class _PostDespiteExit:
    def entry_invalid(self, m, entry):
        super().entry_invalid(m, entry)
        self.hand_on(m, entry)


class _ExitWithdrawn:
    """The exit is cleared every cycle, and the stage moves on as if it had been taken."""
    def withdraw_outputs(self, m):
        super().withdraw_outputs(m)
        m.d.sync += self.exit.valid.eq(0)

    def output_taken(self):
        return super().output_taken() | self.exit.valid


MUTANTS = {
    Fault.SKIP_BOUND_CHECK: _SkipBoundCheck,
    Fault.BOUND_OFF_BY_ONE: _BoundOffByOne,
    Fault.POST_DESPITE_EXIT: _PostDespiteExit,
    Fault.EXIT_WITHDRAWN: _ExitWithdrawn,
}

"""Mutants of `hdl.virr_update.VIRRUpdate` (the self-IPI)."""

from ..faults import Fault


class _IRRWrongWord:
    def irr_address(self, req):
        return (req.irr_adr + 1)[:self._addr_width]         # 8 bytes on


class _SelfIPIOverwritten:
    def wait_to_offer(self, m):
        self.offer(m)


MUTANTS = {
    Fault.IRR_WRONG_WORD: _IRRWrongWord,
    Fault.SELF_IPI_OVERWRITTEN: _SelfIPIOverwritten,
}

"""Mutants of `hdl.virr_update.VIRRUpdate` (the self-IPI)."""

from amaranth import C, Cat

from ..faults import Fault
from ..formats import APIC_OFFSET_IRR


class _IRRWrongWord:
    def irr_address(self, req):
        return (self.cfg.vapic_page + APIC_OFFSET_IRR + 8 +
                Cat(C(0, 4), req.vector[5:8]))[3:3 + self._addr_width]


class _SelfIPIOverwritten:
    def wait_to_offer(self, m):
        self.offer(m)


MUTANTS = {
    Fault.IRR_WRONG_WORD: _IRRWrongWord,
    Fault.SELF_IPI_OVERWRITTEN: _SelfIPIOverwritten,
}

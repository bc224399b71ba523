"""The VM the FPGA board holds in its RAM, laid out by the models' own builder."""

from hdl.board.formats import VM_IDS, VM_STATES
from ..vm_layout import build_vm


__all__ = ["board_vm"]


def board_vm():
    """The board's VM (a `sim.vm_layout.VM`, memory image included), host in x2APIC mode."""
    return build_vm(dict(enumerate(VM_STATES)), max_vcpu_ids=VM_IDS)

"""The VM the board holds in on-chip memory, and the address window that maps it.

The gateware takes the VM as data: any object with ``pid_table``, ``pids``, ``vapic_pages``,
``memory`` (``read_word``, ``words``) and ``config(vcpu, x2apic=, ipiv=)``. The host side builds
it with the models' layout (`sim.board.vm.board_vm`): a PID-pointer table of `VM_IDS` entries,
a PID per vCPU and a virtual-APIC page per vCPU. The board's RAM holds only the words the unit
may touch (``docs/interface.md``, order of effects): the
table, the PIDs, and of each sender's virtual-APIC page the IRR (200H..27FH) and the ICR
(300H..31FH). Each of these regions is a power-of-two run of words at an aligned physical
address, so the window decodes an address with one comparison per region.
"""

from dataclasses import dataclass

from ..formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE, BUS_BYTES,
    PID_BYTES,
)
from .formats import MAX_CORES, VM_IDS, VM_VCPUS


__all__ = ["Region", "Window"]

_IRR_BYTES = 8 * APIC_REGISTER_STRIDE                                   # 8 registers
_ICR_BYTES = APIC_OFFSET_ICR_HI - APIC_OFFSET_ICR_LO + APIC_REGISTER_STRIDE  # ICR and ICR2


@dataclass(frozen=True)
class Region:
    """A run of VM words held in RAM.

    Attributes
    ----------
    name : str
    base : int
        Word address (byte address >> 3) of the first word, aligned to ``words``.
    words : int
        A power of two.
    offset : int
        RAM index of the first word.
    """
    name: str
    base: int
    words: int
    offset: int

    @property
    def bits(self):
        return self.words.bit_length() - 1

    def index(self, word):
        """The RAM index of word address ``word``, or None if it is outside this region."""
        if word >> self.bits == self.base >> self.bits:
            return self.offset + (word & (self.words - 1))
        return None


class Window:
    """The physical words of the board's VM that live in RAM, and where.

    Parameters
    ----------
    vm : VM layout
        The board's VM, memory image included (``sim.board.vm.board_vm()``).
    n_cores : int
        Senders: core ``i`` runs vCPU ``i``, whose virtual-APIC page is mapped.
    """

    def __init__(self, vm, n_cores):
        if isinstance(n_cores, bool) or not isinstance(n_cores, int) or \
                not 1 <= n_cores <= MAX_CORES:
            raise ValueError(f"n_cores must be an integer from 1 to {MAX_CORES}, "
                             f"not {n_cores!r}")
        pids = [vm.pids[v] for v in range(VM_VCPUS)]
        if pids != [pids[0] + PID_BYTES * v for v in range(VM_VCPUS)]:
            raise ValueError("the board VM's PIDs must be contiguous")
        wanted = [("pids", pids[0], PID_BYTES * VM_VCPUS),
                  ("table", vm.pid_table, BUS_BYTES * VM_IDS)]
        for core in range(n_cores):
            page = vm.vapic_pages[core]
            wanted += [(f"irr{core}", page + APIC_OFFSET_IRR, _IRR_BYTES),
                       (f"icr{core}", page + APIC_OFFSET_ICR_LO, _ICR_BYTES)]
        # Largest first, so every region is aligned in RAM to its own size.
        regions, offset = [], 0
        for name, addr, size in sorted(wanted, key=lambda w: -w[2]):
            words = size // BUS_BYTES
            if words & (words - 1) or (addr // BUS_BYTES) % words:
                raise ValueError(f"region {name} is not an aligned power of two")
            regions.append(Region(name, addr // BUS_BYTES, words, offset))
            offset += words
        self.vm = vm
        self.n_cores = n_cores
        self.regions = regions
        self.depth = offset
        self.by_name = {r.name: r for r in regions}

    def index(self, word):
        """The RAM index of physical word address ``word``, or None outside the window."""
        for region in self.regions:
            i = region.index(word)
            if i is not None:
                return i
        return None

    def pid_index(self, vcpu, word=0):
        """RAM index of word ``word`` (0..7) of vCPU ``vcpu``'s PID."""
        return self.by_name["pids"].offset + vcpu * PID_BYTES // BUS_BYTES + word

    def image(self, memory=None):
        """The RAM contents for ``memory`` (default: the VM's initial image), a list."""
        memory = self.vm.memory if memory is None else memory
        ram = [0] * self.depth
        for region in self.regions:
            for k in range(region.words):
                ram[region.offset + k] = memory.read_word(region.base + k)
        return ram

    def check_covers(self, memory):
        """Raise `ValueError` if ``memory`` has a non-zero word outside the window (the
        board could not hold that VM)."""
        outside = [w for w, v in memory.words.items() if v and self.index(w) is None]
        if outside:
            raise ValueError(f"words outside the window: {[hex(w << 3) for w in outside]}")

"""Guest-physical memory shared by the Python models and the gateware's bus models.

Memory is a sparse array of 64-bit little-endian words addressed by *word* address (byte
address >> 3), as on the unit's Wishbone port. ``transfer`` is one bus transfer: it counts,
logs and may end in an injected bus error; ``read``/``write`` are backdoor byte-address
accessors for setting up and inspecting memory (not logged, never failing).
"""

from typing import NamedTuple

from hdl.formats import BUS_BYTES, SEL_QWORD


__all__ = ["BusError", "Access", "Memory"]

_WORD_MASK = (1 << 64) - 1


class BusError(Exception):
    """A bus transfer ended with ``err``."""


class Access(NamedTuple):
    """One bus transfer as the memory saw it. A named tuple: the memory, the checker's shadow
    memory and the golden model each make one per transfer of a simulation, and a tuple is
    built in a third of the time of a frozen dataclass."""
    write: bool
    adr: int          # word address
    sel: int          # byte enables
    data: int         # written data (writes) or returned data (reads)
    lock: bool
    error: bool = False

    def __str__(self):
        kind = "W" if self.write else "R"
        flags = ("L" if self.lock else "-") + ("E" if self.error else "")
        return f"{kind} {self.adr << 3:#014x} sel={self.sel:02x} {self.data:#018x} {flags}"


def _sel_mask(sel):
    return sum(0xFF << (8 * k) for k in range(BUS_BYTES) if sel >> k & 1)


_SEL_MASKS = [_sel_mask(sel) for sel in range(1 << BUS_BYTES)]


def sel_mask(sel):
    """The 64-bit data mask selected by the byte enables ``sel``."""
    return _SEL_MASKS[sel]


class Memory:
    """Sparse word-addressed memory; unwritten words read as 0.

    Parameters
    ----------
    error_at : iterable of int
        Indices (0-based, counting every transfer) of transfers that end in ``err``.
    error_words : iterable of int
        Word addresses whose every transfer ends in ``err``.
    """

    def __init__(self, *, error_at=(), error_words=()):
        self.words = {}
        self.log = []
        self.error_at = set(error_at)
        self.error_words = set(error_words)

    def copy(self):
        other = Memory(error_at=self.error_at, error_words=self.error_words)
        other.words = dict(self.words)
        return other

    # -- bus side ----------------------------------------------------------------------------
    def transfer(self, *, adr, write, sel=SEL_QWORD, data=0, lock=False):
        """Perform one transfer; return the read data (0 for writes). Raises `BusError`."""
        index = len(self.log)
        if index in self.error_at or adr in self.error_words:
            self.log.append(Access(write, adr, sel, data if write else 0, lock, error=True))
            raise BusError(f"bus error on transfer {index} at word {adr:#x}")
        old = self.words.get(adr, 0)
        if write:
            mask = sel_mask(sel)
            self.words[adr] = (old & ~mask) | (data & mask)
            self.log.append(Access(True, adr, sel, data & mask, lock))
            return 0
        self.log.append(Access(False, adr, sel, old, lock))
        return old

    def written_words(self):
        """Word addresses written through the bus (not by the backdoor)."""
        return {a.adr for a in self.log if a.write and not a.error}

    # -- backdoor --------------------------------------------------------------------------
    def read_word(self, adr):
        return self.words.get(adr, 0)

    def write_word(self, adr, data, sel=SEL_QWORD):
        mask = sel_mask(sel)
        self.words[adr] = (self.words.get(adr, 0) & ~mask) | (data & mask)

    def read(self, addr, size=8):
        """Little-endian read of ``size`` bytes at byte address ``addr``."""
        offset = addr & 7
        if offset + size <= 8:      # within one word
            return (self.words.get(addr >> 3, 0) >> (8 * offset)) & ((1 << (8 * size)) - 1)
        value = 0
        for i in range(size):
            byte_addr = addr + i
            word = self.words.get(byte_addr >> 3, 0)
            value |= ((word >> (8 * (byte_addr & 7))) & 0xFF) << (8 * i)
        return value

    def write(self, addr, value, size=8):
        """Little-endian write of ``size`` bytes at byte address ``addr``."""
        if value < 0 or value >> (8 * size):
            raise ValueError(f"value {value:#x} does not fit in {size} bytes")
        offset = addr & 7
        if offset + size <= 8:      # within one word
            self.write_word(addr >> 3, value << (8 * offset), sel=((1 << size) - 1) << offset)
            return
        for i in range(size):
            byte_addr = addr + i
            self.write_word(byte_addr >> 3, ((value >> (8 * i)) & 0xFF) << (8 * (byte_addr & 7)),
                            sel=1 << (byte_addr & 7))

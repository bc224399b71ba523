"""Payloads passed between the unit's stages (not architectural; the stages' contract)."""

from amaranth.lib import data

from .formats import MAXPHYADDR_MAX
from .params import bus_addr_width


__all__ = ["PostRequest", "SelfIPIRequest", "PIDPostRequest"]


class PostRequest(data.Struct):
    """An IPIv-eligible ICR write, from the interceptor to the PID-table lookup."""
    vector: 8
    dest: 32        # virtual destination T
    icr: 64         # vICR image (for an exit further on)
    in_range: 1     # T <= the last PID-pointer index (compared as the write is decided)
    # Word address of T's PID-pointer entry (summed as T is known, so the read waits on no
    # adder); its low ``maxphyaddr - 3`` bits are the bus address.
    entry_adr: bus_addr_width(MAXPHYADDR_MAX)


class SelfIPIRequest(data.Struct):
    """A self-IPI to virtualize, from the interceptor to the VIRR update."""
    vector: 8
    icr: 64
    # Word address of V's IRR register (summed as the self-IPI is loaded, as `entry_adr`).
    irr_adr: bus_addr_width(MAXPHYADDR_MAX)


class PIDPostRequest(data.Struct):
    """A posting into one PID, from the PID-table lookup to the PID update unit."""
    vector: 8
    pid_line: 58    # PID address >> 6
    icr: 64

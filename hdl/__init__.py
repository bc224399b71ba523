"""Gateware of the IPI-virtualization model (Amaranth 0.5)."""

from .ipi_virtualizer import IPIVirtualizer
from .ipiv_system import IPIVSystem


__all__ = ["IPIVirtualizer", "IPIVSystem"]

"""Gateware of the IPI-virtualization model (Amaranth 0.5) and the architectural formats.

``from hdl import IPIVirtualizer, IPIVSystem`` gives the units (docs/interface.md). The
formats (`hdl.formats`, `hdl.vmx`, `hdl.params`) are what the software models in ``sim``
import; the units are loaded on first use, so importing a format never elaborates or even
loads a gateware unit.
"""

__all__ = ["IPIVirtualizer", "IPIVSystem"]


def __getattr__(name):
    if name == "IPIVirtualizer":
        from .ipi_virtualizer import IPIVirtualizer
        return IPIVirtualizer
    if name == "IPIVSystem":
        from .ipiv_system import IPIVSystem
        return IPIVSystem
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

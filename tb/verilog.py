"""Verilog of the gateware for HDL simulators, generated once per parameter set.

`generate` converts `hdl.IPIVirtualizer` or `hdl.IPIVSystem`, with either memory port, inside
the testbench top of `tb.testbench_top`, with Amaranth's built-in Yosys (in this process,
`tb.amaranth_verilog`) into ``build/verilog/``
and returns the file; a `Batch` puts several designs side by side in one file, one simulator
for all of them. A file is keyed by the design's parameters and a hash of the gateware's
sources, so an edit of ``hdl/`` makes a new file and an unchanged design
is converted only once, even by many pytest-xdist workers at the same time (an ``fcntl`` lock
per file, written to a temporary name and renamed).

The output is post-processed for Icarus Verilog 11 (``docs/toolchain.md``, gotchas 1 and 8):
each register's next value is computed in its clocked block instead of an ``always @*`` block
of its own (`tb.verilog_fold`: the same values, about half of Icarus' work); and Yosys
declares ``reg \\$auto$verilog_backend...$N = 0;`` and relies on that initialiser to run its
``always @*`` blocks at time 0; in ``-g2012`` mode Icarus 11 schedules no event for it, and
outputs stay X. Such declarations become a declaration plus ``initial X = 0;``.
"""

import fcntl
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import amaranth

from hdl import IPIVirtualizer, IPIVSystem
from hdl.faults import Fault
from hdl.mutants import FAULT_BUS
from hdl.params import check_bus, check_maxphyaddr
from . import amaranth_verilog
from .testbench_top import TestbenchTop
from .verilog_fold import fold_registers


__all__ = ["Design", "Batch", "generate", "fix_icarus_time0", "ROOT", "BUILD"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
HDL = ROOT / "hdl"

_TIME0 = re.compile(r"^(?P<indent>[ \t]*)reg (?P<name>\\\$auto\$verilog_backend\S*)\s*= *0;[ \t]*$",
                    re.MULTILINE)


def fix_icarus_time0(text):
    """Return ``text`` with every ``reg \\$auto$verilog_backend...$N = 0;`` split into a
    declaration and an ``initial`` assignment (Icarus 11 fires no event for the initialiser)."""
    return _TIME0.sub(lambda m: f"{m['indent']}reg {m['name']} ;\n"
                                f"{m['indent']}initial {m['name']} = 0;", text)


@dataclass(frozen=True)
class Design:
    """One parameter set of a gateware top.

    Parameters
    ----------
    n_cores : int or None
        None: one `IPIVirtualizer`; an int: `IPIVSystem(n_cores)`.
    maxphyaddr : int
    faults : tuple of str
        `hdl.faults.Fault` values (test-only defects), sorted; empty for the real design.
    bus : str
        The memory port, ``"classic"`` or ``"pipelined"`` (`hdl.params.check_bus`).
    """
    n_cores: int | None = None
    maxphyaddr: int = 52
    faults: tuple = ()
    bus: str = "classic"

    def __post_init__(self):
        check_maxphyaddr(self.maxphyaddr)
        check_bus(self.bus)
        if self.n_cores is not None and (isinstance(self.n_cores, bool) or
                                         not isinstance(self.n_cores, int) or self.n_cores < 1):
            raise ValueError(f"n_cores must be None or a positive integer, not {self.n_cores!r}")
        faults = tuple(sorted(Fault(f).value for f in self.faults))
        foreign = [f for f in faults if FAULT_BUS[Fault(f)] != self.bus]
        if foreign:
            raise ValueError(f"faults {foreign} are not faults of the {self.bus} unit")
        object.__setattr__(self, "faults", faults)

    @property
    def toplevel(self):
        """The Verilog module name of the top (also the stem of its file)."""
        base = "ipiv_unit" if self.n_cores is None else f"ipiv_system{self.n_cores}"
        name = f"{base}_m{self.maxphyaddr}" + ("_pipelined" if self.bus == "pipelined" else "")
        if self.faults:
            name += "_fault_" + "_".join(self.faults)
        return name

    def elaboratable(self):
        faults = frozenset(Fault(f) for f in self.faults)
        if self.n_cores is None:
            return IPIVirtualizer(maxphyaddr=self.maxphyaddr, bus=self.bus, faults=faults)
        return IPIVSystem(self.n_cores, maxphyaddr=self.maxphyaddr, bus=self.bus,
                          faults=faults)


@dataclass(frozen=True)
class Batch:
    """Several designs side by side in one simulator: a top module holding each design's
    testbench top as an instance (``dut.<name>``), its ports left for the testbench to drive,
    so that one simulator start and one compile serve them all (the checkers' fault tests:
    every mutant of a memory port).

    Parameters
    ----------
    designs : dict
        Instance name -> `Design`; all of one memory port and MAXPHYADDR.
    """
    designs: tuple      # ((instance name, Design), ...), in order

    def __post_init__(self):
        designs = tuple(dict(self.designs).items()) if isinstance(self.designs, dict) \
            else tuple(self.designs)
        if not designs:
            raise ValueError("a batch needs at least one design")
        if len({(d.bus, d.maxphyaddr, d.n_cores) for _, d in designs}) != 1:
            raise ValueError("the designs of a batch share one memory port, MAXPHYADDR and "
                             "core count")
        object.__setattr__(self, "designs", designs)

    @property
    def first(self):
        return self.designs[0][1]

    n_cores = property(lambda self: self.first.n_cores)
    maxphyaddr = property(lambda self: self.first.maxphyaddr)
    bus = property(lambda self: self.first.bus)
    faults = ()

    @property
    def toplevel(self):
        # named after the designs' fault-free top, and the batch's contents
        base = Design(n_cores=self.n_cores, maxphyaddr=self.maxphyaddr, bus=self.bus)
        digest = hashlib.sha256(repr(self.designs).encode()).hexdigest()[:8]
        return f"batch_{base.toplevel}_{digest}"


def _batch_text(batch):
    """The Verilog of ``batch``: each design's file, then the top instancing each."""
    parts = [generate(design).read_text() for _, design in batch.designs]
    top = [f"module {batch.toplevel}();"]
    top += [f"  {design.toplevel} {name} ();" for name, design in batch.designs]
    top.append("endmodule")
    return "\n".join(parts + ["\n".join(top), ""])


#: The testbench helpers compiled into the top (`tb.testbench_top`) and the code that writes
#: the Verilog, part of the hash too.
HELPERS = tuple(Path(__file__).resolve().parent / name for name in (
    "testbench_top.py", "testbench_pipelined.py", "testbench_hdl.py", "timing.py",
    "verilog.py", "verilog_fold.py", "amaranth_verilog.py", "wasm_yosys.py"))


def source_hash():
    """A short hash of everything the Verilog depends on: ``hdl/``, the testbench helpers and
    Amaranth's version."""
    h = hashlib.sha256(amaranth.__version__.encode())
    for path in sorted(HDL.rglob("*.py")):
        if "board" in path.relative_to(HDL).parts:
            continue        # FPGA tops are not part of the simulated design
        h.update(str(path.relative_to(HDL)).encode())
        h.update(path.read_bytes())
    for path in HELPERS:
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def generate(design=Design(), *, out_dir=None):
    """Return the path of the Verilog of ``design`` inside its testbench top
    (`tb.testbench_top.TestbenchTop`, module ``design.toplevel``, the gateware as instance
    ``dut``; Icarus time-0 fix applied), converting it first unless an up-to-date file
    exists; a `Batch`: its designs' files and the top around them. Safe to call from
    parallel processes."""
    out_dir = Path(out_dir) if out_dir is not None else BUILD / "verilog"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{design.toplevel}-{source_hash()}.v"
    if path.exists():
        return path
    with open(out_dir / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():       # another process may have made it while we waited
            if isinstance(design, Batch):
                text = _batch_text(design)
            else:
                top = TestbenchTop(design.elaboratable(), negedge_wake=True)
                text = fix_icarus_time0(fold_registers(amaranth_verilog.convert(
                    top, name=design.toplevel, ports=top.top_ports())))
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
    return path

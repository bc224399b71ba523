"""The ``build`` subcommand of ``ipiv`` (entry point `register_build`, registered through
`tb.commands.board`).

``ipiv build --board NAME [--bus PORT] [--seeds N] [--json] [--program] [-o DIR]`` builds the
board experiment; ``ipiv build --synth-only [--bus PORT|both] [--place] [--seeds N]
[--json]`` synthesizes the bare unit for iCE40 and ECP5 (both memory ports by default, with
their latency in ns); ``ipiv build --sweep [--seeds N] [--json]`` places and routes the unit
of each memory port on both families and prints the table of the README (`tb.unit_sweep`).
Every placed build names its worst path.
"""

import argparse
import json
import os
import re
import sys

from sim.commands.args import fail, integer, progress_bar


__all__ = ["BUSES", "LATENCY_R", "Progress", "fail_run", "register_build"]


#: The memory ports of the unit (`hdl.formats.BUS_KINDS`, not imported: the parser is built
#: without loading the gateware); ``--synth-only`` and ``--sweep`` build both by default.
BUSES = ("classic", "pipelined")
#: The memory round trip at which the unit's latency is stated in ns.
LATENCY_R = 5


class Progress:
    """The progress of a build or a run as a tqdm bar on stderr (`progress_bar`: shown on a
    terminal only): a build's stage is the bar's description (tqdm adds the elapsed time), a
    run's operations per core its count. Off a terminal a build still logs one line per stage,
    so a log shows where a build of minutes spent them."""

    def __init__(self, desc):
        self.bar = progress_bar(None, desc, " op",
                                bar_format="  {desc} [{elapsed}]" if desc == "building"
                                else None)
        self.last = None

    def stage(self, text):
        name = re.sub(r" \(\d+ s\)$", "", text)   # board_build appends "(N s)": tqdm shows it
        if self.bar.disable:
            if name != self.last:
                sys.stderr.write(f"  {text}\n")
                sys.stderr.flush()
        else:
            self.bar.set_description_str(name)
        self.last = name

    def count(self, done, total):
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def end(self):
        self.bar.close()


def fail_run(prog, error):
    """A run that failed: one line, status 1."""
    fail(prog, error, status=1)


def _build_buses(args, prog):
    """The memory ports to build: ``--bus``, else classic for a board and both for the unit
    alone."""
    if args.bus is None:
        return ("classic",) if args.board else BUSES
    if args.bus == "both":
        if args.board:
            fail_run(prog, "--bus both needs --synth-only or --sweep (a board is built with "
                           "one port)")
        return BUSES
    return (args.bus,)


def _check_build_args(args, prog):
    """The usage rules of ``ipiv build``: a one-line error each (status 1, as this command
    always had)."""
    if sum(map(bool, (args.board, args.synth_only, args.sweep))) != 1:
        fail_run(prog, "give either --board NAME or --synth-only (or --sweep)")
    if not args.board and (args.program or args.cores or args.digest is not None):
        fail_run(prog, "--program, --cores and --digest need --board")
    if args.place and not args.synth_only:
        fail_run(prog, "--place needs --synth-only (--sweep always places)")
    if args.synth_only and args.seeds is not None and not args.place:
        fail_run(prog, "--seeds needs a place and route: --place, --sweep or --board")


def cmd_build(args):
    from tb.board_build import BuildError, build_board, program_board
    prog = "ipiv build"
    _check_build_args(args, prog)
    buses = _build_buses(args, prog)
    seeds = args.seeds or 1
    progress = Progress("building")
    try:
        if not args.board:
            args.maxphyaddr = args.maxphyaddr or 52
            return _build_unit(args, buses, seeds, progress)
        overrides = {k: v for k, v in (("n_cores", args.cores), ("digest", args.digest),
                                       ("maxphyaddr", args.maxphyaddr), ("bus", args.bus))
                     if v is not None}
        out = args.out or f"build/{args.board}"
        result = build_board(args.board, build_dir=out, progress=progress.stage, seeds=seeds,
                             **overrides)
        progress.end()
        _print_board(result, args)
        if args.program:
            if not result.timing_met:
                fail_run(prog, f"timing not met: not programming the {args.board} "
                               f"(the bitstream is {result.bitstream})")
            program_board(args.board, result.build_dir)
            print(f"  programmed the {args.board} with {result.bitstream}")
    except (BuildError, OSError) as e:      # ProgrammerMissing included
        progress.end()
        fail_run(prog, e)
    return 0 if result.timing_met else 1


def _build_unit(args, buses, seeds, progress):
    """``--synth-only`` and ``--sweep``: the unit of each port in its own folder."""
    import tb.board_build
    from tb import unit_sweep
    out = args.out or ("build/sweep" if args.sweep else "build/unit")
    figures = {bus: tb.board_build.synth_unit(
        out_dir=os.path.join(out, bus), maxphyaddr=args.maxphyaddr, bus=bus,
        place=args.place or args.sweep, seeds=seeds, progress=progress.stage)
        for bus in buses}
    if args.sweep:
        progress.stage("benching the cycles at R = 5 (Amaranth simulation)")
        rows = unit_sweep.sweep_rows(figures, {bus: unit_sweep.bench_at(bus, LATENCY_R)
                                               for bus in buses})
        progress.end()
        sweep = {"unit": "IPIVirtualizer", "maxphyaddr": args.maxphyaddr, "seeds": seeds,
                 "round_trip": LATENCY_R, "rows": rows}
        print(json.dumps(sweep, indent=2) if args.json else unit_sweep.format_sweep(sweep))
        return 0
    progress.end()
    latency = {bus: unit_sweep.recorded_latency(bus, families, LATENCY_R)
               for bus, families in figures.items()}
    if args.json:
        print(json.dumps({"unit": "IPIVirtualizer", "maxphyaddr": args.maxphyaddr, "buses": {
            bus: {"families": {f: {k: v for k, v in r.items() if k != "cells"}
                               for f, r in families.items()},
                  "x2apic_ipi_latency": latency[bus]}
            for bus, families in figures.items()}}, indent=2))
    else:
        print(unit_sweep.format_unit(figures, latency, args.maxphyaddr))
    return 0


def _memory_text(core):
    """The board RAM's round trip: R = 2, one more for each register (request, answer)."""
    registered = [what for what, key in (("request", "pipeline"), ("answer", "register_answer"))
                  if core.get(key)]
    round_trip = 2 + len(registered)
    note = f" ({' and '.join(registered)} registered)" if registered else ""
    if core.get("bus", "classic") == "classic":
        return f"memory ack+{round_trip - 1}{note}"
    return f"pipelined memory port, R = {round_trip}{note}"


def _print_board(r, args):
    from tb.unit_sweep import path_text
    if args.json:
        data = r.as_json()
        data.pop("cells")
        print(json.dumps(data, indent=2))
        return
    core = r.core
    print(f"{r.board} ({r.device}): IPIVSystem({core['n_cores']}) at MAXPHYADDR "
          f"{core['maxphyaddr']}, digest {'on' if core['digest'] else 'off'}, "
          f"{_memory_text(core)}")
    print(f"  LUT {r.lut}, FF {r.ff}, RAM {r.ram}/{r.ram_total} blocks, logic cells "
          f"{r.lc}/{r.lc_total} ({100 * r.lc / max(r.lc_total, 1):.0f}%)")
    verdict = "met" if r.timing_met else "NOT MET"
    spread = (f" (median of {len(r.seeds)} seeds, {r.fmax_min_mhz:.2f} to "
              f"{r.fmax_max_mhz:.2f}; bitstream of seed {r.bitstream_seed})"
              if len(r.seeds) > 1 else "")
    print(f"  Fmax {r.fmax_mhz:.2f} MHz post-route{spread}, board clock {r.clock_mhz:g} MHz: "
          f"timing {verdict}")
    print(f"  worst path: {path_text(r.worst_path)}")
    print(f"  bitstream {r.bitstream} ({r.seconds:.0f} s; reports top.rpt, top.tim)")


def register_build(subparsers):
    """Add ``build`` to ``subparsers`` (from ``add_subparsers``)."""
    from hdl.board.formats import MAX_CORES
    from hdl.board.top import BOARDS
    from tb.placement import MAX_SEEDS

    p = subparsers.add_parser("build", help="build the FPGA board experiment (YoWASP tools)")
    p.add_argument("--board", choices=sorted(BOARDS), help="board to build for")
    p.add_argument("--synth-only", action="store_true",
                   help="synthesize the bare IPIVirtualizer for iCE40 and ECP5 instead")
    p.add_argument("--sweep", action="store_true",
                   help="place and route the bare unit of each memory port on ECP5 and iCE40 "
                        "and print LUT, FF, Fmax, ns per IPI and IPIs per microsecond")
    p.add_argument("--maxphyaddr", type=integer(36, 52), default=None,
                   help="the units' MAXPHYADDR (default: the board's; 52 for the unit alone)")
    p.add_argument("--cores", type=integer(1, MAX_CORES), default=None,
                   help=f"units on the board, 1..{MAX_CORES} (default: the board's, 2)")
    p.add_argument("--digest", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the output digest, a sum over every output payload "
                        "(default: on)")
    p.add_argument("--bus", choices=(*BUSES, "both"), default=None,
                   help="the units' memory port, Wishbone B4 classic or pipelined (default: "
                        "classic for --board; both, side by side with their latency in ns, "
                        "for --synth-only and --sweep)")
    p.add_argument("--place", action="store_true",
                   help="with --synth-only: also place and route the unit between registers "
                        "on both families for an Fmax and its worst path")
    p.add_argument("--seeds", type=integer(1, MAX_SEEDS), default=None,
                   help=f"place and route with nextpnr seeds 1..N (1..{MAX_SEEDS}, default 1) "
                        f"and give the median, minimum and maximum Fmax")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--program", action="store_true",
                   help="load the bitstream with the board's programmer")
    p.add_argument("-o", "--out",
                   help="build folder (default build/BOARD, build/unit or build/sweep)")
    p.set_defaults(func=cmd_build)

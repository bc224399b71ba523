"""The ``build`` and ``board`` subcommands of ``ipiv`` (entry points `register_build`,
`register_board`).

``ipiv build --board NAME [--bus PORT] [--json] [--program] [-o DIR]`` builds the board
experiment; ``ipiv build --synth-only [--bus PORT|both] [--json] [--place]`` synthesizes the
bare unit for iCE40 and ECP5 (both memory ports by default, with their latency in ns).
``ipiv board run (--port DEV | --sim) ...`` runs the experiment and prints every counter next
to the golden model's prediction; ``ipiv board pid`` dumps a PID; ``ipiv board info`` shows
what the board was built with.
"""

import argparse
import json
import os
import re
import sys

from sim.commands.args import fail, integer, number, progress_bar


__all__ = ["register_build", "register_board"]


#: The memory ports of the unit (`hdl.formats.BUS_KINDS`, not imported: the parser is built
#: without loading the gateware); ``--synth-only`` builds both by default.
BUSES = ("classic", "pipelined")
#: The memory round trip at which ``--synth-only`` states the unit's latency in ns.
LATENCY_R = 5

_int = integer
_seconds = number(0, 3600, strict=True)
_baud = integer(1200, 4_000_000)
#: a board runs millions of IPIs a second, but ``--sim`` simulates about a thousand cycles a
#: second: the bound keeps either within the run timeout's reach
MAX_BOARD_COUNT = 1_000_000


class _Mix(tuple):
    """The 16 mix slots of ``--mix``, with the weights as the user gave them (``text``)."""
    text = ""


def _mix(text):
    from sim.board.experiment import parse_mix
    try:
        mix = _Mix(parse_mix(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    mix.text = ",".join(part.strip() for part in text.split(",") if part.strip())
    return mix


def _modes(text):
    modes = {m.strip().lower() for m in text.split(",") if m.strip()}
    if not modes or modes - {"x2apic", "xapic"}:
        raise argparse.ArgumentTypeError(f"modes are x2apic and/or xapic, not {text!r}")
    return modes


class _Progress:
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


def _fail(prog, error):
    fail(prog, error, status=1)


# -- ipiv build ----------------------------------------------------------------------------

def _build_buses(args, prog):
    """The memory ports to build: ``--bus``, else classic for a board and both for
    ``--synth-only``."""
    if args.bus is None:
        return ("classic",) if args.board else BUSES
    if args.bus == "both":
        if args.board:
            _fail(prog, "--bus both needs --synth-only (a board is built with one port)")
        return BUSES
    return (args.bus,)


def cmd_build(args):
    from tb.board_build import BuildError, build_board, program_board, synth_unit
    prog = "ipiv build"
    if bool(args.board) == bool(args.synth_only):
        _fail(prog, "give either --board NAME or --synth-only")
    if args.synth_only and (args.program or args.cores or args.digest is not None):
        _fail(prog, "--program, --cores and --digest need --board")
    if args.board and args.place:
        _fail(prog, "--place needs --synth-only")
    buses = _build_buses(args, prog)
    overrides = {k: v for k, v in (("n_cores", args.cores), ("digest", args.digest),
                                   ("maxphyaddr", args.maxphyaddr), ("bus", args.bus))
                 if v is not None}
    progress = _Progress("building")
    try:
        if args.synth_only:
            out = args.out or "build/unit"
            args.maxphyaddr = args.maxphyaddr or 52
            figures = {bus: synth_unit(out_dir=os.path.join(out, bus),
                                       maxphyaddr=args.maxphyaddr, bus=bus, place=args.place,
                                       progress=progress.stage) for bus in buses}
            progress.end()
            _print_unit(figures, args)
            return 0
        out = args.out or f"build/{args.board}"
        result = build_board(args.board, build_dir=out, progress=progress.stage, **overrides)
        progress.end()
        _print_board(result, args)
        if args.program:
            if not result.timing_met:
                _fail(prog, f"timing not met: not programming the {args.board} "
                            f"(the bitstream is {result.bitstream})")
            program_board(args.board, result.build_dir)
            print(f"  programmed the {args.board} with {result.bitstream}")
    except (BuildError, OSError) as e:      # ProgrammerMissing included
        progress.end()
        _fail(prog, e)
    return 0 if result.timing_met else 1


def _memory_text(core):
    if core.get("bus", "classic") == "classic":
        return f"memory {'ack+2 (request registered)' if core['pipeline'] else 'ack+1'}"
    return (f"pipelined memory port, R = {3 if core['pipeline'] else 2}"
            f"{' (request registered)' if core['pipeline'] else ''}")


def _print_board(r, args):
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
    print(f"  Fmax {r.fmax_mhz:.2f} MHz post-route, board clock {r.clock_mhz:g} MHz: timing "
          f"{verdict}")
    print(f"  bitstream {r.bitstream} ({r.seconds:.0f} s; reports top.rpt, top.tim)")


def _unit_latency(bus, families):
    """The x2APIC IPI's latency at R = 5 on port ``bus``: cycles (the recorded RTL bench),
    and nanoseconds at the ECP5 out-of-context Fmax (None without ``--place``)."""
    from sim.round_trip import RTL_BENCHES
    cycles = RTL_BENCHES[bus]["notify x2APIC"]["cycles"][LATENCY_R - 1]
    fmax = families.get("ecp5", {}).get("fmax_mhz")
    return {"round_trip": LATENCY_R, "cycles": cycles,
            "ns": None if fmax is None else round(1000 * cycles / fmax, 1)}


def _print_unit(figures, args):
    latency = {bus: _unit_latency(bus, families) for bus, families in figures.items()}
    if args.json:
        print(json.dumps({"unit": "IPIVirtualizer", "maxphyaddr": args.maxphyaddr, "buses": {
            bus: {"families": {f: {k: v for k, v in r.items() if k != "cells"}
                               for f, r in families.items()},
                  "x2apic_ipi_latency": latency[bus]}
            for bus, families in figures.items()}}, indent=2))
        return
    print(f"IPIVirtualizer(maxphyaddr={args.maxphyaddr}), synthesized alone (Yosys):")
    for bus, families in figures.items():
        for family, r in families.items():
            line = f"  {bus:9s} {family:6s} LUT {r['lut']:5d}  FF {r['ff']:4d}  RAM {r['ram']}"
            if r.get("fmax_mhz") is not None:
                line += f"  Fmax {r['fmax_mhz']:.2f} MHz (out of context)"
            print(line)
    print(f"x2APIC IPI to notify.valid at memory round trip R = {LATENCY_R}:")
    for bus, lat in latency.items():
        fmax = figures[bus].get("ecp5", {}).get("fmax_mhz")
        ns = (f" = {lat['ns']:.1f} ns at the ECP5 Fmax {fmax:.2f} MHz" if lat["ns"] is not None
              else " (ns: needs --place for an Fmax)")
        print(f"  {bus:9s} {lat['cycles']:3d} cycles{ns}")
    timed = [lat["ns"] for lat in latency.values() if lat["ns"] is not None]
    if len(timed) == 2:
        print(f"  pipelined / classic: {timed[1] / timed[0]:.2f} of the time")


# -- ipiv board ----------------------------------------------------------------------------

def _transport(args):
    if args.sim:
        from hdl.board.top import BOARDS
        from tb.board_sim import SimulatedBoard
        core = BOARDS[args.board].core
        return SimulatedBoard(**core, bus=args.bus or "classic")
    from sim.board.transport import SerialTransport
    return SerialTransport(args.port, args.baud or 115_200)


def _with_board(args, body):
    from sim.board.protocol import ProtocolError
    from sim.board.transport import TransportError
    prog = f"ipiv board {args.action}"
    if not args.sim and not args.port:
        fail(prog, "give --port DEVICE (the board's USB-UART) or --sim")
    if args.sim and args.baud is not None:
        fail(prog, "--baud is for a board on --port, not --sim")
    if args.port and args.bus is not None:
        fail(prog, "--bus is for --sim (a board on --port says its memory port itself)")
    try:
        with _transport(args) as transport:
            return body(transport)
    except (TransportError, ProtocolError, ValueError) as e:
        _fail(prog, e)


def _port_text(info):
    """The board's memory port, when it is not the classic one (whose lines stay as they
    were)."""
    return "" if info.bus == "classic" else f", {info.bus} memory port"


def cmd_board_run(args):
    from hdl.board.formats import Counter
    from sim.board.experiment import RunParams, mix_from_weights, DEFAULT_WEIGHTS, predict
    from sim.board.protocol import BoardClient
    try:
        params = RunParams(seed=args.seed, count=args.count, epoch=args.epoch,
                           x2apic="x2apic" in args.modes, xapic="xapic" in args.modes,
                           mix=args.mix or mix_from_weights(DEFAULT_WEIGHTS))
    except ValueError as e:
        _fail("ipiv board run", e)

    def body(transport):
        client = BoardClient(transport, timeout=args.timeout)
        info = client.ident()
        progress = _Progress("running, operations per core")
        if not args.json:
            print(f"board: IPIVSystem({info.n_cores}), MAXPHYADDR {info.maxphyaddr}, RAM "
                  f"{info.depth} words, digest {'on' if info.digest else 'off'}"
                  f"{_port_text(info)}{' (simulated)' if args.sim else ''}")
            mix = params.mix_text()
            if args.mix is not None and args.mix.text != mix:
                # the weights are scaled to the board's 16 mix slots: say so
                mix = f"{args.mix.text} (as 16 slots: {mix})"
            print(f"run: seed {params.seed}, {params.count} IPIs per core, epoch "
                  f"{params.epoch}, modes {'+'.join(sorted(args.modes))}, mix {mix}",
                  flush=True)
        counters, status = client.run(params, timeout=args.run_timeout, progress=progress.count)
        progress.end()
        ram = client.memory(info.depth) if args.memory else None
        return info, counters, status, ram

    info, counters, status, ram = _with_board(args, body)
    gold = predict(params, n_cores=info.n_cores, maxphyaddr=info.maxphyaddr,
                   digest=info.digest, bus=info.bus)
    rows = []
    for c in Counter:
        want = gold.counters[c]
        rows.append((c, counters[c], want, want is None or want == counters[c]))
    ram_diff = None
    if ram is not None:
        ram_diff = [i for i, (a, b) in enumerate(zip(ram, gold.ram())) if a != b]
    agree = all(ok for *_, ok in rows) and not ram_diff and not status.fault
    if args.json:
        print(json.dumps({
            "params": {"seed": params.seed, "count": params.count, "epoch": params.epoch,
                       "modes": sorted(args.modes), "mix": params.mix_text(),
                       "mix_given": args.mix.text if args.mix is not None else None},
            "board": {"n_cores": info.n_cores, "maxphyaddr": info.maxphyaddr,
                      "digest": info.digest, "bus": info.bus, "fault": status.fault},
            "counters": {c.name.lower(): {"board": b, "golden": g} for c, b, g, _ in rows},
            "memory_equal": None if ram is None else not ram_diff,
            "agree": agree}, indent=2))
        return 0 if agree else 1
    print(f"  {'counter':22s} {'board':>12s} {'golden':>12s}")
    for c, board, want, ok in rows:
        mark = "" if want is None else ("  ok" if ok else "  MISMATCH")
        shown = "-" if want is None else str(want)
        print(f"  {c.name.lower():22s} {board:12d} {shown:>12s}{mark}")
    writes = counters[Counter.ICR_WRITES]
    if writes:
        print(f"  {counters[Counter.CYCLES] / writes:.2f} cycles per ICR write "
              f"({info.n_cores} cores sharing one memory port)")
    if ram is not None:
        print(f"  memory image ({len(ram)} words): " +
              ("equal" if not ram_diff else f"differs at RAM words {ram_diff[:8]}"))
    if status.fault:
        print("  FAULT: the units accessed memory outside the VM window")
    print("result: the board agrees with the golden model" if agree else
          "result: MISMATCH between the board and the golden model")
    return 0 if agree else 1


def cmd_board_pid(args):
    from sim.board.protocol import BoardClient

    def body(transport):
        return BoardClient(transport, timeout=args.timeout).pid(args.vcpu)
    words = _with_board(args, body)
    from hdl.formats import NotifyInfo
    pir = sum(w << (64 * k) for k, w in enumerate(words[:4]))
    info = NotifyInfo.from_bits(words[4])
    vectors = [v for v in range(256) if pir >> v & 1]
    if args.json:
        print(json.dumps({"vcpu": args.vcpu, "words": words, "pir_vectors": vectors,
                          "on": int(info.on), "sn": int(info.sn), "nv": int(info.nv),
                          "ndst": int(info.ndst)}, indent=2))
        return 0
    print(f"PID of vCPU {args.vcpu}:")
    for k, w in enumerate(words):
        print(f"  +{8 * k:02x}: {w:#018x}")
    print(f"  PIR vectors: {', '.join(f'{v:#04x}' for v in vectors) or 'none'}")
    print(f"  ON {info.on}, SN {info.sn}, NV {info.nv:#04x}, NDST {info.ndst:#x}")
    return 0


def cmd_board_info(args):
    from sim.board.protocol import BoardClient

    def body(transport):
        client = BoardClient(transport, timeout=args.timeout)
        return client.ident(), client.status()
    info, status = _with_board(args, body)
    if args.json:
        print(json.dumps({"protocol": info.version, "n_cores": info.n_cores,
                          "maxphyaddr": info.maxphyaddr, "depth": info.depth,
                          "digest": bool(info.digest), "bus": info.bus,
                          "running": bool(status.running),
                          "done": bool(status.done), "fault": bool(status.fault),
                          "progress": status.progress}, indent=2))
        return 0
    print(f"IPIv board, protocol {info.version}: IPIVSystem({info.n_cores}), MAXPHYADDR "
          f"{info.maxphyaddr}, RAM {info.depth} words, digest {'on' if info.digest else 'off'}"
          f"{_port_text(info)}")
    print(f"  running {status.running}, last run done {status.done}, fault {status.fault}, "
          f"core 0 issued {status.progress}")
    return 0


def register_build(subparsers):
    """Add ``build`` to ``subparsers`` (from ``add_subparsers``)."""
    from hdl.board.formats import MAX_CORES
    from hdl.board.top import BOARDS

    p = subparsers.add_parser("build", help="build the FPGA board experiment (YoWASP tools)")
    p.add_argument("--board", choices=sorted(BOARDS), help="board to build for")
    p.add_argument("--synth-only", action="store_true",
                   help="synthesize the bare IPIVirtualizer for iCE40 and ECP5 instead")
    p.add_argument("--maxphyaddr", type=_int(36, 52), default=None,
                   help="the units' MAXPHYADDR (default: the board's; 52 with --synth-only)")
    p.add_argument("--cores", type=_int(1, MAX_CORES), default=None,
                   help=f"units on the board, 1..{MAX_CORES} (default: the board's, 2)")
    p.add_argument("--digest", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the output digest (default: on for ulx3s-85f; off for "
                        "icebreaker, where it does not fit with 2 cores)")
    p.add_argument("--bus", choices=(*BUSES, "both"), default=None,
                   help="the units' memory port, Wishbone B4 classic or pipelined (default: "
                        "classic for --board; both, side by side with their latency in ns, "
                        "for --synth-only)")
    p.add_argument("--place", action="store_true",
                   help="with --synth-only: also place and route the unit out of context on "
                        "ECP5 for an Fmax (iCE40 nextpnr has no out-of-context mode)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--program", action="store_true",
                   help="load the bitstream with the board's programmer")
    p.add_argument("-o", "--out", help="build folder (default build/BOARD or build/unit)")
    p.set_defaults(func=cmd_build)


def register_board(subparsers):
    """Add ``board`` to ``subparsers`` (from ``add_subparsers``)."""
    from hdl.board.top import BOARDS

    p = subparsers.add_parser("board", help="run the IPI experiment on a board over its UART")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    def link(q):
        where = q.add_mutually_exclusive_group()
        where.add_argument("--port", help="the board's serial device (e.g. /dev/ttyUSB1)")
        where.add_argument("--sim", action="store_true",
                           help="talk to the board top simulated in Amaranth instead")
        q.add_argument("--board", choices=sorted(BOARDS), default="icebreaker",
                       help="with --sim: whose build parameters to simulate "
                            "(default icebreaker)")
        q.add_argument("--bus", choices=BUSES, default=None,
                       help="with --sim: the units' memory port to simulate (default "
                            "classic)")
        q.add_argument("--baud", type=_baud, default=None,
                       help="with --port: 1200..4000000 (default 115200)")
        q.add_argument("--timeout", type=_seconds, default=2.0,
                       help="seconds to wait for a reply (default 2)")
        q.add_argument("--json", action="store_true", help="print JSON")

    q = actions.add_parser("run", help="run N operations per core, compare with the golden "
                                       "model")
    link(q)
    q.add_argument("--seed", type=_int(0, 0xFFFF_FFFF), default=1, help="default 1")
    q.add_argument("-n", "--count", type=_int(1, MAX_BOARD_COUNT), default=64,
                   help=f"IPIs (stimulus operations) per core, 1..{MAX_BOARD_COUNT} "
                        f"(default 64)")
    q.add_argument("--epoch", type=_int(0, 0xFFFF), default=8,
                   help="operations between notification deliveries (0: none; default 8)")
    q.add_argument("--mix", type=_mix, default=None,
                   help="category weights, e.g. unicast=6,self-ipi=2,senduipi=1 (default: "
                        "every category but garbage)")
    q.add_argument("--modes", type=_modes, default={"x2apic", "xapic"},
                   help="guest APIC modes: x2apic,xapic (default both)")
    q.add_argument("--memory", action="store_true",
                   help="also read the whole VM memory back and compare it")
    q.add_argument("--run-timeout", type=_seconds, default=60.0,
                   help="seconds the run may take (default 60)")
    q.set_defaults(func=cmd_board_run)

    q = actions.add_parser("pid", help="dump a vCPU's posted-interrupt descriptor")
    link(q)
    q.add_argument("vcpu", type=_int(0, 3), help="vCPU 0..3")
    q.set_defaults(func=cmd_board_pid)

    q = actions.add_parser("info", help="what the board was built with, and its status")
    link(q)
    q.set_defaults(func=cmd_board_info)

"""The ``board`` subcommand of ``ipiv`` (entry point `register_board`), and the entry point
of ``build`` (`register_build`, from `tb.commands.build`).

``ipiv board run (--port DEV | --sim) ...`` runs the experiment and prints every counter next
to the golden model's prediction; ``ipiv board pid`` dumps a PID; ``ipiv board info`` shows
what the board was built with.
"""

import argparse
import json

from sim.commands.args import fail, integer, number

from .build import BUSES, Progress, fail_run, register_build


__all__ = ["register_build", "register_board"]


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
        fail_run(prog, e)


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
        fail_run("ipiv board run", e)

    def body(transport):
        client = BoardClient(transport, timeout=args.timeout)
        info = client.ident()
        progress = Progress("running, operations per core")
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

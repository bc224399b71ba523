"""``ipiv sim`` (the main job: a scenario on Amaranth's simulator, with waves and timing
diagrams) and ``ipiv bench`` (latency and throughput in cycles)."""

import json

from sim.commands.args import check_out_dir, fail, integer, progress_bar


__all__ = ["register_sim", "register_bench", "MAX_COUNT", "MAX_LATENCY", "MAX_TARGETS"]

#: Bounds that keep a run within minutes (Amaranth's simulator runs a few thousand cycles a
#: second; a virtualized IPI takes 6 transfers of latency + 1 cycles each).
MAX_COUNT = 10_000
MAX_LATENCY = 64
MIN_TARGETS, MAX_TARGETS = 4, 1024       # the throughput runs time targets - 3 IPIs


def _bounded(low, high, what):
    check = integer(low, high)

    def parse(text):
        try:
            return check(text)
        except Exception as e:
            raise type(e)(f"{e} ({what})") from None
    return parse


def register_sim(subparsers):
    """Add ``sim`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("sim", help="run a scenario on Amaranth's simulator, write waves")
    p.add_argument("scenario", nargs="?", default="mixed", help="scenario name (default: mixed)")
    p.add_argument("-n", "--count", type=_bounded(1, MAX_COUNT, "IPIs of one run"), default=40,
                   help=f"number of IPIs, 1..{MAX_COUNT} (default 40)")
    p.add_argument("--seed", type=integer(0, 0xFFFF_FFFF), default=1,
                   help="random seed (default 1)")
    p.add_argument("--latency", type=_bounded(0, MAX_LATENCY, "memory ack delay in cycles"),
                   default=1, help=f"memory ack delay after stb, 0..{MAX_LATENCY} cycles "
                                   f"(default 1)")
    p.add_argument("-o", "--out", default="build", help="output folder (default build/)")
    p.add_argument("--no-waves", action="store_true", help="do not write .vcd/.gtkw")
    p.add_argument("--timing-diagram", metavar="DIR",
                   help="also write a cycle-exact WaveDrom diagram (JSON and SVG) of one "
                        "request of each outcome into DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(func=run_sim)
    return p


def run_sim(args):
    from sim.scenarios import SCENARIOS
    prog = "ipiv sim"
    if args.list:
        if args.json:
            print(json.dumps({name: text for name, (text, _) in SCENARIOS.items()}, indent=2))
        else:
            for name, (text, _) in SCENARIOS.items():
                print(f"{name:16s} {text}")
        return 0
    if args.scenario not in SCENARIOS:
        fail(prog, f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})")
    # Every output path is checked before the simulation starts.
    if not args.no_waves:
        check_out_dir(prog, args.out)
    if args.timing_diagram:
        check_out_dir(prog, args.timing_diagram)
    from tb.runs import format_summary, run_scenario
    if not args.json:
        print(f"scenario {args.scenario}: {SCENARIOS[args.scenario][0]}")
        print(f"  {args.count} IPIs, seed {args.seed}, memory ack {args.latency} cycle(s) after "
              f"stb, Amaranth simulator", flush=True)
    with progress_bar(None, "simulating", " ICR writes") as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)
        summary, vcd, gtkw = run_scenario(
            args.scenario, count=args.count, seed=args.seed, out_dir=args.out,
            latency=args.latency, waves=not args.no_waves, progress=progress)
    diagrams = []
    if args.timing_diagram:
        from tb.waves import write_timing_diagrams
        with progress_bar(None, "timing diagrams", " diagrams") as bar:
            diagrams = write_timing_diagrams(args.timing_diagram, latency=args.latency,
                                             progress=lambda name: bar.update())
    if args.json:
        print(json.dumps({"scenario": args.scenario, "count": args.count, "seed": args.seed,
                          "memory_latency": args.latency, **summary, "golden_model_agreed": True,
                          "vcd": vcd, "gtkw": gtkw, "timing_diagrams": diagrams}, indent=2))
        return 0
    print(format_summary(summary))
    print("  golden model: every output and every bus transfer agreed")
    if vcd:
        print(f"  waves: {vcd}  (view: gtkwave {gtkw})")
    if diagrams:
        print(f"  timing diagrams: {len(diagrams) // 2} outcomes in {args.timing_diagram}/ "
              f"(JSON and SVG)")
    return 0


def register_bench(subparsers):
    """Add ``bench`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("bench", help="latency and throughput in cycles")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--targets", type=_bounded(MIN_TARGETS, MAX_TARGETS,
                                              "vCPUs of the throughput VM"), default=64,
                   help=f"vCPUs in the throughput VM, {MIN_TARGETS}..{MAX_TARGETS} "
                        f"(default 64)")
    p.set_defaults(func=run_bench)
    return p


def run_bench(args):
    from tb.runs import BENCH_LATENCIES, format_bench, run_bench as bench
    with progress_bar(len(BENCH_LATENCIES), "bench", " memory latencies") as bar:
        rows = bench(targets=args.targets, progress=lambda: bar.update())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_bench(rows))
    return 0

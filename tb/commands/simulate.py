"""``ipiv sim`` (the main job: a scenario on Amaranth's simulator, with waves and timing
diagrams) and ``ipiv bench`` (latency and throughput in cycles)."""

import json
import textwrap

from sim.commands.args import (
    check_out_dir, fail, integer, print_listing, progress_bar,
)


__all__ = ["register_sim", "register_bench", "MAX_COUNT", "MAX_LATENCY", "MAX_TARGETS"]

#: The memory ports of `hdl.IPIVirtualizer` (`hdl.formats.BUS_KINDS`, not imported: the
#: parser is built without loading the gateware).
BUS_CHOICES = ("classic", "pipelined")

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
    p.add_argument("--bus", choices=BUS_CHOICES, default="classic",
                   help="the unit's memory port: Wishbone B4 classic (default) or pipelined "
                        "(each answer --latency cycles after the request is taken, so at "
                        "least 1)")
    p.add_argument("-o", "--out", default="build", help="output folder (default build/)")
    p.add_argument("--no-waves", action="store_true", help="do not write .vcd/.gtkw")
    p.add_argument("--timing-diagram", metavar="DIR",
                   help="also write the fixed catalogue of cycle-exact WaveDrom diagrams "
                        "(JSON and SVG in DIR/classic and DIR/pipelined, an index.html "
                        "showing both), one request of each outcome on its own small VM "
                        "(whatever the scenario and --bus), into DIR")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(func=run_sim)
    return p


def run_sim(args):
    from sim.scenarios import SCENARIOS
    prog = "ipiv sim"
    if args.list:
        return print_listing(
            {name: text for name, (text, _) in SCENARIOS.items()}, args.json,
            lambda name, text: textwrap.fill(text, width=100, initial_indent=f"{name:17s}",
                                             subsequent_indent=" " * 17))
    if args.scenario not in SCENARIOS:
        fail(prog, f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})")
    if args.bus == "pipelined" and args.latency < 1:
        fail(prog, f"--latency {args.latency} with --bus pipelined: a pipelined memory answers "
                   f"at least 1 cycle after it takes a request (1..{MAX_LATENCY})")
    # Every output path is checked before the simulation starts.
    if not args.no_waves:
        check_out_dir(prog, args.out)
    if args.timing_diagram:
        check_out_dir(prog, args.timing_diagram)
    from tb.runs import format_summary, run_scenario
    if not args.json:
        print(f"scenario {args.scenario}: {SCENARIOS[args.scenario][0]}")
        print(f"  {args.count} IPIs, seed {args.seed}, {_memory_text(args.bus, args.latency)}, "
              f"Amaranth simulator", flush=True)
    with progress_bar(None, "simulating", " ICR writes") as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)
        summary, vcd, gtkw = run_scenario(
            args.scenario, count=args.count, seed=args.seed, out_dir=args.out,
            latency=args.latency, waves=not args.no_waves, progress=progress, bus=args.bus)
    diagrams = []
    if args.timing_diagram:
        from tb.waves import timing_cases, write_timing_diagrams
        with progress_bar(None, "timing diagrams", " diagrams") as bar:
            diagrams = write_timing_diagrams(args.timing_diagram, latency=args.latency,
                                             progress=lambda name: bar.update())
    if args.json:
        print(json.dumps({"scenario": args.scenario, "count": args.count, "seed": args.seed,
                          "bus": args.bus, "memory_latency": args.latency, **summary,
                          "golden_model_agreed": True, "vcd": vcd, "gtkw": gtkw,
                          "timing_diagrams": diagrams}, indent=2))
        return 0
    print(format_summary(summary))
    print("  golden model: every output and every bus transfer agreed")
    if vcd:
        print(f"  waves: {vcd}  (view: gtkwave {gtkw})")
    if diagrams:
        print(f"  timing diagrams: the fixed catalogue of {len(timing_cases())} outcomes on "
              f"both memory ports (one request each on its own VM, not the {args.scenario} "
              f"scenario); open {diagrams[-1]}")
    return 0


def _memory_text(bus, latency):
    if bus == "classic":
        return f"memory ack {latency} cycle(s) after stb"
    return (f"pipelined memory port, each answer {latency} cycle(s) after its request is "
            f"taken (R = {latency + 1})")


def register_bench(subparsers):
    """Add ``bench`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("bench", help="latency and throughput in cycles")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--targets", type=_bounded(MIN_TARGETS, MAX_TARGETS,
                                              "vCPUs of the throughput VM"), default=64,
                   help=f"vCPUs in the throughput VM, {MIN_TARGETS}..{MAX_TARGETS} "
                        f"(default 64)")
    p.add_argument("--bus", choices=("classic", "pipelined", "both"), default="both",
                   help="the memory port's variant (default: both, side by side; JSON: an "
                        "object keyed by variant, or the one variant's list of rows)")
    p.add_argument("--simulators", action="store_true",
                   help="simulator speed instead: cycles/s and ICR writes/s of Amaranth's "
                        "simulator, Icarus and Verilator per bus variant, on the same 5000 "
                        "checked ICR writes")
    p.set_defaults(func=run_bench)
    return p


def run_bench(args):
    if args.simulators:
        from tb.cocotb.bench import bench_simulators
        return bench_simulators(as_json=args.json, bus=args.bus)
    from tb.runs import bench_latencies, format_bench, run_bench as bench
    buses = ("classic", "pipelined") if args.bus == "both" else (args.bus,)
    steps = sum(len(bench_latencies(bus)) for bus in buses)
    results = {}
    with progress_bar(steps, "bench", " memory latencies") as bar:
        for bus in buses:
            results[bus] = bench(targets=args.targets, bus=bus, progress=lambda: bar.update())
    if args.json:
        print(json.dumps(results if len(buses) > 1 else results[buses[0]], indent=2))
    else:
        print("\n\n".join(f"{bus} memory port (Wishbone B4 {bus})\n{format_bench(rows, bus)}"
                           for bus, rows in results.items()))
    return 0

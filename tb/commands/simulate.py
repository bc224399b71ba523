"""``ipiv sim`` (the main job: a scenario on Amaranth's simulator, with waves) and
``ipiv bench`` (latency and throughput in cycles)."""

import json
import sys
import time

from sim.commands.args import fail, integer


__all__ = ["register_sim", "register_bench"]

_positive = integer(1)
_non_negative = integer(0)


def _progress(stream):
    last = [0.0]

    def report(done, total):
        now = time.monotonic()
        if done == total or now - last[0] > 0.5:
            last[0] = now
            stream.write(f"\r  simulating: {done}/{total} ICR writes accepted")
            if done == total:
                stream.write("\n")
            stream.flush()
    return report


def register_sim(subparsers):
    """Add ``sim`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("sim", help="run a scenario on Amaranth's simulator, write waves")
    p.add_argument("scenario", nargs="?", default="mixed", help="scenario name (default: mixed)")
    p.add_argument("-n", "--count", type=_positive, default=40, help="number of IPIs (default 40)")
    p.add_argument("--seed", type=_non_negative, default=1, help="random seed (default 1)")
    p.add_argument("--latency", type=_non_negative, default=1,
                   help="memory ack delay after stb, in cycles (default 1)")
    p.add_argument("-o", "--out", default="build", help="output folder (default build/)")
    p.add_argument("--no-waves", action="store_true", help="do not write .vcd/.gtkw")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(func=run_sim)
    return p


def run_sim(args):
    from sim.scenarios import SCENARIOS
    if args.list:
        for name, (text, _) in SCENARIOS.items():
            print(f"{name:16s} {text}")
        return 0
    if args.scenario not in SCENARIOS:
        fail("ipiv sim", f"unknown scenario {args.scenario!r} (known: {', '.join(SCENARIOS)})",
             status=1)
    from tb.runs import format_summary, run_scenario
    print(f"scenario {args.scenario}: {SCENARIOS[args.scenario][0]}")
    print(f"  {args.count} IPIs, seed {args.seed}, memory ack {args.latency} cycle(s) after stb,"
          f" Amaranth simulator")
    try:
        summary, vcd, gtkw = run_scenario(
            args.scenario, count=args.count, seed=args.seed, out_dir=args.out,
            latency=args.latency, waves=not args.no_waves,
            progress=_progress(sys.stderr) if sys.stderr.isatty() else None)
    except OSError as e:
        fail("ipiv sim", f"cannot write waves to {args.out!r}: {e.strerror}", status=1)
    print(format_summary(summary))
    print("  golden model: every output and every bus transfer agreed")
    if vcd:
        print(f"  waves: {vcd}  (view: gtkwave {gtkw})")
    return 0


def register_bench(subparsers):
    """Add ``bench`` to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser("bench", help="latency and throughput in cycles")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--targets", type=_positive, default=64,
                   help="vCPUs in the throughput VM (default 64)")
    p.set_defaults(func=run_bench)
    return p


def run_bench(args):
    from tb.runs import format_bench, run_bench as bench
    rows = bench(targets=args.targets)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_bench(rows))
    return 0

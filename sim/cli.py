"""``ipiv``: the project's command line (also ``python -m sim``).

Subcommands that simulate gateware import the harness lazily, so the models in ``sim`` stay
usable without any simulator.
"""

import argparse
import json
import sys
import time

from sim.cli_args import integer


_positive = integer(1)
_non_negative = integer(0)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage dump: "ipiv sim: error: ..."
        self.exit(2, f"{self.prog}: error: {message}\n")


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


def cmd_sim(args):
    from sim.scenarios import SCENARIOS
    if args.list:
        for name, (text, _) in SCENARIOS.items():
            print(f"{name:16s} {text}")
        return 0
    if args.scenario not in SCENARIOS:
        raise SystemExit(f"ipiv sim: error: unknown scenario {args.scenario!r} "
                         f"(known: {', '.join(SCENARIOS)})")
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
        raise SystemExit(f"ipiv sim: error: cannot write waves to {args.out!r}: {e.strerror}")
    print(format_summary(summary))
    print("  golden model: every output and every bus transfer agreed")
    if vcd:
        print(f"  waves: {vcd}  (view: gtkwave {gtkw})")
    return 0


def cmd_bench(args):
    from tb.runs import format_bench, run_bench
    rows = run_bench(targets=args.targets)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_bench(rows))
    return 0


def cmd_vmxcap(args):
    from sim.vmx_caps import PRESETS, MSRFileError, MSRs, preset
    from sim.vmxcap_report import report, report_json
    if args.list_cpus:
        for name, (text, _) in PRESETS.items():
            print(f"{name:18s} {text}")
        return 0
    try:
        msrs = MSRs.from_file(args.msrs) if args.msrs else preset(args.cpu or "ipiv")
    except KeyError:
        raise SystemExit(f"ipiv vmxcap: error: unknown CPU preset {args.cpu!r} "
                         f"(known: {', '.join(PRESETS)})")
    except MSRFileError as e:
        raise SystemExit(f"ipiv vmxcap: error: {e}")
    if args.json:
        print(json.dumps(report_json(msrs, evmcs=args.evmcs), indent=2))
    else:
        print(report(msrs, evmcs=args.evmcs))
    return 0


def build_parser():
    parser = _Parser(prog="ipiv", description="Executable model of Intel VT-x IPI virtualization.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("sim", help="run a scenario on Amaranth's simulator, write waves")
    p.add_argument("scenario", nargs="?", default="mixed", help="scenario name (default: mixed)")
    p.add_argument("-n", "--count", type=_positive, default=40, help="number of IPIs (default 40)")
    p.add_argument("--seed", type=_non_negative, default=1, help="random seed (default 1)")
    p.add_argument("--latency", type=_non_negative, default=1,
                   help="memory ack delay after stb, in cycles (default 1)")
    p.add_argument("-o", "--out", default="build", help="output folder (default build/)")
    p.add_argument("--no-waves", action="store_true", help="do not write .vcd/.gtkw")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("vmxcap", help="what a CPU's VMX MSRs allow and what KVM decides")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cpu", metavar="PRESET", help="a CPU preset (default: ipiv; see "
                        "--list-cpus)")
    source.add_argument("--msrs", metavar="FILE", help="MSR values, one '<index> <value>' per "
                        "line in hex with 0x, '#' comments")
    p.add_argument("--evmcs", action="store_true", help="KVM runs on Hyper-V's enlightened VMCS")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--list-cpus", action="store_true", help="list the CPU presets and exit")
    p.set_defaults(func=cmd_vmxcap)

    p = sub.add_parser("bench", help="latency and throughput in cycles")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--targets", type=_positive, default=64,
                   help="vCPUs in the throughput VM (default 64)")
    p.set_defaults(func=cmd_bench)

    from sim.experiment_cli import register as register_experiments
    register_experiments(sub)
    from sim.board.cli import register as register_board
    register_board(sub)
    from tb.regress import register as register_regress
    register_regress(sub)
    from tb.formal.cli import register as register_prove
    register_prove(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

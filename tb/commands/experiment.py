"""``ipiv experiment ...`` and ``ipiv replay ...`` (entry points `register_experiment`,
`register_replay`).

The models (`sim.round_trip`, `sim.experiments`, `sim.replay`) need no simulator; this layer
hands them the gateware measurements where a command asks for them (``table-sharing``,
``replay --rtl``, ``seed-table --remeasure-rtl``). Those are imported when the command runs,
so that ``ipiv --help`` starts fast.
"""

import json
import sys

from sim.commands.args import (
    check_out_dir, fail, integer, number, print_listing, progress_bar,
)


__all__ = ["register_experiment", "register_replay"]


def _fail(prog, message):
    fail(prog, message, status=1)


def _progress_line(text):
    sys.stderr.write(f"  {text}\n")
    sys.stderr.flush()


def cmd_seed_table(args):
    from sim.experiments import seed_table_outputs
    from sim.round_trip import RTL_BENCHES, compare_rtl, fit, format_seed_table, seed_table
    from tb.runs import measure_rtl
    if not args.no_plot:
        check_out_dir("ipiv experiment seed-table", args.out)
    bench = None
    if args.remeasure_rtl:
        _progress_line(f"re-measuring the {args.bus} unit's posting cost (ipiv bench --bus "
                       f"{args.bus}, ~10 s)")
        bench = measure_rtl(bus=args.bus)
        for diff in compare_rtl(bench, RTL_BENCHES[args.bus]):
            _progress_line(f"RTL differs from the recorded bench: {diff}")
    model = fit(bench=bench, bus=args.bus)
    if args.json:
        print(json.dumps({"bus": args.bus, "rows": seed_table(model), "parameters": {
            p.name: {"value": p.value, "unit": p.unit, "fitted": p.fitted, "source": p.source,
                     "note": p.note} for p in model.params.values()}}, indent=2))
    else:
        print(format_seed_table(model))
    if not args.no_plot:
        try:
            paths = seed_table_outputs(model, args.out)
        except OSError as e:
            _fail("ipiv experiment seed-table", f"cannot write to {args.out!r}: {e.strerror}")
        print(f"wrote {', '.join(paths)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _list_sweeps(as_json=False):
    from sim.experiments import SWEEPS
    return print_listing({name: sweep.text for name, sweep in SWEEPS.items()}, as_json)


def cmd_sweep(args):
    from sim.experiments import SWEEPS, format_table, read_table, run_sweep
    from tb.sharing import measure_sharing
    prog = "ipiv experiment sweep"
    if args.list:
        return _list_sweeps(args.json)
    if args.name is None:
        fail(prog, f"give a sweep name (known: {', '.join(SWEEPS)}) or --list")
    if args.name not in SWEEPS:
        fail(prog, f"unknown sweep {args.name!r} (known: {', '.join(SWEEPS)})")
    check_out_dir(prog, args.out)
    _progress_line(f"sweep {args.name}: {SWEEPS[args.name].text}")
    with progress_bar(None, args.name, " steps") as bar:
        def progress(text):
            bar.set_postfix_str(text, refresh=False)
            bar.update()
        paths = run_sweep(args.name, out_dir=args.out, progress=progress,
                          measure_sharing=measure_sharing, bus=args.bus)
    header, rows, comments = read_table(next(p for p in paths if p.endswith(".csv")))
    if args.json:
        print(json.dumps({"sweep": args.name, "bus": args.bus, "notes": comments,
                          "rows": [dict(zip(header, r)) for r in rows], "files": paths},
                         indent=2))
        return 0
    print(format_table(header, rows, comments))
    print(f"wrote {', '.join(paths)}")
    return 0


def cmd_list(args):
    return _list_sweeps(args.json)


def _rtl_progress():
    if not sys.stderr.isatty():
        return None

    def report(done, total):
        sys.stderr.write(f"\r  gateware: {done}/{total} ICR writes accepted")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return report


def cmd_replay(args):
    from sim.replay import TraceError, format_report, replay, report_json
    from tb.replay_rtl import check_rtl
    try:
        report = replay(args.file, check=check_rtl if args.rtl else None, vcpus=args.vcpus,
                        default_mode={"x2apic": "x2APIC", "xapic": "xAPIC"}[args.default_mode],
                        kernel=args.kernel, progress=_rtl_progress() if args.rtl else None,
                        virtualizable=args.virtualizable)
    except TraceError as e:
        _fail("ipiv replay", str(e))
    for line, message in report.parsed.errors:
        sys.stderr.write(f"ipiv replay: {args.file}: line {line}: {message}\n")
    print(json.dumps(report_json(report), indent=2) if args.json else format_report(report))
    return 1 if report.rtl else 0


_vcpus = integer(1, 4096)


def _bus_option(parser):
    parser.add_argument("--bus", choices=("classic", "pipelined"), default="classic",
                        help="the unit whose posting cost the model takes (and the fit): its "
                             "memory port, Wishbone B4 classic (default) or pipelined; the "
                             "multicast and bus sweeps compare both")


def register_experiment(subparsers):
    """Add ``experiment`` (``seed-table``, ``sweep NAME``, ``list``) to ``subparsers``."""
    p = subparsers.add_parser("experiment", help="the seed's table from the system model, "
                                                 "what-if sweeps")
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", parser_class=type(p))
    sub.required = True

    q = sub.add_parser("seed-table", help="the seed's cycles-per-IPI table beside the model's")
    q.add_argument("-o", "--out", default="build/experiments",
                   help="output folder (default build/experiments/)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--no-plot", action="store_true", help="do not write CSV/PNG/SVG")
    q.add_argument("--remeasure-rtl", action="store_true",
                   help="run the RTL bench again instead of using the recorded numbers")
    _bus_option(q)
    q.set_defaults(func=cmd_seed_table)

    q = sub.add_parser("sweep", help="run a what-if sweep (CSV, PNG, SVG)")
    q.add_argument("name", nargs="?", help="sweep name (see --list)")
    q.add_argument("--list", action="store_true", help="list the sweeps and exit")
    q.add_argument("-o", "--out", default="build/experiments",
                   help="output folder (default build/experiments/)")
    q.add_argument("--json", action="store_true", help="print the table as JSON")
    _bus_option(q)
    q.set_defaults(func=cmd_sweep)

    q = sub.add_parser("list", help="list the sweeps")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_list)



def register_replay(subparsers):
    """Add ``replay FILE`` to ``subparsers``."""
    from sim.kvm_kernel import DEFAULT_KERNEL, KERNELS
    p = subparsers.add_parser("replay", help="would IPIv help my guest? classify the IPIs of "
                                             "a KVM trace; estimate what IPIv saves")
    p.add_argument("file", help="ftrace (trace, trace_pipe), trace-cmd report or perf script "
                                "text of the KVM events, a `perf kvm stat report` summary, "
                                "or a pasted excerpt (quoted-printable is decoded); - reads "
                                "standard input")
    p.add_argument("--rtl", action="store_true",
                   help="also run every IPI through the gateware (Amaranth's simulator)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--vcpus", type=_vcpus, default=None,
                   help="vCPU IDs of the replay VM (default: every vCPU the trace names as "
                        "sender or destination; fewer is an error)")
    p.add_argument("--default-mode", choices=("x2apic", "xapic"), default="x2apic",
                   help="APIC mode of IPIs traced without an ICR event (default x2apic)")
    p.add_argument("--kernel", choices=KERNELS, default=DEFAULT_KERNEL,
                   help=f"Linux release that wrote the trace (event formats; default "
                        f"{DEFAULT_KERNEL})")
    p.add_argument("--virtualizable", type=number(0, 1), default=1.0, metavar="SHARE",
                   help="share (0..1) of the IPIs whose destination and vector the input "
                        "does not give (exit-only traces, perf kvm stat) assumed "
                        "virtualizable by IPIv (default 1: all)")
    p.set_defaults(func=cmd_replay)

"""``ipiv prove``: run the formal checks and print the summary table.

Wire it into the project's command line with ``register(subparsers)``; the subcommand's
function returns the exit status (0 only when every check passed).
"""

import argparse
import sys
import time


__all__ = ["register", "cmd_prove"]


def _depth(text):
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError(f"must be from 1 to 200, not {value}")
    return value


def _check_name(text):
    from .harness import CHECKS
    if text not in CHECKS:
        raise argparse.ArgumentTypeError(
            f"unknown check {text!r} (known: {', '.join(CHECKS)})")
    return text


def register(subparsers):
    """Add the ``prove`` subcommand to an argparse ``subparsers`` object; return its parser."""
    p = subparsers.add_parser("prove", help="prove the unit's properties with SymbiYosys",
                              description="Run the formal checks of tb/formal (SymbiYosys, "
                                          "z3) and print a summary table.")
    p.add_argument("--depth", type=_depth, default=None,
                   help="BMC/induction depth for every check (default: each check's own)")
    p.add_argument("--check", type=_check_name, action="append", metavar="NAME",
                   help="run only this check (repeatable; see --list)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("-j", "--jobs", type=_depth, default=2,
                   help="checks run in parallel (default 2)")
    p.add_argument("-o", "--out", default="build/formal",
                   help="output folder (default build/formal/)")
    p.set_defaults(func=cmd_prove)
    return p


def cmd_prove(args, stream=None):
    """Run the checks named in ``args``; return 0 if all passed, 1 otherwise."""
    from .harness import CHECKS
    from .runner import DEPTHS, ToolError, format_table, run_checks
    stream = sys.stdout if stream is None else stream
    if args.list:
        for name, check in CHECKS.items():
            print(f"{name:20s} {check.mode:5s} depth {DEPTHS[name]:3d}  {check.text}",
                  file=stream)
        return 0
    names = list(dict.fromkeys(args.check)) if args.check else list(CHECKS)
    start = time.monotonic()

    def progress(event, name, result):
        elapsed = time.monotonic() - start
        if event == "start":
            print(f"  [{elapsed:6.1f} s] {name}: running", file=sys.stderr, flush=True)
        else:
            print(f"  [{elapsed:6.1f} s] {name}: {result.status} ({result.seconds:.1f} s)",
                  file=sys.stderr, flush=True)

    try:
        results = run_checks(names, depth=args.depth, out_dir=args.out, jobs=args.jobs,
                             progress=progress)
    except ToolError as e:
        raise SystemExit(f"ipiv prove: error: {e}")
    print(format_table(results), file=stream)
    return 0 if all(r.passed for r in results) else 1

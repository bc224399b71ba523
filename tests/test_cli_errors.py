"""The one error path of ``ipiv``: every subcommand fed a table of bad inputs ends in one line
on stderr (``ipiv CMD: error: ...``, no traceback) with status 2 (bad usage) or 1 (a run or an
input that failed), before any long work; a closed pipe ends quietly; the deprecated
spellings still work with a one-line warning."""

import io
import os
import subprocess
import sys
import time

import pytest

from tb.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILE = os.path.abspath(__file__)                 # a file where a folder is expected
BINARY = sys.executable                          # a file that is not text

# (argv, status, a piece of the message); "-" inputs read the stdin given in STDIN.
CASES = {
    "top": [
        ([], 2, "required"),
        (["frobnicate"], 2, "invalid choice"),
        (["--bogus"], 2, "required: COMMAND"),
        (["sim", "--bogus", "--json"], 2, "unrecognized arguments"),
    ],
    "sim": [
        (["sim", "nosuch"], 2, "unknown scenario 'nosuch'"),
        (["sim", "-n", "0"], 2, "must be from 1 to"),
        (["sim", "-n", "100000000"], 2, "must be from 1 to 10000"),
        (["sim", "-n", "x"], 2, "not an integer"),
        (["sim", "--seed", "-1"], 2, "must be from 0"),
        (["sim", "--seed", "1.5"], 2, "not an integer"),
        (["sim", "--latency", "-1"], 2, "must be from 0 to 64"),
        (["sim", "--latency", "1000000"], 2, "must be from 0 to 64"),
        (["sim", "-o", "/proc"], 2, "output folder '/proc'"),
        (["sim", "-o", "/proc/x/y"], 2, "cannot create output folder"),
        (["sim", "-o", FILE], 2, "is a file"),
        (["sim", "--timing-diagram", "/proc"], 2, "output folder '/proc'"),
        (["sim", "--bus", "wishbone"], 2, "invalid choice"),
        (["sim", "--bus", "pipelined", "--latency", "0"], 2,
         "a pipelined memory answers at least 1 cycle after it takes a request"),
        (["sim", "--bogus"], 2, "unrecognized arguments"),
        (["sim", "a", "b"], 2, "unrecognized arguments"),
    ],
    "bench": [
        (["bench", "--targets", "1"], 2, "must be from 4 to 1024"),
        (["bench", "--targets", "2"], 2, "must be from 4 to 1024"),
        (["bench", "--targets", "3"], 2, "must be from 4 to 1024"),
        (["bench", "--targets", "100000"], 2, "must be from 4 to 1024"),
        (["bench", "--targets", "many"], 2, "not an integer"),
        (["bench", "extra"], 2, "unrecognized arguments"),
    ],
    "vmxcap": [
        (["vmxcap", "--cpu", "pentium"], 2, "unknown CPU preset 'pentium'"),
        (["vmxcap", "--cpu", "ipiv", "--msrs", "x"], 2, "not allowed with"),
        (["vmxcap", "--msrs", "/nonexistent"], 1, "cannot read '/nonexistent'"),
        (["vmxcap", "--msrs", ROOT], 1, "cannot read"),
        (["vmxcap", "--msrs", BINARY], 1, "not a text file"),
        (["vmxcap", "--msrs", "-"], 1, "<stdin>:2: MSR index 0x123456789 does not fit in 32"),
        (["vmxcap", "--msrs", "-"], 1, "<stdin>:2: MSR index 0x123456789 does not fit in 32"),
        (["vmxcap", "--kernel", "5.4"], 2, "invalid choice"),
        (["vmxcap", "--msrs", "-", "--summary"], 1,
         "<stdin>:3: MSR 0x84b is not a VMX capability MSR"),
        (["vmxcap", "--param", "enable_ipv=0"], 2, "did you mean enable_ipiv?"),
        (["vmxcap", "--param", "enable_ipiv=maybe"], 2, "'maybe' is not a boolean"),
        (["vmxcap", "--param", "enable_ipiv="], 2, "'' is not a boolean"),
        (["vmxcap", "--summary", "--qemu"], 2, "not allowed with"),
    ],
    "experiment": [
        (["experiment"], 2, "required"),
        (["experiment", "nosuch"], 2, "invalid choice"),
        (["experiment", "sweep"], 2, "give a sweep name"),
        (["experiment", "sweep", "nosuch"], 2, "unknown sweep 'nosuch'"),
        (["experiment", "sweep", "pid-latency", "-o", "/proc"], 2, "output folder '/proc'"),
        (["experiment", "seed-table", "-o", "/proc/x"], 2, "cannot create output folder"),
        (["experiment", "list", "extra"], 2, "unrecognized arguments"),
    ],
    "replay": [
        (["replay"], 2, "required"),
        (["replay", "/nonexistent"], 1, "'/nonexistent'"),
        (["replay", ROOT], 1, "is a directory"),
        (["replay", BINARY], 1, "not a text trace"),
        (["replay", "-"], 1, "standard input is empty"),
        (["replay", "-", "--vcpus", "0"], 2, "must be from 1 to 4096"),
        (["replay", "-", "--default-mode", "x3apic"], 2, "invalid choice"),
    ],
    "build": [
        (["build"], 1, "give either --board NAME or --synth-only"),
        (["build", "--board", "de10"], 2, "invalid choice"),
        (["build", "--board", "icebreaker", "--synth-only"], 1, "give either"),
        (["build", "--synth-only", "--cores", "2"], 1, "need --board"),
        (["build", "--board", "icebreaker", "--place"], 1, "--place needs --synth-only"),
        (["build", "--maxphyaddr", "64"], 2, "must be from 36 to 52"),
        (["build", "--cores", "0"], 2, "must be from 1 to"),
    ],
    "board": [
        (["board"], 2, "required"),
        (["board", "run"], 2, "give --port DEVICE"),
        (["board", "run", "--sim", "--port", "X"], 2, "not allowed with argument --sim"),
        (["board", "run", "--sim", "--baud", "9600"], 2, "--baud is for a board on --port"),
        (["board", "run", "--port", "/nonexistent"], 1, "/nonexistent"),
        (["board", "run", "--sim", "--mix", "frob=1"], 2, "unknown category 'frob'"),
        (["board", "run", "--sim", "--mix", "unicast=x"], 2, "not an integer"),
        (["board", "run", "--sim", "--seed", "-1"], 2, "must be from 0 to"),
        (["board", "run", "--sim", "-n", "0"], 2, "must be from 1 to"),
        (["board", "run", "--sim", "-n", "100000000000"], 2, "must be from 1 to 1000000"),
        (["board", "run", "--sim", "--modes", "x3apic"], 2, "modes are x2apic and/or xapic"),
        (["board", "run", "--sim", "--timeout", "0"], 2, "must be positive"),
        (["board", "run", "--sim", "--run-timeout", "1e9"], 2, "at most 3600"),
        (["board", "run", "--sim", "--board", "de10"], 2, "invalid choice"),
        (["board", "pid", "--sim", "7"], 2, "must be from 0 to 3"),
        (["board", "pid", "--sim"], 2, "required"),
        (["board", "info", "--port", "/nonexistent"], 1, "/nonexistent"),
        (["board", "info", "--sim", "--timeout", "x"], 2, "not a number"),
    ],
    "regress": [
        (["regress", "--simulator", "modelsim"], 2, "invalid choice"),
        (["regress", "--sim", "modelsim"], 2, "invalid choice"),
        (["regress", "--seed-count", "0"], 2, "must be at least 1"),
        (["regress", "-j", "0"], 2, "must be at least 1"),
        (["regress", "--only", "nosuch"], 2, "invalid choice"),
        (["regress", "--coverage-threshold", "101"], 2, "must be from 0 to 100"),
        (["regress", "--kernel", "5.4"], 2, "invalid choice"),
        (["regress", "--fault", "nosuch"], 2, "--fault must be one of"),
        (["regress", "-o", "/proc/x"], 2, "cannot create output folder"),
        (["regress", "-o", "/proc"], 2, "output folder '/proc'"),
    ],
    "prove": [
        (["prove", "--check", "nosuch"], 2, "unknown check 'nosuch'"),
        (["prove", "--depth", "0"], 2, "must be from 1 to 200"),
        (["prove", "--depth", "deep"], 2, "not an integer"),
        (["prove", "-j", "0"], 2, "must be from 1"),
        (["prove", "--bogus"], 2, "unrecognized arguments"),
        (["prove", "-o", "/proc/x"], None, "/proc/x"),
    ],
}
STDIN = {("vmxcap", "--msrs", "-"): "0x480 0x1\n0x123456789 0x5\n",
         ("vmxcap", "--msrs", "-", "--summary"): "# rdmsr loop\n0x480 da040000000004\n"
                                                 "0x84b 0x5\n"}


def run(argv, capsys, monkeypatch):
    """``main(argv)`` in this process: (status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(STDIN.get(tuple(argv), "")))
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def _shown(argv):
    """The command line as a test id, without this checkout's paths (so that the ids, and
    the durations recorded under them, are the same in every clone)."""
    return " ".join(arg.replace(ROOT, "<repo>").replace(BINARY, "<python>") for arg in argv)


@pytest.mark.parametrize("argv,status,message", [
    pytest.param(argv, status, message, id=f"{command}: {_shown(argv)}")
    for command, cases in CASES.items() for argv, status, message in cases])
def test_bad_input_is_one_line(argv, status, message, capsys, monkeypatch):
    start = time.monotonic()
    got, out, err = run(argv, capsys, monkeypatch)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert lines[0].startswith("ipiv") and "error:" in lines[0], lines[0]
    assert got == status if status is not None else got in (1, 2), (got, err)
    assert time.monotonic() - start < 20, "a bad input must be refused before any long work"


@pytest.mark.parametrize("argv,prog,unknown,hint", [
    (["vmxcap", "--msrfile", "x"], "ipiv vmxcap", "--msrfile x", "--msrs"),
    (["sim", "--jsn"], "ipiv sim", "--jsn", "--json"),
    (["sim", "mixed", "--seeds=3"], "ipiv sim", "--seeds=3", "--seed"),
    (["experiment", "sweep", "--lst"], "ipiv experiment sweep", "--lst", "--list"),
    (["board", "run", "--sim", "--run-timout", "5"], "ipiv board run", "--run-timout 5",
     "--run-timeout"),
    (["replay", "-", "--kernal", "6.0"], "ipiv replay", "--kernal 6.0", "--kernel"),
    (["prove", "--checks", "x"], "ipiv prove", "--checks x", "--check"),
    (["bench", "extra"], "ipiv bench", "extra", None),
])
def test_unknown_option_keeps_the_subcommand_and_suggests(argv, prog, unknown, hint, capsys,
                                                          monkeypatch):
    """README: every mistake is ``ipiv CMD: error: ...``, an unknown option too (argparse
    would report it as ``ipiv: error:``), with the closest option name (difflib)."""
    status, _, err = run(argv, capsys, monkeypatch)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    expected = f"{prog}: error: unrecognized arguments: {unknown}"
    assert err.startswith(expected), err
    tail = err.strip()[len(expected):]
    assert tail == (f" (did you mean {hint}?)" if hint else ""), err


def test_the_table_covers_every_subcommand():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) <= set(CASES), set(commands) - set(CASES)
    assert sum(len(c) for c in CASES.values()) >= 80


def test_deprecated_spellings_work_with_a_warning(capsys):
    args = build_parser().parse_args(["regress", "--sim", "verilator", "--seeds", "3"])
    assert (args.sim, args.seeds) == ("verilator", 3)
    err = capsys.readouterr().err.splitlines()
    assert err == ["ipiv regress: warning: --sim is deprecated, use --simulator (the old name "
                   "goes in the next release)",
                   "ipiv regress: warning: --seeds is deprecated, use --seed-count (the old "
                   "name goes in the next release)"]
    args = build_parser().parse_args(["regress", "--simulator", "verilator", "--seed-count", "3"])
    assert (args.sim, args.seeds) == ("verilator", 3) and capsys.readouterr().err == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("ipiv ")


@pytest.mark.parametrize("argv", [["sim", "-n", "4"], ["board", "run", "--sim", "-n", "4"]])
def test_closed_pipe_ends_quietly(argv, tmp_path):
    """``ipiv sim | head -1``: no BrokenPipeError, no traceback, status 0."""
    cmd = [sys.executable, "-m", "tb", *argv] + (["-o", str(tmp_path)] if argv[0] == "sim"
                                                   else [])
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdout.readline()
        proc.stdout.close()                 # the reader goes away after one line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Error" not in err and "never awaited" not in err, err


def test_unwritable_output_fails_before_the_run():
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "tb", "sim", "-n", "10000",
                           "-o", "/proc"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "never awaited" not in proc.stderr and time.monotonic() - start < 20

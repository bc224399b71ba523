"""``ipiv``: the project's command line (also ``python -m tb``).

A thin dispatcher on top of every layer. Each subcommand lives in the layer that owns it
(``sim.commands`` for what needs only the models, ``tb.commands``, ``tb.regress`` and
``tb.formal.cli`` for what runs gateware) and is registered as an entry point of the group
``ipiv.commands`` in ``pyproject.toml``, as Glasgow registers its applets: nothing below the
command line imports it, and a new command is one function plus one line there. A command
module imports its heavy dependencies (Amaranth, cocotb, the simulators) only when it runs,
so that ``ipiv --help`` and light commands start fast.
"""

import os
import sys
import warnings
from importlib.metadata import PackageNotFoundError, entry_points, version

from amaranth.hdl import UnusedElaboratable

from sim.commands.args import Parser


__all__ = ["ENTRY_POINT_GROUP", "build_parser", "main"]

ENTRY_POINT_GROUP = "ipiv.commands"
DISTRIBUTION = "ipiv-model"


def _version():
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser():
    """The ``ipiv`` parser with every registered subcommand."""
    parser = Parser(prog="ipiv", description="Executable model of Intel VT-x IPI virtualization.")
    parser.add_argument("--version", action="version", version=f"ipiv {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    commands = entry_points(group=ENTRY_POINT_GROUP)
    if not commands:
        parser.exit(2, f"ipiv: error: no commands registered (entry points "
                       f"{ENTRY_POINT_GROUP!r}); install the project: pip install -e .\n")
    for command in commands:
        command.load()(sub)
    return parser


def _quiet_stdout():
    """The reader of our standard output went away: point it at /dev/null so that nothing
    more (not even the interpreter's last flush) complains."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv=None):
    """Run ``ipiv ARGS``; returns the exit status (0 ok, 1 a run failed, 2 bad usage).

    Every user mistake ends in one line on stderr: usage errors in the parser and the
    commands (`sim.commands.args.fail`), an operating-system error (a file that cannot be
    written) as ``ipiv CMD: error: ...``; a closed pipe (``ipiv sim | head -1``) ends quietly."""
    prog = "ipiv"
    # A run on a kept simulator (`tb.amaranth_reuse`) leaves the DUT it was given
    # unelaborated by design; Amaranth would warn of each such unit at exit.
    warnings.filterwarnings("ignore", category=UnusedElaboratable)
    try:
        args = build_parser().parse_args(argv)
        prog = f"ipiv {args.command}"
        status = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("ipiv: interrupted\n")
        return 130
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        sys.stderr.write(f"{prog}: error: {where}{e.strerror or e}\n")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Argument types and the parser of the ``ipiv`` subcommands: one-line messages, bounds checked.

The one error path of the command line: a usage mistake is ``ipiv CMD: error: ...`` on one
line and status 2 (`Parser.error`, `fail`); a run that fails ends with status 1. Output folders
and input files are checked here, before any long work (`check_out_dir`, `read_input`). The
``--list`` options print alike (`print_listing`).
"""

import argparse
import difflib
import json
import os
import sys


__all__ = ["integer", "number", "Parser", "fail", "Deprecated", "check_out_dir", "read_input",
           "progress_bar", "print_listing"]


def integer(low, high=None):
    """An argparse type: an integer (decimal or 0x hex) from ``low`` to ``high``."""
    def parse(text):
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {value}")
        return value
    return parse


def number(low, high=None, *, strict=False):
    """An argparse type: a float from ``low`` to ``high`` (above ``low`` if ``strict``)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if (value <= low if strict else value < low) or (high is not None and value > high):
            bound = (f"positive and at most {high:g}" if strict and low == 0 and high is not None
                     else "positive" if strict and low == 0 else
                     f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}")
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value
    return parse


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: ``ipiv sim: error: ...``.

    An argument a subcommand does not know is refused by that subcommand's parser, so the
    error names it (argparse would leave it to the top-level ``ipiv``), with the closest
    option name it has (`difflib`)."""

    has_subcommands = False

    def add_subparsers(self, **kwargs):
        self.has_subcommands = True
        return super().add_subparsers(**kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not self.has_subcommands:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._suggest(extras)}")
        return namespace, extras

    def _suggest(self, extras):
        """`` (did you mean --msrs?)`` for the unknown options that resemble a known one."""
        known = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for arg in extras:
            name = arg.split("=", 1)[0]
            if not name.startswith("-") or name in self._option_string_actions:
                continue
            match = difflib.get_close_matches(name, known, n=1)
            if match:
                hints.append((name, match[0]))
        if not hints:
            return ""
        if len(hints) == 1:
            return f" (did you mean {hints[0][1]}?)"
        return " (did you mean " + ", ".join(f"{m} for {n}" for n, m in hints) + "?)"

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog, message, status=2):
    """End a command with a one-line error on stderr (status 2: bad usage, 1: a failed run)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(status)


def print_listing(texts, as_json, line=lambda name, text: f"{name:18s} {text}"):
    """Print what a ``--list`` option lists, ``texts`` (name -> description): as JSON, or a
    line each (``line(name, text)``). Returns the status, 0."""
    if as_json:
        print(json.dumps(texts, indent=2))
    else:
        for name, text in texts.items():
            print(line(name, text))
    return 0


class Deprecated(argparse.Action):
    """An option with an old spelling kept for one release: ``add_argument("--simulator",
    "--sim", action=Deprecated, old="--sim", ...)`` stores the value as usual and prints a
    one-line warning when the old spelling is used. ``nargs=0`` makes it a flag."""

    def __init__(self, option_strings, dest, *, old, nargs=None, **kwargs):
        self.old = old
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.old:
            new = next(o for o in self.option_strings if o != self.old and o.startswith("--"))
            sys.stderr.write(f"{parser.prog}: warning: {self.old} is deprecated, use {new} "
                             f"(the old name goes in the next release)\n")
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def check_out_dir(prog, path):
    """Create the output folder ``path`` (and parents) or end with a one-line error (status 2):
    called before a run, so that an unwritable path costs no simulation."""
    if os.path.exists(path) and not os.path.isdir(path):
        fail(prog, f"output folder {path!r} is a file")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        fail(prog, f"cannot create output folder {path!r}: {e.strerror}")
    if not os.path.isdir(path):
        fail(prog, f"output folder {path!r} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(prog, f"cannot write to output folder {path!r}")
    # /proc and friends pass os.access but refuse new files: try one.
    probe = os.path.join(path, f".ipiv-write-test-{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        fail(prog, f"cannot create files in output folder {path!r} ({e.strerror})")
    return path


def read_input(prog, path, *, status=2):
    """The text of ``path`` (``-``: standard input), or a one-line error."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        fail(prog, f"cannot read {path!r}: {e.strerror}", status=status)
    except UnicodeDecodeError:
        fail(prog, f"{path!r} is not a text file", status=status)


def progress_bar(total, desc, unit, *, bar_format=None):
    """A tqdm progress bar on stderr, shown only on a terminal (a pipe or a log gets none)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False,
                dynamic_ncols=True, bar_format=bar_format)

"""Argument types and the parser of the ``ipiv`` subcommands: one-line messages, bounds checked."""

import argparse
import sys


__all__ = ["integer", "number", "Parser", "fail"]


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
            bound = ("positive" if strict and low == 0 else
                     f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}")
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value
    return parse


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: ``ipiv sim: error: ...``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog, message, status=2):
    """End a command with a one-line error on stderr (status 2: bad usage, 1: a failed run)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(status)

"""What a user hands `ipiv replay`, read as text lines: a file, or standard input (``-``).

- A binary recording is refused with the command that turns it into text: trace-cmd's
  ``trace.dat`` (it starts with the bytes 17H 08H 44H and ``tracing``, trace-cmd's
  ``trace-output.c``) needs ``trace-cmd report``; perf's ``perf.data`` (``PERFILE2``, or
  ``PERFFILE`` from old perf, ``tools/perf/util/header.c``) needs ``perf script`` (a trace) or
  ``perf kvm stat report`` (a summary).
- Text is UTF-8.
- Text pasted from a mail that is still quoted-printable (RFC 2045 §6.7: ``=3D`` for ``=``,
  ``=20`` for a space, ``=`` at the end of a line for a soft line break that cut a long line)
  is decoded first (the standard library's `quopri`). The text is taken as quoted-printable
  when it holds an escape or a soft line break and every ``=`` in it is one: a plain trace
  has ``=`` followed by a space or a letter (``msr_write 830 = 0x...``, ``prev_state=R``).
"""

import quopri
import re
import sys
from dataclasses import dataclass


__all__ = ["TraceError", "InputText", "read_input", "split_lines", "is_quoted_printable",
           "QUOTED_PRINTABLE"]

QUOTED_PRINTABLE = "quoted-printable"

_BINARY = (
    (b"\x17\x08Dtracing", "a trace-cmd binary trace (trace.dat): run `trace-cmd report {name} "
                          "> trace.txt` first and replay its text"),
    (b"PERFILE2", "a perf.data file: run `perf script -i {name} > trace.txt` (the kvm "
                  "events) or `perf kvm stat report -i {name} --event=msr` first and replay "
                  "its text"),
    (b"2ELIFREP", None),                # the same, written on a big-endian host
    (b"PERFFILE", None),                # old perf
)
_QP_ESCAPE = re.compile(r"=(?:[0-9A-F]{2}|[ \t]*$)", re.M)
_QP_SIGN = re.compile(r"=[0-9A-F]{2}|=[ \t]*$", re.M)


class TraceError(Exception):
    """The input cannot be used (missing file, binary, not text, no trace record, ``vcpus``
    too small); the message is one line."""


@dataclass(frozen=True)
class InputText:
    """The input as lines; ``name`` for messages; ``encoding`` is `QUOTED_PRINTABLE` when
    the text was decoded from it, else None."""
    name: str
    lines: list
    encoding: str | None = None


def split_lines(text):
    """The lines of ``text`` as reading a file gives them (any newline; no empty last
    line after a final newline)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def is_quoted_printable(text):
    """True if ``text`` holds a quoted-printable escape or soft line break and no ``=``
    that is neither."""
    return bool(_QP_SIGN.search(text)) and \
        len(_QP_ESCAPE.findall(text)) == text.count("=")


def _binary_kind(data, name):
    for magic, message in _BINARY:
        if data.startswith(magic):
            return (message or _BINARY[1][1]).format(name=name)
    return None


def _raw(path):
    """(bytes or str, display name) of ``path``; raises `TraceError`."""
    if path == "-":
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        return stream.read(), "standard input"
    name = repr(str(path))
    try:
        with open(path, "rb") as f:
            return f.read(), name
    except FileNotFoundError:
        raise TraceError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise TraceError(f"{name} is a directory") from None
    except OSError as e:
        raise TraceError(f"cannot read {name}: {e.strerror}") from None


def _text(data, name):
    if isinstance(data, str):
        return data
    shown = "-" if name == "standard input" else name.strip("'")
    kind = _binary_kind(data, shown)
    if kind is not None:
        raise TraceError(f"{name} is {kind}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(f"{name} is not a text trace (byte {e.start} is not UTF-8)") from None


def read_input(path):
    """The `InputText` of ``path`` (``-``: standard input); raises `TraceError` (one line)
    for a file that cannot be read, a binary recording, or text that is not UTF-8."""
    data, name = _raw(path)
    text = _text(data, name).replace("\r\n", "\n")     # a mail's line ends
    if "\0" in text:
        raise TraceError(f"{name} is not a text trace (it holds NUL bytes)")
    encoding = None
    if is_quoted_printable(text):
        try:
            text = quopri.decodestring(text.encode("utf-8")).decode("utf-8")
        except UnicodeDecodeError as e:
            raise TraceError(f"{name} is quoted-printable, but its decoded byte {e.start} "
                             f"is not UTF-8") from None
        encoding = QUOTED_PRINTABLE
    return InputText(name, split_lines(text), encoding)

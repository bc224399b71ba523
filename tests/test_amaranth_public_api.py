"""The project uses only Amaranth's public API: no import of a private Amaranth module
(``amaranth.hdl._ast``) and no use of an underscore member that Amaranth defines
(``stmt._lhs_signals()``). What the tools need of a stage is published by the stage itself
(`hdl.ipi_virtualizer.STAGES`), so no statement of a design is walked from outside."""

import ast
import re
from pathlib import Path

import amaranth
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = [p for d in ("hdl", "sim", "tb", "tests") for p in sorted((ROOT / d).rglob("*.py"))]


def _names_defined(paths):
    """Underscore names defined (as functions or attributes) in ``paths``."""
    pattern = re.compile(r"(?:def\s+|\bself\.|\bcls\.)(_[A-Za-z]\w*)")
    names = set()
    for path in paths:
        names |= {n for n in pattern.findall(path.read_text()) if not n.startswith("__")}
    return names


AMARANTH_PRIVATE = _names_defined(Path(amaranth.__file__).parent.rglob("*.py")) - \
    _names_defined(PROJECT)


def violations(source, filename="<source>"):
    """Lines of ``source`` that import a private Amaranth module or use an underscore member
    that only Amaranth defines."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "amaranth" and any(p.startswith("_") for p in parts[1:]):
                found.append(f"{filename}:{node.lineno}: imports {module}")
        if isinstance(node, ast.Attribute) and node.attr in AMARANTH_PRIVATE:
            found.append(f"{filename}:{node.lineno}: uses Amaranth's private {node.attr}")
    return found


def test_the_checker_finds_private_imports_and_members():
    bad = ("from amaranth.hdl._ast import Switch\n"
           "import amaranth.hdl._ir\n"
           "def f(stmt):\n    return stmt._lhs_signals()\n")
    found = violations(bad)
    assert [line.split(":")[1] for line in found] == ["1", "2", "4"], found
    assert violations("from amaranth.hdl import Signal\nx = y.eq(1)\n") == []


@pytest.mark.parametrize("path", PROJECT, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_amaranth_api(path):
    if path.name == Path(__file__).name:
        return      # this file names them on purpose
    assert violations(path.read_text(), str(path.relative_to(ROOT))) == []

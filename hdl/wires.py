"""`connect_apart`: `amaranth.lib.wiring.connect` in a module of its own.

Amaranth's simulator re-runs all of a module's combinational statements whenever one of
their inputs changes. A unit that wires its stages together in its own ``elaborate`` would
re-run every connection (a hundred signals and more) several times a cycle; a connection in
a module of its own re-runs only when one of its own signals changes. Synthesis and the
proofs flatten the hierarchy, so the netlist is the same.
"""

from amaranth import Module
from amaranth.lib.wiring import connect


__all__ = ["connect_apart"]


def connect_apart(m, name, *interfaces):
    """Connect ``interfaces`` (as `connect` does) inside a new submodule ``name`` of ``m``."""
    wires = Module()
    connect(wires, *interfaces)
    m.submodules[name] = wires

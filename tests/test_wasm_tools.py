"""The WebAssembly tools are compiled once before the parallel workers start (`tb.wasm_tools`)."""

import fcntl
import os
import sys
import threading

import pytest

from tb.wasm_tools import WARMING_ENV, WASM_TOOLS, wait_for_warm_up, warm_up, \
    warm_up_in_background


def test_warm_up_runs_each_installed_tool_and_leaves_out_a_missing_one(tmp_path):
    marks = {name: tmp_path / name for name in ("first", "second")}
    tools = {name: [sys.executable, "-c", f"open({str(path)!r}, 'w').write('ran')"]
             for name, path in marks.items()}
    tools["missing"] = ["ipiv-no-such-tool", "-V"]
    assert warm_up(tools) == ["first", "second"]
    assert all(path.read_text() == "ran" for path in marks.values())


@pytest.mark.yosys
def test_every_wasm_tool_is_installed():
    # the suite's session start ran them (tests/conftest.py); a missing one is a failure here
    wait_for_warm_up()
    assert warm_up() == sorted(WASM_TOOLS)


def test_the_slow_tool_compiles_in_the_background_and_is_waited_for(tmp_path, monkeypatch):
    """The quick tools have run when `warm_up_in_background` returns; the slow one runs on,
    holding the lock, and `wait_for_warm_up` returns only once it has finished."""
    release = tmp_path / "release"
    quick, slow = tmp_path / "quick", tmp_path / "slow"
    tools = {
        "quick": [sys.executable, "-c", f"open({str(quick)!r}, 'w').write('ran')"],
        "slow": [sys.executable, "-c",
                 "import os, time\n"
                 f"while not os.path.exists({str(release)!r}): time.sleep(0.01)\n"
                 f"open({str(slow)!r}, 'w').write('ran')"],
    }
    monkeypatch.delenv(WARMING_ENV, raising=False)
    wait_for_warm_up()                              # nothing started: returns at once
    lock = tmp_path / "warming.lock"
    started = warm_up_in_background(lock, tools, slow=("slow",))
    assert os.environ[WARMING_ENV] == str(lock) and quick.read_text() == "ran"
    waited = threading.Event()
    waiter = threading.Thread(target=lambda: (wait_for_warm_up(), waited.set()))
    waiter.start()
    assert not waited.wait(0.5) and not slow.exists()     # the compile is still running
    with open(lock) as held:                              # and holds the lock
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert False, "the lock was free while the slow tool ran"
        except BlockingIOError:
            pass
    release.write_text("")
    assert waited.wait(10) and slow.read_text() == "ran"
    waiter.join()
    assert [p.wait() for p in started] == [0]
    # a nested session (``ipiv regress`` runs pytest) waits on the first one's compile
    slow.unlink()
    assert warm_up_in_background(tmp_path / "other.lock", tools, slow=("slow",)) == []
    assert os.environ[WARMING_ENV] == str(lock) and not slow.exists()

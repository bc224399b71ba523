"""The proof cache of `tb.formal.runner`: a run with the same sources, tools and options comes
from the cache with its trace; a different option misses; CI and ``IPIV_PROOF_CACHE=0`` turn it
off. The solver run itself is replaced by a stand-in that counts its runs (the proofs are
`tests/test_formal.py`'s)."""

import pytest

from hdl.faults import Fault
from tb.formal import runner, smtbmc


@pytest.fixture
def solver(tmp_path, monkeypatch):
    """A stand-in for the solver run: fails the check with a trace file; counts its runs."""
    runs = []

    def fake_run(harness, folder, result, engine, timeout):
        runs.append(result.name)
        trace = folder / "work" / "engine_0" / "trace.vcd"
        trace.parent.mkdir(parents=True)
        trace.write_text(f"$comment run {len(runs)} $end\n")
        (folder / f"{result.name}.sby").write_text(engine)
        model = folder / "work" / smtbmc.MODEL          # the model, and a design before it
        model.parent.mkdir()
        for path in (model, model.parent / "design_prep.il"):
            path.write_text(f"; {path.name}\n")
        result.status, result.seconds, result.trace = "FAIL", 12.5, trace
        result.failed.append("transfer_is_spec")
        return result
    monkeypatch.setattr(runner, "_run_proof", fake_run)
    monkeypatch.setattr(runner, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(runner, "check_tools", lambda: None)
    for name in ("CI", "IPIV_PROOF_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return runs


def _run(tmp_path, out, **options):
    return runner.run_check("transfers", faults={Fault.WRONG_PIR_WORD}, mode="bmc", depth=3,
                            out_dir=tmp_path / out, **options)


def test_a_repeated_run_comes_from_the_cache_with_its_trace(solver, tmp_path):
    first = _run(tmp_path, "a")
    again = _run(tmp_path, "b")
    assert solver == ["transfers"]
    assert not first.cached and again.cached
    assert (again.status, again.failed, again.seconds, again.faults) == \
        (first.status, first.failed, first.seconds, first.faults)
    assert again.trace.is_file() and again.trace.read_text() == first.trace.read_text()
    assert again.trace.is_relative_to(tmp_path / "b")
    assert "(cached)" in runner.format_table([again])
    assert again.as_dict()["cached"] is True


def test_the_cache_keeps_the_model_but_not_the_designs_before_it(solver, tmp_path):
    """The sby comparison (tests/test_formal.py) reads the model of a cached run too."""
    _run(tmp_path, "a")
    again = _run(tmp_path, "b")
    model = again.workdir / "work" / smtbmc.MODEL
    assert again.cached and model.read_text() == "; design_smt2.smt2\n"
    assert not (model.parent / "design_prep.il").exists()


def test_a_skip_is_shown_and_kept(solver, tmp_path):
    first = _run(tmp_path, "a", skip=2)
    again = _run(tmp_path, "b", skip=2)
    assert (first.skip, again.skip, again.cached) == (2, 2, True)
    assert "3 (skip 2)" in runner.format_table([again]) and again.as_dict()["skip"] == 2
    assert _run(tmp_path, "c").skip is None and len(solver) == 2


def test_another_option_is_another_entry(solver, tmp_path):
    _run(tmp_path, "a")
    _run(tmp_path, "b", witness=True)
    assert len(solver) == 2


@pytest.mark.parametrize("variable, value", [("IPIV_PROOF_CACHE", "0"), ("CI", "true")])
def test_the_cache_can_be_turned_off(solver, tmp_path, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert not runner.cache_enabled()
    _run(tmp_path, "a")
    again = _run(tmp_path, "b")
    assert solver == ["transfers", "transfers"] and not again.cached


def test_a_tool_failure_is_not_cached(solver, tmp_path, monkeypatch):
    def broken(harness, folder, result, engine, timeout):
        solver.append(result.name)
        result.status = "ERROR"
        return result
    monkeypatch.setattr(runner, "_run_proof", broken)
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    assert solver == ["transfers", "transfers"]


def test_the_key_follows_the_sources(monkeypatch):
    options = {"name": "transfers", "depth": 1}
    key = runner.cache_key(options)
    assert runner.cache_key(dict(options)) == key
    monkeypatch.setattr(runner, "_sources_hash", lambda: "edited")
    assert runner.cache_key(options) != key

"""Test-session plumbing: the import path, and the order of the tests.

The tests run longest first (measured durations in ``tests/durations.json``), dealt out in
turn to the pytest-xdist workers (``make test``: ``-n auto --dist worksteal``), so that the
long ones start at once on every worker and the short ones fill the gaps at the end, keeping
both cores busy to the last test. A test the file
does not know counts as short, or as very long if it is marked ``slow``. ``pytest
--record-durations`` updates the file from the run (setup, call and teardown of each test; a
session fixture's work counts for the test that first needs it; tests the run did not collect
keep their entries). Before the workers start, the controller runs each WebAssembly tool once
(`tb.wasm_tools`), so that a fresh machine compiles each once, not once per worker. YoWASP's
Yosys, about 80 s of one core, compiles in the background: each worker first runs about
``HEAD_SECONDS`` of tests not marked ``yosys``, and whatever needs that Yosys waits for the
compile (`tb.wasm_tools.wait_for_warm_up`). The compile shares the two cores with the two
workers, so it takes about two minutes of wall time; a shorter head leaves the workers
waiting on its lock.
"""

import json
import os
import sys
from pathlib import Path

# Let `pytest` work from a plain checkout too (make test installs the package editable).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DURATIONS = Path(__file__).resolve().parent / "durations.json"
UNKNOWN = 0.5       # seconds assumed for a test the durations file does not have,
UNKNOWN_SLOW = 600  # or for one marked slow (first: ipiv regress's long co-simulation)
HEAD_SECONDS = 120  # per worker, of tests without Yosys, while Yosys compiles on a fresh machine
WARMING_LOCK = Path(__file__).resolve().parent.parent / "build" / ".wasm-warming.lock"


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test's measured duration to {DURATIONS.name}")


def _known():
    try:
        return json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(config, items):
    known = _known()

    def seconds(item):
        if item.nodeid in known:
            return known[item.nodeid]
        return UNKNOWN_SLOW if item.get_closest_marker("slow") else UNKNOWN
    items.sort(key=lambda item: -seconds(item))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    # First the longest tests that do not need Yosys, while it compiles; then the others.
    head, budget = [], HEAD_SECONDS * workers
    for item in items:
        if budget <= 0:
            break
        if item.get_closest_marker("yosys") is None:
            head.append(item)
            budget -= seconds(item)
    chosen = set(map(id, head))
    rest = [item for item in items if id(item) not in chosen]
    # xdist's work stealing first hands each worker a contiguous share of this list (the
    # first half to one worker, the second to the other), and a worker that runs dry steals
    # from the end of another's queue: in plain longest-first order one worker would get
    # all the longest tests, one after the other. Dealt out in turn instead, each share
    # holds every n-th test, longest first.
    # Head and rest are dealt as one list: dealt apart, the rest would start again at the
    # first worker, which then held both of ``ipiv regress``'s long co-simulations, one after
    # the other (xdist steals nothing from a worker with two tests or fewer queued, the one it
    # runs included).
    order = head + rest
    items[:] = [item for w in range(workers) for item in order[w::workers]]


class _Recorder:
    def __init__(self):
        self.seconds = {}

    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session):
        durations = _known()        # kept: tests this run did not collect (ipiv regress's)
        durations.update({k: round(v, 2) for k, v in self.seconds.items()})
        DURATIONS.write_text(json.dumps(dict(sorted(durations.items())), indent=0) + "\n")


_background = []


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        return      # an xdist worker: the controller records and warms up
    if config.getoption("--record-durations"):
        config.pluginmanager.register(_Recorder(), "ipiv-durations")
    # Compile the WebAssembly tools once, before the workers would each compile them; Yosys
    # in the background (the workers inherit the variable naming its lock).
    from tb.wasm_tools import warm_up_in_background
    _background.extend(warm_up_in_background(WARMING_LOCK))


def pytest_unconfigure(config):
    for process in _background:
        process.wait()

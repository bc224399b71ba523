"""What the cocotb test modules share: their parameters (from pytest, through the environment),
their report file, coverage, and timing presets."""

import json
import os
import traceback
from pathlib import Path

from tb import fsm_coverage, fsm_coverage_pipelined
from tb.checker import DELIVERY_BOUND, percentiles
from tb.verilog import Design
from . import fcoverage


__all__ = ["PARAMS_ENV", "params", "design_bus", "Report", "TIMINGS", "BURSTS",
           "timing_for_seed", "timing"]

PARAMS_ENV = "IPIV_TB_PARAMS"
STATS_FILE = "stats.json"
COVERAGE_FILE = "coverage.yml"
FSM_COVERAGE_FILE = "fsm_coverage.json"

# (latency, wait_states, backpressure): every memory-latency bin of the coverage model with
# and without back-pressure; random seeds cycle through them.
TIMINGS = [(lat, ws, bp) for bp in (0.0, 0.4) for lat, ws in
           ((0, 0.0), (1, 0.0), (2, 0.0), (4, 0.0), (1, 0.35))]


#: Probability of a stall burst of 0..50 cycles (`tb.timing`) in the timings with
#: back-pressure: bursts on every output and on the bus, besides the per-cycle coin flips.
BURSTS = 0.03


def timing_for_seed(seed):
    return TIMINGS[seed % len(TIMINGS)]


def timing(p, seed):
    """{"latency", "wait_states", "backpressure", "bursts"} of a test: ``p["timing"]`` (3 or 4
    numbers) if given, else `timing_for_seed`, with bursts (`BURSTS`) wherever there is
    back-pressure."""
    values = list(p.get("timing") or timing_for_seed(seed))
    if len(values) == 3:
        values.append(BURSTS if values[2] else 0.0)
    return dict(zip(("latency", "wait_states", "backpressure", "bursts"), values))


def params():
    """The test's parameters: a JSON object in ``IPIV_TB_PARAMS`` set by `tb.cocotb.runner`."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))


def design_bus():
    """The memory port of the design the runner built (``params()["design"]["bus"]``)."""
    return params()["design"]["bus"]


class Report:
    """Collects a test's figures and writes them, with the coverage, into the test's directory
    (the simulator's working directory) for the pytest side and ``ipiv regress``.

    Parameters
    ----------
    name : str
        What the test is (stored in ``stats.json``).
    """

    def __init__(self, name):
        self.data = {"test": name, "cycles": 0, "wall_s": 0.0, "cpu_s": 0.0, "python_s": 0.0,
                     "icr_writes": 0,
                     "checked": 0, "transfers": 0, "ipis": 0, "outcomes": {}}
        self.coverage = False
        self.fsm = None
        self.latencies = []
        self.on_transitions = 0

    def fsm_sampler(self):
        """The test's `tb.fsm_coverage.Sampler` (one per test; its state encodings are read
        from the design the runner built, ``params()["design"]``); exported by `write`."""
        if self.fsm is None:
            design = Design(**params()["design"])
            if design.bus == "pipelined":
                self.fsm = fsm_coverage_pipelined.Sampler(design.n_cores or 1)
                return self.fsm
            top = design.elaboratable()
            unit = top.units[0] if hasattr(top, "units") else top
            self.fsm = fsm_coverage.Sampler(fsm_coverage.fsm_tables(unit),
                                            design.n_cores or 1)
        return self.fsm

    def add_tb(self, stats):
        for key in ("cycles", "wall_s", "cpu_s", "python_s", "icr_writes", "checked",
                    "transfers"):
            self.data[key] += stats[key]
        # notifications: ON transitions and their delivery latency (`tb.checker.DeliveryMonitor`)
        self.latencies.extend(stats.get("delivery_latencies", ()))
        self.on_transitions += stats.get("on_transitions", 0)
        self.data["delivery"] = {"on_transitions": self.on_transitions,
                                 "bound_cycles": DELIVERY_BOUND,
                                 "latency_cycles": percentiles(self.latencies)}
        for key in ("longest_output_stall", "longest_transfer_wait"):
            self.data[key] = max(self.data.get(key, 0), stats.get(key, 0))
        self.data.setdefault("cycles_per_run", []).append(stats["cycles"])
        for name, n in stats["outcomes"].items():
            self.data["outcomes"][name] = self.data["outcomes"].get(name, 0) + n

    def sampler(self, tb_args):
        """An ``on_resolved`` callback sampling coverage with this TB's timing (a pipelined
        memory answers 1 cycle after the request at least: its latency 0 is 1)."""
        self.coverage = True
        lat, ws, bp = tb_args["latency"], tb_args["wait_states"], tb_args["backpressure"]
        if design_bus() == "pipelined":
            lat = max(1, lat)
        bp = bp or tb_args.get("bursts", 0.0)
        return lambda r: fcoverage.sample(r, latency=lat, wait_states=ws, backpressure=bp)

    def write(self, error=None):
        self.data["error"] = None if error is None else \
            f"{type(error).__name__}: {error}"
        if error is not None:
            self.data["traceback"] = "".join(traceback.format_exception(error))[-4000:]
        Path(STATS_FILE).write_text(json.dumps(self.data, indent=1, default=str))
        if self.coverage:
            fcoverage.export(COVERAGE_FILE)
        if self.fsm is not None:
            self.fsm.export(FSM_COVERAGE_FILE)

    async def run(self, body):
        """Run ``body()`` and write the report whatever happens; re-raise its error. With the
        parameter ``profile``, a cProfile of the whole test goes to ``profile.txt`` (sorted by
        the parameter ``profile_sort``, default ``tottime``) and ``profile.prof`` (`pstats`)."""
        profiler = None
        if params().get("profile"):
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        try:
            await body()
        except BaseException as e:
            self.write(e)
            raise
        finally:
            if profiler is not None:
                import io
                import pstats
                profiler.disable()
                out = io.StringIO()
                order = params().get("profile_sort", "tottime")
                pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(60)
                Path("profile.txt").write_text(out.getvalue())
                profiler.dump_stats("profile.prof")     # for pstats' callers and callees
        self.write()

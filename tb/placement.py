"""Place and route with nextpnr over several seeds (``ipiv build --seeds N``).

nextpnr's placer starts from a random seed, and the Fmax of one run moves by several percent
from seed to seed; a figure worth comparing is the median over seeds. `place_seeds` runs
nextpnr once per seed on one synthesized design (seeds 1..N, each with its own log, JSON
timing report and output), reads each run's Fmax and worst path from the report
(`tb.nextpnr_report`) and returns the runs with their statistics.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from .nextpnr_report import parse_nextpnr_report, seed_statistics


__all__ = ["MAX_SEEDS", "Placement", "SeedRun", "with_option", "place_seeds", "keep"]

#: The most seeds one build may ask for.
MAX_SEEDS = 20


@dataclass
class SeedRun:
    """One nextpnr run: its seed, the post-route Fmax of the design's clock and its target
    (MHz), the worst path (`tb.nextpnr_report.worst_path`) and its files."""
    seed: int
    fmax_mhz: float
    target_mhz: float
    path: dict
    log: str
    output: str

    def as_json(self):
        return {"seed": self.seed, "fmax_mhz": self.fmax_mhz, "worst_path": self.path}


@dataclass
class Placement:
    """The runs of every seed; the figures quoted are their median, minimum and maximum."""
    runs: list

    @property
    def stats(self):
        return seed_statistics([r.fmax_mhz for r in self.runs])

    @property
    def best(self):
        """The run with the highest Fmax (the first such seed)."""
        return max(self.runs, key=lambda r: (r.fmax_mhz, -r.seed))

    @property
    def median_run(self):
        """The run whose Fmax is nearest the median: its worst path is the one quoted."""
        median = self.stats["median"]
        return min(self.runs, key=lambda r: (abs(r.fmax_mhz - median), r.seed))

    def as_json(self):
        stats = self.stats
        return {"fmax_mhz": stats["median"], "fmax_min_mhz": stats["min"],
                "fmax_max_mhz": stats["max"], "worst_path": self.median_run.path,
                "seeds": [r.as_json() for r in self.runs]}


def with_option(argv, flag, value):
    """``argv`` with ``flag``'s value replaced by ``value`` (appended when absent)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = str(value)
    else:
        argv += [flag, str(value)]
    return argv


def _clock(clocks):
    """(fmax, target) of the design's one clock domain."""
    sync = [c for c in clocks if "sync" in c or c == "clk"] or list(clocks)
    if not sync:
        raise ValueError("nextpnr reported no clock frequency")
    return clocks[sync[0]]


def place_seeds(argv, *, seeds, cwd, stem, output_flag, run, what):
    """Run nextpnr (``argv``: the command without seed, log, report or output file) for
    seeds 1..``seeds`` in ``cwd``. Seed k writes ``STEM.seedK.tim`` (log), ``.json``
    (report) and its output (``output_flag``'s file, e.g. ``--asc``) as ``STEM.seedK.out``.
    ``run(command, log, text)`` runs one command (``text``: what it does, for the
    progress). Returns a `Placement`."""
    cwd = Path(cwd)
    runs = []
    for seed in range(1, seeds + 1):
        name = f"{stem}.seed{seed}"
        command = with_option(argv, "--seed", seed)
        command = with_option(command, "--log", f"{name}.tim")
        command = with_option(command, "--report", f"{name}.json")
        if output_flag:
            command = with_option(command, output_flag, f"{name}.out")
        of = f", seed {seed} of {seeds}" if seeds > 1 else ""
        run(command, cwd / f"{name}.out.log", f"{what}{of}")
        report = parse_nextpnr_report((cwd / f"{name}.json").read_text())
        fmax, target = _clock(report["clocks"])
        runs.append(SeedRun(seed, fmax, target, report["path"], str(cwd / f"{name}.tim"),
                            str(cwd / f"{name}.out")))
    return Placement(runs)


def keep(run, cwd, *, log, output=None):
    """Copy a seed's log (and output) to the names a single build would have written."""
    shutil.copyfile(run.log, Path(cwd) / log)
    if output:
        shutil.copyfile(run.output, Path(cwd) / output)

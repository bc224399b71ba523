"""Waves of a failing test: a run the checker refuses is simulated again with recording, and
its readable view (`tb.waves.vcd`) is written under `FAILURE_DIR` and named in the error.
"""

import os

from ..amaranth_harness import Harness, MismatchError
from .probes import RecordingHarness
from .vcd import write_gtkw, write_vcd


__all__ = ["FAILURE_DIR", "run_with_waves_on_failure"]

#: Where a failing test's waves go (one .vcd and .gtkw per test, named after it).
FAILURE_DIR = os.path.join("build", "failures")


def run_with_waves_on_failure(make_dut, memory, requests, *, name, out_dir=FAILURE_DIR,
                              **harness_args):
    """``Harness(make_dut(), memory, **harness_args).run(requests)``; if the checker fails,
    run the same requests again (a fresh unit, the memory as it was, the same seed) recording
    the readable view, write ``out_dir/name.vcd`` and ``.gtkw`` and name them in the error.

    Passing runs cost nothing extra: only a failure is simulated a second time."""
    pristine = memory.copy()
    try:
        return Harness(make_dut(), memory, **harness_args).run(requests)
    except (MismatchError, TimeoutError) as error:
        harness = RecordingHarness(make_dut(), pristine, **harness_args)
        try:
            harness.run(requests)
        except (MismatchError, TimeoutError):
            pass                      # the same failure: the recording is what we want
        os.makedirs(out_dir, exist_ok=True)
        stem = os.path.join(out_dir, "".join(c if c.isalnum() or c in "-_." else "_"
                                             for c in name))
        vcd, gtkw = f"{stem}.vcd", f"{stem}.gtkw"
        write_vcd(vcd, harness.recording, comment=f"failing test {name}: {error}"[:200])
        write_gtkw(gtkw, vcd, harness.recording)
        raise type(error)(f"{error}\n  waves of the failing run: gtkwave {gtkw}") from error

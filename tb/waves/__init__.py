"""Waveforms a person can read: per-cycle samples of `IPIVirtualizer`, written as a VCD with a
curated GTKWave save file, and as cycle-exact WaveDrom timing diagrams.

One module per job:

- `tb.waves.probes`: which signals are sampled (`probes`) and the harness that samples them
  once per cycle (`RecordingHarness`, `Recording`);
- `tb.waves.annotate`: text derived from the samples (each request in flight, the structure a
  bus address falls in);
- `tb.waves.vcd`: the VCD and the ``.gtkw`` of ``ipiv sim``;
- `tb.waves.diagrams`: WaveDrom documents (JSON, SVG);
- `tb.waves.timing_catalogue`: the fixed catalogue of one diagram per outcome and memory port,
  and its index page (``ipiv sim --timing-diagram``);
- `tb.waves.failures`: the waves of a failing test.

Everything is importable from ``tb.waves`` as before the split.
"""

from .annotate import bus_target, request_spans, request_text
from .diagrams import DIAGRAM_ROWS, wavedrom, write_wavedrom
from .failures import FAILURE_DIR, run_with_waves_on_failure
from .probes import STAGES, Probe, Recording, RecordingHarness, probes
from .timing_catalogue import (
    INDEX_NAME, TimingCase, catalogue_latency, memory_timing, timing_cases, timing_diagram,
    timing_run, write_timing_diagrams,
)
from .vcd import GTKW_SIZE, PERIOD_NS, VIEW_ORDER, write_gtkw, write_vcd


__all__ = ["Probe", "probes", "Recording", "RecordingHarness", "STAGES", "request_text",
           "request_spans", "bus_target", "write_vcd", "write_gtkw", "VIEW_ORDER", "wavedrom",
           "write_wavedrom", "DIAGRAM_ROWS", "GTKW_SIZE", "PERIOD_NS", "TimingCase",
           "timing_cases", "timing_run", "timing_diagram", "write_timing_diagrams",
           "catalogue_latency", "memory_timing", "INDEX_NAME", "FAILURE_DIR", "run_with_waves_on_failure"]

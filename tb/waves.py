"""Waveforms a person can read: per-cycle samples of `IPIVirtualizer`, written as a VCD with a
curated GTKWave save file, and as cycle-exact WaveDrom timing diagrams.

Amaranth's own VCD names signals after its netlist (``busy$166``, ``\\cfg$3.ipiv``) and its
``.gtkw`` nests ``interface``/``view`` groups and opens zoomed to 1 fs. Here the testbench
samples a chosen set of signals (`probes`) once per clock cycle, at the point where the
harness's records are taken (just before the clock edge that ends the cycle: the value the
registers see), and writes them itself:

- one flat scope per stage with stage-qualified names (``interceptor.post_valid``,
  ``pid_update.busy``, ``bus.adr``), a clock, enums decoded as text (``icr.kind``,
  ``exit.cause``, ``bus.grant`` as the stage owning the bus, ``bus.target`` as the structure
  the address falls in), and a text trace ``request`` naming each ICR write (kind, vector,
  destination, outcome from the golden model) for as long as it is in flight;
- a ``.gtkw`` that opens a 1600x1000 window zoomed to fit the run;
- WaveDrom JSON (and SVG, rendered by the ``wavedrom`` package) of a short run, one column per
  cycle taken from the same samples, so a diagram cannot slip by a cycle against the
  simulation (``tests/test_waves.py`` checks it against the harness's cycle-stamped records).

The sampling wraps the harness's testbench context (`RecordingHarness`): the harness itself is
unchanged.
"""

import json
import math
import os
from dataclasses import dataclass, replace

from amaranth.hdl import Value
from amaranth.lib import data, enum as am_enum

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, ICRWriteKind, PID_BYTES,
    PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES, BUS_BYTES, DestMode, VMCSConfig,
)
from sim.golden import Outcome
from hdl import IPIVirtualizer
from .amaranth_harness import CLOCK_PERIOD, Harness, MismatchError
from .directed import CFG, LAST, XCFG, low, self_ipi, vm_memory, x2, xapic


__all__ = ["Probe", "probes", "Recording", "RecordingHarness", "STAGES", "request_text",
           "request_spans", "write_vcd", "write_gtkw", "wavedrom", "write_wavedrom",
           "GTKW_SIZE", "PERIOD_NS", "TimingCase", "timing_cases", "timing_run", "timing_diagram",
           "write_timing_diagrams", "FAILURE_DIR", "run_with_waves_on_failure"]

#: The four stages of `IPIVirtualizer`, in the order of the arbiter's masters (its
#: ``elaborate`` connects them in this order), so ``bus.grant`` decodes to a stage name.
STAGES = ("interceptor", "lookup", "pid_update", "virr_update")
PERIOD_NS = round(CLOCK_PERIOD * 1e9)
GTKW_SIZE = (1600, 1000)
SIGNALS_WIDTH = 300          # pixels of the signal-name pane in the .gtkw


@dataclass(frozen=True)
class Probe:
    """One sampled signal: shown as ``group.name``; ``decode(int) -> str`` for text."""
    group: str
    name: str
    value: Value
    decode: object = None

    @property
    def label(self):
        return f"{self.group}.{self.name}"

    @property
    def width(self):
        return len(self.value)


def _enum_decoder(shape):
    def decode(raw):
        try:
            return shape(raw).name
        except ValueError:
            return f"?{raw}"
    return decode


def _leaves(prefix, view):
    """(name, Value, decoder) of every leaf field of a View (or a plain Value)."""
    if not isinstance(view, data.View):
        yield prefix, Value.cast(view), None
        return
    for name, field in data.Layout.cast(view.shape()):
        sub = getattr(view, name)
        if isinstance(sub, data.View):
            yield from _leaves(f"{prefix}_{name}", sub)
        elif isinstance(field.shape, am_enum.EnumMeta):
            yield f"{prefix}_{name}", Value.cast(sub), _enum_decoder(field.shape)
        else:
            yield f"{prefix}_{name}", Value.cast(sub), None


def _stream(group, prefix, port, fields=None):
    out = [Probe(group, f"{prefix}_valid", port.valid), Probe(group, f"{prefix}_ready", port.ready)]
    payload = port.payload
    if isinstance(payload, data.View):
        for name, value, decode in _leaves(prefix, payload):
            if fields is None or name[len(prefix) + 1:] in fields:
                out.append(Probe(group, name, value, decode))
    else:
        out.append(Probe(group, f"{prefix}_data", Value.cast(payload)))
    return out


def probes(dut):
    """The signals of an `IPIVirtualizer` worth looking at, flat, one group per stage."""
    ic, lk, pu, vu = dut.interceptor, dut.lookup, dut.pid_update, dut.virr_update
    bus = dut.bus
    cfg = [Probe("cfg", name[len("cfg_"):], value, decode)
           for name, value, decode in _leaves("cfg", dut.cfg)]
    return [
        *cfg,
        *[Probe("icr", p.name[len("icr_"):], p.value, p.decode)
          for p in _stream("icr", "icr", dut.icr)],
        Probe("interceptor", "busy", ic.busy),
        *_stream("interceptor", "post", ic.post, ("vector", "dest")),
        *_stream("interceptor", "self_ipi", ic.self_ipi, ("vector",)),
        Probe("interceptor", "gp_valid", ic.gp.valid),
        Probe("interceptor", "exit_valid", ic.exit.valid),
        Probe("lookup", "busy", lk.busy),
        *_stream("lookup", "post", lk.post, ("vector", "pid_line")),
        Probe("lookup", "exit_valid", lk.exit.valid),
        Probe("pid_update", "busy", pu.busy),
        Probe("pid_update", "posted", pu.posted),
        Probe("pid_update", "suppressed", pu.suppressed),
        Probe("pid_update", "exit_valid", pu.exit.valid),
        Probe("virr_update", "busy", vu.busy),
        Probe("virr_update", "exit_valid", vu.exit.valid),
        Probe("bus", "grant", dut.arbiter.grant,
              lambda g: STAGES[g] if g < len(STAGES) else str(g)),
        Probe("bus", "cyc", bus.cyc), Probe("bus", "stb", bus.stb), Probe("bus", "we", bus.we),
        Probe("bus", "lock", bus.lock), Probe("bus", "adr", bus.adr), Probe("bus", "sel", bus.sel),
        Probe("bus", "dat_w", bus.dat_w), Probe("bus", "dat_r", bus.dat_r),
        Probe("bus", "ack", bus.ack), Probe("bus", "err", bus.err),
        *_stream("outputs", "exit", dut.exit),
        *_stream("outputs", "notify", dut.notify),
        *_stream("outputs", "self_ipi", dut.self_ipi),
        *_stream("outputs", "gp", dut.gp),
        Probe("outputs", "busy", dut.busy),
    ]


# -- sampling ---------------------------------------------------------------------------------

class Recording:
    """Per-cycle samples: ``rows[k][i]`` is probe ``i`` in cycle ``k`` (the harness's cycle
    numbering)."""

    def __init__(self, probe_list):
        self.probes = list(probe_list)
        self.index = {p.label: i for i, p in enumerate(self.probes)}
        self.rows = []

    def sample(self, ctx):
        self.rows.append(tuple(ctx.get(p.value) for p in self.probes))

    def column(self, label):
        i = self.index[label]
        return [row[i] for row in self.rows]

    def __len__(self):
        return len(self.rows)


class _SamplingContext:
    """The harness's testbench context, sampling every probe before each clock tick."""

    def __init__(self, ctx, sample):
        self._ctx, self._sample = ctx, sample

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def tick(self, *args, **kwargs):
        self._sample(self._ctx)
        return self._ctx.tick(*args, **kwargs)


class RecordingHarness(Harness):
    """A `tb.amaranth_harness.Harness` of an `IPIVirtualizer` that also fills
    ``self.recording`` (a `Recording` of `probes`) during `run`."""

    def __init__(self, dut, memory, **kwargs):
        super().__init__(dut, memory, **kwargs)
        self.recording = Recording(probes(dut))

    async def _bench(self, ctx, run, limit, progress):
        await super()._bench(_SamplingContext(ctx, self.recording.sample), run, limit, progress)


# -- requests as text -------------------------------------------------------------------------

def request_text(index, request, result):
    """``#3 X2APIC_ICR 0x41->2: posted, notify 0xf2@0x12`` (golden model's ``result``)."""
    kind = ICRWriteKind(request.kind).name
    head = f"#{index} {kind}"
    if result is None:
        return head
    o = result.outcome
    if o is Outcome.STORED:
        return f"{head}: stored (ICR2 {request.value:#x})"
    target = f" {result.vector:#04x}->{result.dest}" if result.vector is not None else ""
    if o is Outcome.POSTED:
        tail = (f"posted, notify {result.notify[0]:#04x}@{result.notify[1]:#x}"
                if result.notify else "posted, suppressed")
    elif o is Outcome.EXIT:
        tail = f"exit {result.reason} {result.cause.name}"
    elif o is Outcome.SELF_IPI:
        tail = "self-IPI"
    else:
        tail = "#GP"
    return f"{head}{target}: {tail}"


def request_spans(run, recording):
    """[(first cycle, last cycle, text)] of each accepted request: from its acceptance until
    the unit is idle again or the next request is accepted."""
    busy = recording.column("outputs.busy")
    starts = [cycle for cycle, _ in run.accepted]
    spans = []
    for k, ((cycle, index), result) in enumerate(zip(run.accepted, run.results or
                                                      [None] * len(run.accepted))):
        end = starts[k + 1] - 1 if k + 1 < len(starts) else len(busy) - 1
        c = cycle + 1
        while c <= end and busy[c]:
            c += 1
        spans.append((cycle, min(c, end), request_text(index, run.requests[index], result)))
    return spans


def bus_target(cfg, adr):
    """The structure a bus word address falls in, from the VMCS configuration: ``vICR lo``,
    ``VIRR``, ``table[T]``, ``PID.PIR[i]``, ``PID.ON/SN/NV``."""
    byte = adr * BUS_BYTES
    vapic, table = cfg.vapic_page & ~0xFFF, cfg.pid_table & ~0xFFF
    if vapic <= byte < vapic + 0x1000:
        off = byte - vapic
        if off == APIC_OFFSET_ICR_LO:
            return "vICR lo (300H)"
        if off == APIC_OFFSET_ICR_HI:
            return "vICR hi (310H)"
        if APIC_OFFSET_IRR <= off < APIC_OFFSET_IRR + 0x80:
            return f"VIRR {off:03X}H"
        return f"vAPIC {off:03X}H"
    if table <= byte < table + PID_POINTER_ENTRY_BYTES * (cfg.last_pid_index + 1):
        return f"table[{(byte - table) // PID_POINTER_ENTRY_BYTES}]"
    off = byte % PID_BYTES
    if off == PID_NOTIFY_INFO_OFFSET:
        return "PID.ON/SN/NV/NDST"
    if off < PID_NOTIFY_INFO_OFFSET:
        return f"PID.PIR[{off // 8}]"
    return f"PID+{off:02X}H"


def _bus_targets(recording):
    adr, stb = recording.index["bus.adr"], recording.index["bus.stb"]
    out = []
    for row in recording.rows:
        if not row[stb]:
            out.append("")
            continue
        cfg = VMCSConfig.from_bits(_pack_cfg(recording, row))
        out.append(bus_target(cfg, row[adr]))
    return out


def _pack_cfg(recording, row):
    bits = 0
    for name, field in data.Layout.cast(VMCSConfig):
        i = recording.index[f"cfg.{name}"]
        bits |= row[i] << field.offset
    return bits


# -- VCD and GTKWave ---------------------------------------------------------------------------

_SPACE = "_"       # VCD values cannot hold white space (GTKWave splits on a no-break space too)


def _text(s):
    return s.replace(" ", _SPACE)


def write_vcd(path, recording, spans=(), comment=""):
    """Write the samples as a VCD (1 ns timescale, one scope per group)."""
    from vcd import VCDWriter
    targets = _bus_targets(recording)
    with open(path, "w") as f, VCDWriter(f, timescale="1 ns", comment=comment) as w:
        clk = w.register_var("ipiv", "clk", "wire", size=1, init=0)
        cycle = w.register_var("ipiv", "cycle", "integer", size=32, init=0)
        req = w.register_var("ipiv", "request", "string", init="")
        target = w.register_var("ipiv.bus", "target", "string", init="")
        wires = []
        for p in recording.probes:
            if p.decode is not None:
                wires.append(w.register_var(f"ipiv.{p.group}", p.name, "string", init=""))
            else:
                wires.append(w.register_var(f"ipiv.{p.group}", p.name, "wire", size=p.width,
                                            init=0))
        text_at = {}
        for first, last, text in spans:
            text_at[first] = _text(text)
            text_at.setdefault(last + 1, "")
        last_row = None
        last_target = None
        for k, row in enumerate(recording.rows):
            t = k * PERIOD_NS
            w.change(clk, t, 1)
            w.change(cycle, t, k)
            if k in text_at:
                w.change(req, t, text_at[k])
            if targets[k] != last_target:
                w.change(target, t, _text(targets[k]))
                last_target = targets[k]
            for i, (p, var) in enumerate(zip(recording.probes, wires)):
                if last_row is None or row[i] != last_row[i]:
                    w.change(var, t, p.decode(row[i]) if p.decode else row[i])
            last_row = row
            w.change(clk, t + PERIOD_NS // 2, 0)
        w.flush(len(recording.rows) * PERIOD_NS)
    return path


#: The groups of the .gtkw, top to bottom (clock, request and cycle come first): what the unit
#: does (ICR in, outputs, bus) on the first screen, then each stage, then the configuration.
VIEW_ORDER = ("icr", "outputs", "bus", "interceptor", "lookup", "pid_update", "virr_update",
              "cfg")


def _view(recording):
    groups = {}
    for p in recording.probes:
        groups.setdefault(p.group, []).append(p)
    return groups


def write_gtkw(path, vcd_path, recording):
    """A GTKWave save file: a 1600x1000 window zoomed to fit the whole run, the clock and the
    request trace first, then one flat group per stage with stage-qualified names."""
    from vcd.gtkw import GTKWSave
    cycles = max(len(recording.rows), 1)
    width = GTKW_SIZE[0] - SIGNALS_WIDTH - 60      # the wave pane, minus borders/scrollbar
    # GTKWave 3.3 shows 2**-zoom * 5 ps per pixel of a 1 ns dump (measured on screenshots of
    # Debian 12's gtkwave 3.3.118); 2 % to spare so the end of the run stays in view.
    zoom = -math.log2(1.02 * cycles * PERIOD_NS * 200 / width)
    with open(path, "w") as f:
        save = GTKWSave(f)
        save.comment("ipiv sim: the curated view (tb/waves.py)")
        save.dumpfile(os.path.abspath(vcd_path))
        save.savefile(os.path.abspath(path))
        save.timestart(0)
        save.size(*GTKW_SIZE)
        save.pos(-1, -1)
        save.zoom_markers(round(zoom, 4), -1)
        save.signals_width(SIGNALS_WIDTH)
        save.sst_expanded(False)
        save.trace("ipiv.clk", alias="clk")
        save.trace("ipiv.request", alias="request")
        save.trace("ipiv.cycle", alias="cycle", datafmt="dec")
        groups = _view(recording)
        for group in VIEW_ORDER:
            members = groups[group]
            with save.group(group, closed=group == "cfg"):
                if group == "bus":
                    save.trace("ipiv.bus.target", alias="bus/target")
                for p in members:
                    suffix = f"[{p.width - 1}:0]" if p.width > 1 and p.decode is None else ""
                    fmt = "dec" if p.name.endswith(("dest", "last_pid_index", "reason")) \
                        else "hex"
                    # GTKWave shows only the last part of a dotted alias: qualify with "/"
                    save.trace(f"ipiv.{p.group}.{p.name}{suffix}", alias=f"{p.group}/{p.name}",
                               datafmt=fmt)
    return path


# -- WaveDrom ----------------------------------------------------------------------------------

#: Rows of a timing diagram: (label, qualifier label or None). A qualified row shows its value
#: only in cycles where the qualifier is 1 (``x`` otherwise), as a data sheet does.
DIAGRAM_ROWS = (
    ("icr", [("icr.valid", None), ("icr.ready", None), ("icr.kind", "icr.valid"),
             ("icr.data", "icr.valid")]),
    ("stages", [("interceptor.busy", None), ("lookup.busy", None), ("pid_update.busy", None),
                ("virr_update.busy", None)]),
    ("bus", [("bus.grant", "bus.cyc"), ("bus.cyc", None), ("bus.stb", None), ("bus.we", None),
             ("bus.lock", None), ("bus.target", "bus.stb"), ("bus.ack", None),
             ("bus.err", None)]),
    ("outputs", [("outputs.exit_valid", None), ("outputs.exit_reason", "outputs.exit_valid"),
                 ("outputs.exit_cause", "outputs.exit_valid"), ("outputs.notify_valid", None),
                 ("outputs.notify_vector", "outputs.notify_valid"),
                 ("outputs.notify_dest", "outputs.notify_valid"), ("outputs.self_ipi_valid", None),
                 ("outputs.self_ipi_data", "outputs.self_ipi_valid"), ("outputs.gp_valid", None),
                 ("outputs.busy", None)]),
)
#: Output rows dropped from a diagram when they stay 0 (the other outcomes' streams).
_OPTIONAL = {"outputs.exit_valid": ("outputs.exit_reason", "outputs.exit_cause"),
             "outputs.notify_valid": ("outputs.notify_vector", "outputs.notify_dest"),
             "outputs.self_ipi_valid": ("outputs.self_ipi_data",), "outputs.gp_valid": (),
             "bus.err": ()}


def _values(recording, label, targets):
    if label == "bus.target":
        return targets
    p = recording.probes[recording.index[label]]
    raw = recording.column(label)
    if p.decode is not None:
        return [p.decode(v) for v in raw]
    return raw


def _label(value, decimal=False):
    if isinstance(value, str):
        return value
    return f"{value:#x}" if value > 9 and not decimal else str(value)


def _wave(values, qualifier, one_bit, decimal=False):
    """A WaveDrom wave string and data list, one character per cycle."""
    wave, labels, last = [], [], object()
    for k, v in enumerate(values):
        shown = None if qualifier is not None and not qualifier[k] else v
        if one_bit:
            ch = str(shown) if shown is not None else "x"
        elif shown is None:
            ch = "x"
        else:
            ch = "="
        if shown == last and ch != "x" or (ch == "x" and last is None):
            wave.append(".")
        else:
            wave.append(ch)
            if ch == "=":
                labels.append(_label(shown, decimal))
        last = shown
    return "".join(wave), labels


def wavedrom(recording, *, title, first=0, last=None, spans=()):
    """A WaveDrom document (dict) of cycles ``first..last`` of ``recording``: one column per
    cycle, each value as sampled by the harness in that cycle."""
    last = len(recording.rows) - 1 if last is None else last
    targets = _bus_targets(recording)
    window = slice(first, last + 1)
    n = last - first + 1
    signal = [{"name": "clk", "wave": "p" + "." * (n - 1)}]
    if spans:
        texts = [""] * len(recording.rows)
        for a, b, text in spans:
            for c in range(a, b + 1):
                texts[c] = text
        wave, labels = _wave(texts[window], [t != "" for t in texts[window]], False)
        signal.append({"name": "request", "wave": wave, "data": labels})
    for group, rows in DIAGRAM_ROWS:
        entries = [group]
        drop = set()
        for valid, payload in _OPTIONAL.items():
            if valid in recording.index and not any(recording.column(valid)[window]):
                drop |= {valid, *payload}
        for label, qualifier in rows:
            if label in drop:
                continue
            values = _values(recording, label, targets)[window]
            qual = recording.column(qualifier)[window] if qualifier else None
            one_bit = label != "bus.target" and recording.probes[
                recording.index[label]].width == 1 and recording.probes[
                recording.index[label]].decode is None
            wave, labels = _wave(values, qual, one_bit, label.endswith("reason"))
            entry = {"name": label, "wave": wave}
            if labels:
                entry["data"] = labels
            entries.append(entry)
        signal.append(entries)
    return {"signal": signal, "head": {"text": title, "tick": first},
            # wide enough for the title and the request text even for a 2-cycle run
            "config": {"hscale": max(2, math.ceil(40 / n))}}


def write_wavedrom(document, stem):
    """``stem.json`` and ``stem.svg`` (rendered by the ``wavedrom`` package); returns both."""
    import wavedrom as renderer
    text = json.dumps(document, indent=1)
    with open(f"{stem}.json", "w") as f:
        f.write(text + "\n")
    renderer.render(text).saveas(f"{stem}.svg")
    return [f"{stem}.json", f"{stem}.svg"]


# -- one timing diagram per outcome -------------------------------------------------------------

@dataclass(frozen=True)
class TimingCase:
    """One outcome shown alone: ``requests`` on ``memory()`` (the directed suite's VM); the
    last request is the one the diagram is about (an xAPIC IPI first writes ICR2)."""
    name: str
    title: str
    memory: object
    requests: list


def timing_cases():
    """One `TimingCase` per outcome: virtualized with notify, suppressed, self-IPI, #GP, and
    every exit (each `ExitCause`, the x2APIC intercept's WRMSR exit among them)."""
    off, xoff = replace(CFG, ipiv=False), replace(XCFG, ipiv=False)

    def errors(step):
        def build():
            m = vm_memory()
            m.error_at = {step}
            return m
        return build
    cases = [
        ("notify", "x2APIC IPI virtualized: PIR set, ON set, notification", vm_memory,
         [x2(2, low(0x41))]),
        ("suppressed", "x2APIC IPI virtualized, ON already set: no notification",
         lambda: vm_memory(on={1}), [x2(1, low(0x41))]),
        ("xapic-notify", "xAPIC IPI (ICR2 then ICR low) virtualized with notification",
         vm_memory, xapic(2, low(0x42))),
        ("self-ipi", "xAPIC self-IPI: VIRR bit set, self_ipi", vm_memory, [self_ipi(0x45)]),
        ("gp", "x2APIC ICR write with reserved bit 13: #GP, nothing stored", vm_memory,
         [x2(2, low(0x41) | 1 << 13)]),
        ("exit-wrmsr", "x2APIC intercept, IPIv off: WRMSR exit (reason 32), no transfer",
         vm_memory, [x2(2, low(0x41), off)]),
        ("exit-disabled", "xAPIC, IPIv off: APIC-write exit DISABLED", vm_memory,
         xapic(2, low(0x41), xoff)),
        ("exit-unsupported", "x2APIC logical destination: exit UNSUPPORTED", vm_memory,
         [x2(2, low(0x41, dest_mode=DestMode.LOGICAL))]),
        ("exit-illegal-vector", "x2APIC vector 5: exit ILLEGAL_VECTOR", vm_memory,
         [x2(2, low(0x05))]),
        ("exit-broadcast", "xAPIC destination 0xFF: exit BROADCAST", vm_memory,
         xapic(0xFF, low(0x41))),
        ("exit-index-range", f"x2APIC destination {LAST + 1} > last index: exit INDEX_RANGE",
         vm_memory, [x2(LAST + 1, low(0x41))]),
        ("exit-entry-invalid", "x2APIC destination 4, entry's valid bit clear: exit "
         "ENTRY_INVALID", vm_memory, [x2(4, low(0x41))]),
        ("exit-bus-error", "x2APIC IPI, bus error on the PIR read: exit BUS_ERROR",
         errors(2), [x2(2, low(0x41))]),
    ]
    return [TimingCase(*c) for c in cases]


def timing_run(case, *, latency=1):
    """Run one `TimingCase` on Amaranth's simulator; returns (Run, Recording)."""
    harness = RecordingHarness(IPIVirtualizer(), case.memory(), latency=latency)
    run = harness.run(case.requests)
    return run, harness.recording


def timing_diagram(case, *, latency=1):
    """(WaveDrom document, Run, Recording) of one `TimingCase`: every cycle of its run."""
    run, recording = timing_run(case, latency=latency)
    spans = request_spans(run, recording)
    title = f"{case.title} (memory ack {latency} cycle after stb)"
    return wavedrom(recording, title=title, spans=spans), run, recording


def write_timing_diagrams(out_dir, *, latency=1, progress=None):
    """``out_dir/NAME.json`` and ``NAME.svg`` for every `timing_cases` entry; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for case in timing_cases():
        if progress:
            progress(case.name)
        document, _, _ = timing_diagram(case, latency=latency)
        paths += write_wavedrom(document, os.path.join(out_dir, case.name))
    return paths


# -- waves of a failing test ----------------------------------------------------------------

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

"""What `tb.waves` samples: the signals of an `IPIVirtualizer` worth looking at (`probes`),
flat, one group per stage, and a harness that samples them once per clock cycle
(`RecordingHarness`), at the point where the harness's records are taken (just before the
clock edge that ends the cycle: the value the registers see).

The sampling wraps the harness's testbench context: the harness itself is unchanged.
"""

from dataclasses import dataclass

from amaranth.hdl import Value
from amaranth.lib import data, enum as am_enum

from hdl.formats import ICRWriteKind
from hdl.ipi_virtualizer import STAGES as STAGE_TABLE
from ..amaranth_harness import Harness


__all__ = ["STAGES", "Probe", "probes", "Recording", "RecordingHarness"]

#: The four stages of the classic `IPIVirtualizer`, in the order of the arbiter's masters, so
#: ``bus.grant`` decodes to a stage name (`hdl.ipi_virtualizer.STAGES`).
STAGES = tuple(stage.name for stage in STAGE_TABLE)


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


def _state(group, stage):
    """A stage's published state register, decoded by its ``State`` enum."""
    return Probe(group, "state", Value.cast(stage.state), _enum_decoder(stage.State))


def _bus(bus):
    return [
        Probe("bus", "cyc", bus.cyc), Probe("bus", "stb", bus.stb), Probe("bus", "we", bus.we),
        Probe("bus", "lock", bus.lock), Probe("bus", "adr", bus.adr), Probe("bus", "sel", bus.sel),
        Probe("bus", "dat_w", bus.dat_w), Probe("bus", "dat_r", bus.dat_r),
        Probe("bus", "ack", bus.ack), Probe("bus", "err", bus.err),
        *([Probe("bus", "stall", bus.stall)] if hasattr(bus, "stall") else []),
    ]


def _outputs(dut):
    return [
        *_stream("outputs", "exit", dut.exit),
        *_stream("outputs", "notify", dut.notify),
        *_stream("outputs", "self_ipi", dut.self_ipi),
        *_stream("outputs", "gp", dut.gp),
        Probe("outputs", "busy", dut.busy),
    ]


def _pipelined(dut):
    seq, issuer = dut.sequencer, dut.issuer
    trip = issuer.trip
    return [
        _state("sequencer", seq),
        Probe("sequencer", "kind", Value.cast(seq.kind), _enum_decoder(ICRWriteKind)),
        Probe("sequencer", "image", seq.image), Probe("sequencer", "pid_line", seq.pid_line),
        Probe("sequencer", "notifying", seq.notifying),
        Probe("issuer", "count", trip.count), Probe("issuer", "issued", issuer.issued),
        Probe("issuer", "answered", issuer.answered), Probe("issuer", "erred", issuer.erred),
        Probe("issuer", "locked", issuer.locked), Probe("issuer", "done", trip.done),
        Probe("issuer", "error", trip.error),
    ]


def probes(dut):
    """The signals of an `IPIVirtualizer` worth looking at, flat, one group per stage."""
    cfg = [Probe("cfg", name[len("cfg_"):], value, decode)
           for name, value, decode in _leaves("cfg", dut.cfg)]
    head = [*cfg, *[Probe("icr", p.name[len("icr_"):], p.value, p.decode)
                    for p in _stream("icr", "icr", dut.icr)]]
    if dut.bus_kind == "pipelined":
        return [*head, *_pipelined(dut), *_bus(dut.bus), *_outputs(dut)]
    ic, lk, pu, vu = dut.interceptor, dut.lookup, dut.pid_update, dut.virr_update
    return [
        *head,
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
        *_bus(dut.bus),
        *_outputs(dut),
    ]


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


class _SamplingTicks:
    """A ``ctx.tick()`` to iterate over (as `tb.amaranth_testbench` does), sampling every
    probe before each clock edge it waits for."""

    def __init__(self, tick, sample):
        self._tick, self._sample = tick, sample

    async def __aiter__(self):
        ticks = self._tick.__aiter__()
        try:
            while True:
                self._sample()
                yield await ticks.__anext__()
        finally:
            await ticks.aclose()


class _SamplingContext:
    """The harness's testbench context, sampling every probe before each clock tick."""

    def __init__(self, ctx, sample):
        self._ctx, self._sample = ctx, sample

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def tick(self, *args, **kwargs):
        return _SamplingTicks(self._ctx.tick(*args, **kwargs), lambda: self._sample(self._ctx))


class RecordingHarness(Harness):
    """A `tb.amaranth_harness.Harness` of an `IPIVirtualizer` that also fills
    ``self.recording`` (a `Recording` of `probes`) during `run`."""

    def __init__(self, dut, memory, **kwargs):
        super().__init__(dut, memory, **kwargs)
        self.recording = Recording(probes(dut))

    async def _bench(self, ctx, top, run, limit, progress):
        await super()._bench(_SamplingContext(ctx, self.recording.sample), top, run, limit,
                             progress)

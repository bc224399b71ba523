"""Coverage of the pipelined unit's state machine: every state and transition of its
sequencer (`hdl.pipelined_sequencer.PipelinedSequencer`: the ``State`` enum and the
``TRANSITIONS`` table it publishes, proven complete), crossed with the request kind, and the
two "previous output still offered" events; the same bins and report as `tb.fsm_coverage`
(whose `merge`, `report` and `format_report` judge them).

The kind of a cycle is the sequencer's ``kind`` register while it works on a request, and the
kind offered on ``icr`` while it is idle (nothing offered: no kind, plain bins only).
"""

import json
from collections import Counter
from pathlib import Path

from hdl.formats import ICRWriteKind
from hdl.pipelined_sequencer import PipelinedSequencer


__all__ = ["KIND_STATES", "KIND_UNREACHABLE", "EVENTS", "model", "Sampler"]

State = PipelinedSequencer.State
KINDS = tuple(k.name for k in ICRWriteKind)
_HI, _LO, _X2, _UIPI = "XAPIC_ICR_HI", "XAPIC_ICR_LO", "X2APIC_ICR", "SENDUIPI"
_ALL = {s.name for s in State}
_POSTING_ONLY = _ALL - {"ENTRY", "IRR_READ", "IRR_WRITE", "OFFER"}

#: Per kind, the states a request of that kind can be in (None: every state), and why.
KIND_STATES = {
    _HI: ({"IDLE", "STORES", "OUTPUT"}, "an ICR2 write only stores VICR_HI (or exits on a bus "
                                         "error)"),
    _LO: (None, ""),
    _X2: (_POSTING_ONLY, "an x2APIC write knows its destination: no entry round trip of its own, "
                         "and it is never a virtualized self-IPI"),
    _UIPI: (_POSTING_ONLY, "SENDUIPI knows its destination: no entry round trip of its own, and "
                           "it is never a virtualized self-IPI"),
}

#: (from, to) -> (the only kinds that take it, why).
KIND_UNREACHABLE = {
    ("IDLE", "IDLE"): ((), "an idle sequencer takes the write offered at once: it stays idle "
                           "only while nothing is offered (no kind)"),
    ("IDLE", "OUTPUT"): ((_X2,), "only an x2APIC write ends at once (#GP, WRMSR exit)"),
    ("STORES", "IDLE"): ((_HI,), "only an ICR2 write ends after its stores"),
    ("STORES", "ENTRY"): ((_LO,), "only an xAPIC ICR-low write learns its destination from "
                                  "VICR_HI"),
    ("STORES", "IRR_READ"): ((_LO,), "only an xAPIC ICR-low write is a virtualized self-IPI"),
    ("STORES", "READS"): ((_X2, _UIPI), "only a write that knows its destination reads the "
                                        "entry with its stores"),
}

#: Events, with the kinds that can have them.
EVENTS = {
    "notify_while_offered": ((_LO, _X2, _UIPI),
                             "a notification is ready while the previous one is still offered"),
    "self_ipi_while_offered": ((_LO,),
                               "a self-IPI is ready while the previous one is still offered"),
}

_STAGE = "sequencer"


def _state_bins(bins, s):
    bins[f"{_STAGE}:{s}"] = None
    for kind in KINDS:
        allowed, why = KIND_STATES[kind]
        bins[f"{_STAGE}:{s}@{kind}"] = None if allowed is None or s in allowed else why


def _transition_bins(bins, a, b):
    bins[f"{_STAGE}:{a}->{b}"] = None
    for kind in KINDS:
        allowed, why = KIND_STATES[kind]
        reason = None
        if allowed is not None and not {a, b} <= allowed:
            reason = why
        elif (a, b) in KIND_UNREACHABLE and kind not in KIND_UNREACHABLE[a, b][0]:
            reason = KIND_UNREACHABLE[a, b][1]
        bins[f"{_STAGE}:{a}->{b}@{kind}"] = reason


def model():
    """The bins to judge, as `tb.fsm_coverage.model` gives them: {"bins": {bin: None or the
    reason it is unreachable}, "tables": ...}."""
    bins = {}
    for s in State:
        _state_bins(bins, s.name)
    for a, b in sorted(PipelinedSequencer.TRANSITIONS, key=lambda t: (t[0].value, t[1].value)):
        _transition_bins(bins, a.name, b.name)
    for event, (kinds, _) in EVENTS.items():
        for kind in KINDS:
            bins[f"event:{event}@{kind}"] = None if kind in kinds else \
                f"a {kind} request never reaches that point"
    return {"bins": bins, "tables": {_STAGE: {
        "states": [s.name for s in sorted(State, key=lambda s: s.value)],
        "transitions": sorted((a.name, b.name) for a, b in PipelinedSequencer.TRANSITIONS)}}}


class Sampler:
    """Counts the bins of one or more runs of ``n_cores`` pipelined units (the cores of an
    `IPIVSystem`; ``sample`` once a cycle per core), merged."""

    def __init__(self, n_cores=1):
        self.hits = Counter()
        self._prevs = [None] * n_cores      # per core: (state name, kind) of the last cycle

    def sample(self, state, kind, offered, notify, self_ipi, core=0):
        """One cycle of core ``core``: ``state`` the sequencer's state (int), ``kind`` its
        ``kind`` register (int), ``offered`` the kind offered on ``icr`` (int, None if
        ``valid`` is low), ``notify``/``self_ipi`` (valid, ready) of those outputs."""
        name = State(state).name
        if name == "IDLE":
            kind = None if offered is None else ICRWriteKind(offered).name
        else:
            kind = ICRWriteKind(kind).name
        hits = self.hits
        hits[f"{_STAGE}:{name}"] += 1
        if kind is not None:
            hits[f"{_STAGE}:{name}@{kind}"] += 1
        prev = self._prevs[core]
        if prev is not None:
            p_name, p_kind = prev
            t = f"{_STAGE}:{p_name}->{name}"
            hits[t] += 1
            if p_kind is not None:
                hits[f"{t}@{p_kind}"] += 1
            if p_name == "WRITES" and name == "NOTIFY":
                hits[f"event:notify_while_offered@{p_kind}"] += 1
            if p_name == "IRR_WRITE" and name == "OFFER":
                hits[f"event:self_ipi_while_offered@{p_kind}"] += 1
        self._prevs[core] = (name, kind)

    def export(self, path):
        """The hits as JSON (`tb.fsm_coverage.merge` reads them)."""
        Path(path).write_text(json.dumps(dict(self.hits), indent=0, sort_keys=True))

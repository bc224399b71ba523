"""Coverage of the unit's state machines: every state and transition of each stage's FSM and of
the bus arbiter, crossed with the request kind, sampled cycle by cycle on both simulator
backends (plain Python once the model is built; the model is read from the design).

**The model** (`model`). Each stage publishes its states (the ``State`` enum of its ``state``
register) and its transition table (``TRANSITIONS``, a self-loop where a state waits); the
``invariants`` proof shows the table complete (the register never takes a pair outside it),
and a transition seen in simulation that the table lacks is reported as unexpected. The
arbiter has no FSM: its state is the owner
register (the grant), and its transitions are all pairs of masters, minus the pairs the stage
order rules out (`ARBITER_UNREACHABLE`, each with its reason). The cross with the request kind
keeps, per stage, the states a request of that kind can be in (`KIND_STATES`) and drops the few
transitions between them that only another kind takes (`KIND_UNREACHABLE`), each with its
reason; everything else the design's table allows is judged reachable, so an empty bin is a
hole in the stimulus.

**Sampling** (`Sampler`): once a cycle per core, the backend hands over the state register of
each stage, the arbiter's grant, ``cyc``/``ack`` of the bus, the kind of the ICR write on the
``icr`` stream and whether it is taken, the ``valid`` of the streams between the stages, and
``valid``/``ready`` of ``notify`` and ``self_ipi``. A transition is the pair (state in cycle t,
state in cycle t + 1), attributed to the kind of the request the stage works on in cycle t (a
stage that is idle with nothing offered to it works for no request: its bins are the plain,
uncrossed ones only). The events "a notification is ready while the previous one is still
offered" (the PID update's NotifyInfo write completes while ``notify.valid & ~notify.ready``)
and its self-IPI twin are bins of their own.

Bins are strings, so coverage files of many runs merge by name (`merge`); `report` gives hit
and reachable bins per stage, the arbiter, the crosses and the events, and what is missing.
"""

import json
from collections import Counter
from pathlib import Path

from hdl.formats import ICRWriteKind
from hdl.ipi_virtualizer import STAGES as STAGE_TABLE


__all__ = ["STAGES", "KINDS", "StageFSM", "fsm_tables", "model", "Sampler", "merge",
           "report", "format_report", "KIND_STATES", "KIND_UNREACHABLE", "ARBITER_UNREACHABLE",
           "EVENTS"]

#: The stages' names, in the order of the unit's arbiter masters (`hdl.ipi_virtualizer.STAGES`).
STAGES = tuple(stage.name for stage in STAGE_TABLE)
KINDS = tuple(k.name for k in ICRWriteKind)
_HI, _LO, _X2, _UIPI = "XAPIC_ICR_HI", "XAPIC_ICR_LO", "X2APIC_ICR", "SENDUIPI"
_POSTING = (_LO, _X2, _UIPI)

#: Per stage and kind, the states a request of that kind can occupy (None: every state), with
#: the reason for what is left out.
KIND_STATES = {
    "interceptor": {
        _HI: ({"IDLE", "STORE_HI", "OUTPUT"}, "an ICR2 write only stores VICR_HI (or exits on "
                                                "a bus error)"),
        _LO: ({"IDLE", "STORE_LO", "READ_HI", "OUTPUT"}, "an xAPIC ICR-low write stores 300H "
                                                         "and reads VICR_HI back"),
        _X2: ({"IDLE", "STORE_LO", "OUTPUT"}, "an x2APIC write stores 300H only (or #GP/WRMSR "
                                              "exit with no store)"),
        _UIPI: ({"IDLE", "STORE_HI", "STORE_LO", "OUTPUT"}, "SENDUIPI stores its image (xAPIC: "
                                                            "310H then 300H), no read-back"),
    },
    "lookup": {_HI: (set(), "an ICR2 write never posts"), **{k: (None, "") for k in _POSTING}},
    "pid_update": {_HI: (set(), "an ICR2 write never posts"),
                   **{k: (None, "") for k in _POSTING}},
    "virr_update": {_LO: (None, ""),
                    **{k: (set(), "only an xAPIC ICR-low write is a virtualized self-IPI")
                       for k in (_HI, _X2, _UIPI)}},
}

#: (stage, from, to) -> (the only kinds that take it, why).
KIND_UNREACHABLE = {
    ("interceptor", "IDLE", "OUTPUT"): ((_X2,), "only an x2APIC write ends without a store "
                                                "(#GP, WRMSR exit)"),
    ("interceptor", "STORE_HI", "IDLE"): ((_HI,), "only an ICR2 write ends after storing "
                                                  "VICR_HI"),
}

#: Owner transitions of the unit's arbiter (masters = `STAGES`) that cannot happen, and why.
_ORDER = ("stage order: every request starts with the interceptor's store, the lookup follows "
          "only the interceptor, the PID update only the lookup, the VIRR update only the "
          "interceptor")
ARBITER_UNREACHABLE = {(a, b): _ORDER for a, b in (
    ("interceptor", "pid_update"), ("lookup", "virr_update"), ("pid_update", "lookup"),
    ("pid_update", "virr_update"), ("virr_update", "lookup"), ("virr_update", "pid_update"))}

#: Crossed arbiter transitions (owner in cycle t with ``cyc`` high -> owner in cycle t + 1),
#: attributed to the kind of the request the owner in cycle t serves: the masters a kind uses
#: may follow one another in stage order or stay; the interceptor follows the last stage of a
#: request (the next write is accepted as its last transfer completes). Anything else is not
#: reachable with ``cyc`` high: after a lookup's exit the next write waits until the exit is
#: taken, so the interceptor never follows the lookup within a bus cycle.
_KIND_MASTERS = {_HI: ("interceptor",),
                 _LO: STAGES, _X2: STAGES[:3], _UIPI: STAGES[:3]}


def _arbiter_cross():
    bins = set()
    for kind, masters in _KIND_MASTERS.items():
        bins |= {(m, m, kind) for m in masters}
        if kind in _POSTING:
            bins |= {("interceptor", "lookup", kind), ("lookup", "pid_update", kind),
                     ("pid_update", "interceptor", kind)}
    bins.add(("interceptor", "virr_update", _LO))
    # not ("virr_update", "interceptor", _LO): see _VIRR_LAST
    return bins


_VIRR_LAST = ("the VIRR update takes its request from the interceptor only as its last transfer "
              "completes, so the interceptor accepts the next write a cycle later and the bus "
              "is idle in between (unlike after the PID update, whose request comes from the "
              "lookup)")


#: Events, with the stage and the kinds that can have them.
EVENTS = {
    "notify_while_offered": ("pid_update", _POSTING,
                             "a notification is ready while the previous one is still offered"),
    "self_ipi_while_offered": ("virr_update", (_LO,),
                               "a self-IPI is ready while the previous one is still offered"),
}


# -- the model, from the design ----------------------------------------------------------------

class StageFSM:
    """One stage's FSM: ``states`` (names by encoding) and ``transitions`` {(from, to)}."""

    def __init__(self, name, states, transitions):
        self.name = name
        self.states = tuple(states)
        self.transitions = frozenset(transitions)

    def __repr__(self):
        return f"StageFSM({self.name}, {len(self.states)} states, " \
               f"{len(self.transitions)} transitions)"


def fsm_tables(unit):
    """{stage: `StageFSM`} of an `hdl.IPIVirtualizer`, from the tables its stages publish
    (state names indexed by their encoding)."""
    tables = {}
    for stage in STAGE_TABLE:
        component = type(getattr(unit, stage.name))
        states = sorted(component.State, key=lambda s: s.value)
        assert [s.value for s in states] == list(range(len(states))), "dense encodings"
        tables[stage.name] = StageFSM(stage.name, [s.name for s in states],
                                      {(a.name, b.name) for a, b in component.TRANSITIONS})
    return tables


def model(unit, *, system_cores=None):
    """The bins to judge: {"states": {bin: reason or None}, ...}: every bin of the design with
    None if reachable, or the reason it is not. Bins are strings ``stage:STATE``,
    ``stage:FROM->TO``, the same with ``@KIND`` for the crosses, ``arbiter:A->B[@KIND]``, and
    ``event:NAME@KIND``. ``system_cores``: also the arbiter of an `IPIVSystem` of that many
    cores (``system:i->j``, all reachable)."""
    tables = fsm_tables(unit)
    bins = {}
    for stage, fsm in tables.items():
        for s in fsm.states:
            bins[f"{stage}:{s}"] = None
            for kind in KINDS:
                allowed, why = KIND_STATES[stage][kind]
                ok = allowed is None or s in allowed
                bins[f"{stage}:{s}@{kind}"] = None if ok else why
        for a, b in sorted(fsm.transitions):
            bins[f"{stage}:{a}->{b}"] = None
            for kind in KINDS:
                allowed, why = KIND_STATES[stage][kind]
                reason = None
                if allowed is not None and not {a, b} <= allowed:
                    reason = why
                elif (stage, a, b) in KIND_UNREACHABLE and \
                        kind not in KIND_UNREACHABLE[stage, a, b][0]:
                    reason = KIND_UNREACHABLE[stage, a, b][1]
                bins[f"{stage}:{a}->{b}@{kind}"] = reason
    cross = _arbiter_cross()
    for a in STAGES:
        bins[f"arbiter:{a}"] = None
        for b in STAGES:
            bins[f"arbiter:{a}->{b}"] = ARBITER_UNREACHABLE.get((a, b))
            for kind in KINDS:
                if (a, b, kind) in cross:
                    reason = None
                elif (a, b, kind) == ("virr_update", "interceptor", _LO):
                    reason = _VIRR_LAST
                else:
                    reason = ARBITER_UNREACHABLE.get((a, b)) or \
                        f"a {kind} request does not use both masters in this order within a " \
                        f"bus cycle (see _arbiter_cross)"
                bins[f"arbiter:{a}->{b}@{kind}"] = reason
    for event, (_, kinds, _) in EVENTS.items():
        for kind in KINDS:
            bins[f"event:{event}@{kind}"] = None if kind in kinds else \
                f"a {kind} request never reaches that point"
    if system_cores:
        for i in range(system_cores):
            for j in range(system_cores):
                bins[f"system:{i}->{j}"] = None
    return {"bins": bins, "tables": {s: {"states": list(f.states),
                                         "transitions": sorted(f.transitions)}
                                     for s, f in tables.items()}}


# -- sampling ----------------------------------------------------------------------------------

class _Core:
    def __init__(self):
        self.kind = [None] * len(STAGES)        # kind of the request at each stage
        self.prev = None                        # (states, kinds, grant, cyc) of the last cycle


class Sampler:
    """Counts the bins of one run (see the module docstring for what a backend hands over).

    Parameters
    ----------
    tables : {stage: StageFSM}
        From `fsm_tables` (the state encodings).
    n_cores : int
    system : bool
        Also sample the grant of an `IPIVSystem`'s arbiter (`system_grant`).
    """

    def __init__(self, tables, n_cores=1):
        self.names = [tables[s].states for s in STAGES]
        self.idle = [names.index("IDLE") for names in self.names]
        self.hits = Counter()
        self.cores = [_Core() for _ in range(n_cores)]
        self._system_prev = None

    def system_grant(self, grant):
        """The grant of an `IPIVSystem`'s arbiter in this cycle."""
        if self._system_prev is not None:
            self.hits[f"system:{self._system_prev}->{grant}"] += 1
        self._system_prev = grant

    def sample(self, core, states, grant, cyc, ack, icr_kind, icr_taken, post_valid,
               self_ipi_req_valid, lookup_post_valid, notify, self_ipi):
        """One cycle of core ``core``: ``states`` the four stages' state registers (ints),
        ``grant`` the unit arbiter's grant, ``cyc``/``ack`` of the unit's bus, ``icr_kind`` the
        `ICRWriteKind` value offered on ``icr`` (None if ``valid`` is low), ``icr_taken`` its
        handshake, ``post_valid``/``self_ipi_req_valid`` the interceptor's outputs to the
        lookup and the VIRR update, ``lookup_post_valid`` the lookup's to the PID update,
        ``notify``/``self_ipi`` (valid, ready) of those outputs."""
        c, hits = self.cores[core], self.hits
        names = [self.names[i][s] for i, s in enumerate(states)]
        offered = ICRWriteKind(icr_kind).name if icr_kind is not None else None
        # the kind each stage works for in this cycle (downstream first: same-cycle handovers)
        if lookup_post_valid:
            c.kind[2] = c.kind[1]
        if post_valid:
            c.kind[1] = c.kind[0]
        if self_ipi_req_valid:
            c.kind[3] = c.kind[0]
        inputs = (offered is not None, post_valid, lookup_post_valid, self_ipi_req_valid)
        kinds = []
        for i, name in enumerate(names):
            if i == 0 and name == "IDLE":
                kinds.append(offered)
            elif name == "IDLE" and not inputs[i]:
                kinds.append(None)
            else:
                kinds.append(c.kind[i])
        if icr_taken:
            c.kind[0] = offered
        stage_of_grant = STAGES[grant]
        if c.prev is not None:
            p_names, p_kinds, p_grant, p_cyc = c.prev
            for i, stage in enumerate(STAGES):
                t = f"{stage}:{p_names[i]}->{names[i]}"
                hits[t] += 1
                if p_kinds[i] is not None:
                    hits[f"{t}@{p_kinds[i]}"] += 1
            a = f"arbiter:{p_grant}->{stage_of_grant}"
            hits[a] += 1
            if p_cyc:
                k = p_kinds[STAGES.index(p_grant)]
                if k is not None:
                    hits[f"{a}@{k}"] += 1
        for i, stage in enumerate(STAGES):
            hits[f"{stage}:{names[i]}"] += 1
            if kinds[i] is not None:
                hits[f"{stage}:{names[i]}@{kinds[i]}"] += 1
        hits[f"arbiter:{stage_of_grant}"] += 1
        if cyc and ack:
            if stage_of_grant == "pid_update" and names[2] == "NOTIFY_INFO_WRITE" and \
                    notify[0] and not notify[1] and kinds[2] is not None:
                hits[f"event:notify_while_offered@{kinds[2]}"] += 1
            if stage_of_grant == "virr_update" and names[3] == "WRITE" and \
                    self_ipi[0] and not self_ipi[1] and kinds[3] is not None:
                hits[f"event:self_ipi_while_offered@{kinds[3]}"] += 1
        c.prev = (names, kinds, stage_of_grant, cyc)

    def export(self, path):
        Path(path).write_text(json.dumps(dict(self.hits), indent=0, sort_keys=True))


# -- merging and judging (plain Python) --------------------------------------------------------

def merge(sources):
    """Sum hit counts: ``sources`` are `Sampler`s, dicts or paths of exported JSON files."""
    total = Counter()
    for source in sources:
        if isinstance(source, Sampler):
            total.update(source.hits)
        elif isinstance(source, dict):
            total.update(source)
        else:
            total.update(json.loads(Path(source).read_text()))
    return total


def _group(bin_name):
    head, _, rest = bin_name.partition(":")
    crossed = "@" in rest
    kind = "transitions" if "->" in rest else "states"
    if head == "event":
        return "events"
    return f"{head} {kind}" + (" x kind" if crossed else "")


def report(hits, the_model, *, groups=None):
    """{group: {"hit": n, "reachable": n, "missing": [bins], "unreachable": n}} and a total
    over the judged groups; ``groups``: judge only these (default: every group but the
    system arbiter's when no system ran). A group is e.g. ``pid_update transitions x kind``."""
    out = {}
    for name, reason in the_model["bins"].items():
        g = out.setdefault(_group(name), {"hit": 0, "reachable": 0, "missing": [],
                                          "unreachable": 0, "unexpected": []})
        if reason is not None:
            g["unreachable"] += 1
            if hits.get(name):
                g["unexpected"].append(name)
            continue
        g["reachable"] += 1
        if hits.get(name):
            g["hit"] += 1
        else:
            g["missing"].append(name)
    for name in hits:
        # a transition (or state) the published table lacks: the table is wrong
        if name not in the_model["bins"] and hits[name] and \
                name.partition(":")[0] in the_model["tables"]:
            group = out.setdefault(_group(name), {"hit": 0, "reachable": 0, "missing": [],
                                                  "unreachable": 0, "unexpected": []})
            group["unexpected"].append(name)
    judged = [g for g in out if groups is None or g in groups]
    hit = sum(out[g]["hit"] for g in judged)
    reachable = sum(out[g]["reachable"] for g in judged)
    unexpected = [b for g in judged for b in out[g]["unexpected"]]
    return {"groups": out, "judged": judged, "hit": hit, "reachable": reachable,
            "percent": round(100.0 * hit / reachable, 2) if reachable else 0.0,
            "unexpected": unexpected}


def format_report(rep):
    """Lines for a terminal: hit/reachable per group, and what is missing."""
    lines = []
    for g, r in sorted(rep["groups"].items()):
        if g not in rep["judged"]:
            continue
        lines.append(f"{g:38s} {r['hit']:4d}/{r['reachable']:<4d}"
                     f" ({r['unreachable']} unreachable)")
        for b in r["missing"][:12]:
            lines.append(f"    missing: {b}")
        if len(r["missing"]) > 12:
            lines.append(f"    ... and {len(r['missing']) - 12} more")
    lines.append(f"{'total':38s} {rep['hit']:4d}/{rep['reachable']:<4d} = {rep['percent']} %")
    for b in rep["unexpected"][:8]:
        lines.append(f"    hit although declared unreachable or not in the stage's table: {b}")
    return lines

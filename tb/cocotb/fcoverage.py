"""Functional coverage of the unit with cocotb-coverage (sampled once per checked request).

Bins are named strings so that coverage files of many runs merge by name (`merge`). Only
reachable combinations are bins: the crosses ignore what the spec makes impossible (a #GP,
self-IPI, lone ICR2 store or broadcast exit in the other APIC mode), so every empty bin is a
hole in the stimulus, not noise. Items:

- ``ipiv.icr.*``: each ICR field of the vICR image (delivery mode, destination mode,
  shorthand, trigger, level, bit 12, reserved bits, vector class, destination class) and the
  request kind;
- ``ipiv.icr_x_mode``: which ICR field decided the request (``icr_class``) x APIC mode;
- ``ipiv.outcome``, ``ipiv.apic_mode``, ``ipiv.host_mode``, ``ipiv.latency``,
  ``ipiv.backpressure`` and their cross ``ipiv.outcome_x_modes_x_timing``.
"""

from hdl.formats import (
    DeliveryMode, DestMode, ExitCause, FIRST_LEGAL_VECTOR, ICR_RESERVED_MASK, ICRWriteKind,
    Shorthand, TriggerMode, X2APICICR, XAPIC_BROADCAST_ID, XAPICICR,
)
from sim.golden import Outcome
from tb.codec import ICR_LOW, field_slice


__all__ = ["OUTCOMES", "LATENCY_BINS", "latency_bin", "icr_class", "sample", "export", "merge",
           "summarize", "judge", "CROSS"]

OUTCOMES = ["stored", "gp", "self-ipi", "notified", "suppressed:ON", "suppressed:SN",
            "wrmsr-exit"] + \
    [f"exit:{c.name}" for c in ExitCause]
MODES = ["xapic", "x2apic"]
LATENCY_BINS = ["0", "1", "2-3", "4+", "random"]
BACKPRESSURE_BINS = ["none", "some"]
ICR_CLASSES = ["virtualizable", "self", "reserved", "shorthand", "trigger", "bit12", "logical",
               "delivery", "illegal-vector"]
DEST_CLASSES = ["in-range", "beyond-last", "broadcast", "all-ones"]
VECTOR_CLASSES = ["0-15", "16", "17-254", "255"]


def latency_bin(latency, wait_states):
    if wait_states:
        return "random"
    return "0" if latency == 0 else "1" if latency == 1 else "2-3" if latency < 4 else "4+"


_XAPIC_DEST = field_slice(XAPICICR, "high", "dest")
_X2APIC_DEST = field_slice(X2APICICR, "dest")


def icr_class(low, kind):
    """The first ICR field (in the unit's order of checks) that keeps a write from being
    virtualized as an IPI, or "virtualizable"/"self"."""
    f = ICR_LOW.unpack(low)
    if f["shorthand"] == Shorthand.SELF.value and kind == ICRWriteKind.XAPIC_ICR_LO:
        return "self"
    if low & ICR_RESERVED_MASK:
        return "reserved"
    if f["shorthand"] != Shorthand.NONE.value:
        return "shorthand"
    if f["trigger"] == TriggerMode.LEVEL.value:
        return "trigger"
    if f["delivery_status"]:
        return "bit12"
    if f["dest_mode"] == DestMode.LOGICAL.value:
        return "logical"
    if f["delivery_mode"] != DeliveryMode.FIXED.value:
        return "delivery"
    if f["vector"] < FIRST_LEGAL_VECTOR:
        return "illegal-vector"
    return "virtualizable"


def _vector_class(v):
    return "0-15" if v < 16 else "16" if v == 16 else "255" if v == 255 else "17-254"


class Sample:
    """What one checked request contributes to coverage (bin names as attributes).

    Parameters
    ----------
    resolved : tb.checker.Resolved
    latency, wait_states, backpressure : the memory timing and back-pressure of the run
    """

    def __init__(self, resolved, *, latency, wait_states, backpressure):
        request, result = resolved.request, resolved.result
        cfg = request.cfg
        self.kind = ICRWriteKind(request.kind).name
        self.outcome = resolved.outcome
        xapic = request.kind in (ICRWriteKind.XAPIC_ICR_LO, ICRWriteKind.XAPIC_ICR_HI) or \
            (request.kind == ICRWriteKind.SENDUIPI and not cfg.x2apic)
        self.apic_mode = "xapic" if xapic else "x2apic"
        self.host_mode = "x2apic" if cfg.host_x2apic else "xapic"
        self.latency = latency_bin(latency, wait_states)
        self.backpressure = "some" if backpressure else "none"
        # ICR fields exist for everything but a lone ICR2 store
        self.has_icr = result.outcome is not Outcome.STORED
        image = result.icr if result.outcome is not Outcome.GP else request.value
        low = image & 0xFFFF_FFFF
        f = ICR_LOW.unpack(low)
        self.delivery_mode = DeliveryMode(f["delivery_mode"]).name
        self.dest_mode = DestMode(f["dest_mode"]).name
        self.shorthand = Shorthand(f["shorthand"]).name
        self.trigger = TriggerMode(f["trigger"]).name
        self.level = str(f["level"])
        self.bit12 = str(f["delivery_status"])
        self.reserved = "set" if low & ICR_RESERVED_MASK else "clear"
        self.vector = _vector_class(f["vector"])
        self.icr_class = icr_class(low, request.kind)
        offset, mask = _XAPIC_DEST if xapic else _X2APIC_DEST
        dest = image >> offset & mask
        if xapic and dest == XAPIC_BROADCAST_ID:
            self.dest = "broadcast"
        elif not xapic and dest == mask:
            self.dest = "all-ones"
        else:
            self.dest = "in-range" if dest <= cfg.last_pid_index else "beyond-last"


def _define():
    from cocotb_coverage.coverage import CoverCross, CoverPoint

    def point(name, attr, bins):
        return CoverPoint(f"ipiv.{name}", xf=lambda s: getattr(s, attr), bins=list(bins))

    field_points = [
        point("icr.kind", "kind", [k.name for k in ICRWriteKind]),
        point("icr.delivery_mode", "delivery_mode", [m.name for m in DeliveryMode]),
        point("icr.dest_mode", "dest_mode", [m.name for m in DestMode]),
        point("icr.shorthand", "shorthand", [m.name for m in Shorthand]),
        point("icr.trigger", "trigger", [m.name for m in TriggerMode]),
        point("icr.level", "level", ["0", "1"]),
        point("icr.bit12", "bit12", ["0", "1"]),
        point("icr.reserved", "reserved", ["clear", "set"]),
        point("icr.vector", "vector", VECTOR_CLASSES),
        point("icr.destination", "dest", DEST_CLASSES),
        point("icr.class", "icr_class", ICR_CLASSES),
        point("icr.class_mode", "apic_mode", MODES),
    ]
    fields_cross = CoverCross("ipiv.icr_x_mode", items=["ipiv.icr.class", "ipiv.icr.class_mode"],
                              ign_bins=[("self", "x2apic")])
    run_points = [
        point("outcome", "outcome", OUTCOMES),
        point("apic_mode", "apic_mode", MODES),
        point("host_mode", "host_mode", MODES),
        point("latency", "latency", LATENCY_BINS),
        point("backpressure", "backpressure", BACKPRESSURE_BINS),
    ]
    impossible = [("gp", "xapic"), ("self-ipi", "x2apic"), ("stored", "x2apic"),
                  ("exit:BROADCAST", "x2apic"), ("wrmsr-exit", "xapic")]
    run_cross = CoverCross(
        "ipiv.outcome_x_modes_x_timing",
        items=["ipiv.outcome", "ipiv.apic_mode", "ipiv.host_mode", "ipiv.latency",
               "ipiv.backpressure"],
        ign_bins=[(o, m, None, None, None) for o, m in impossible])

    # A cross reads what its points matched in this call: it must be the innermost wrapper.
    def on_fields(s):
        pass
    on_fields = fields_cross(on_fields)
    for p in field_points:
        on_fields = p(on_fields)

    def on_run(s):
        pass
    on_run = run_cross(on_run)
    for p in run_points:
        on_run = p(on_run)
    return on_fields, on_run


_samplers = None


def _get_samplers():
    global _samplers
    if _samplers is None:
        _samplers = _define()
    return _samplers


def sample(resolved, *, latency, wait_states, backpressure):
    """Sample one `tb.checker.Resolved` request (call inside the simulator process)."""
    on_fields, on_run = _get_samplers()
    s = Sample(resolved, latency=latency, wait_states=wait_states, backpressure=backpressure)
    if s.has_icr:
        on_fields(s)
    on_run(s)


def export(path):
    """Write the coverage database of this process as YAML (cocotb-coverage's format); an
    empty database still lists every bin."""
    from cocotb_coverage.coverage import coverage_db
    _get_samplers()
    coverage_db.export_to_yaml(str(path))


# -- merging (plain Python: reads the YAML files) ------------------------------------------

def merge(paths):
    """Sum the bin hits of coverage YAML files: {item: {bin: hits}} for points and crosses."""
    import yaml
    merged = {}
    for path in paths:
        with open(path) as f:
            db = yaml.safe_load(f) or {}
        for name, item in db.items():
            bins = item.get("bins:_hits")
            if bins is None:
                continue
            into = merged.setdefault(name, {})
            for key, hits in bins.items():
                into[str(key)] = into.get(str(key), 0) + hits
    return merged


CROSS = "ipiv.outcome_x_modes_x_timing"


def judge(merged):
    """(bins hit, bins judged): every bin, except those of a memory timing (latency bin,
    back-pressure bin) that no sample has, i.e. that no test ran."""
    import ast
    cross = {ast.literal_eval(k): h for k, h in merged.get(CROSS, {}).items()}
    ran = {k[3:5] for k, h in cross.items() if h}
    hit = judged = 0
    for name, bins in merged.items():
        for key, hits in bins.items():
            if name == CROSS and ast.literal_eval(key)[3:5] not in ran:
                continue
            if name == "ipiv.latency" and key not in {t[0] for t in ran}:
                continue
            if name == "ipiv.backpressure" and key not in {t[1] for t in ran}:
                continue
            judged += 1
            hit += hits > 0
    return hit, judged


def summarize(merged):
    """{item: (covered bins, bins)} and the total over every item."""
    items = {name: (sum(1 for h in bins.values() if h > 0), len(bins))
             for name, bins in sorted(merged.items())}
    covered = sum(c for c, _ in items.values())
    total = sum(n for _, n in items.values())
    return items, (covered, total)

"""Cycle-exact WaveDrom timing diagrams of a `tb.waves.probes.Recording`: one column per
clock cycle, each value as the harness sampled it in that cycle, so a diagram cannot slip by a
cycle against the simulation (``tests/test_waves.py`` checks it against the harness's
cycle-stamped records); JSON, and SVG rendered by the ``wavedrom`` package.
"""

import json
import math

from .annotate import bus_targets


__all__ = ["DIAGRAM_ROWS", "wavedrom", "write_wavedrom"]

#: Rows of a timing diagram: (label, qualifier label or None). A qualified row shows its value
#: only in cycles where the qualifier is 1 (``x`` otherwise), as a data sheet does. A diagram
#: shows the rows its unit has: the classic unit's four stages and its arbiter's grant, or the
#: pipelined unit's sequencer state, its issuer's counts of one round trip and ``stall``.
DIAGRAM_ROWS = (
    ("icr", [("icr.valid", None), ("icr.ready", None), ("icr.kind", "icr.valid"),
             ("icr.data", "icr.valid")]),
    ("stages", [("interceptor.busy", None), ("lookup.busy", None), ("pid_update.busy", None),
                ("virr_update.busy", None), ("sequencer.state", None), ("issuer.issued", None),
                ("issuer.answered", None)]),
    ("bus", [("bus.grant", "bus.cyc"), ("bus.cyc", None), ("bus.stb", None),
             ("bus.stall", None), ("bus.we", None), ("bus.lock", None),
             ("bus.target", "bus.stb"), ("bus.ack", None), ("bus.err", None)]),
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
             "bus.err": (), "bus.stall": ()}


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
    targets = bus_targets(recording)
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
            if label in drop or label != "bus.target" and label not in recording.index:
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

"""nextpnr's JSON timing report (``--report FILE``): the post-route Fmax of each clock and the
worst path, and the statistics of several placement seeds.

A path in the report is a list of segments: the start register's clock-to-output, then
alternately routing and logic, then the end register's setup. `worst_path` condenses it to
what a reader needs: where it starts (the start register, with its bit when the net it
drives keeps the register's name), where it ends (the
register and the pin: ``D``/``DI`` data, ``CE`` enable, ``LSR`` set/reset), its logic levels
and its delay split into logic and routing. A carry chain counts as one level: the hops along
it (carry in to carry out) are not levels of their own.
"""

import json
import re
import statistics


__all__ = ["parse_nextpnr_report", "worst_path", "seed_statistics"]

# The cell-type suffixes Yosys' technology mapping and nextpnr's packing append to a name.
_MAPPED = re.compile(r"(_(TRELLIS_FF|SB_DFF\w*|DFFLC|LC)(_Q)?(_\d+)?|\$\S*)$")
# Carry propagation: into a carry chain cell's carry input and out of its carry output.
_CARRY_IN = {"FCI", "CIN", "CI"}


def _clean(name):
    """A cell or net name without the suffixes technology mapping added."""
    previous = None
    while previous != name:
        previous, name = name, _MAPPED.sub("", name)
    return name


def worst_path(path):
    """The worst path (a report's ``path`` list) as {start, end, logic_levels, delay_ns,
    logic_ns, routing_ns}."""
    if not path:
        raise ValueError("an empty path")
    routing = [seg for seg in path if seg["type"] == "routing"]
    logic = [seg for seg in path if seg["type"] == "logic"]
    first, last = path[0], path[-1]
    start = _clean(first["from"]["cell"])
    net = routing[0].get("net", "") if routing else ""
    if re.fullmatch(re.escape(start) + r"\[\d+\]", net):
        start = net
    return {
        "start": start,
        "end": f"{_clean(last['to']['cell'])}.{last['to']['port']}",
        "logic_levels": sum(1 for seg in logic if seg["from"]["port"] not in _CARRY_IN),
        "delay_ns": round(sum(seg["delay"] for seg in path), 2),
        "logic_ns": round(sum(seg["delay"] for seg in path if seg["type"] != "routing"), 2),
        "routing_ns": round(sum(seg["delay"] for seg in routing), 2),
    }


def parse_nextpnr_report(text):
    """From nextpnr's JSON report: ``clocks`` {clock: (fmax_mhz, target_mhz)} and ``path``,
    the `worst_path` between registers of one clock (None when it has none)."""
    try:
        report = json.loads(text)
        clocks = {name: (round(c["achieved"], 2), c["constraint"])
                  for name, c in report["fmax"].items()}
        paths = report.get("critical_paths", [])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a nextpnr timing report: {e}") from None
    # Register to register within one clock: a path with a clock edge at both ends.
    within = [p for p in paths if p.get("from", "").startswith(("posedge", "negedge"))
              and p.get("to", "").startswith(("posedge", "negedge"))]
    longest = max(within, key=lambda p: sum(seg["delay"] for seg in p["path"]), default=None)
    return {"clocks": clocks, "path": worst_path(longest["path"]) if longest else None}


def seed_statistics(fmaxes):
    """Median, minimum and maximum (MHz, 2 decimals) of the Fmax of several seeds."""
    if not fmaxes:
        raise ValueError("no seeds")
    return {"median": round(statistics.median(fmaxes), 2), "min": round(min(fmaxes), 2),
            "max": round(max(fmaxes), 2)}

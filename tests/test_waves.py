"""Readable waves (`tb.waves`): the .gtkw that ``ipiv sim`` writes, the names in its VCD, and
the timing diagrams checked cycle by cycle against the simulation's own records."""

import json
import re

import pytest

from hdl import IPIVirtualizer
from hdl.faults import Fault
from hdl.formats import ExitCause
from sim.golden import Outcome
from tb.amaranth_harness import MismatchError
from tb.directed import low, vm_memory, x2
from tb.runs import run_scenario
from tb.waves import (
    GTKW_SIZE, PERIOD_NS, run_with_waves_on_failure, timing_cases, timing_diagram,
    write_wavedrom,
)


@pytest.fixture(scope="module")
def waves(tmp_path_factory):
    out = tmp_path_factory.mktemp("waves")
    summary, vcd, gtkw = run_scenario("mixed", count=12, seed=2, out_dir=str(out))
    with open(gtkw) as f:
        save = f.read()
    with open(vcd) as f:
        dump = f.read()
    return summary, save, dump


def test_gtkw_opens_a_sized_window_zoomed_to_fit_the_run(waves):
    summary, save, _ = waves
    assert re.search(r"^\[size\] (\d+) (\d+)$", save, re.M).groups() == tuple(map(str, GTKW_SIZE))
    assert GTKW_SIZE[0] >= 1200 and GTKW_SIZE[1] >= 800
    assert "[timestart] 0\n" in save
    zoom = float(re.search(r"^\*(-?[\d.]+) ", save, re.M).group(1))
    width = int(re.search(r"^\[signals_width\] (\d+)$", save, re.M).group(1))
    # GTKWave 3.3: 2**-zoom * 5 ps per pixel; the whole run fits the wave pane with < 10 % left
    shown = 2 ** -zoom * 0.005 * (GTKW_SIZE[0] - width - 60)
    run = (summary["cycles"] - 1) * PERIOD_NS
    assert run <= shown <= 1.1 * run, (run, shown)


def test_gtkw_groups_are_flat_and_names_readable(waves):
    _, save, _ = waves
    depth, groups, aliases = 0, [], []
    for line in save.splitlines():
        if line.startswith("-") and line[1:] not in groups:
            groups.append(line[1:])
            depth += 1
            assert depth == 1, f"nested group {line}"
        elif line.startswith("-"):
            depth -= 1
        elif line.startswith("+{"):
            aliases.append(re.match(r"\+\{([^}]*)\} (\S+)", line).groups())
    assert groups == ["icr", "outputs", "bus", "interceptor", "lookup", "pid_update",
                      "virr_update", "cfg"]
    assert not {"interface", "view"} & set(groups)
    names = [a for a, _ in aliases]
    assert names[:3] == ["clk", "request", "cycle"]
    for alias, name in aliases[3:]:
        group, _, member = alias.partition("/")
        assert group in groups and member and name.startswith(f"ipiv.{group}.{member}"), alias
    assert not [n for _, n in aliases if "$" in n or "\\" in n]
    # the stage signals that used to be ambiguous say which stage they belong to
    for name in ("interceptor/busy", "lookup/busy", "pid_update/busy", "virr_update/busy",
                 "interceptor/post_valid", "lookup/post_valid", "bus/grant", "bus/target"):
        assert name in names


def test_vcd_has_a_clock_decoded_enums_and_the_requests(waves):
    summary, _, dump = waves
    assert "$timescale 1 ns $end" in dump
    assert re.search(r"\$var wire 1 (\S+) clk \$end", dump)
    # enums as text
    kinds = re.search(r"\$var string 1 (\S+) kind \$end", dump).group(1)
    assert re.search(rf"^sX2APIC_ICR {re.escape(kinds)}$", dump, re.M)
    req = re.search(r"\$var string 1 (\S+) request \$end", dump).group(1)
    texts = re.findall(rf"^s(#\S+) {re.escape(req)}$", dump, re.M)
    assert len(texts) == summary["requests"]
    assert any("posted,_notify_0xf2" in t for t in texts)
    assert any("exit_56" in t for t in texts)


# -- timing diagrams ----------------------------------------------------------------------------

def expand(entry):
    """A WaveDrom row back into one value per cycle ("0", "1", a data label, or None for x)."""
    data = iter(entry.get("data", []))
    out, last = [], None
    for ch in entry["wave"]:
        if ch == ".":
            out.append(last)
            continue
        last = next(data) if ch == "=" else None if ch == "x" else ch
        out.append(last)
    return out


def rows(document):
    table = {}
    for item in document["signal"]:
        for entry in ([item] if isinstance(item, dict) else item[1:]):
            table[entry["name"]] = expand(entry)
    return table


EXPECT = {
    "notify": (Outcome.POSTED, None), "suppressed": (Outcome.POSTED, None),
    "xapic-notify": (Outcome.POSTED, None), "self-ipi": (Outcome.SELF_IPI, None),
    "gp": (Outcome.GP, None), "exit-wrmsr": (Outcome.EXIT, ExitCause.DISABLED),
    "exit-disabled": (Outcome.EXIT, ExitCause.DISABLED),
    "exit-unsupported": (Outcome.EXIT, ExitCause.UNSUPPORTED),
    "exit-illegal-vector": (Outcome.EXIT, ExitCause.ILLEGAL_VECTOR),
    "exit-broadcast": (Outcome.EXIT, ExitCause.BROADCAST),
    "exit-index-range": (Outcome.EXIT, ExitCause.INDEX_RANGE),
    "exit-entry-invalid": (Outcome.EXIT, ExitCause.ENTRY_INVALID),
    "exit-bus-error": (Outcome.EXIT, ExitCause.BUS_ERROR),
}
STREAM_ROWS = {"notify": "outputs.notify_valid", "exit": "outputs.exit_valid",
               "self_ipi": "outputs.self_ipi_valid", "gp": "outputs.gp_valid"}


def test_one_diagram_per_outcome():
    assert [c.name for c in timing_cases()] == list(EXPECT)


@pytest.mark.parametrize("case", timing_cases(), ids=lambda c: c.name)
def test_diagram_matches_the_simulation_cycle_by_cycle(case, tmp_path):
    document, run, recording = timing_diagram(case)
    result = run.results[-1]
    assert (result.outcome, result.cause) == EXPECT[case.name]
    if case.name == "suppressed":
        assert result.notify is None
    if case.name == "notify":
        assert result.notify is not None
    table = rows(document)
    n = len(table["clk"])
    # one column per simulated cycle, from the harness's cycle 0 to its last
    assert n == len(recording) == run.cycles and document["head"]["tick"] == 0
    assert table["clk"] == ["p"] + [None] * (n - 1) or document["signal"][0]["wave"] == \
        "p" + "." * (n - 1)
    bit = {name: [v == "1" for v in values] for name, values in table.items()
           if set(values) <= {"0", "1"}}
    # the harness's own records, each stamped with its cycle
    accepted = [k for k in range(n) if bit["icr.valid"][k] and bit["icr.ready"][k]]
    assert accepted == [cycle for cycle, _ in run.accepted]
    assert [k for k in range(n) if bit["bus.cyc"][k]] == run.bus_cycles
    acks = [k for k in range(n) if bit["bus.ack"][k] or bit.get("bus.err", [0] * n)[k]]
    assert len(acks) == len(run.memory_log)
    for event in run.events:
        valid = bit[STREAM_ROWS[event.stream]]
        assert valid[event.valid_cycle] and valid[event.taken_cycle]
        assert event.valid_cycle == 0 or not valid[event.valid_cycle - 1]
    for name in set(STREAM_ROWS.values()) & set(bit):
        # a valid that never rose in the records is not drawn either
        assert any(bit[name]) == any(STREAM_ROWS[e.stream] == name for e in run.events)
    # data shown where it is qualified, as the harness decoded it
    last = run.events[-1] if run.events else None
    if last is not None and last.stream == "exit":
        reason, _, cause, _ = last.payload
        assert table["outputs.exit_reason"][last.valid_cycle] == str(reason)
        assert table["outputs.exit_cause"][last.valid_cycle] == cause.name
    if last is not None and last.stream == "notify":
        assert table["outputs.notify_vector"][last.valid_cycle] == f"{last.payload[0]:#x}"
    # the documented latency (README, ipiv bench at ack+1): notify.valid 13 cycles after the
    # x2APIC ICR write is accepted; the intercept's WRMSR exit 1 cycle after, with no transfer
    if case.name == "notify":
        assert last.valid_cycle - run.accepted[-1][0] == 13
    if case.name == "exit-wrmsr":
        assert last.valid_cycle - run.accepted[-1][0] == 1 and not any(bit["bus.cyc"])
    paths = write_wavedrom(document, str(tmp_path / case.name))
    with open(paths[0]) as f:
        assert json.load(f) == document
    with open(paths[1]) as f:
        svg = f.read()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "outputs.busy" in svg


# -- waves of a failing test --------------------------------------------------------------------

def test_a_failing_run_leaves_readable_waves(tmp_path):
    """A unit with an unlocked PID write fails the checker; the error names the waves of the
    failing run, written in the same readable view as `ipiv sim`'s."""
    with pytest.raises(MismatchError, match="waves of the failing run: gtkwave .*drop_lock"):
        run_with_waves_on_failure(lambda: IPIVirtualizer(faults={Fault.DROP_LOCK}),
                                  vm_memory(), [x2(1, low(0x40))], name="drop/lock run",
                                  out_dir=str(tmp_path))
    vcd, gtkw = tmp_path / "drop_lock_run.vcd", tmp_path / "drop_lock_run.gtkw"
    assert vcd.stat().st_size > 1000 and "failing test drop/lock run" in vcd.read_text()
    text = gtkw.read_text()
    assert "[size] 1600 1000" in text and "pid_update" in text and "$" not in \
        "".join(line for line in text.splitlines() if not line.startswith(("[", "*", "@")))


def test_a_passing_run_writes_no_waves(tmp_path):
    run = run_with_waves_on_failure(IPIVirtualizer, vm_memory(), [x2(1, low(0x40))],
                                    name="fine", out_dir=str(tmp_path))
    assert len(run.results) == 1 and list(tmp_path.iterdir()) == []

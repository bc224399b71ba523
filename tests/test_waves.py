"""Readable waves (`tb.waves`): the .gtkw that ``ipiv sim`` writes, the names in its VCD, and
the timing diagrams checked cycle by cycle against the simulation's own records."""

import html
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
    GTKW_SIZE, INDEX_NAME, PERIOD_NS, run_with_waves_on_failure, timing_cases, timing_diagram,
    write_timing_diagrams, write_wavedrom,
)


#: The .gtkw's groups of each unit: what it does first, then its stages, then the VMCS.
GROUPS = {"classic": ["icr", "outputs", "bus", "interceptor", "lookup", "pid_update",
                      "virr_update", "cfg"],
          "pipelined": ["icr", "outputs", "bus", "sequencer", "issuer", "cfg"]}


@pytest.fixture(scope="module", params=sorted(GROUPS))
def waves(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("waves")
    summary, vcd, gtkw = run_scenario("mixed", count=12, seed=2, out_dir=str(out),
                                      bus=request.param)
    with open(gtkw) as f:
        save = f.read()
    with open(vcd) as f:
        dump = f.read()
    return summary, save, dump, request.param


def test_gtkw_opens_a_sized_window_zoomed_to_fit_the_run(waves):
    summary, save, _, _ = waves
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
    _, save, _, bus = waves
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
    assert groups == GROUPS[bus]
    assert not {"interface", "view"} & set(groups)
    names = [a for a, _ in aliases]
    assert names[:3] == ["clk", "request", "cycle"]
    for alias, name in aliases[3:]:
        group, _, member = alias.partition("/")
        assert group in groups and member and name.startswith(f"ipiv.{group}.{member}"), alias
    assert not [n for _, n in aliases if "$" in n or "\\" in n]
    # the stage signals that used to be ambiguous say which stage they belong to
    stage_signals = {
        "classic": ("interceptor/busy", "lookup/busy", "pid_update/busy", "virr_update/busy",
                    "interceptor/post_valid", "lookup/post_valid", "bus/grant", "bus/target"),
        "pipelined": ("sequencer/state", "issuer/issued", "issuer/answered", "bus/stall",
                      "bus/target")}
    for name in stage_signals[bus]:
        assert name in names


def test_vcd_has_a_clock_decoded_enums_and_the_requests(waves):
    summary, _, dump, bus = waves
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
    if bus == "pipelined":          # the sequencer's state by name, through every round trip
        state = re.search(r"\$scope module sequencer \$end\s+\$var string 1 (\S+) state",
                          dump).group(1)
        seen = set(re.findall(rf"^s(\w+) {re.escape(state)}$", dump, re.M))
        assert {"IDLE", "STORES", "READS", "WRITES", "OUTPUT"} <= seen, seen


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


#: notify.valid after the x2APIC ICR write is accepted, at the catalogue's latency 1 (R = 2):
#: the issue's figures, 6R + 1 on the classic port, 3R + 4 on the pipelined one.
NOTIFY_CYCLES = {"classic": 13, "pipelined": 10}


@pytest.mark.parametrize("bus", sorted(NOTIFY_CYCLES))
@pytest.mark.parametrize("case", timing_cases(), ids=lambda c: c.name)
def test_diagram_matches_the_simulation_cycle_by_cycle(case, bus, tmp_path):
    document, run, recording = timing_diagram(case, bus=bus)
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
    # the documented latency (README, ipiv bench at R = 2): notify.valid NOTIFY_CYCLES after
    # the x2APIC ICR write is accepted; the intercept's WRMSR exit 1 cycle after, with no
    # transfer
    if case.name == "notify":
        assert last.valid_cycle - run.accepted[-1][0] == NOTIFY_CYCLES[bus]
    if case.name == "exit-wrmsr":
        assert last.valid_cycle - run.accepted[-1][0] == 1 and not any(bit["bus.cyc"])
    paths = write_wavedrom(document, str(tmp_path / case.name))
    with open(paths[0]) as f:
        assert json.load(f) == document
    with open(paths[1]) as f:
        svg = f.read()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "outputs.busy" in svg
    # each unit's own rows: the classic stages and grant, or the sequencer and its issuer
    own = {"classic": "interceptor.busy", "pipelined": "sequencer.state"}
    assert own[bus] in table and own[{"classic": "pipelined", "pipelined": "classic"}[bus]] \
        not in table


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


# -- the timing catalogue -----------------------------------------------------------------------

def test_catalogue_has_its_own_cases_not_the_test_fixtures():
    """CLI output must not depend on test code: no module of tb.waves imports the directed
    suite (or any test module)."""
    import ast
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / "tb" / "waves"
    imported = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imported.add(("." * node.level) + (node.module or ""))
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    assert not [m for m in imported if "directed" in m or m.startswith("tests")], imported


def test_the_pipelined_catalogue_at_latency_0_is_drawn_at_r_2(tmp_path):
    """A pipelined memory cannot answer in the cycle it takes a request: the catalogue's
    pipelined set is drawn at latency 1 then, and says so; the classic set at 0."""
    paths = write_timing_diagrams(str(tmp_path), latency=0, cases=["notify"])
    assert len(paths) == 2 * 2 + 1     # the one case named, on both ports, and the index
    titles = {bus: json.loads((tmp_path / bus / "notify.json").read_text())["head"]["text"]
              for bus in ("classic", "pipelined")}
    assert "ack 0 cycle(s) after stb" in titles["classic"]
    assert "1 cycle(s) after its request is taken, R = 2" in titles["pipelined"]


def test_sim_writes_the_fixed_catalogue_with_an_index(tmp_path, capsys):
    """One run of the whole catalogue (it is the costly part): what ``ipiv sim`` says of it,
    and the index it writes."""
    from tb.cli import main
    assert main(["sim", "x2apic-unicast", "-n", "1", "--no-waves", "--timing-diagram",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "timing diagrams" in l)
    assert "fixed catalogue of 13 outcomes on both memory ports" in line and \
        "not the x2apic-unicast scenario" in line and line.endswith(str(tmp_path / INDEX_NAME))
    cases = timing_cases()
    buses = ("classic", "pipelined")
    for bus in buses:
        assert sorted(p.name for p in (tmp_path / bus).iterdir()) == \
            sorted(f"{c.name}.{kind}" for c in cases for kind in ("json", "svg"))
    page = (tmp_path / INDEX_NAME).read_text()
    assert "fixed catalogue" in page and "not\nthe <code>ipiv sim</code> scenario" in page
    shown = re.findall(r'<h2 id="([^"]+)">([^<]+) \(<code>\1</code>\)</h2>\n'
                       r'<h3>classic port[^<]*</h3>\n<p><img src="classic/\1\.svg" alt="\2, '
                       r'classic port"></p>\n'
                       r'<h3>pipelined port[^<]*R = 2</h3>\n<p><img src="pipelined/\1\.svg" '
                       r'alt="\2, pipelined port"></p>', page)
    assert [(name, html.unescape(title)) for name, title in shown] == \
        [(c.name, c.title) for c in cases]
    for bus in buses:
        for case in cases:
            assert (tmp_path / bus / f"{case.name}.svg").stat().st_size > 1000


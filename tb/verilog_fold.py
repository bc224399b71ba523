"""Registers folded into their clocked blocks, for Icarus Verilog (`tb.verilog.generate`).

Yosys writes each register of Amaranth's design as two blocks: an ``always @*`` block that
computes the next value into a ``reg`` of its own, and ``always @(posedge clk) q <= d;``.
Icarus re-runs an ``always @*`` block whenever anything it reads changes, several times a
cycle for most (their inputs settle one after the other), and every run loads and stores
its operands, which Icarus 11 makes costly (a ``dynamic_cast`` per load). The next value only
matters at the clock edge, so `fold_registers` moves each such block into the clocked block,
as nonblocking assignments to the register itself:

    always @* begin                       always @(posedge clk) begin
      d = q;                                if (rst) begin
      if (en) d = x;              ->          q <= 0;
      if (rst) d = 0;                       end else begin
    end                                       if (en) q <= x;
    always @(posedge clk) q <= d;           end
                                          end

The same clock edge and values: the next value is computed from what the inputs hold just
before the edge (the nonblocking assignments of the edge take effect only after every
clocked block has run), as the ``always @*`` block had computed it. A module's folded
registers share one clocked block per clock edge, which tests each condition once where
several registers depend on it: the reset (a block's last statement, assigning all of the
register under one condition, becomes the first test), and the condition of blocks that are
one ``if`` without ``else``. Their order does not matter: each register has its own
assignments, nonblocking. Only the blocks of that exact shape are folded, the rest is left
as it is:

- the clocked block is ``always @(<edge> <clock>) q <= d;``;
- ``d`` is a ``reg`` that appears nowhere but in its declaration, that clocked block and
  one ``always @*`` block, which assigns ``d`` alone (whole or a part of it, never reading
  it), all of it on every path (else the block would keep a value between two edges, a
  latch), and whose other lines are ``if``/``case`` structure;
- no line of the block mentions a signal used as a clock in the module.
"""

import re
from collections import Counter


__all__ = ["fold_registers"]

_NAME = r"(?:\\\S+ |[A-Za-z_][\w$]*)"
_IDENT = re.compile(r"\\\S+ |[A-Za-z_][\w$]*")
_ATTRIBUTES = r"(?:^[ \t]*\(\*[^\n]*\*\)[ \t]*\n)*"      # Yosys' (* src = ... *) lines
_CLOCKED = re.compile(_ATTRIBUTES + r"^  always @\((posedge|negedge) (" + _NAME + r")\)\n"
                      r"    (" + _NAME + r") <= (" + _NAME + r");\n", re.M)
_COMB = re.compile(_ATTRIBUTES + r"^  always @\* begin\n(.*?)^  end\n", re.M | re.S)
_ASSIGN = re.compile(r"^(\s+)(" + _NAME + r")(\s*\[[^\]]*\])?\s*=(?!=)\s*(.*;)$")
# the structure lines of an ``always @*`` block as Yosys writes it
_STRUCTURE = re.compile(r"^\s+(?:begin|if \(.*\) begin|end else if \(.*\) begin|end else begin|end|"
                        r"casez? \(.*\)|endcase|default:|[0-9][0-9'a-zA-Z_?, ]*:|"
                        r"/\* empty \*/;|\(\*.*\*\))$")
# Yosys' dummy register that makes the block run at time 0 (`tb.verilog.fix_icarus_time0`)
_TIME0 = "$auto$verilog_backend"


def _name(token):
    # an escaped identifier (``\a.b ``) ends with the space that closes it
    return token.strip()


def _body(lines, d, q, clocks):
    """The lines of ``d``'s ``always @*`` block as nonblocking assignments to ``q``, and its
    reset ((signal, line) or None); None if the block is not of the shape folded."""
    out, kinds = [], []
    for line in lines:
        if _TIME0 in line:
            continue
        names = {_name(t) for t in _IDENT.findall(line)}
        if names & clocks:
            return None
        a = _ASSIGN.match(line)
        if a and not _STRUCTURE.match(line):
            indent, target, select, value = a.groups()
            if _name(target) != d or d in {_name(t) for t in _IDENT.findall(value)}:
                return None
            out.append(f"{indent}{q}{select or ''} <= {value}")
            kinds.append("part" if select else "all")
        elif _STRUCTURE.match(line) and d not in names:
            out.append(line)
            kinds.append("structure")
        else:
            return None
    if not _sets_all(list(zip(kinds, (line.strip() for line in out)))):
        return None
    if out[0] == f"    {q} <= {q};":
        out = out[1:]               # q keeps its value unless assigned: no need to say so
    reset = None
    if len(out) >= 3 and re.fullmatch(r"    if \(" + _NAME + r"\) begin", out[-3]) \
            and out[-1] == "    end" and out[-2].startswith(f"      {q} <= "):
        reset = (out[-3][8:-7], out[-2].strip())
        out = out[:-3]
    return out, reset


def _sets_all(items):
    """Whether the statements ``items`` ([(kind, line)]) assign the whole register on every
    path. One that does not would keep, between two clock edges, the value of an earlier
    run of its ``always @*`` block (a latch), which folding would not reproduce."""
    try:
        end, every_path = _sequence(items, 0, lambda line: False)
    except (IndexError, ValueError):
        return False
    return end == len(items) and every_path


def _sequence(items, pos, stop):
    every_path = False
    while pos < len(items) and not stop(items[pos][1]):
        pos, sets = _statement(items, pos)
        every_path |= sets
    return pos, every_path


def _branch_end(line):
    return line == "end" or line.startswith("end else")


def _statement(items, pos):
    kind, line = items[pos]
    if kind != "structure":
        return pos + 1, kind == "all"
    if line.startswith("(*"):               # an attribute of the next statement
        return _statement(items, pos + 1)
    if line == "/* empty */;":
        return pos + 1, False
    if line == "begin":
        pos, sets = _sequence(items, pos + 1, lambda line: line == "end")
        if items[pos][1] != "end":
            raise ValueError(items[pos][1])
        return pos + 1, sets
    if line.startswith("if ("):
        every_branch, has_else = True, False
        pos += 1
        while True:
            pos, sets = _sequence(items, pos, _branch_end)
            every_branch &= sets
            closing = items[pos][1]
            pos += 1
            if closing == "end":
                return pos, every_branch and has_else
            has_else = closing == "end else begin"
    if line.startswith(("case (", "casez (")):
        every_arm, has_default = True, False
        pos += 1
        while items[pos][1] != "endcase":
            if not items[pos][1].endswith(":"):
                raise ValueError(items[pos][1])
            has_default |= items[pos][1] == "default:"
            pos, sets = _statement(items, pos + 1)
            every_arm &= sets
        return pos + 1, every_arm and has_default
    raise ValueError(line)


def _fold_module(text):
    clocks = {_name(m.group(2)) for m in _CLOCKED.finditer(text)}
    comb = {}       # d -> match of the block that assigns d alone
    for m in _COMB.finditer(text):
        targets = {_name(a.group(2)) for line in m.group(1).split("\n")
                   if (a := _ASSIGN.match(line)) and not _STRUCTURE.match(line)}
        if len(targets) == 1:
            comb[targets.pop()] = m
    uses = Counter(_name(t) for t in _IDENT.findall(text))
    groups, cut = {}, []
    for m in _CLOCKED.finditer(text):
        edge, clock, q, d = m.group(1), m.group(2), m.group(3), _name(m.group(4))
        block = comb.get(d)
        decl = re.search(_ATTRIBUTES + r"^  reg (?:\[[^\]]*\] )?" + re.escape(d) + r"\s*;\n",
                         text, re.M)
        if block is None or decl is None:
            continue
        inside = sum(_name(t) == d for t in _IDENT.findall(block.group(1)))
        if uses[d] != inside + 2:           # + the declaration and the clocked block
            continue
        body = _body(block.group(1).rstrip("\n").split("\n"), d, q, clocks)
        if body is None:
            continue
        groups.setdefault((edge, clock.strip()), []).append(body)
        cut += [m.span(), block.span(), decl.span()]
    if not groups:
        return text
    for start, end in sorted(cut, reverse=True):
        text = text[:start] + text[end:]
    new = []
    for (edge, clock), bodies in groups.items():
        new.append(f"  always @({edge} {clock}) begin")
        new += _share_conditions([lines for lines, reset in bodies if reset is None])
        for signal in dict.fromkeys(r[0] for _, r in bodies if r is not None):
            mine = [(lines, r) for lines, r in bodies if r is not None and r[0] == signal]
            rest = _share_conditions([lines for lines, _ in mine])
            new.append(f"    if ({signal}) begin")
            new += [f"      {r[1]}" for _, r in mine]
            new += ["    end else begin"] + ["  " + line for line in rest] if rest else []
            new.append("    end")
        new.append("  end")
    end = text.rindex("endmodule")
    return text[:end] + "\n".join(new) + "\n" + text[end:]


def _share_conditions(bodies):
    """The lines of ``bodies`` (each a register's), those that are one ``if`` without ``else``
    under the same condition merged into one (a condition tested once, not once a register:
    each body assigns its own register, with nonblocking assignments, so their order does not
    matter)."""
    guarded, lines = {}, []
    for body in bodies:
        if len(body) >= 2 and re.fullmatch(r"    if \(.*\) begin", body[0]) \
                and body[-1] == "    end" \
                and all(line.startswith("      ") for line in body[1:-1]):
            guarded.setdefault(body[0], []).append(body[1:-1])
        else:
            lines += body
    for condition, insides in guarded.items():
        lines += [condition] + [line for inside in insides for line in inside] + ["    end"]
    return lines


def fold_registers(text):
    """``text`` (Verilog written by Yosys) with every register of the shape described in the
    module docstring folded into one clocked block per module and clock edge."""
    return "".join(_fold_module(part) if part.startswith("module ") else part
                   for part in re.split(r"(?m)^(?=module )", text))

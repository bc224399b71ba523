"""The stages' declared state machines: a transition table written as text."""

__all__ = ["transition_table"]


def transition_table(states, text):
    """{(from, to)} of the enum ``states`` from lines ``FROM -> TO TO ...``.

    A state that waits lists itself. Every state must have a line, and every name must be a
    member of ``states`` (a `ValueError` otherwise), so a renamed state cannot silently drop
    out of a table.
    """
    table, sources = set(), set()
    for line in text.strip().splitlines():
        source, _, targets = line.partition("->")
        try:
            src = states[source.strip()]
            table |= {(src, states[t]) for t in targets.split()}
        except KeyError as e:
            raise ValueError(f"{states.__name__} has no state {e.args[0]!r}") from None
        sources.add(src)
    missing = set(states) - sources
    if missing:
        raise ValueError(f"no transitions given for {sorted(s.name for s in missing)}")
    return frozenset(table)

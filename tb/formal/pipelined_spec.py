"""The spec model of the pipelined memory port: the same transfers as `tb.formal.spec`, in
the pipelined issue order, grouped into round trips.

Written from ``docs/interface.md`` ("The pipelined memory port"), not from ``hdl/``. A request
is a chain of round trips; each round trip's requests are issued back to back, and the first
request of a round trip may be taken only after every request of the earlier round trips has
been answered (its address or data depends on their answers):

- x2APIC ICR and x2APIC SENDUIPI: the vICR store and the entry read; the PIR read and the
  NotifyInfo read (locked); the PIR write and the NotifyInfo write (locked, the NotifyInfo
  write only when notifying);
- xAPIC ICR low: the VICR_LO store and the VICR_HI read; the entry read (its destination came
  with VICR_HI); then as x2APIC. As a self-IPI: the VICR_LO store and the VICR_HI read; the
  locked VIRR read; the VIRR write;
- xAPIC SENDUIPI: its two stores and the entry read; then as x2APIC;
- xAPIC ICR high: its store.

An exit cuts a path short where the classic model does (`RequestSpec.n_transfers` is the same:
the transfers are the same, only their order differs). Each slot carries, besides the
transfer, ``needs``: how many of the request's transfers (from the first) must have been
answered before it may be taken (the index of its round trip's first transfer), ``ends``: the
index after its round trip's last transfer, and ``trip``: its round trip's place in the chain
(from 0).
"""

from amaranth import C, Cat

from .spec import MAX_TRANSFERS, RequestSpec, pack_transfer, unpack_transfer


__all__ = ["PipelinedRequestSpec", "INDEX_BITS", "TRIP_BITS", "MAX_ROUND_TRIPS"]

#: Bits of ``needs`` and ``ends`` (indices up to `MAX_TRANSFERS`).
INDEX_BITS = MAX_TRANSFERS.bit_length()
#: The longest chain of round trips (an xAPIC ICR-low posting: stores, entry, reads, writes).
MAX_ROUND_TRIPS = 4
#: Bits of ``trip``.
TRIP_BITS = (MAX_ROUND_TRIPS - 1).bit_length()


class PipelinedRequestSpec(RequestSpec):
    """`RequestSpec` in the pipelined issue order; `transfer` also gives ``needs``, ``ends``
    and ``trip`` (Amaranth values) for each transfer."""

    def _paths(self, k, t):
        """The round trips of each path: [(taken when, [`_Transfer`])], each transfer with
        its round trip's bounds (``needs``, ``ends``); the first path that holds is taken."""
        reads = [t["pir_read"], t["ni_read"]]
        writes = [t["pir_write"], t["ni_write"]]
        trips = [
            (k.hi, [[t["store_hi"]]]),
            (k.lo & self.self_ipi,
             [[t["store_lo"], t["read_hi"]], [t["irr_read"]], [t["irr_write"]]]),
            (k.lo, [[t["store_lo"], t["read_hi"]], [t["entry"]], reads, writes]),
            (k.uipi_xapic, [[t["store_hi"], t["store_lo"], t["entry"]], reads, writes]),
            (C(1), [[t["store_lo"], t["entry"]], reads, writes]),   # x2APIC, SENDUIPI x2APIC
        ]
        assert max(len(chain) for _, chain in trips) == MAX_ROUND_TRIPS
        return [(when, _flatten(chain)) for when, chain in trips]

    def _pack(self, t):
        return Cat(pack_transfer(t), C(t.needs, INDEX_BITS), C(t.ends, INDEX_BITS),
                   C(t.trip, TRIP_BITS))

    def _unpack(self, slot, aw):
        t = unpack_transfer(slot, aw)
        base = len(slot) - 2 * INDEX_BITS - TRIP_BITS
        t.needs = slot[base:base + INDEX_BITS]
        t.ends = slot[base + INDEX_BITS:base + 2 * INDEX_BITS]
        t.trip = slot[base + 2 * INDEX_BITS:]
        return t


class _Placed:
    """A `_Transfer` at its place in a path: the transfer's fields, its round trip's bounds
    and place."""

    def __init__(self, transfer, needs, ends, trip):
        self.__dict__.update(transfer.__dict__)
        self.needs, self.ends, self.trip = needs, ends, trip


def _flatten(chain):
    """The transfers of a chain of round trips, in order, each `_Placed`."""
    path, start = [], 0
    for index, trip in enumerate(chain):
        end = start + len(trip)
        path += [_Placed(t, start, end, index) for t in trip]
        start = end
    assert len(path) <= MAX_TRANSFERS
    return path

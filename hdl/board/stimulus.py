"""The stimulus engine: one per core, it turns a pseudo-random sequence into guest ICR writes.

Each operation takes one step of an xorshift32 generator (Marsaglia's shift-register
generator, an LFSR over GF(2) with period 2**32 - 1) and reads the new state as a `Draw`:
the mix slot picks the `Category`, the other fields fill in the mode, vector and destination.
An xAPIC IPI is two writes (ICR2, then ICR); x2APIC IPIs and SENDUIPI are one. The host's
model of this engine is ``sim.board.experiment``; the two must agree bit for bit.

The VMCS bits the engine controls (``x2apic``, ``ipiv``) change only while the unit is idle,
as the unit's contract requires.
"""

from typing import NamedTuple

from amaranth import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..formats import (
    FIRST_LEGAL_VECTOR, ICRLow, ICRWrite, ICRWriteKind, SendUIPIData, Shorthand,
    X2APIC_BROADCAST_ID, X2APICICR, XAPIC_BROADCAST_ID, XAPICICRHigh, XAPICNDST,
)
from .formats import (
    Category, Draw, EngineParams, Mix, RESERVED_FORMS, UNSUPPORTED_FORMS, VCPU_BITS, VM_IDS,
    VM_VCPUS, seed_salt,
)


__all__ = ["xorshift32", "MIX_BYTES", "StimulusEngine"]

#: The mix's bytes as START carries them: two slots a byte, slot ``2 * i`` in the low nibble.
MIX_BYTES = data.Layout.cast(Mix).size // 8


def xorshift32(x):
    """One xorshift32 step (shifts 13, 17, 5) of a 32-bit Amaranth value."""
    x = (x ^ (x << 13))[:32]
    x = x ^ (x >> 17)
    return (x ^ (x << 5))[:32]


class StimulusEngine(wiring.Component):
    """Issues ``params.count`` operations for one core, then raises ``done``.

    Parameters
    ----------
    core : int
        Which core this engine drives (its generator starts from ``seed ^ seed_salt(core)``).

    Members
    -------
    params : In(EngineParams)
        Held stable from ``start`` to ``done``.
    mix_we : In(1)
        Write ``mix_data`` as byte ``mix_addr`` of the mix (`Mix`), kept in a block RAM:
        only while no run goes on.
    mix_addr : In(range(MIX_BYTES))
    mix_data : In(8)
    start : In(1)
        Pulse: begin a run (also from ``done``).
    icr : Out(stream.Signature(ICRWrite))
        To the unit.
    x2apic, ipiv : Out(1)
        The unit's ``cfg.x2apic`` and ``cfg.ipiv``; they change only while ``busy`` is low.
    busy : In(1)
        The unit's ``busy``.
    at_barrier : Out(1)
        Every ``params.epoch`` operations (when more are left) the engine stops here until
        ``release``.
    release : In(1)
    done : Out(1)
    issued : Out(32)
        Operations started in this run (each counted as its first write is offered; all of
        them issued whenever the engine is back at its next operation, a barrier or done).
    """

    def __init__(self, core):
        if isinstance(core, bool) or not isinstance(core, int) or core < 0:
            raise ValueError(f"core must be a non-negative integer, not {core!r}")
        self.core = core
        super().__init__({
            "params": In(EngineParams),
            "mix_we": In(1),
            "mix_addr": In(range(MIX_BYTES)),
            "mix_data": In(8),
            "start": In(1),
            "icr": Out(stream.Signature(ICRWrite)),
            "x2apic": Out(1, init=1),
            "ipiv": Out(1, init=1),
            "busy": In(1),
            "at_barrier": Out(1),
            "release": In(1),
            "done": Out(1),
            "issued": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        salt = seed_salt(self.core)
        state = Signal(32, init=salt)   # the current operation's draw
        nxt = Signal(32)
        m.d.comb += nxt.eq(xorshift32(state))

        # The VMCS bits of the next operation (to change them in time, while idle).
        lookup = _Lookup(fetch_nxt=Signal(), take=Signal())
        next_category, next_x2 = self._mode_and_category(m, nxt, lookup)
        next_ipiv = next_category != Category.DISABLED
        # The current operation's writes, decoded from its draw (not stored twice).
        d = Draw(state)
        # Its category and mode: those of the next draw, kept when the generator steps (one
        # mix lookup per engine, not two).
        category = Signal(Category)
        x2 = Signal()
        low, dest = self._icr_fields(m, d, category, x2, state)
        first, second, two = self._writes(m, d, category, x2, low, dest)
        op = _Operation(category, x2, first, second, two)
        self._sequencer(m, salt, state, nxt, (next_category, next_x2, next_ipiv), op, lookup)
        return m

    def _mode_and_category(self, m, nxt, lookup):
        """The next draw's (``nxt``'s) `Category` and APIC mode (x2APIC or xAPIC, random only
        when both are enabled).

        The mix is a block RAM, read a draw ahead: its answer (for the draw after ``nxt``)
        becomes ``category`` when the generator steps, so no RAM output reaches the
        sequencer's decisions. After ``begin`` the states FETCH and FETCH2 read ``nxt``'s
        slot itself (``lookup``, `_Lookup`). Either way the draws must not change in the cycle
        before the answer is taken."""
        p = self.params
        m.submodules.mix = mix = memory.Memory(shape=8, depth=MIX_BYTES, init=[],
                                                attrs={"ram_style": "block"})
        write = mix.write_port()
        read = mix.read_port()
        slot = Signal.like(Draw(nxt).slot)
        high = Signal()                 # the slot read is the byte's high nibble
        looked_up = Signal(Category)
        category = Signal(Category)
        x2 = Signal()
        m.d.comb += [
            write.en.eq(self.mix_we), write.addr.eq(self.mix_addr), write.data.eq(self.mix_data),
            slot.eq(Mux(lookup.fetch_nxt, Draw(nxt).slot, Draw(xorshift32(nxt)).slot)),
            read.addr.eq(slot[1:]),
            looked_up.eq(Mux(high, read.data[4:], read.data[:4])),
            x2.eq(Mux(p.modes.x2apic & p.modes.xapic, Draw(nxt).x2apic, p.modes.x2apic)),
        ]
        m.d.sync += high.eq(slot[0])
        with m.If(lookup.take):
            m.d.sync += category.eq(looked_up)
        return category, x2

    @staticmethod
    def _icr_fields(m, d, category, x2, state):
        """ICR bits 31:0 and the destination of draw ``d`` for its category."""
        # 0..15 become 16..31: every legal vector, four PIR words.
        legal = Mux(d.vector < FIRST_LEGAL_VECTOR, d.vector | FIRST_LEGAL_VECTOR, d.vector)
        low = Signal(ICRLow)
        dest = Signal(32)
        m.d.comb += [low.vector.eq(legal), low.level.eq(d.level),
                     dest.eq(d.target[:VCPU_BITS])]
        with m.Switch(category):
            with m.Case(Category.NO_VCPU):
                m.d.comb += dest.eq(VM_VCPUS + d.target[:VCPU_BITS])
            with m.Case(Category.OUT_OF_RANGE):
                m.d.comb += dest.eq(VM_IDS + d.far)
            with m.Case(Category.ILLEGAL_VECTOR):
                m.d.comb += low.vector.eq(d.vector % FIRST_LEGAL_VECTOR)
            with m.Case(Category.UNSUPPORTED):
                _one_of(m, low, d.variant, UNSUPPORTED_FORMS)
            with m.Case(Category.SELF_IPI):
                m.d.comb += [low.shorthand.eq(Shorthand.SELF), low.dest_mode.eq(d.variant[0])]
            with m.Case(Category.BROADCAST):
                m.d.comb += dest.eq(Mux(x2, X2APIC_BROADCAST_ID, XAPIC_BROADCAST_ID))
            with m.Case(Category.RESERVED):
                _one_of(m, low, d.variant[:2], RESERVED_FORMS)
            with m.Case(Category.GARBAGE):
                m.d.comb += low.eq(state)
        return low, dest

    @staticmethod
    def _writes(m, d, category, x2, low, dest):
        """The operation's ICR writes: ``first`` (SENDUIPI, x2APIC ICR or xAPIC ICR2), and,
        when ``two``, ``second`` (the xAPIC ICR low)."""
        first = Signal(ICRWrite)
        second = Signal(ICRWrite)
        two = Signal()
        upid = Signal(SendUIPIData)
        xapic_ndst = Signal(XAPICNDST)
        x2icr = Signal(X2APICICR)
        m.d.comb += [
            xapic_ndst.apic_id.eq(d.target),
            upid.nv.eq(d.vector), upid.reserved_31_8.eq(d.noise),
            upid.ndst.eq(Mux(x2, d.target, xapic_ndst)),
            x2icr.low.eq(low), x2icr.dest.eq(dest),
            second.kind.eq(ICRWriteKind.XAPIC_ICR_LO), second.data.eq(low),
        ]
        with m.If(category == Category.SENDUIPI):
            m.d.comb += [first.kind.eq(ICRWriteKind.SENDUIPI), first.data.eq(upid)]
        with m.Elif(x2):
            m.d.comb += [first.kind.eq(ICRWriteKind.X2APIC_ICR), first.data.eq(x2icr)]
        with m.Else():
            hi = Signal(XAPICICRHigh)
            m.d.comb += [hi.reserved_23_0.eq(d.noise), hi.dest.eq(dest[:8]),
                         first.kind.eq(ICRWriteKind.XAPIC_ICR_HI), first.data.eq(hi),
                         two.eq(1)]
        return first, second, two

    def _sequencer(self, m, salt, state, nxt, next_mode, op, lookup):
        """The operation sequencer: ``count`` operations, a barrier every ``epoch``, the VMCS
        bits changed while the unit is idle (``next_mode``: the next operation's category,
        x2APIC and IPIv bits), then the operation's (`_Operation`) writes."""
        p = self.params
        next_category, next_x2, next_ipiv = next_mode
        until_barrier = Signal(16)

        def begin():
            seed = p.seed ^ salt
            m.d.sync += [state.eq(Mux(seed == 0, salt, seed)),
                         until_barrier.eq(p.epoch), self.issued.eq(0), self.done.eq(0),
                         # The VMCS bits start as after reset (the unit is idle now), so
                         # a run's timing repeats with its seed.
                         self.x2apic.eq(1), self.ipiv.eq(1)]
            m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    begin()
            with m.State("FETCH"):
                # The first draw's mix slot is read, then the one after it (every later one
                # is read while the writes of the draw two before go out).
                m.d.comb += lookup.fetch_nxt.eq(1)
                m.next = "FETCH2"
            with m.State("FETCH2"):
                m.d.comb += lookup.take.eq(1)
                m.next = "NEXT"
            with m.State("NEXT"):
                # Every operation started has been issued here, so ``issued`` tells how many
                # are left (no separate count: 32 flip-flops and a decrementer per engine).
                with m.If(self.issued == p.count):
                    m.d.sync += self.done.eq(1)
                    m.next = "DONE"
                with m.Elif((p.epoch != 0) & (until_barrier == 0)):
                    m.next = "BARRIER"
                with m.Else():
                    # ``issued`` counts the operation as it starts: the unit's ``ready`` then
                    # only steers the state (not 32 flip-flops and their adder).
                    m.d.sync += [state.eq(nxt), until_barrier.eq(until_barrier - 1),
                                 op.category.eq(next_category), op.x2.eq(next_x2),
                                 self.issued.eq(self.issued + 1)]
                    m.d.comb += lookup.take.eq(1)
                    with m.If((next_x2 != self.x2apic) | (next_ipiv != self.ipiv)):
                        m.next = "CONFIGURE"
                    with m.Else():
                        m.next = "FIRST"
            with m.State("CONFIGURE"):
                with m.If(~self.busy):
                    m.d.sync += [self.x2apic.eq(op.x2),
                                 self.ipiv.eq(op.category != Category.DISABLED)]
                    m.next = "FIRST"
            with m.State("FIRST"):
                m.d.comb += [self.icr.valid.eq(1), self.icr.payload.eq(op.first)]
                with m.If(self.icr.ready):
                    with m.If(op.two):
                        m.next = "SECOND"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("SECOND"):
                m.d.comb += [self.icr.valid.eq(1), self.icr.payload.eq(op.second)]
                with m.If(self.icr.ready):
                    m.next = "NEXT"
            with m.State("BARRIER"):
                m.d.comb += self.at_barrier.eq(1)
                with m.If(self.release):
                    m.d.sync += until_barrier.eq(p.epoch)
                    m.next = "NEXT"
            with m.State("DONE"):
                with m.If(self.start):
                    begin()


class _Lookup(NamedTuple):
    """The sequencer's control of the mix lookup (`StimulusEngine._mode_and_category`)."""
    fetch_nxt: object   # read the mix at ``nxt``'s slot (else at the draw after it)
    take: object        # the RAM's answer is the next draw's category


class _Operation(NamedTuple):
    """The current operation: its category and APIC mode, its ICR write(s)."""
    category: object
    x2: object
    first: object
    second: object
    two: object


def _one_of(m, low, variant, forms):
    """Set the ICR fields of ``forms[variant]`` (a table of field values)."""
    with m.Switch(variant):
        for i, form in enumerate(forms):
            with m.Case(i):
                m.d.comb += [getattr(low, k).eq(v) for k, v in form.items()]

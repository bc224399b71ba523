"""The pipelined unit's sequencer: one ICR write as a chain of dependent round trips.

Only three transfers of a posting wait on each other's data (the table entry, the PID reads,
the PID writes), so the sequencer hands the `hdl.pipelined_issuer.PipelinedIssuer` one round
trip at a time, each with every request that does not depend on another's answer
(docs/interface.md, "The pipelined memory port"):

- ``STORES``: the vICR store(s), with the VICR_HI read of an xAPIC ICR-low write, or with the
  entry read when the destination is already known (x2APIC, SENDUIPI) and in range;
- ``ENTRY``: the entry read of an xAPIC ICR-low write (its destination came with VICR_HI);
- ``READS``: the PIR word and NotifyInfo, locked;
- ``WRITES``: the PIR word, and NotifyInfo when notifying, still locked;
- ``IRR_READ``, ``IRR_WRITE``: a virtualized self-IPI's locked read-modify-write.

Each round trip's requests are presented from the cycle after the previous round trip's last
answer. An ``err`` ends the request as a ``BUS_ERROR`` exit once every request taken has been
answered. The next write is accepted in the cycle the last answer arrives (its first transfer
follows in the next cycle), or when idle.
"""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import Out

from .core_signature import CoreSignature
from .exits import preload_exit
from .formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, ExitCause, ICRLow, ICRWriteKind,
    NOTIFY_INFO_ON, NotifyInfo, PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_LOW_MASK,
    PID_POINTER_ENTRY_VALID, PIDPointerEntry, SEL_DWORD, SEL_QWORD, XAPICICRHigh, XAPICNDST,
)
from .fsm import transition_table
from .icr_classifier import (
    EarlyVerdict, classify, early_image, late_in_range, late_verdict, virtual_destination,
)
from .icr_write import accepted_write, offered_in_range, preload_refusals, refuse
from .params import bus_addr_width, check_maxphyaddr
from .pipelined_issuer import RoundTripSignature


__all__ = ["PipelinedSequencer"]


class PipelinedSequencer(wiring.Component):
    """Decides each ICR write's round trips and its outcome.

    Parameters
    ----------
    maxphyaddr : int

    Members
    -------
    cfg, icr, exit, notify, self_ipi, gp, busy
        As on `hdl.IPIVirtualizer`.
    trip : Out(RoundTripSignature)
        The round trips, to the issuer.

    Attributes
    ----------
    state : Signal(PipelinedSequencer.State)
        The sequencer's state register (public: the proofs, coverage and waves read it).
    kind : Signal(ICRWriteKind)
    xapic : Signal(1)
    image : Signal(64)
        As on `hdl.icr_interceptor.ICRInterceptor`.
    pid_line : Signal(58)
        The PID address >> 6, from the entry.
    pir_word : Signal(64)
        The PIR word to write: as read, with V's bit set (``WRITES``).
    ni_word : Signal(64)
        NotifyInfo as read (``WRITES``, ``NOTIFY``).
    notifying : Signal(1)
        The posting found ON = SN = 0: NotifyInfo is written and a notification sent.
    irr_word : Signal(32)
        The IRR word to write: as read, with V's bit set (``IRR_WRITE``).
    verdict : Signal(EarlyVerdict)
        The write's classification and range check as taken
        (`hdl.icr_classifier.early_image`): registered so that the decision at the stores'
        last answer reads no comparator but VICR_HI's.
    lo_adr, hi_adr, irr_adr : Signal(maxphyaddr - 3)
        Word addresses of VICR_LO, VICR_HI and the IRR word of V, registered every cycle
        (`addresses`).
    entry_adr : Signal(maxphyaddr - 3)
        Word address of T's PID-pointer entry, registered every cycle from the image being
        classified (`addresses`).
    """

    class State(enum.Enum, shape=4):
        IDLE = 0
        STORES = 1
        ENTRY = 2
        READS = 3
        WRITES = 4
        IRR_READ = 5
        IRR_WRITE = 6
        OUTPUT = 7          # an exit or #GP offered
        NOTIFY = 8          # waits for the notification register
        OFFER = 9           # waits for the self-IPI register

    #: Every (from, to) the state register can take; proven complete by ``ipiv prove
    #: invariants``.
    TRANSITIONS = transition_table(State, """
        IDLE      -> IDLE STORES OUTPUT
        STORES    -> STORES OUTPUT IDLE ENTRY READS IRR_READ
        ENTRY     -> ENTRY OUTPUT READS
        READS     -> READS OUTPUT WRITES
        WRITES    -> WRITES OUTPUT IDLE STORES NOTIFY
        IRR_READ  -> IRR_READ OUTPUT IRR_WRITE
        IRR_WRITE -> IRR_WRITE OUTPUT IDLE STORES OFFER
        OUTPUT    -> OUTPUT IDLE
        NOTIFY    -> NOTIFY IDLE
        OFFER     -> OFFER IDLE
    """)

    def __init__(self, *, maxphyaddr=52):
        self._maxphyaddr = check_maxphyaddr(maxphyaddr)
        self._addr_width = bus_addr_width(maxphyaddr)
        super().__init__({
            **CoreSignature().members,
            "trip": Out(RoundTripSignature(addr_width=self._addr_width)),
        })
        self.state = Signal(self.State, name="state")
        self.kind = Signal(ICRWriteKind, name="kind")
        self.xapic = Signal(name="xapic")
        self.image = Signal(64, name="image")
        self.pid_line = Signal(58, name="pid_line")
        self.pir_word = Signal(64, name="pir_word")
        self.ni_word = Signal(64, name="ni_word")
        self.notifying = Signal(name="notifying")
        self.irr_word = Signal(32, name="irr_word")
        self.verdict = Signal(EarlyVerdict, name="verdict")
        self.lo_adr = Signal(self._addr_width, name="lo_adr")
        self.hi_adr = Signal(self._addr_width, name="hi_adr")
        self.irr_adr = Signal(self._addr_width, name="irr_adr")
        self.entry_adr = Signal(self._addr_width, name="entry_adr")

    @property
    def outputs(self):
        return (self.gp, self.exit, self.notify, self.self_ipi)

    # -- addresses and requests ---------------------------------------------------------------

    def word(self, byte_address):
        return byte_address[3:3 + self._addr_width]

    def request(self, slot, adr, *, we=0, sel=SEL_QWORD, dat_w=0, lock=0):
        return [slot.adr.eq(adr), slot.we.eq(we), slot.sel.eq(sel), slot.dat_w.eq(dat_w),
                slot.lock.eq(lock)]

    def addresses(self, m, reading_hi):
        """Word addresses of this request's transfers (``reading_hi``: T comes from the bus,
        VICR_HI as it arrives).

        The vICR and IRR addresses are registered every cycle, off the requests' path: ``cfg``
        is held from acceptance and V does not change after it, and neither address is read
        before the cycle after acceptance. So is the entry's: its read is never the first
        request of the stores, and the ``ENTRY`` round trip follows the answer that gave T."""
        cfg, aw = self.cfg, self._addr_width
        vector = ICRLow(self.image[:32]).vector
        m.d.sync += [
            self.lo_adr.eq(self.word(cfg.vapic_page + APIC_OFFSET_ICR_LO)),
            self.hi_adr.eq(self.word(cfg.vapic_page + APIC_OFFSET_ICR_HI)),
            self.irr_adr.eq(self.word(cfg.vapic_page + APIC_OFFSET_IRR +
                                      Cat(C(0, 4), vector[5:8]))),
        ]
        # T <= last index < 2**16 where the entry is read, so 16 bits of T address it. Both
        # sums (T from the image, or from VICR_HI as it arrives) are formed, so that the
        # adders wait on no state.
        entry = [self.word(cfg.pid_table + Cat(C(0, 3), dest[:16])) for dest in (
            virtual_destination(self.image, xapic=self.xapic),
            XAPICICRHigh(self.trip.last[:32]).dest)]
        m.d.sync += self.entry_adr.eq(Mux(reading_hi, entry[1], entry[0]))
        return {
            "lo": self.lo_adr, "hi": self.hi_adr, "irr": self.irr_adr,
            "entry": self.entry_adr,
            "pir": Cat(vector[6:8], C(0, 1), self.pid_line)[:aw],
            "ni": Cat(C(PID_NOTIFY_INFO_OFFSET // 8, 3), self.pid_line)[:aw],
        }

    def round_trips(self, m, adr, post_in_range):
        """Drive ``trip`` with the current state's requests."""
        S, trip, image = self.State, self.trip, self.image
        slots = trip.requests
        store_hi = dict(adr=adr["hi"], we=1, sel=SEL_DWORD, dat_w=image[32:])
        store_lo = dict(adr=adr["lo"], we=1, sel=Mux(self.xapic, SEL_DWORD, SEL_QWORD),
                        dat_w=Mux(self.xapic, image[:32], image))
        with m.Switch(self.state):
            with m.Case(S.STORES):
                with m.If(self.two_stores()):
                    m.d.comb += [*self.request(slots[0], **store_hi),
                                 *self.request(slots[1], **store_lo),
                                 *self.request(slots[2], adr["entry"]),
                                 trip.count.eq(2 + post_in_range)]
                with m.Elif(self.kind == ICRWriteKind.XAPIC_ICR_HI):
                    m.d.comb += [*self.request(slots[0], **store_hi), trip.count.eq(1)]
                with m.Elif(self.kind == ICRWriteKind.XAPIC_ICR_LO):
                    m.d.comb += [*self.request(slots[0], **store_lo),
                                 *self.request(slots[1], adr["hi"], sel=SEL_DWORD),
                                 trip.count.eq(2)]
                with m.Else():
                    m.d.comb += [*self.request(slots[0], **store_lo),
                                 *self.request(slots[1], adr["entry"]),
                                 trip.count.eq(1 + post_in_range)]
            with m.Case(S.ENTRY):
                m.d.comb += [*self.request(slots[0], adr["entry"]), trip.count.eq(1)]
            with m.Case(S.READS):
                m.d.comb += [*self.request(slots[0], adr["pir"], lock=1),
                             *self.request(slots[1], adr["ni"], lock=1),
                             trip.count.eq(2), trip.keep_lock.eq(1)]
            with m.Case(S.WRITES):
                m.d.comb += [
                    *self.request(slots[0], adr["pir"], we=1, dat_w=self.pir_word, lock=1),
                    *self.request(slots[1], adr["ni"], we=1, dat_w=self.ni_word | NOTIFY_INFO_ON,
                                  lock=1),
                    trip.count.eq(1 + self.notifying)]
            with m.Case(S.IRR_READ):
                m.d.comb += [*self.request(slots[0], adr["irr"], sel=SEL_DWORD, lock=1),
                             trip.count.eq(1), trip.keep_lock.eq(1)]
            with m.Case(S.IRR_WRITE):
                m.d.comb += [*self.request(slots[0], adr["irr"], we=1, sel=SEL_DWORD,
                                           dat_w=self.irr_word, lock=1),
                             trip.count.eq(1)]

    # -- the steps ------------------------------------------------------------------------------

    def go(self, m, state):
        m.d.sync += self.state.eq(state)

    def exit_with(self, m):
        """Offer the exit whose payload `preload` loaded in this cycle."""
        m.d.sync += self.exit.valid.eq(1)
        self.go(m, self.State.OUTPUT)

    def ends_request(self):
        """The current round trip, if no request of it errs, is the request's last: at its
        last answer the next write may be taken (and refused), and no other exit follows."""
        S = self.State
        return ((self.state == S.STORES) & (self.kind == ICRWriteKind.XAPIC_ICR_HI)) | \
            (self.state == S.WRITES) | (self.state == S.IRR_WRITE)

    def preload(self, m, verdict, in_range):
        """Load the exit and #GP payloads that this cycle's decision may offer, whatever it
        is: so they wait on no answer or handshake, only their valids do.

        Outside ``OUTPUT`` nothing is offered. Where the next write may be taken, only its
        refusal can follow (the intercept or #GP, `preload_refusals`); at a round trip's last
        answer otherwise, an exit of this request: a bus error, or the cause the stores or the
        entry decide (`stores_done`, `entry_read`)."""
        S = self.State
        idle = (self.state == S.IDLE) | (self.state == S.NOTIFY) | (self.state == S.OFFER)
        cause = Signal(ExitCause)
        with m.If(self.trip.error):
            m.d.comb += cause.eq(ExitCause.BUS_ERROR)
        with m.Elif((self.state == S.STORES) & verdict.must_exit):
            m.d.comb += cause.eq(verdict.cause)
        with m.Elif((self.state == S.STORES) & ~in_range):
            m.d.comb += cause.eq(ExitCause.INDEX_RANGE)
        with m.Else():
            m.d.comb += cause.eq(ExitCause.ENTRY_INVALID)
        with m.If(self.state != S.OUTPUT):
            with m.If(idle | (self.ends_request() & ~self.trip.error)):
                preload_refusals(m, self.icr.p, exit_=self.exit, gp=self.gp)
            with m.Else():
                preload_exit(m, self.exit, icr=self._exit_icr)
                m.d.sync += [self.exit.p.cause.eq(cause),
                             self.gp.p.eq(self.icr.p.data)]     # a #GP is only a refusal

    def entry_ok(self, entry):
        """Bits 5:0 are 000001b and nothing is set at or above MAXPHYADDR."""
        return ((entry & PID_POINTER_ENTRY_LOW_MASK) == PID_POINTER_ENTRY_VALID) & \
            (entry[self._maxphyaddr:] == 0)

    def take(self, m):
        """Accept the write offered on ``icr``: its kind and image, then its stores (or, for
        the x2APIC intercept and #GP, its outcome at once)."""
        S, w = self.State, self._offered
        m.d.comb += self.icr.ready.eq(1)
        m.d.sync += [self.kind.eq(self.icr.p.kind), self.xapic.eq(w.xapic),
                     self.image.eq(w.image)]
        with m.If(refuse(m, self.icr.p, w, exit_=self.exit, gp=self.gp)):
            self.go(m, S.OUTPUT)
        with m.Else():
            self.go(m, S.STORES)

    def complete(self, m):
        """The request is over at this edge: take the next write now if one is offered."""
        with m.If(self.icr.valid):
            self.take(m)
        with m.Else():
            self.go(m, self.State.IDLE)

    def stores_done(self, m, full, verdict, in_range):
        """The vICR is stored (and VICR_HI or the entry read): decide the request."""
        S, kind = self.State, self.kind
        entry = self.trip.last         # the entry read, when made, is the last request
        with m.If(kind == ICRWriteKind.XAPIC_ICR_HI):
            self.complete(m)
        with m.Elif(verdict.self_ipi):
            m.d.sync += self.image.eq(full)
            self.go(m, S.IRR_READ)
        with m.Elif(verdict.must_exit | ~in_range):
            self.exit_with(m)           # its cause, or INDEX_RANGE (`preload`)
        with m.Elif(kind == ICRWriteKind.XAPIC_ICR_LO):
            m.d.sync += self.image.eq(full)
            self.go(m, S.ENTRY)
        with m.Else():
            self.entry_read(m, entry)

    def two_stores(self):
        return (self.kind == ICRWriteKind.SENDUIPI) & self.xapic

    def entry_read(self, m, entry):
        with m.If(self.entry_ok(entry)):
            m.d.sync += self.pid_line.eq(PIDPointerEntry(entry).pid_line)
            self.go(m, self.State.READS)
        with m.Else():
            self.exit_with(m)

    def reads_done(self, m):
        # The PIR word was answered before NotifyInfo, so it is in its register by now.
        pir, ni = self.trip.answers[0], self.trip.last
        info = NotifyInfo(ni)
        # V's bit is set here, so the write's data waits on no decoder.
        vector = ICRLow(self.image[:32]).vector
        m.d.sync += [self.pir_word.eq(pir | (C(1, 64) << vector[:6])), self.ni_word.eq(ni),
                     self.notifying.eq(~(info.on | info.sn))]
        self.go(m, self.State.WRITES)

    def notification(self, word=None):
        """Load the notification of NotifyInfo ``word`` (default: as read): NV at NDST, as the
        host decodes it."""
        info = NotifyInfo(self.ni_word if word is None else word)
        dest = Mux(self.cfg.host_x2apic, info.ndst, XAPICNDST(info.ndst).apic_id)
        return [self.notify.valid.eq(1), self.notify.p.vector.eq(info.nv),
                self.notify.p.dest.eq(dest)]

    def writes_done(self, m):
        with m.If(~self.notifying):
            self.complete(m)
        with m.Elif(~self.notify.valid | self.notify.ready):
            m.d.sync += self.notification()
            self.complete(m)
        with m.Else():
            self.go(m, self.State.NOTIFY)

    def irr_write_done(self, m):
        vector = ICRLow(self.image[:32]).vector
        with m.If(~self.self_ipi.valid | self.self_ipi.ready):
            m.d.sync += [self.self_ipi.valid.eq(1), self.self_ipi.p.eq(vector)]
            self.complete(m)
        with m.Else():
            self.go(m, self.State.OFFER)

    def after_round_trip(self, m, full, verdict, in_range):
        """The current round trip's last answer is in: the next step."""
        S, trip = self.State, self.trip
        with m.If(trip.error):
            # The image as known: a VICR_HI whose read failed (or came after an err) stays 0.
            self.exit_with(m)
        with m.Else():
            with m.Switch(self.state):
                with m.Case(S.STORES):
                    self.stores_done(m, full, verdict, in_range)
                with m.Case(S.ENTRY):
                    self.entry_read(m, trip.last)
                with m.Case(S.READS):
                    self.reads_done(m)
                with m.Case(S.WRITES):
                    self.writes_done(m)
                with m.Case(S.IRR_READ):
                    vector = ICRLow(self.image[:32]).vector
                    m.d.sync += self.irr_word.eq(trip.last[:32] | (C(1, 32) << vector[:5]))
                    self.go(m, S.IRR_WRITE)
                with m.Case(S.IRR_WRITE):
                    self.irr_write_done(m)

    def elaborate(self, platform):
        m = Module()
        S = self.State
        # What the offered write gives, formed once: classified whenever a write may be
        # taken, taken in IDLE or as a request completes.
        self._offered = accepted_write(m, self.icr.p, self.cfg)
        for out in self.outputs:
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)

        # The image being classified: an xAPIC ICR-low write's VICR_HI comes from the bus.
        reading_hi = (self.state == S.STORES) & (self.kind == ICRWriteKind.XAPIC_ICR_LO)
        full = Signal(64)
        m.d.comb += full.eq(Cat(self.image[:32],
                                Mux(reading_hi, self.trip.last[:32], self.image[32:])))
        vicr_hi = self.trip.last[:32]       # as it arrives (the stores' last answer)
        verdict = late_verdict(m, self.verdict, full, kind=self.kind, xapic=self.xapic,
                               vicr_hi=vicr_hi)
        # An exit's image: a VICR_HI whose read failed (or came after an err) stays 0; in
        # ENTRY, and for other kinds, full is the image.
        self._exit_icr = Signal(64)
        m.d.comb += self._exit_icr.eq(Mux(self.trip.error, self.image, full))
        in_range = late_in_range(self.verdict, vicr_hi, kind=self.kind, cfg=self.cfg)
        # Read where a write that is not an xAPIC ICR-low one decides its stores' count.
        post_in_range = ~self.verdict.self_ipi & ~self.verdict.must_exit & self.verdict.in_range
        self.round_trips(m, self.addresses(m, reading_hi), post_in_range)

        # The classification of whatever is offered, taken or not, whenever a write may be
        # taken: the one registered as the write is taken is its own, and no handshake
        # waits on the comparators. Only STORES reads it.
        w, kind = self._offered, self.icr.p.kind
        early = classify(m, early_image(kind, w.image), kind=kind, xapic=w.xapic, cfg=self.cfg)
        with m.If((self.state != S.STORES) | self.trip.done):
            m.d.sync += self.verdict.eq(EarlyVerdict.of(
                early, self.cfg, in_range=offered_in_range(self.icr.p, self.cfg)))

        with m.Switch(self.state):
            with m.Case(S.IDLE):
                with m.If(self.icr.valid):
                    self.take(m)
            with m.Case(S.OUTPUT):
                with m.If((self.exit.valid & self.exit.ready) | (self.gp.valid & self.gp.ready)):
                    self.go(m, S.IDLE)
            with m.Case(S.NOTIFY):
                with m.If(~self.notify.valid | self.notify.ready):
                    m.d.sync += self.notification()
                    self.go(m, S.IDLE)
            with m.Case(S.OFFER):
                with m.If(~self.self_ipi.valid | self.self_ipi.ready):
                    m.d.sync += [self.self_ipi.valid.eq(1),
                                 self.self_ipi.p.eq(ICRLow(self.image[:32]).vector)]
                    self.go(m, S.IDLE)
            with m.Default():
                with m.If(self.trip.done):
                    self.after_round_trip(m, full, verdict, in_range)
        # Last: the payloads follow this, not the decision (refuse loads them too).
        self.preload(m, verdict, in_range)

        m.d.comb += self.busy.eq((self.state != S.IDLE) |
                                 Cat(out.valid for out in self.outputs).any())
        return m

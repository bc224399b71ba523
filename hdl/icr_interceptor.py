"""The ICR-write interceptor: first stage of the IPI-virtualization unit.

It takes one `ICRWrite` at a time. An x2APIC write while IPIv is off never reaches the
virtual APIC: the hypervisor intercepts WRMSR 0x830 then, so it is a WRMSR exit (reason 32)
with no bus transfer and no #GP check (docs/interface.md, "the x2APIC intercept"). Otherwise
it raises #GP for an x2APIC write with reserved bits set, or stores the vICR image into the
virtual-APIC page (xAPIC ICR-low writes then read VICR_HI back, since the destination lives
there), and classifies the write (docs/architecture.md §4): a virtualized self-IPI, an IPIv
posting (handed to the PID-table lookup), or an APIC-write exit whose cause is decided from
the ICR and the VMCS alone. It compares T with the last PID index for the lookup
(`PostRequest.in_range`), which acts on it and checks the entry, and sums the addresses the
later stages read (`PostRequest.entry_adr`, `SelfIPIRequest.irr_adr`).
"""

from amaranth import C, Cat, Mux, Signal
from amaranth.lib import enum, stream
from amaranth.lib.wiring import In, Out

from . import wishbone
from .exits import load_exit, preload_exit
from .formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE, APICWriteExit,
    ExitCause, ICR_IPIV_INELIGIBLE_MASK, ICRWrite, ICRWriteKind, SEL_DWORD, SEL_QWORD,
    XAPICICRHigh,
)
from .icr_classifier import (
    EarlyVerdict, classify, early_image, late_in_range, late_verdict, virtual_destination,
)
from .icr_write import accepted_write, offered_in_range, preload_refusals, refuse
from .fsm import transition_table
from .requests import PostRequest, SelfIPIRequest
from .stage import Stage


__all__ = ["ICRInterceptor"]


class ICRInterceptor(Stage):
    """Accepts ICR writes, stores the vICR, and classifies them.

    A `hdl.stage.Stage`: see there for ``maxphyaddr``, ``cfg``, ``bus``, ``busy`` and
    ``state``.

    Members
    -------
    icr : In(stream.Signature(ICRWrite))
    accept : In(1)
        The later stages are free; a new write is taken only while this is high.
    gp : Out(stream.Signature(64))
    exit : Out(stream.Signature(APICWriteExit))
        Exits decided here (``DISABLED``, ``UNSUPPORTED``, ``ILLEGAL_VECTOR``, ``BROADCAST``;
        the WRMSR exit of an x2APIC write with IPIv off) and bus errors of the vICR store.
    post : Out(stream.Signature(PostRequest))
    self_ipi : Out(stream.Signature(SelfIPIRequest))

    Attributes
    ----------
    kind : Signal(ICRWriteKind)
        The kind of the write being handled.
    xapic : Signal(1)
        The write uses the xAPIC formats (an xAPIC kind, or SENDUIPI in xAPIC mode).
    image : Signal(64)
        The vICR image: the x2APIC value, or ``VICR_HI << 32 | VICR_LO``.
    verdict : Signal(EarlyVerdict)
        The write's classification and range check as taken
        (`hdl.icr_classifier.early_image`), registered so that the decision at the last
        store's answer reads no comparator but VICR_HI's.
    lo_adr, hi_adr : Signal(maxphyaddr - 3)
        Word addresses of VICR_LO and VICR_HI, registered every cycle from ``cfg``.
    """

    class State(enum.Enum, shape=3):
        IDLE = 0
        STORE_HI = 1            # the store at 310H
        STORE_LO = 2            # the store at 300H
        READ_HI = 3             # VICR_HI read back (xAPIC ICR-low)
        OUTPUT = 4              # one output offered

    #: Every (from, to) the state register can take (a self-loop where a state waits); proven
    #: complete by ``ipiv prove invariants``.
    TRANSITIONS = transition_table(State, """
        IDLE     -> IDLE STORE_HI STORE_LO OUTPUT
        STORE_HI -> STORE_HI OUTPUT IDLE STORE_LO
        STORE_LO -> STORE_LO OUTPUT READ_HI
        READ_HI  -> READ_HI OUTPUT
        OUTPUT   -> OUTPUT IDLE
    """)

    def __init__(self, *, maxphyaddr=52):
        super().__init__({
            "icr": In(stream.Signature(ICRWrite)),
            "accept": In(1),
            "gp": Out(stream.Signature(64)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "post": Out(stream.Signature(PostRequest)),
            "self_ipi": Out(stream.Signature(SelfIPIRequest)),
        }, maxphyaddr=maxphyaddr)
        self.kind = Signal(ICRWriteKind, name="kind")
        self.xapic = Signal(name="xapic")
        self.image = Signal(64, name="image")
        self.verdict = Signal(EarlyVerdict, name="verdict")
        self.lo_adr = Signal(self._addr_width, name="lo_adr")
        self.hi_adr = Signal(self._addr_width, name="hi_adr")

    @property
    def outputs(self):
        return (self.gp, self.exit, self.post, self.self_ipi)

    # -- the steps (hdl.mutants overrides some of them) -------------------------------------

    def ineligible_mask(self):
        """ICR bits 31:0 that keep a write from being virtualized."""
        return ICR_IPIV_INELIGIBLE_MASK

    def classify(self, m, image, *, kind, xapic):
        return classify(m, image, kind=kind, xapic=xapic, cfg=self.cfg,
                        ineligible_mask=self.ineligible_mask())

    def decide(self, m, full, verdict):
        """Offer what the stored write becomes: a self-IPI, an exit or a posting."""
        vector = verdict.vector
        with m.If(verdict.self_ipi):
            m.d.sync += [self.self_ipi.valid.eq(1), self.self_ipi.p.vector.eq(vector),
                         self.self_ipi.p.icr.eq(full)]
        with m.Elif(verdict.must_exit):
            load_exit(m, self.exit, cause=verdict.cause, icr=self._exit_icr)
        with m.Else():
            m.d.sync += self.post.valid.eq(1)      # its payload loaded by `preload`
        self.go(m, self.State.OUTPUT)

    def bus_error(self, m):
        load_exit(m, self.exit, cause=ExitCause.BUS_ERROR, icr=self._exit_icr)
        self.go(m, self.State.OUTPUT)

    def preload(self, m, full, verdict):
        """No output is offered while storing: load every payload ahead, so that only the
        valids (and the exit's cause) wait on the answer and the verdict."""
        preload_exit(m, self.exit, icr=self._exit_icr)
        m.d.sync += [self.self_ipi.p.vector.eq(verdict.vector), self.self_ipi.p.icr.eq(full),
                     self.self_ipi.p.irr_adr.eq(self.word(
                         self.cfg.vapic_page + APIC_OFFSET_IRR +
                         APIC_REGISTER_STRIDE * verdict.vector[5:8])),
                     self.post.p.vector.eq(verdict.vector), self.post.p.dest.eq(verdict.dest),
                     self.post.p.icr.eq(full), self.post.p.in_range.eq(self._in_range),
                     self.post.p.entry_adr.eq(self.entry_address())]

    def entry_address(self):
        """Word address of T's PID-pointer entry, summed as the posting is loaded. T <= last
        index < 2**16 where the entry is read, so 16 bits of T address it. An xAPIC ICR-low
        write's T is taken straight from the bus (VICR_HI, loaded last as its read is
        answered), chosen by kind so that the sum waits on no state."""
        dest = Mux(self.kind == ICRWriteKind.XAPIC_ICR_LO,
                   XAPICICRHigh(self.bus.dat_r[:32]).dest,
                   virtual_destination(self.image, xapic=self.xapic)[:16])
        return self.word(self.cfg.pid_table + Cat(C(0, 3), dest))

    def word(self, byte_address):
        return byte_address[3:3 + self._addr_width]

    def classify_offered(self, m):
        """Register the classification of whatever is offered, taken or not, and load the
        payloads of its refusals (no output is offered in IDLE): the last ones loaded in IDLE
        are the write's, and no handshake waits on the comparators or the payloads' enables."""
        preload_refusals(m, self.icr.p, exit_=self.exit, gp=self.gp)
        w, kind = self._offered, self.icr.p.kind
        # Its kind and image too (read only once a write is taken): no enable waits on accept.
        m.d.sync += [self.kind.eq(kind), self.xapic.eq(w.xapic), self.image.eq(w.image)]
        early = self.classify(m, early_image(kind, w.image), kind=kind, xapic=w.xapic)
        m.d.sync += self.verdict.eq(EarlyVerdict.of(
            early, self.cfg, in_range=offered_in_range(self.icr.p, self.cfg)))

    def take(self, m):
        """Take a write (`classify_offered` registered its kind and image): go to its first
        store, or end it at once (the x2APIC intercept, #GP)."""
        S, w = self.State, self._offered
        with m.If(refuse(m, self.icr.p, w, exit_=self.exit, gp=self.gp)):
            self.go(m, S.OUTPUT)
        with m.Elif(w.starts_high):
            self.go(m, S.STORE_HI)
        with m.Else():
            self.go(m, S.STORE_LO)

    def store_hi(self, m, hi_adr):
        wishbone.drive(m, self.bus, adr=hi_adr, we=1, sel=SEL_DWORD, dat_w=self.image[32:])
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            with m.If(self.kind == ICRWriteKind.XAPIC_ICR_HI):
                self.go(m, self.State.IDLE)
            with m.Else():
                self.go(m, self.State.STORE_LO)

    def store_lo(self, m, lo_adr, verdict):
        xapic, image = self.xapic, self.image
        wishbone.drive(m, self.bus, adr=lo_adr, we=1, sel=Mux(xapic, SEL_DWORD, SEL_QWORD),
                       dat_w=Mux(xapic, image[:32], image))
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            with m.If(self.kind == ICRWriteKind.XAPIC_ICR_LO):
                self.go(m, self.State.READ_HI)
            with m.Else():
                self.decide(m, self._full, verdict)

    def read_hi(self, m, hi_adr, full, verdict):
        wishbone.drive(m, self.bus, adr=hi_adr, sel=SEL_DWORD)
        with m.If(self.bus.err):
            self.bus_error(m)
        with m.Elif(self.bus.ack):
            m.d.sync += self.image.eq(full)
            self.decide(m, full, verdict)

    def machine(self, m):
        # What the offered write gives, formed once: classified in IDLE, taken on accept.
        self._offered = accepted_write(m, self.icr.p, self.cfg)
        # Registered every cycle, off the stores' path: cfg is held from acceptance, and the
        # first store follows it.
        lo_adr, hi_adr = self.lo_adr, self.hi_adr
        m.d.sync += [lo_adr.eq(self.word(self.cfg.vapic_page + APIC_OFFSET_ICR_LO)),
                     hi_adr.eq(self.word(self.cfg.vapic_page + APIC_OFFSET_ICR_HI))]
        S = self.State
        # The image being classified; VICR_HI comes straight from the bus while it is read.
        # Chosen by kind, not state: an xAPIC ICR-low write's payloads loaded while it stores
        # VICR_LO are loaded again as VICR_HI's read is answered, and nothing else reads it.
        full = Signal(64)
        m.d.comb += full.eq(Cat(self.image[:32], Mux(self.kind == ICRWriteKind.XAPIC_ICR_LO,
                                                      self.bus.dat_r[:32], self.image[32:])))
        vicr_hi = self.bus.dat_r[:32]       # as it arrives (read in READ_HI)
        verdict = late_verdict(m, self.verdict, full, kind=self.kind, xapic=self.xapic,
                               vicr_hi=vicr_hi)
        # An exit's image: a VICR_HI whose read failed stays 0 (in the stores, full is the
        # image).
        self._full, self._exit_icr = full, Signal(64)
        self._in_range = late_in_range(self.verdict, vicr_hi, kind=self.kind, cfg=self.cfg)
        m.d.comb += self._exit_icr.eq(Mux(self.bus.err, self.image, full))

        with m.Switch(self.state):
            with m.Case(S.IDLE):
                self.classify_offered(m)
                m.d.comb += self.icr.ready.eq(self.accept)
                with m.If(self.icr.valid & self.accept):
                    self.take(m)
            with m.Case(S.STORE_HI, S.STORE_LO, S.READ_HI):
                self.preload(m, full, verdict)
                with m.Switch(self.state):
                    with m.Case(S.STORE_HI):
                        self.store_hi(m, hi_adr)
                    with m.Case(S.STORE_LO):
                        self.store_lo(m, lo_adr, verdict)
                    with m.Case(S.READ_HI):
                        self.read_hi(m, hi_adr, full, verdict)
            with m.Case(S.OUTPUT):
                # Leave as the output is taken, so the next write can be accepted at once.
                with m.If(self.output_taken()):
                    self.go(m, S.IDLE)

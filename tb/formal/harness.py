"""The formal harness: `IPIVirtualizer` in an unconstrained but legal environment, with a
transfer-level monitor of ``docs/architecture.md`` §4 and the properties as named checks.

Environment (assumptions, shared by every check):

- ``cfg`` is free in every cycle but held stable while the unit is busy (``docs/interface.md``);
- the ``icr`` producer is free except for the stream rule: once ``valid``, it holds ``valid``
  and the payload until ``ready``;
- every output consumer drives ``ready`` freely;
- the memory answers with free read data and a free choice of ``ack`` or ``err``, only while
  ``cyc & stb``, never both, and at most ``latency`` cycles after the transfer began;
- for the ``completion`` check only, consumers take an output at most ``patience`` cycles
  after it is offered (without a bound no liveness holds).

Amaranth 0.5 has no ``Past``: every "previous cycle" value is a register kept here. Each
property check emits only its own assertions; the monitor logic they do not use is removed
by Yosys before solving.
"""

from dataclasses import dataclass

from amaranth import Array, C, Cat, ClockDomain, Elaboratable, Module, Mux, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from hdl import IPIVirtualizer
from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_WRITE_QUALIFICATION_ICR,
    DeliveryMode, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause, FIRST_LEGAL_VECTOR,
    OUTPUT_STREAMS,
    ICR_IPIV_INELIGIBLE_MASK, ICR_RESERVED_MASK, ICRLow, ICRWriteKind, NotifyInfo,
    PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_LOW_MASK,
    PID_POINTER_ENTRY_VALID, SendUIPIData, Shorthand, TriggerMode,
    WRMSR_QUALIFICATION, XAPIC_BROADCAST_ID, XAPIC_ICR_HI_MASK, XAPICNDST,
)


__all__ = ["Check", "CHECKS", "COVERS", "FormalHarness", "completion_bounds"]

OUTPUTS = OUTPUT_STREAMS
# Bus transfers of the longest request (xAPIC ICR-low IPI): LO store, VICR_HI read, entry read,
# PIR read and write, NotifyInfo read and write.
MAX_TRANSFERS = 7
_SEL_32 = 0x0F
_SEL_64 = 0xFF
_PID_ALIGN_MASK = (1 << 64) - 1 - 0x3F      # PID = entry & ~0x3F
_ON_BIT = NotifyInfo.const({"on": 1}).as_bits()


@dataclass(frozen=True)
class Check:
    """One named property check (one SymbiYosys run)."""
    name: str
    mode: str           # sby mode: "bmc", "prove" or "cover"
    text: str


CHECKS = {c.name: c for c in [
    Check("handshake_exit", "bmc", "exit: valid held and payload stable until ready"),
    Check("handshake_notify", "prove", "notify: valid held and payload stable until ready"),
    Check("handshake_self_ipi", "prove", "self_ipi: valid held and payload stable until ready"),
    Check("handshake_gp", "bmc", "gp: valid held and payload stable until ready"),
    Check("bus_protocol", "bmc",
          "Wishbone master: stb/lock only in cyc; a transfer holds stb, adr, we, sel, dat_w "
          "until ack or err"),
    Check("completion", "bmc",
          "an accepted request is done (unit ready again) within the bound; the unit idles "
          "after it; an ON set is notified at once"),
    Check("write_targets", "bmc",
          "writes only to the request's vICR words (with the stored image), the self-IPI's "
          "IRR word, and the PIR/NotifyInfo words of the PID read from the entry"),
    Check("locked_rmw", "bmc",
          "each PID (and VIRR) write is the write half of a locked RMW of the same word, cyc "
          "and lock held from the PIR read to the last write; PIR: only bit V set; "
          "NotifyInfo: only ON set, only when ON = 0 and SN = 0"),
    Check("exit_paths", "bmc",
          "no transfer for #GP; no read beyond the spec's path (no entry read when an earlier "
          "check exits); no PID write before an exit; nothing after a bus error; exit "
          "cause and image as the spec says"),
    Check("exit_cause", "bmc",
          "an exit without a bus error has the spec's first applicable cause and the stored "
          "vICR image"),
    Check("notify_after_on", "bmc",
          "notify only after the NotifyInfo RMW that set ON, with that NV and decoded NDST; "
          "an idle unit owes no notification (none lost)"),
    Check("covers", "cover",
          "reachability: notification, each exit cause, #GP, suppressed post, self-IPI, two "
          "notifications pending"),
]}

COVERS = (["notify", "two_notifications_pending", "suppressed_post", "self_ipi", "gp",
           "wrmsr_exit"] +
          [f"exit_{cause.name.lower()}" for cause in ExitCause])


def completion_bounds(latency, patience):
    """Cycles after the acceptance cycle by which the unit must be ready again, and idle.

    A request makes at most `MAX_TRANSFERS` transfers of at most ``latency + 1`` cycles each;
    an exit (or #GP) is then offered in the next cycle, taken within ``patience``, and the
    unit is ready the cycle after; a notification or self-IPI is registered as the last
    transfer ends and taken within ``patience`` (a previous one is always taken by then).
    The count starts at 0 in the cycle after acceptance.
    """
    ready = MAX_TRANSFERS * (latency + 1) + patience + 1
    return ready, ready + patience + 1


def _past(m, value, name):
    """A register holding ``value`` of the previous cycle (0 in the first)."""
    value = Value.cast(value)
    reg = Signal(len(value), name=f"past_{name}")
    m.d.sync += reg.eq(value)
    return reg


def assume_icr_held(m, icr):
    """The stream rule of the ``icr`` producer: once ``valid``, it holds ``valid`` and the
    payload until ``ready``."""
    p_valid = _past(m, icr.valid, "icr_valid")
    p_ready = _past(m, icr.ready, "icr_ready")
    p_payload = _past(m, icr.p, "icr_p")
    with m.If(p_valid & ~p_ready):
        m.d.comb += Assume(icr.valid & (icr.p.as_value() == p_payload))


def assume_memory(m, bus, latency):
    """The memory answers (``ack`` or ``err``, never both) only during ``cyc & stb``, and, if
    ``latency`` is not None, at most ``latency`` cycles after the transfer began. Returns
    (active, answer, done) of the current cycle."""
    active = bus.cyc & bus.stb
    answer = bus.ack | bus.err
    m.d.comb += [Assume(~answer | active), Assume(~(bus.ack & bus.err))]
    if latency is not None:
        waited = Signal(range(latency + 2))
        with m.If(active & ~answer):
            with m.If(waited <= latency):
                m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        m.d.comb += Assume(~(active & (waited >= latency)) | answer)
    return active, answer, active & answer


def _word(byte_addr, aw):
    """The bus word address of a byte address, wrapping at MAXPHYADDR."""
    return Value.cast(byte_addr)[3:3 + aw]


class FormalHarness(Elaboratable):
    """`IPIVirtualizer` with a free environment and the properties of one check.

    Parameters
    ----------
    check : str
        A key of `CHECKS`.
    faults : collection of hdl.faults.Fault
        Passed to the unit (mutation tests).
    maxphyaddr : int
        MAXPHYADDR of the unit (36, the smallest, keeps the solver fast).
    latency : int
        The memory answers at most this many cycles after a transfer begins.
    patience : int
        For ``completion``: consumers take an output at most this many cycles after it is
        offered.

    Attributes
    ----------
    dut : IPIVirtualizer
    clk : Signal
        The only port (Amaranth ties an unused clock to 0, which would freeze the design).
    """

    def __init__(self, check, *, faults=frozenset(), maxphyaddr=36, latency=1, patience=2):
        if check not in CHECKS:
            raise ValueError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
        for name, value in (("latency", latency), ("patience", patience)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        self.check = check
        self.latency = latency
        self.patience = patience
        self.dut = IPIVirtualizer(maxphyaddr=maxphyaddr, faults=faults)
        self._cd = ClockDomain("sync", reset_less=True)
        self.clk = self._cd.clk

    # -- helpers ------------------------------------------------------------------------------
    def _assert(self, m, name, test):
        # The message names the sub-property in the RTLIL, for the failure report.
        m.d.comb += Assert(test, name)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self._cd
        m.submodules.dut = dut = self.dut
        aw = len(dut.bus.adr)
        bus = dut.bus

        # -- environment ------------------------------------------------------------------------
        m.d.comb += [
            dut.cfg.as_value().eq(AnySeq(len(dut.cfg.as_value()))),
            dut.icr.valid.eq(AnySeq(1)),
            dut.icr.p.as_value().eq(AnySeq(len(dut.icr.p.as_value()))),
            bus.dat_r.eq(AnySeq(64)),
            bus.ack.eq(AnySeq(1)),
            bus.err.eq(AnySeq(1)),
        ]
        for name in OUTPUTS:
            m.d.comb += getattr(dut, name).ready.eq(AnySeq(1))

        accepted = dut.icr.valid & dut.icr.ready
        p_busy = _past(m, dut.busy, "busy")
        p_accepted = _past(m, accepted, "accepted")
        p_cfg = _past(m, dut.cfg, "cfg")
        m.d.comb += Assume(~(p_busy | p_accepted) | (dut.cfg.as_value() == p_cfg))

        assume_icr_held(m, dut.icr)
        active, answer, done = assume_memory(m, bus, self.latency)

        # -- monitor: the request in progress, as the spec sees it ------------------------------
        # Kept lean on purpose: addresses use the live ``cfg`` (stable while busy, so the same
        # as the request's), the vector is ``data[7:0]`` for every kind, and a transfer is
        # placed on the spec's path by its index among the request's reads or writes.
        r_any = Signal()            # some request has been accepted
        r_kind = Signal(ICRWriteKind)
        r_data = Signal(64)
        n_rd = Signal(3)            # reads / writes answered so far for this request
        n_wr = Signal(3)
        r_err = Signal()            # one of its transfers ended in err
        r_hi = Signal(32)           # VICR_HI as read back (ICR-low writes)
        r_entry = Signal(64)        # the PID-pointer entry as read
        r_entry_done = Signal()
        r_suppressed = Signal()     # the NotifyInfo read saw ON or SN

        c = dut.cfg
        kind, d = r_kind, r_data
        upid = SendUIPIData(d)
        k_lo = kind == ICRWriteKind.XAPIC_ICR_LO
        k_hi = kind == ICRWriteKind.XAPIC_ICR_HI
        k_x2 = kind == ICRWriteKind.X2APIC_ICR
        k_uipi = kind == ICRWriteKind.SENDUIPI
        uipi_xapic = k_uipi & ~c.x2apic
        xapic = k_lo | k_hi | uipi_xapic
        vector = d[:8]              # ICR[7:0]; UPID.NV for SENDUIPI
        lo_word = _word(c.vapic_page + APIC_OFFSET_ICR_LO, aw)
        hi_word = _word(c.vapic_page + APIC_OFFSET_ICR_HI, aw)
        image = Signal(64)          # the vICR image (ICR-low: once VICR_HI is read back)
        m.d.comb += image.eq(Mux(k_lo, Cat(d[:32], r_hi),
                             Mux(k_x2, d,
                             Mux(k_uipi & c.x2apic, Cat(upid.nv, C(0, 24), upid.ndst),
                             Mux(k_uipi, Cat(upid.nv, C(0, 48), XAPICNDST(upid.ndst).apic_id),
                                 Cat(C(0, 32), d[:32] & XAPIC_ICR_HI_MASK))))))
        low = ICRLow(image[:32])
        dest = Mux(xapic, image[56:64], image[32:64])
        # The x2APIC intercept: with IPIv off, WRMSR 0x830 exits before anything else.
        intercept = k_x2 & ~c.ipiv
        gp_req = k_x2 & c.ipiv & ((d[:32] & ICR_RESERVED_MASK) != 0)
        self_req = k_lo & c.vid & ((d[:32] & ICR_RESERVED_MASK) == 0) & \
            (low.shorthand == Shorthand.SELF) & (low.trigger == TriggerMode.EDGE) & \
            (low.delivery_mode == DeliveryMode.FIXED) & (vector >= FIRST_LEGAL_VECTOR)
        n_stores = Mux(gp_req | intercept, 0, Mux(uipi_xapic, 2, 1))
        e = Mux(k_lo, 1, 0)         # index of the entry read among the request's reads
        may_post = ~k_hi & ~gp_req & ~self_req & ~intercept

        # The pre-checks of docs/architecture.md §4 in priority order (docs/interface.md's cause order).
        pre_exit = Signal()
        pre_cause = Signal(ExitCause)
        m.d.comb += pre_exit.eq(1)
        with m.If(~c.ipiv):
            m.d.comb += pre_cause.eq(ExitCause.DISABLED)
        with m.Elif((image[:32] & ICR_IPIV_INELIGIBLE_MASK) != 0):
            m.d.comb += pre_cause.eq(ExitCause.UNSUPPORTED)
        with m.Elif(vector < FIRST_LEGAL_VECTOR):
            m.d.comb += pre_cause.eq(ExitCause.ILLEGAL_VECTOR)
        with m.Elif(xapic & (dest == XAPIC_BROADCAST_ID)):
            m.d.comb += pre_cause.eq(ExitCause.BROADCAST)
        with m.Elif(dest > c.last_pid_index):
            m.d.comb += pre_cause.eq(ExitCause.INDEX_RANGE)
        with m.Else():
            m.d.comb += pre_exit.eq(0)

        entry_ok = r_entry_done & \
            ((r_entry & PID_POINTER_ENTRY_LOW_MASK) == PID_POINTER_ENTRY_VALID) & \
            (r_entry[dut.maxphyaddr:] == 0)
        pid_line = r_entry[6:]      # the PID is 64-byte aligned: PID = entry & ~0x3F
        # T <= last index < 2**16 whenever the entry may be read.
        entry_word = _word(c.pid_table + Cat(C(0, 3), dest[:16]), aw)
        pir_word = Cat(vector[6:8], C(0, 1), pid_line)[:aw]
        ni_word = Cat(C(PID_NOTIFY_INFO_OFFSET // 8, 3), pid_line)[:aw]
        irr_word = _word(c.vapic_page + APIC_OFFSET_IRR + Cat(C(0, 4), vector[5:8]), aw)

        with m.If(accepted):
            m.d.sync += [
                r_any.eq(1), r_kind.eq(dut.icr.p.kind), r_data.eq(dut.icr.p.data),
                n_rd.eq(0), n_wr.eq(0), r_err.eq(0), r_hi.eq(0), r_entry_done.eq(0),
                r_suppressed.eq(0),
            ]
        with m.Elif(done):
            with m.If(bus.err):
                m.d.sync += r_err.eq(1)
            with m.If(bus.we):
                with m.If(n_wr != 7):
                    m.d.sync += n_wr.eq(n_wr + 1)
            with m.Else():
                with m.If(n_rd != 7):
                    m.d.sync += n_rd.eq(n_rd + 1)
                with m.If(~bus.err & k_lo & (n_rd == 0)):
                    m.d.sync += r_hi.eq(bus.dat_r[:32])
                with m.If(~bus.err & may_post & (n_rd == e)):
                    m.d.sync += [r_entry.eq(bus.dat_r), r_entry_done.eq(1)]
                with m.If(~bus.err & may_post & (n_rd == e + 2) &
                          (NotifyInfo(bus.dat_r).on | NotifyInfo(bus.dat_r).sn)):
                    m.d.sync += r_suppressed.eq(1)

        # Transfers after the vICR stores: the read-modify-writes (self-IPI: the IRR word;
        # posting: the PIR word, then NotifyInfo).
        late_wr = n_wr - n_stores   # index among the writes after the stores
        wr_first = bus.we & (n_wr >= n_stores) & (late_wr == 0)
        wr_second = bus.we & (n_wr >= n_stores) & (late_wr == 1)
        rd_rmw = ~bus.we & Mux(self_req, n_rd >= 1, n_rd >= e + 1)
        rd_pir = ~bus.we & may_post & (n_rd == e + 1)
        rd_ni = ~bus.we & may_post & (n_rd == e + 2)

        # -- locked read-modify-write tracking -------------------------------------------------
        held = bus.cyc & bus.lock
        p_open = _past(m, active & ~answer, "xfer_open")
        starts = active & ~p_open
        # ``run``: cyc & lock high in every cycle since the start of the latest read;
        # ``pid_run``: the same since the start of the PIR read.
        run, pid_run = Signal(), Signal()
        run_now = held & (run | (starts & ~bus.we))
        pid_run_now = held & (pid_run | (starts & rd_pir))
        m.d.sync += [run.eq(run_now), pid_run.eq(pid_run_now)]
        last_valid = Signal()       # the previous transfer of this request, if any
        last_we = Signal()
        last_adr = Signal(aw)
        last_data = Signal(64)
        last_err = Signal()
        last_rmw_rd = Signal()      # it was the read of a read-modify-write
        with m.If(accepted):
            m.d.sync += last_valid.eq(0)
        with m.Elif(done):
            m.d.sync += [
                last_valid.eq(1), last_we.eq(bus.we), last_adr.eq(bus.adr),
                last_data.eq(bus.dat_r), last_err.eq(bus.err),
                last_rmw_rd.eq(rd_rmw & ~(may_post & (n_rd == e + 2))),
            ]
        rmw_of_same_word = last_valid & ~last_we & ~last_err & (last_adr == bus.adr) & run_now
        last_info = NotifyInfo(last_data)

        # -- notification scoreboard (depth 2: one offered, one waiting) ------------------------
        sb_count = Signal(2)
        sb = [Signal(40, name=f"sb_{i}") for i in range(2)]     # (vector, dest)
        set_on = done & ~bus.err & wr_second & ~self_req & rmw_of_same_word & \
            (last_info.on == 0) & (last_info.sn == 0) & ((bus.dat_w & _ON_BIT) != 0)
        new_entry = Cat(last_info.nv,
                        Mux(c.host_x2apic, last_info.ndst, XAPICNDST(last_info.ndst).apic_id))
        popped = dut.notify.valid & dut.notify.ready
        head = dut.notify.p.as_value()
        with m.If(popped & set_on):
            with m.If(sb_count == 2):
                m.d.sync += [sb[0].eq(sb[1]), sb[1].eq(new_entry)]
            with m.Else():
                m.d.sync += sb[0].eq(new_entry)
        with m.Elif(popped):
            m.d.sync += [sb[0].eq(sb[1]), sb_count.eq(Mux(sb_count == 0, 0, sb_count - 1))]
        with m.Elif(set_on):
            with m.If(sb_count == 0):
                m.d.sync += [sb[0].eq(new_entry), sb_count.eq(1)]
            with m.Elif(sb_count == 1):
                m.d.sync += [sb[1].eq(new_entry), sb_count.eq(2)]
            with m.Else():
                m.d.sync += sb_count.eq(3)      # overflow: flagged below

        # -- the check ----------------------------------------------------------------------
        name = self.check
        if name.startswith("handshake_"):
            out = getattr(dut, name[len("handshake_"):])
            p_valid = _past(m, out.valid, "valid")
            p_ready = _past(m, out.ready, "ready")
            p_payload = _past(m, out.p, "payload")
            with m.If(p_valid & ~p_ready):
                self._assert(m, "valid_held", out.valid)
                self._assert(m, "payload_stable", Value.cast(out.p) == p_payload)

        elif name == "bus_protocol":
            p_adr = _past(m, bus.adr, "adr")
            p_we = _past(m, bus.we, "we")
            p_sel = _past(m, bus.sel, "sel")
            p_dat_w = _past(m, bus.dat_w, "dat_w")
            self._assert(m, "stb_in_cyc", ~bus.stb | bus.cyc)
            self._assert(m, "lock_in_cyc", ~bus.lock | bus.cyc)
            with m.If(p_open):
                self._assert(m, "stb_held", active)
                self._assert(m, "request_stable", (bus.adr == p_adr) & (bus.we == p_we) &
                             (bus.sel == p_sel) & (~bus.we | (bus.dat_w == p_dat_w)))

        elif name == "completion":
            self._environment_patience(m)
            ready_bound, idle_bound = completion_bounds(self.latency, self.patience)
            since = Signal(range(idle_bound + 2))
            with m.If(accepted):
                m.d.sync += since.eq(0)
            with m.Elif(since <= idle_bound):
                m.d.sync += since.eq(since + 1)
            with m.If(r_any & (since >= ready_bound)):
                self._assert(m, "ready_again", dut.icr.ready)
            with m.If(r_any & (since >= idle_bound)):
                self._assert(m, "idle", ~dut.busy)
            self._assert(m, "on_set_is_notified", (sb_count == 0) | dut.notify.valid)

        elif name == "write_targets":
            with m.If(active & bus.we):
                self._assert(m, "in_a_request", r_any & ~r_err)
                store = Array([
                    # (word, sel, data) of the request's stores, in order.
                    Mux(k_hi | uipi_xapic, Cat(hi_word, C(_SEL_32, 8), image[32:], C(0, 32)),
                        Cat(lo_word, Mux(xapic, _SEL_32, _SEL_64), image)),
                    Cat(lo_word, C(_SEL_32, 8), image[:32], C(0, 32)),
                ])[n_wr[0]]
                s_adr, s_sel, s_dat = store[:aw], store[aw:aw + 8], store[aw + 8:]
                vicr = (n_wr < n_stores) & (bus.adr == s_adr) & (bus.sel == s_sel) & \
                    (bus.dat_w[:32] == s_dat[:32]) & \
                    ((s_sel == _SEL_32) | (bus.dat_w[32:] == s_dat[32:]))
                irr = wr_first & self_req & (bus.adr == irr_word) & (bus.sel == _SEL_32)
                pir = wr_first & ~self_req & r_entry_done & (bus.adr == pir_word) & \
                    (bus.sel == _SEL_64)
                ni = wr_second & ~self_req & r_entry_done & (bus.adr == ni_word) & \
                    (bus.sel == _SEL_64)
                self._assert(m, "allowed_word", vicr | irr | pir | ni)

        elif name == "locked_rmw":
            with m.If(active & rd_rmw):
                self._assert(m, "rmw_read_locked", held)
            with m.If(active & rd_ni):
                self._assert(m, "pir_and_ni_in_one_locked_cycle", pid_run_now & last_valid &
                             last_we)
            with m.If(active & last_valid & ~last_err & last_rmw_rd):
                self._assert(m, "read_is_written_back", bus.we & (bus.adr == last_adr))
            with m.If(active & wr_first):
                self._assert(m, "write_after_its_locked_read", rmw_of_same_word &
                             last_rmw_rd)
                with m.If(self_req):
                    self._assert(m, "irr_sets_only_bit_v", (bus.sel == _SEL_32) & (
                        bus.dat_w[:32] == (last_data[:32] | (C(1, 32) << vector[:5]))))
                with m.Else():
                    self._assert(m, "pir_sets_only_bit_v", (bus.sel == _SEL_64) & (
                        bus.dat_w == (last_data | (C(1, 64) << vector[:6]))))
            with m.If(active & wr_second):
                self._assert(m, "ni_write_after_its_locked_read", ~self_req &
                             rmw_of_same_word & pid_run_now)
                self._assert(m, "ni_only_if_on_and_sn_clear", (last_info.on == 0) &
                             (last_info.sn == 0))
                self._assert(m, "ni_sets_only_on", (bus.sel == _SEL_64) &
                             (bus.dat_w == (last_data | _ON_BIT)))

        elif name == "exit_paths":
            with m.If(active):
                self._assert(m, "nothing_after_err", r_any & ~r_err)
                self._assert(m, "no_transfer_for_gp", ~gp_req)
                self._assert(m, "no_transfer_for_the_x2apic_intercept", ~intercept)
            with m.If(active & ~bus.we):
                self._assert(m, "no_read_for_icr2_write", ~k_hi)
                with m.If(may_post & (n_rd == e)):
                    self._assert(m, "no_entry_read_when_a_check_exits", ~pre_exit)
                    self._assert(m, "entry_read_address", bus.adr == entry_word)
                with m.If(may_post & r_entry_done):
                    self._assert(m, "no_pid_read_for_invalid_entry", entry_ok)
            with m.If(active & bus.we & (n_wr >= n_stores)):
                self._assert(m, "no_pid_write_unless_posting",
                             self_req | (may_post & ~pre_exit & entry_ok))
            with m.If(dut.gp.valid):
                self._assert(m, "gp_is_spec", r_any & gp_req & (dut.gp.p == d) &
                             (n_rd == 0) & (n_wr == 0))
            with m.If(dut.exit.valid):
                x = dut.exit.p
                self._assert(m, "bus_error_iff_err", (x.cause == ExitCause.BUS_ERROR) == r_err)
                with m.If(x.cause != ExitCause.BUS_ERROR):
                    self._assert(m, "no_pid_write_before_exit", n_wr <= n_stores)

        elif name == "exit_cause":
            with m.If(dut.exit.valid & ~r_err):
                x = dut.exit.p
                cause = Mux(pre_exit, pre_cause.as_value(), ExitCause.ENTRY_INVALID.value)
                with m.If(intercept):
                    self._assert(m, "wrmsr_exit_is_spec", r_any &
                                 (x.reason == EXIT_REASON_WRMSR) &
                                 (x.qualification == WRMSR_QUALIFICATION) &
                                 (x.cause == ExitCause.DISABLED) & (x.icr == d) &
                                 (n_rd == 0) & (n_wr == 0))
                with m.Else():
                    self._assert(m, "exit_format", (x.reason == EXIT_REASON_APIC_WRITE) &
                                 (x.qualification == APIC_WRITE_QUALIFICATION_ICR))
                    self._assert(m, "exit_is_spec", r_any & may_post &
                                 (pre_exit | (r_entry_done & ~entry_ok)) &
                                 (x.cause.as_value() == cause) & (x.icr == image))

        elif name == "notify_after_on":
            with m.If(dut.notify.valid):
                self._assert(m, "notify_after_on_set", sb_count != 0)
                self._assert(m, "notify_payload", head == sb[0])
            self._assert(m, "no_overflow", sb_count != 3)
            # Conservation at rest: an idle unit (busy low: nothing registered or waiting)
            # owes no notification, so every ON transition was notified.
            with m.If(~dut.busy):
                self._assert(m, "nothing_owed_when_idle", sb_count == 0)

        elif name == "covers":
            m.d.comb += [
                Cover(dut.notify.valid, "notify"),
                Cover(sb_count == 2, "two_notifications_pending"),
                Cover(r_suppressed & dut.icr.ready, "suppressed_post"),
                Cover(dut.self_ipi.valid, "self_ipi"),
                Cover(dut.gp.valid, "gp"),
                Cover(dut.exit.valid & (dut.exit.p.reason == EXIT_REASON_WRMSR), "wrmsr_exit"),
            ]
            for cause in ExitCause:
                m.d.comb += Cover(dut.exit.valid & (dut.exit.p.cause == cause),
                                  f"exit_{cause.name.lower()}")
        return m

    def _environment_patience(self, m):
        """Consumers take an output within ``patience`` cycles (liveness needs a bound)."""
        for name in OUTPUTS:
            out = getattr(self.dut, name)
            waiting = Signal(range(self.patience + 2), name=f"{name}_waiting")
            with m.If(out.valid & ~out.ready):
                with m.If(waiting <= self.patience):
                    m.d.sync += waiting.eq(waiting + 1)
            with m.Else():
                m.d.sync += waiting.eq(0)
            m.d.comb += Assume(~(out.valid & (waiting >= self.patience)) | out.ready)

"""The spec model of the formal proofs: what one request must do, written from the documents.

`RequestSpec` is a naive model in the style of a FIFO model checked against a FIFO: given the
accepted request (kind and data), ``cfg``, and the data the bus returned so far, it says
which bus transfers the unit must make, in order (byte address, ``we``, ``sel``, write data,
``lock``), and how the request must end: a WRMSR or APIC-write exit (reason, qualification,
cause, image), a #GP, a self-IPI, or a posting with or without a notification (NV, NDST).

It is restated from ``docs/architecture.md`` §2-§5, ``docs/interface.md`` (transfers per
request, exit causes and their priority, the x2APIC intercept) and ``docs/decisions.md``, not
from ``hdl/``: ICR fields are taken by their bit ranges in the architecture's tables (the
eligibility rule field by field, not through the RTL's mask), addresses are computed as byte
addresses, reduced modulo 2**MAXPHYADDR and shifted right by 3, and the exit cause is the
first entry of the documented priority list that holds. Only numeric constants of the
contract (exit reasons, offsets, sizes, byte selects, vector 16, FFH) come from
``hdl.formats``.

Everything here is an Amaranth expression of its inputs (no state): the formal harness keeps
the request and the data read, and asks the spec about the transfer it is at.
"""

from amaranth import Array, C, Cat, Mux, Signal, Value

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE,
    APIC_WRITE_QUALIFICATION_ICR, BUS_BYTES, EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR,
    ExitCause, FIRST_LEGAL_VECTOR, ICRWriteKind, PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES,
    SEL_DWORD, SEL_QWORD, WRMSR_QUALIFICATION, XAPIC_BROADCAST_ID, XAPIC_ICR_HI_MASK,
)


__all__ = ["MAX_TRANSFERS", "RequestSpec"]

#: The longest request (an xAPIC ICR-low IPI with notification) makes 7 transfers.
MAX_TRANSFERS = 7


def _bits(value, high, low):
    """``value[high:low]`` in the documents' notation (bits high..low inclusive)."""
    return Value.cast(value)[low:high + 1]


class _Transfer:
    """One expected transfer: word address, we, sel, write data (only the bytes ``sel``
    enables count), lock, and what it is (for the monitor)."""

    def __init__(self, adr, we, sel, data, lock, *, what):
        self.adr = adr
        self.we = C(we, 1) if isinstance(we, int) else we
        self.sel = C(sel, 8) if isinstance(sel, int) else sel
        self.data = data
        self.lock = C(lock, 1) if isinstance(lock, int) else lock
        self.what = what


class _Kinds:
    """Which request it is, and its format: xAPIC for both xAPIC kinds, and for SENDUIPI in
    xAPIC mode (§4.3)."""

    def __init__(self, kind, cfg):
        self.lo = kind == ICRWriteKind.XAPIC_ICR_LO
        self.hi = kind == ICRWriteKind.XAPIC_ICR_HI
        self.x2 = kind == ICRWriteKind.X2APIC_ICR
        self.uipi = kind == ICRWriteKind.SENDUIPI
        self.xapic = self.lo | self.hi | (self.uipi & ~cfg.x2apic)
        self.uipi_x2 = self.uipi & cfg.x2apic
        self.uipi_xapic = self.uipi & ~cfg.x2apic


class _ICRFields:
    """The ICR's fields by their bit ranges (SDM-APIC table in §4), and §4.4's eligibility,
    row by row."""

    def __init__(self, icr_lo):
        self.low = icr_lo
        self.vector = _bits(icr_lo, 7, 0)
        self.delivery = _bits(icr_lo, 10, 8)
        dest_logical = icr_lo[11]
        bit12 = icr_lo[12]
        self.trigger_level = icr_lo[15]
        self.shorthand = _bits(icr_lo, 19, 18)
        self.reserved = _reserved(icr_lo)
        self.eligible = (self.shorthand == 0) & ~self.trigger_level & ~bit12 & ~dest_logical & \
            (self.delivery == 0) & ~self.reserved
        self.legal_vector = self.vector >= FIRST_LEGAL_VECTOR


def _reserved(icr_lo):
    """ICR bits 31:20, 17:16 or 13 set."""
    return (_bits(icr_lo, 31, 20) != 0) | (_bits(icr_lo, 17, 16) != 0) | icr_lo[13]


class RequestSpec:
    """What the documents demand of one request.

    Parameters (Amaranth values)
    ----------------------------
    kind, data : the accepted `ICRWrite`'s fields.
    cfg : a `VMCSConfig` view (stable while the request is in flight).
    maxphyaddr : int
    hi : 32 bits, VICR_HI as the read-back returned (xAPIC ICR-low only; 0 until read).
    entry : 64 bits, the PID-pointer entry as read.
    rmw : 64 bits, the data of the latest read of a read-modify-write (PIR word or IRR
        register).
    ni : 64 bits, NotifyInfo as read.
    ni_now : 64 bits, NotifyInfo as known at the end of this cycle (the monitor passes the
        data of a NotifyInfo read answered in this cycle); decides `n_transfers`, so that a
        request whose last transfer is answered now counts as complete now. Default ``ni``.

    Attributes: `n_transfers` (Amaranth value) and `transfer(i)` for i < `MAX_TRANSFERS`, the
    outcome flags (``intercept``, ``gp``, ``self_ipi``, ``exit``, ``post``, ``notify``), the
    exit payload fields, ``image``, ``vector``, and `notification` (NV, NDST).
    """

    def __init__(self, m, *, kind, data, cfg, maxphyaddr, hi, entry, rmw, ni, ni_now=None):
        self.maxphyaddr = maxphyaddr
        self._m = m
        data = Value.cast(data)
        k = _Kinds(kind, cfg)
        lo_written, hi_store = self._vicr_image(k, data, hi)
        icr = _ICRFields(_bits(self.image, 31, 0))
        self.vector = icr.vector
        self._outcome(k, cfg, icr, lo_written, entry, ni if ni_now is None else ni_now)
        self._exit_and_notification(data, cfg, ni)
        self._slots = self._pack_slots(
            self._paths(k, self._transfers(k, cfg, icr, hi_store, entry, rmw, ni)))
        self._count_transfers(k)

    def _sig(self, value, name):
        """``value`` as a signal named once, so the RTLIL does not repeat the expression at
        every use."""
        value = Value.cast(value)
        s = Signal(len(value), name=f"spec_{name}")
        self._m.d.comb += s.eq(value)
        return s

    def _vicr_image(self, k, data, hi):
        """The vICR image (§4.1-§4.3) and its destination T; returns the ICR low the request
        wrote and the VICR_HI it stores."""
        lo_written = _bits(data, 31, 0)
        nv_u, ndst_u = _bits(data, 7, 0), _bits(data, 63, 32)       # SENDUIPI: UPID.NV, NDST
        hi_store = Mux(k.hi, lo_written & XAPIC_ICR_HI_MASK,         # 310H keeps bits 31:24
                       Cat(C(0, 24), _bits(ndst_u, 15, 8)))          # (NDST & FF00H) << 16
        image = Mux(k.x2, data,
                Mux(k.uipi_x2, Cat(nv_u, C(0, 24), ndst_u),
                Mux(k.uipi_xapic, Cat(nv_u, C(0, 24), hi_store),
                Mux(k.hi, Cat(C(0, 32), hi_store),
                    Cat(lo_written, Value.cast(hi))))))               # xAPIC ICR low
        self.image = image = self._sig(image, "image")
        # T: xAPIC VICR_HI[31:24] (image bits 63:56); x2APIC the full 32-bit bits 63:32.
        self.dest = self._sig(Mux(k.xapic, _bits(image, 63, 56), _bits(image, 63, 32)), "dest")
        self.xapic = k.xapic
        return lo_written, hi_store

    def _outcome(self, k, cfg, icr, lo_written, entry, ni_now):
        """Which path (§4.2, §4.6, §4.7; interface.md): the x2APIC intercept, a #GP, a
        self-IPI, an exit before or after the entry read, a posting, a notification."""
        intercept = k.x2 & ~cfg.ipiv
        gp = k.x2 & cfg.ipiv & _reserved(lo_written)
        # §4.6: VID on, xAPIC 300H, reserved clear, shorthand self, edge, fixed, V >= 16.
        self_ipi = k.lo & cfg.vid & ~icr.reserved & (icr.shorthand == 1) & \
            ~icr.trigger_level & (icr.delivery == 0) & icr.legal_vector
        usable = entry_usable(entry, self.maxphyaddr)
        pre_exit, cause = self._exit_cause(k, cfg, icr)
        self.intercept = self._sig(intercept, "intercept")
        self.gp = self._sig(gp, "gp")
        self.self_ipi = self._sig(self_ipi, "self_ipi")
        checked = ~k.hi & ~self.intercept & ~self.gp & ~self.self_ipi
        self._usable = usable = self._sig(usable, "entry_usable")
        self.pre_exit = self._sig(checked & pre_exit, "pre_exit")
        self.needs_entry = self._sig(checked & ~pre_exit, "needs_entry")
        self.exit = self._sig(self.intercept | self.pre_exit | (self.needs_entry & ~usable),
                              "exit")
        self.post = self._sig(self.needs_entry & usable, "post")
        ni_on, ni_sn = Value.cast(ni_now)[0], Value.cast(ni_now)[1]
        self.notify = self._sig(self.post & ~ni_on & ~ni_sn, "notify")
        self.exit_cause = self._sig(cause, "cause")

    def _exit_cause(self, k, cfg, icr):
        """The exit causes in the documented priority order (interface.md, "ExitCause"):
        whether one decided before the entry read holds, and the first that holds
        (ENTRY_INVALID when none does)."""
        causes = [
            (~cfg.ipiv, ExitCause.DISABLED),
            (~icr.eligible, ExitCause.UNSUPPORTED),
            (~icr.legal_vector, ExitCause.ILLEGAL_VECTOR),
            (k.xapic & (self.dest == XAPIC_BROADCAST_ID), ExitCause.BROADCAST),
            (self.dest > cfg.last_pid_index, ExitCause.INDEX_RANGE),
        ]
        pre_exit = C(0)
        for cond, _ in causes:
            pre_exit = pre_exit | cond
        cause = C(ExitCause.ENTRY_INVALID.value, 4)
        for cond, value in reversed(causes):
            cause = Mux(cond, value.value, cause)
        return pre_exit, cause

    def _exit_and_notification(self, data, cfg, ni):
        """The exit's payload (the intercept's is a WRMSR exit with the written data), and the
        notification: §3, NV is NotifyInfo bits 23:16; NDST bits 63:32, of which an xAPIC host
        uses 15:8."""
        self.exit_reason = Mux(self.intercept, EXIT_REASON_WRMSR, EXIT_REASON_APIC_WRITE)
        self.exit_qualification = Mux(self.intercept, WRMSR_QUALIFICATION,
                                      APIC_WRITE_QUALIFICATION_ICR)
        self.exit_icr = Mux(self.intercept, data, self.image)
        ndst = _bits(ni, 63, 32)
        self.notification = Cat(_bits(ni, 23, 16),
                                Mux(cfg.host_x2apic, ndst, Cat(_bits(ndst, 15, 8), C(0, 24))))

    def _transfers(self, k, cfg, icr, hi_store, entry, rmw, ni):
        """Every transfer a request may make (interface.md, "Transfers per request"), by what
        it is: a dict of `_Transfer`."""
        vapic, table, word, xapic = cfg.vapic_page, cfg.pid_table, self.word, k.xapic
        image, vector = self.image, self.vector
        pid = Cat(C(0, 6), _bits(entry, 63, 6))             # PID = entry & ~3FH
        st_lo = _Transfer(word(vapic + APIC_OFFSET_ICR_LO), 1, Mux(xapic, SEL_DWORD, SEL_QWORD),
                          Mux(xapic, Cat(icr.low, C(0, 32)), image), 0, what="store_lo")
        st_hi = _Transfer(word(vapic + APIC_OFFSET_ICR_HI), 1, SEL_DWORD,
                          Cat(hi_store, C(0, 32)), 0, what="store_hi")
        rd_hi = _Transfer(word(vapic + APIC_OFFSET_ICR_HI), 0, SEL_DWORD, C(0, 64), 0,
                          what="read_hi")
        rd_entry = _Transfer(word(table + PID_POINTER_ENTRY_BYTES * self.dest), 0, SEL_QWORD,
                             C(0, 64), 0, what="entry")
        pir_adr = word(pid + BUS_BYTES * _bits(vector, 7, 6))
        pir_set = Value.cast(rmw) | (C(1, 64) << _bits(vector, 5, 0))[:64]
        rd_pir = _Transfer(pir_adr, 0, SEL_QWORD, C(0, 64), 1, what="pir_read")
        wr_pir = _Transfer(pir_adr, 1, SEL_QWORD, pir_set, 1, what="pir_write")
        ni_adr = word(pid + PID_NOTIFY_INFO_OFFSET)
        rd_ni = _Transfer(ni_adr, 0, SEL_QWORD, C(0, 64), 1, what="ni_read")
        wr_ni = _Transfer(ni_adr, 1, SEL_QWORD, Value.cast(ni) | 1, 1, what="ni_write")  # ON
        irr_adr = word(vapic + APIC_OFFSET_IRR + APIC_REGISTER_STRIDE * _bits(vector, 7, 5))
        irr_set = Cat(_bits(rmw, 31, 0) | (C(1, 32) << _bits(vector, 4, 0))[:32], C(0, 32))
        rd_irr = _Transfer(irr_adr, 0, SEL_DWORD, C(0, 64), 1, what="irr_read")
        wr_irr = _Transfer(irr_adr, 1, SEL_DWORD, irr_set, 1, what="irr_write")
        return {t.what: t for t in (st_hi, st_lo, rd_hi, rd_entry, rd_pir, wr_pir, rd_ni, wr_ni,
                                    rd_irr, wr_irr)}

    def _paths(self, k, t):
        """The transfers of each path (interface.md, "Transfers per request"), ``t`` as
        `_transfers` gives them: [(taken when, [`_Transfer`])], the first path that holds is
        taken."""
        tail_post = [t["entry"], t["pir_read"], t["pir_write"], t["ni_read"], t["ni_write"]]
        return [
            (k.hi, [t["store_hi"]]),
            (k.lo & self.self_ipi, [t["store_lo"], t["read_hi"], t["irr_read"], t["irr_write"]]),
            (k.lo, [t["store_lo"], t["read_hi"]] + tail_post),
            (k.uipi_xapic, [t["store_hi"], t["store_lo"]] + tail_post),
            (C(1), [t["store_lo"]] + tail_post),            # X2APIC_ICR, SENDUIPI x2APIC
        ]

    def _pack_slots(self, paths):
        """Slot i: the packed i-th transfer of the path taken (an exit cuts a path short,
        `n_transfers`)."""
        first = paths[-1][1][0]                         # every transfer packs alike
        self._adr_width = len(first.adr)
        slots = []
        for i in range(MAX_TRANSFERS):
            slot = C(0, len(self._pack(first)))
            for when, path in reversed(paths):
                if i < len(path):
                    slot = Mux(when, self._pack(path[i]), slot)
            slots.append(self._sig(slot, f"slot_{i}"))
        return slots

    def _count_transfers(self, k):
        """How many transfers the request makes."""
        n_stores = Mux(self.intercept | self.gp, 0, Mux(k.uipi_xapic, 2, 1))
        n_tail = Mux(self.self_ipi, 2,
                 Mux(self.needs_entry,
                     Mux(self._usable, Mux(self.notify, 5, 4), 1), 0))
        #: The transfers before the entry read (vICR stores and the VICR_HI read-back).
        self.n_stores = self._sig(Mux(k.hi, 1, Mux(k.lo, 2, n_stores)), "n_stores")
        self.n_transfers = self._sig(self.n_stores + n_tail, "n_transfers")

    def word(self, byte_address):
        """The bus word address of a byte address: modulo 2**MAXPHYADDR, then >> 3."""
        return Value.cast(byte_address)[3:self.maxphyaddr]

    def transfer(self, i, *, name="slot_at"):
        """The i-th expected transfer (a `_Transfer` of Amaranth values, ``what`` a dict of
        flags); meaningful only for ``i < n_transfers``. ``i`` may be an Amaranth value (then
        the slot is a signal named ``spec_<name>``)."""
        if isinstance(i, int):
            slot = self._slots[i]
        else:
            slots = self._slots + [C(0, len(self._slots[0]))] * (8 - len(self._slots))
            slot = Signal(len(self._slots[0]), name=f"spec_{name}")
            self._m.d.comb += slot.eq(Array(slots)[i])
        return self._unpack(slot, self._adr_width)

    def _pack(self, t):
        """One transfer as one slot value (a subclass may add fields)."""
        return pack_transfer(t)

    def _unpack(self, slot, aw):
        """The `_Transfer` a slot holds (``aw``: its address width)."""
        return unpack_transfer(slot, aw)


_WHATS = ("store_hi", "store_lo", "read_hi", "entry", "pir_read", "pir_write", "ni_read",
          "ni_write", "irr_read", "irr_write")


def pack_transfer(t):
    """One transfer as one value (a slot): adr, we, sel, data, lock, then a flag per `_WHATS`."""
    flags = Cat(C(int(t.what == w), 1) for w in _WHATS)
    data = Value.cast(t.data)
    assert len(t.we) == 1 and len(t.sel) == 8 and len(data) == 64 and len(t.lock) == 1
    return Cat(t.adr, t.we, t.sel, data, t.lock, flags)


def unpack_transfer(slot, aw):
    """The `_Transfer` a slot holds (``aw``: its address width), ``what`` a flag per `_WHATS`."""
    adr, rest = slot[:aw], slot[aw:]
    t = _Transfer(adr, rest[0], rest[1:9], rest[9:73], rest[73], what=None)
    t.what = {w: rest[74 + k] for k, w in enumerate(_WHATS)}
    return t


def entry_usable(entry, maxphyaddr):
    """§2.1: bit 0 set, bits 5:1 clear, nothing at or above MAXPHYADDR."""
    entry = Value.cast(entry)
    return entry[0] & (_bits(entry, 5, 1) == 0) & (entry[maxphyaddr:] == 0)

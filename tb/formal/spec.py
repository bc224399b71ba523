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
contract (exit reasons, offsets, vector 16, FFH) come from ``hdl.formats``.

Everything here is an Amaranth expression of its inputs (no state): the formal harness keeps
the request and the data read, and asks the spec about the transfer it is at.
"""

from amaranth import Array, C, Cat, Mux, Signal, Value

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_WRITE_QUALIFICATION_ICR,
    EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause, FIRST_LEGAL_VECTOR, ICRWriteKind,
    PID_NOTIFY_INFO_OFFSET, WRMSR_QUALIFICATION, XAPIC_BROADCAST_ID,
)


__all__ = ["MAX_TRANSFERS", "RequestSpec"]

#: The longest request (an xAPIC ICR-low IPI with notification) makes 7 transfers.
MAX_TRANSFERS = 7

# Transfer layout packed into one value: fields in this order, widths given by `_fields`.
_SEL_DWORD = 0x0F       # a 32-bit APIC register: bytes 0..3 of its 8-byte word
_SEL_QWORD = 0xFF


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

        def sig(value, name):
            # Named once, so the RTLIL does not repeat the expression at every use.
            value = Value.cast(value)
            s = Signal(len(value), name=f"spec_{name}")
            m.d.comb += s.eq(value)
            return s
        data = Value.cast(data)
        k_lo = kind == ICRWriteKind.XAPIC_ICR_LO
        k_hi = kind == ICRWriteKind.XAPIC_ICR_HI
        k_x2 = kind == ICRWriteKind.X2APIC_ICR
        k_uipi = kind == ICRWriteKind.SENDUIPI
        # Which format: xAPIC for both xAPIC kinds, and for SENDUIPI in xAPIC mode (§4.3).
        xapic = k_lo | k_hi | (k_uipi & ~cfg.x2apic)
        uipi_x2 = k_uipi & cfg.x2apic
        uipi_xapic = k_uipi & ~cfg.x2apic

        # -- the vICR image (§4.1-§4.3) -------------------------------------------------------
        lo_written = _bits(data, 31, 0)
        nv_u, ndst_u = _bits(data, 7, 0), _bits(data, 63, 32)       # SENDUIPI: UPID.NV, NDST
        hi_store = Mux(k_hi, lo_written & 0xFF000000,                # 310H keeps bits 31:24
                       Cat(C(0, 24), _bits(ndst_u, 15, 8)))          # (NDST & FF00H) << 16
        image = Mux(k_x2, data,
                Mux(uipi_x2, Cat(nv_u, C(0, 24), ndst_u),
                Mux(uipi_xapic, Cat(nv_u, C(0, 24), hi_store),
                Mux(k_hi, Cat(C(0, 32), hi_store),
                    Cat(lo_written, Value.cast(hi))))))               # xAPIC ICR low
        self.image = image = sig(image, "image")
        icr_lo = _bits(image, 31, 0)
        self.vector = vector = _bits(icr_lo, 7, 0)
        # T: xAPIC VICR_HI[31:24] (image bits 63:56); x2APIC the full 32-bit bits 63:32.
        self.dest = dest = sig(Mux(xapic, _bits(image, 63, 56), _bits(image, 63, 32)), "dest")
        self.xapic = xapic

        # -- the ICR's fields (SDM-APIC table in §4) -------------------------------------------
        delivery = _bits(icr_lo, 10, 8)
        dest_logical = icr_lo[11]
        bit12 = icr_lo[12]
        trigger_level = icr_lo[15]
        shorthand = _bits(icr_lo, 19, 18)
        reserved = (_bits(icr_lo, 31, 20) != 0) | (_bits(icr_lo, 17, 16) != 0) | icr_lo[13]
        # §4.4, row by row.
        eligible = (shorthand == 0) & ~trigger_level & ~bit12 & ~dest_logical & \
            (delivery == 0) & ~reserved
        legal_vector = vector >= FIRST_LEGAL_VECTOR

        # -- which path (§4.2, §4.6, §4.7; interface.md) ---------------------------------------
        self.intercept = k_x2 & ~cfg.ipiv
        self.gp = k_x2 & cfg.ipiv & ((_bits(lo_written, 31, 20) != 0) |
                                      (_bits(lo_written, 17, 16) != 0) | lo_written[13])
        # §4.6: VID on, xAPIC 300H, reserved clear, shorthand self, edge, fixed, V >= 16.
        self.self_ipi = k_lo & cfg.vid & ~reserved & (shorthand == 1) & ~trigger_level & \
            (delivery == 0) & legal_vector

        # The exit causes in the documented priority order (interface.md, "ExitCause").
        usable = entry_usable(entry, maxphyaddr)
        causes = [
            (~cfg.ipiv, ExitCause.DISABLED),
            (~eligible, ExitCause.UNSUPPORTED),
            (~legal_vector, ExitCause.ILLEGAL_VECTOR),
            (xapic & (dest == XAPIC_BROADCAST_ID), ExitCause.BROADCAST),
            (dest > cfg.last_pid_index, ExitCause.INDEX_RANGE),
        ]
        pre_exit = C(0)
        for cond, _ in causes:
            pre_exit = pre_exit | cond
        cause = C(ExitCause.ENTRY_INVALID.value, 4)
        for cond, value in reversed(causes):
            cause = Mux(cond, value.value, cause)
        self.intercept = sig(self.intercept, "intercept")
        self.gp = sig(self.gp, "gp")
        self.self_ipi = sig(self.self_ipi, "self_ipi")
        checked = ~k_hi & ~self.intercept & ~self.gp & ~self.self_ipi
        usable = sig(usable, "entry_usable")
        self.pre_exit = sig(checked & pre_exit, "pre_exit")
        self.needs_entry = sig(checked & ~pre_exit, "needs_entry")
        self.exit = sig(self.intercept | self.pre_exit | (self.needs_entry & ~usable), "exit")
        self.post = sig(self.needs_entry & usable, "post")
        ni_now = ni if ni_now is None else ni_now
        ni_on, ni_sn = Value.cast(ni_now)[0], Value.cast(ni_now)[1]
        self.notify = sig(self.post & ~ni_on & ~ni_sn, "notify")
        cause = sig(cause, "cause")
        self.exit_reason = Mux(self.intercept, EXIT_REASON_WRMSR, EXIT_REASON_APIC_WRITE)
        self.exit_qualification = Mux(self.intercept, WRMSR_QUALIFICATION,
                                      APIC_WRITE_QUALIFICATION_ICR)
        self.exit_cause = cause
        self.exit_icr = Mux(self.intercept, data, image)
        # §3: NV is NotifyInfo bits 23:16; NDST bits 63:32, of which an xAPIC host uses 15:8.
        ndst = _bits(ni, 63, 32)
        self.notification = Cat(_bits(ni, 23, 16),
                                Mux(cfg.host_x2apic, ndst, Cat(_bits(ndst, 15, 8), C(0, 24))))

        # -- the transfers (interface.md, "Transfers per request") ------------------------------
        vapic, table = cfg.vapic_page, cfg.pid_table
        pid = Cat(C(0, 6), _bits(entry, 63, 6))             # PID = entry & ~3FH
        word = self.word
        st_lo = _Transfer(word(vapic + APIC_OFFSET_ICR_LO), 1, Mux(xapic, _SEL_DWORD, _SEL_QWORD),
                          Mux(xapic, Cat(icr_lo, C(0, 32)), image), 0, what="store_lo")
        st_hi = _Transfer(word(vapic + APIC_OFFSET_ICR_HI), 1, _SEL_DWORD,
                          Cat(hi_store, C(0, 32)), 0, what="store_hi")
        rd_hi = _Transfer(word(vapic + APIC_OFFSET_ICR_HI), 0, _SEL_DWORD, C(0, 64), 0,
                          what="read_hi")
        rd_entry = _Transfer(word(table + 8 * dest), 0, _SEL_QWORD, C(0, 64), 0, what="entry")
        pir_adr = word(pid + 8 * _bits(vector, 7, 6))
        pir_set = Value.cast(rmw) | (C(1, 64) << _bits(vector, 5, 0))[:64]
        rd_pir = _Transfer(pir_adr, 0, _SEL_QWORD, C(0, 64), 1, what="pir_read")
        wr_pir = _Transfer(pir_adr, 1, _SEL_QWORD, pir_set, 1, what="pir_write")
        ni_adr = word(pid + PID_NOTIFY_INFO_OFFSET)
        rd_ni = _Transfer(ni_adr, 0, _SEL_QWORD, C(0, 64), 1, what="ni_read")
        wr_ni = _Transfer(ni_adr, 1, _SEL_QWORD, Value.cast(ni) | 1, 1, what="ni_write")
        irr_adr = word(vapic + APIC_OFFSET_IRR + 0x10 * _bits(vector, 7, 5))
        irr_set = Cat(_bits(rmw, 31, 0) | (C(1, 32) << _bits(vector, 4, 0))[:32], C(0, 32))
        rd_irr = _Transfer(irr_adr, 0, _SEL_DWORD, C(0, 64), 1, what="irr_read")
        wr_irr = _Transfer(irr_adr, 1, _SEL_DWORD, irr_set, 1, what="irr_write")

        # The paths, transfer by transfer; an exit cuts a path short (`n_transfers`).
        tail_post = [rd_entry, rd_pir, wr_pir, rd_ni, wr_ni]
        paths = [                                           # (taken when, transfers)
            (k_hi, [st_hi]),
            (k_lo & self.self_ipi, [st_lo, rd_hi, rd_irr, wr_irr]),
            (k_lo, [st_lo, rd_hi] + tail_post),
            (uipi_xapic, [st_hi, st_lo] + tail_post),
            (C(1), [st_lo] + tail_post),                    # X2APIC_ICR, SENDUIPI x2APIC
        ]
        self._slots = []
        for i in range(MAX_TRANSFERS):
            slot = C(0, len(_pack(st_lo)))
            for when, path in reversed(paths):
                if i < len(path):
                    slot = Mux(when, _pack(path[i]), slot)
            self._slots.append(sig(slot, f"slot_{i}"))
        self._adr_width = len(st_lo.adr)

        n_stores = Mux(self.intercept | self.gp, 0, Mux(uipi_xapic, 2, 1))
        n_tail = Mux(self.self_ipi, 2,
                 Mux(self.needs_entry,
                     Mux(usable, Mux(self.notify, 5, 4), 1), 0))
        #: The transfers before the entry read (vICR stores and the VICR_HI read-back).
        self.n_stores = sig(Mux(k_hi, 1, Mux(k_lo, 2, n_stores)), "n_stores")
        self.n_transfers = sig(self.n_stores + n_tail, "n_transfers")
        self._m = m

    def word(self, byte_address):
        """The bus word address of a byte address: modulo 2**MAXPHYADDR, then >> 3."""
        return Value.cast(byte_address)[3:self.maxphyaddr]

    def transfer(self, i):
        """The i-th expected transfer (a `_Transfer` of Amaranth values, ``what`` a dict of
        flags); meaningful only for ``i < n_transfers``. ``i`` may be an Amaranth value."""
        if isinstance(i, int):
            slot = self._slots[i]
        else:
            slots = self._slots + [C(0, len(self._slots[0]))] * (8 - len(self._slots))
            slot = Signal(len(self._slots[0]), name="spec_slot_at")
            self._m.d.comb += slot.eq(Array(slots)[i])
        return _unpack(slot, self._adr_width)


_WHATS = ("store_hi", "store_lo", "read_hi", "entry", "pir_read", "pir_write", "ni_read", "ni_write",
          "irr_read", "irr_write")


def _pack(t):
    flags = Cat(C(int(t.what == w), 1) for w in _WHATS)
    data = Value.cast(t.data)
    assert len(t.we) == 1 and len(t.sel) == 8 and len(data) == 64 and len(t.lock) == 1
    return Cat(t.adr, t.we, t.sel, data, t.lock, flags)


def _unpack(slot, aw):
    adr, rest = slot[:aw], slot[aw:]
    t = _Transfer(adr, rest[0], rest[1:9], rest[9:73], rest[73], what=None)
    t.what = {w: rest[74 + k] for k, w in enumerate(_WHATS)}
    return t


def entry_usable(entry, maxphyaddr):
    """§2.1: bit 0 set, bits 5:1 clear, nothing at or above MAXPHYADDR."""
    entry = Value.cast(entry)
    return entry[0] & (_bits(entry, 5, 1) == 0) & (entry[maxphyaddr:] == 0)

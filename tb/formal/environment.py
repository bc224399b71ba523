"""The formal harness's environment: what the unit's neighbours may do (assumptions), the
witness environment of the mutation runs, and the registers that stand for Amaranth's missing
``Past``."""

from amaranth import C, Cat, Mux, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assume

from hdl.formats import (
    APIC_OFFSET_ICR_HI, BUS_BYTES, NotifyInfo, OUTPUT_STREAMS, PID_BYTES,
    PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES, PIDPointerEntry, VMCSConfig, XAPICICRHigh,
    XAPICNDST,
)


__all__ = ["past", "assume_icr_held", "assume_memory", "assume_patience", "drive_free",
           "WITNESS_CFG", "witness_memory"]


def past(m, value, name):
    """A register holding ``value`` of the previous cycle (0 in the first)."""
    value = Value.cast(value)
    reg = Signal(len(value), name=f"past_{name}")
    m.d.sync += reg.eq(value)
    return reg


def assume_icr_held(m, icr):
    """The stream rule of the ``icr`` producer: once ``valid``, it holds ``valid`` and the
    payload until ``ready``."""
    p_valid = past(m, icr.valid, "icr_valid")
    p_ready = past(m, icr.ready, "icr_ready")
    p_payload = past(m, icr.p, "icr_p")
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


#: The witness environment's configuration: IPIv and VID on, xAPIC guest and host (both
#: formats matter: the x2APIC kinds are still free to arrive), four table entries.
WITNESS_CFG = {"ipiv": 1, "vid": 1, "x2apic": 0, "host_x2apic": 0, "last_pid_index": 3,
               "pid_table": 0x1000, "vapic_page": 0x2000}
_WITNESS_PID = 0x4000


def witness_memory(adr):
    """The witness environment's memory (it ignores writes): entries 0-2 usable (PID
    ``4000H + 40H*T``), entry 3 not (a reserved bit); NotifyInfo with ON = 0, NV F0H + T,
    NDST of xAPIC host APIC ID 5 + T (so two notifications to different PIDs differ) and
    SN = 1 in PID 2 only; VICR_HI destination 1; PIR and IRR words 0."""
    cases = []
    for t in range(4):
        pid = _WITNESS_PID + PID_BYTES * t
        entry = {"valid": 1, "pid_line": pid // PID_BYTES, "reserved_5_1": 0 if t < 3 else 1}
        cases.append(((WITNESS_CFG["pid_table"] + PID_POINTER_ENTRY_BYTES * t) // BUS_BYTES,
                      PIDPointerEntry.const(entry).as_bits()))
        ndst = XAPICNDST.const({"apic_id": 5 + t}).as_bits()
        info = {"nv": 0xF0 + t, "ndst": ndst, "sn": 1 if t == 2 else 0}
        cases.append(((pid + PID_NOTIFY_INFO_OFFSET) // BUS_BYTES,
                      NotifyInfo.const(info).as_bits()))
    cases.append(((WITNESS_CFG["vapic_page"] + APIC_OFFSET_ICR_HI) // BUS_BYTES,
                  XAPICICRHigh.const({"dest": 1}).as_bits()))
    value = C(0, 64)
    for word, data in reversed(cases):
        value = Mux(adr == word, data, value)
    return value


def drive_free(m, dut, *, witness, read_address=None):
    """Drive every input of ``dut`` freely (the witness environment pins ``cfg`` and the
    memory's contents, and leaves only some ICR bits free; its read data is the word at
    ``read_address``, default the address on the bus)."""
    bus = dut.bus
    if witness:
        m.d.comb += [
            dut.cfg.eq(VMCSConfig.const(WITNESS_CFG)),
            bus.dat_r.eq(witness_memory(bus.adr if read_address is None else read_address)),
            # Free: kind, vector, ICR bits 19:11 (destination mode, bit 12, trigger,
            # shorthand, reserved), T (x2APIC bits 34:32, SENDUIPI NDST bits 10:8); 0 else.
            dut.icr.p.as_value().eq(Cat(
                AnySeq(2), AnySeq(8), C(0, 3), AnySeq(9), C(0, 12), AnySeq(3), C(0, 5),
                AnySeq(3), C(0, 21))),
        ]
    else:
        m.d.comb += [
            dut.cfg.as_value().eq(AnySeq(len(dut.cfg.as_value()))),
            bus.dat_r.eq(AnySeq(64)),
            dut.icr.p.as_value().eq(AnySeq(len(dut.icr.p.as_value()))),
        ]
    m.d.comb += [dut.icr.valid.eq(AnySeq(1)), bus.ack.eq(AnySeq(1)), bus.err.eq(AnySeq(1))]
    for name in OUTPUT_STREAMS:
        m.d.comb += getattr(dut, name).ready.eq(AnySeq(1))


def assume_patience(m, dut, patience):
    """Consumers take an output within ``patience`` cycles (a response bound needs it)."""
    for name in OUTPUT_STREAMS:
        out = getattr(dut, name)
        waiting = Signal(range(patience + 2), name=f"{name}_waiting")
        with m.If(out.valid & ~out.ready):
            with m.If(waiting <= patience):
                m.d.sync += waiting.eq(waiting + 1)
        with m.Else():
            m.d.sync += waiting.eq(0)
        m.d.comb += Assume(~(out.valid & (waiting >= patience)) | out.ready)

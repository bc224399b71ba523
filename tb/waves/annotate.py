"""Text derived from the samples of `tb.waves.probes`: each ICR write as one line
(`request_text`, with the golden model's outcome) for as long as it is in flight
(`request_spans`), and the structure each bus address falls in (`bus_target`). Both the VCD
and the WaveDrom diagrams show them.
"""

from amaranth.lib import data

from hdl.formats import (
    APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR, APIC_REGISTER_STRIDE, BUS_BYTES,
    ICRWriteKind, PAGE_SIZE, PID_BYTES, PID_NOTIFY_INFO_OFFSET, PID_POINTER_ENTRY_BYTES,
    VMCSConfig,
)
from sim.golden import Outcome


__all__ = ["request_text", "request_spans", "bus_target", "bus_targets"]

_VIRR_BYTES = 8 * APIC_REGISTER_STRIDE      # the IRR: eight 32-bit registers, 256 vectors


def request_text(index, request, result):
    """``#3 X2APIC_ICR 0x41->2: posted, notify 0xf2@0x12`` (golden model's ``result``)."""
    kind = ICRWriteKind(request.kind).name
    head = f"#{index} {kind}"
    if result is None:
        return head
    o = result.outcome
    if o is Outcome.STORED:
        return f"{head}: stored (ICR2 {request.value:#x})"
    target = f" {result.vector:#04x}->{result.dest}" if result.vector is not None else ""
    if o is Outcome.POSTED:
        tail = (f"posted, notify {result.notify[0]:#04x}@{result.notify[1]:#x}"
                if result.notify else "posted, suppressed")
    elif o is Outcome.EXIT:
        tail = f"exit {result.reason} {result.cause.name}"
    elif o is Outcome.SELF_IPI:
        tail = "self-IPI"
    else:
        tail = "#GP"
    return f"{head}{target}: {tail}"


def request_spans(run, recording):
    """[(first cycle, last cycle, text)] of each accepted request: from its acceptance until
    the unit is idle again or the next request is accepted."""
    busy = recording.column("outputs.busy")
    starts = [cycle for cycle, _ in run.accepted]
    spans = []
    for k, ((cycle, index), result) in enumerate(zip(run.accepted, run.results or
                                                      [None] * len(run.accepted))):
        end = starts[k + 1] - 1 if k + 1 < len(starts) else len(busy) - 1
        c = cycle + 1
        while c <= end and busy[c]:
            c += 1
        spans.append((cycle, min(c, end), request_text(index, run.requests[index], result)))
    return spans


def bus_target(cfg, adr):
    """The structure a bus word address falls in, from the VMCS configuration: ``vICR lo``,
    ``VIRR``, ``table[T]``, ``PID.PIR[i]``, ``PID.ON/SN/NV``."""
    byte = adr * BUS_BYTES
    page = ~(PAGE_SIZE - 1)
    vapic, table = cfg.vapic_page & page, cfg.pid_table & page
    if vapic <= byte < vapic + PAGE_SIZE:
        off = byte - vapic
        if off == APIC_OFFSET_ICR_LO:
            return "vICR lo (300H)"
        if off == APIC_OFFSET_ICR_HI:
            return "vICR hi (310H)"
        if APIC_OFFSET_IRR <= off < APIC_OFFSET_IRR + _VIRR_BYTES:
            return f"VIRR {off:03X}H"
        return f"vAPIC {off:03X}H"
    if table <= byte < table + PID_POINTER_ENTRY_BYTES * (cfg.last_pid_index + 1):
        return f"table[{(byte - table) // PID_POINTER_ENTRY_BYTES}]"
    off = byte % PID_BYTES
    if off == PID_NOTIFY_INFO_OFFSET:
        return "PID.ON/SN/NV/NDST"
    if off < PID_NOTIFY_INFO_OFFSET:
        return f"PID.PIR[{off // BUS_BYTES}]"
    return f"PID+{off:02X}H"


def bus_targets(recording):
    """`bus_target` of every sampled cycle ("" when no strobe)."""
    adr, stb = recording.index["bus.adr"], recording.index["bus.stb"]
    out = []
    for row in recording.rows:
        if not row[stb]:
            out.append("")
            continue
        cfg = VMCSConfig.from_bits(_pack_cfg(recording, row))
        out.append(bus_target(cfg, row[adr]))
    return out


def _pack_cfg(recording, row):
    bits = 0
    for name, field in data.Layout.cast(VMCSConfig):
        i = recording.index[f"cfg.{name}"]
        bits |= row[i] << field.offset
    return bits

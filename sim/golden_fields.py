"""The fields the golden model (`sim.golden`) reads and builds, as shifts and masks taken from
the layouts of `hdl.formats` at import (`sim.bit_fields.Field`): the same values the layouts'
views give, without their cost on every ICR write.
"""

from hdl.formats import (
    DeliveryMode, ICRLow, NotifyInfo, PID_BYTES, PIDPointerEntry, SendUIPIData, Shorthand,
    TriggerMode, X2APICICR, XAPICICR, XAPICNDST,
)
from .bit_fields import Field


__all__ = ["ICR_VECTOR", "ICR_DELIVERY_MODE", "ICR_TRIGGER", "ICR_SHORTHAND", "XAPIC_DEST",
           "XAPIC_VECTOR", "X2APIC_DEST", "X2APIC_VECTOR", "UIPI_NV", "UIPI_NDST",
           "NDST_APIC_ID", "NOTIFY_ON", "NOTIFY_SN", "NOTIFY_NV", "NOTIFY_NDST", "ENTRY_PID_LINE",
           "FIXED", "EDGE", "SELF", "icr_vector", "self_ipi_form", "icr_destination",
           "senduipi_image", "notify_decision", "pid_address"]

ICR_VECTOR = Field(ICRLow, "vector")
ICR_DELIVERY_MODE = Field(ICRLow, "delivery_mode")
ICR_TRIGGER = Field(ICRLow, "trigger")
ICR_SHORTHAND = Field(ICRLow, "shorthand")
XAPIC_DEST = Field(XAPICICR, "high", "dest")
XAPIC_VECTOR = Field(XAPICICR, "low", "vector")
X2APIC_DEST = Field(X2APICICR, "dest")
X2APIC_VECTOR = Field(X2APICICR, "low", "vector")
UIPI_NV = Field(SendUIPIData, "nv")
UIPI_NDST = Field(SendUIPIData, "ndst")
NDST_APIC_ID = Field(XAPICNDST, "apic_id")
NOTIFY_ON = Field(NotifyInfo, "on")
NOTIFY_SN = Field(NotifyInfo, "sn")
NOTIFY_NV = Field(NotifyInfo, "nv")
NOTIFY_NDST = Field(NotifyInfo, "ndst")
ENTRY_PID_LINE = Field(PIDPointerEntry, "pid_line")

# The enum values the self-IPI form compares with (Amaranth enum members are not ints).
FIXED = DeliveryMode.FIXED.value
EDGE = TriggerMode.EDGE.value
SELF = Shorthand.SELF.value


def icr_vector(icr):
    """The vector of an ICR (its low half, or the whole image)."""
    return ICR_VECTOR.get(icr)


def self_ipi_form(icr_lo):
    """Shorthand self, edge-triggered, fixed delivery: the form of a self-IPI (the reserved
    bits and the vector are checked by the caller)."""
    return ICR_SHORTHAND.get(icr_lo) == SELF and ICR_TRIGGER.get(icr_lo) == EDGE and \
        ICR_DELIVERY_MODE.get(icr_lo) == FIXED


def icr_destination(image, xapic):
    """The destination of a 64-bit vICR image: VICR_HI's byte (xAPIC) or bits 63:32."""
    return XAPIC_DEST.get(image) if xapic else X2APIC_DEST.get(image)


def senduipi_image(value, xapic):
    """The vICR image of a SENDUIPI write (``value``: `SendUIPIData`): vector NV, destination
    NDST (xAPIC: the APIC ID in NDST bits 15:8)."""
    nv, ndst = UIPI_NV.get(value), UIPI_NDST.get(value)
    if xapic:
        return XAPIC_VECTOR.put(nv) | XAPIC_DEST.put(NDST_APIC_ID.get(ndst))
    return X2APIC_VECTOR.put(nv) | X2APIC_DEST.put(ndst)


def notify_decision(raw, host_x2apic):
    """(notify?, (NV, physical APIC ID)) of a NotifyInfo word: notify iff ON and SN are clear;
    NDST decoded as the host's APIC mode says."""
    ndst = NOTIFY_NDST.get(raw)
    dest = ndst if host_x2apic else NDST_APIC_ID.get(ndst)
    return not (NOTIFY_ON.get(raw) or NOTIFY_SN.get(raw)), (NOTIFY_NV.get(raw), dest)


def pid_address(entry):
    """The PID byte address a PID-pointer entry points at (validity not checked)."""
    return ENTRY_PID_LINE.get(entry) * PID_BYTES

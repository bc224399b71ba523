"""Packing and unpacking of the unit's flattened ports, from the layouts in `hdl.formats`
(plain Python: used by the checker, the cocotb backend and its coverage).

Amaranth flattens a struct port into one vector (``cores__0__cfg`` is 148 bits); the field
offsets come from the layouts themselves, so no bit position is written here. `data.Const`
views are slow in a per-cycle loop, hence plain shifts over the layouts' offsets (as
`sim.bit_fields`, whose `field_slice` this module passes on).
"""

import enum

from amaranth.lib import data

from hdl.formats import (
    APICWriteExit, ICRLow, ICRWrite, Notification, NotifyInfo, VMCSConfig, XAPICNDST,
)
from sim.bit_fields import field_slice       # re-exported: (offset, mask) of a nested field


__all__ = ["Codec", "field_slice", "ICR_WRITE", "EXIT", "NOTIFY", "CONFIG", "ICR_LOW",
           "NOTIFY_INFO", "XAPIC_NDST", "pack_config"]


class Codec:
    """Flat fields of one layout: ``pack(**fields) -> int`` and ``unpack(int) -> dict``.

    Parameters
    ----------
    layout : amaranth.lib.data.Layout or a Struct class
        Its top-level fields are packed; enum values may be given as members or ints.
    """

    def __init__(self, layout):
        self.layout = data.Layout.cast(layout)
        self.fields = {name: (f.offset, (1 << f.width) - 1) for name, f in self.layout}
        self.size = self.layout.size

    def pack(self, **values):
        bits = 0
        for name, value in values.items():
            offset, mask = self.fields[name]
            if isinstance(value, enum.Enum):    # Amaranth enums are not int subclasses
                value = value.value
            bits |= (int(value) & mask) << offset
        return bits

    def unpack(self, bits):
        return {name: (bits >> offset) & mask for name, (offset, mask) in self.fields.items()}


ICR_WRITE = Codec(ICRWrite)
EXIT = Codec(APICWriteExit)
NOTIFY = Codec(Notification)
CONFIG = Codec(VMCSConfig)
ICR_LOW = Codec(ICRLow)
NOTIFY_INFO = Codec(NotifyInfo)
XAPIC_NDST = Codec(XAPICNDST)


def pack_config(cfg):
    """A `sim.golden.Config` as the bits of the ``cfg`` port."""
    return CONFIG.pack(ipiv=cfg.ipiv, vid=cfg.vid, x2apic=cfg.x2apic, host_x2apic=cfg.host_x2apic,
                       last_pid_index=cfg.last_pid_index, pid_table=cfg.pid_table,
                       vapic_page=cfg.vapic_page)

"""A field of an `hdl.formats` layout as a plain shift and mask, for code that decodes raw
integers often (the golden model on every ICR write, the checker and testbenches per cycle).

A ``Layout.from_bits(value).field`` view costs tens of microseconds; ``value >> offset & mask``
costs tens of nanoseconds. The offset and width are read from the layout once, when the
`Field` is made, so every bit position stays defined only in `hdl.formats`.
"""

from amaranth.lib import data


__all__ = ["field_slice", "Field"]


def field_slice(layout, *path):
    """(offset, mask) of a possibly nested field: ``field_slice(XAPICICR, "high", "dest")``."""
    if not path:
        raise ValueError("field_slice needs the name of a field")
    offset, shape = 0, layout
    for name in path:
        f = data.Layout.cast(shape)[name]
        offset += f.offset
        shape = f.shape
    return offset, (1 << f.width) - 1


class Field:
    """One field of ``layout`` (``path``: its name, or the names down to a nested field).

    ``get(value)`` extracts it from a raw integer as an int (enum fields give the member's
    value); ``put(value)`` places ``value`` (its low bits) at the field's position."""

    __slots__ = ("name", "offset", "mask")

    def __init__(self, layout, *path):
        self.name = ".".join(path)
        self.offset, self.mask = field_slice(layout, *path)

    def __repr__(self):
        return f"Field({self.name!r}, offset={self.offset}, mask={self.mask:#x})"

    def get(self, value):
        return value >> self.offset & self.mask

    def put(self, value):
        return (value & self.mask) << self.offset

"""Architectural values built from named fields, each checked against its field in
`hdl.formats`, and shown in hex.

Amaranth's ``Layout.const`` keeps only the low bits of an integer that does not fit its field
(``ICRLow.const({"vector": 300})`` is vector 0x2C), which is right for gateware and wrong for a
helper a person calls: `pack` refuses such a value with a `ValueError` that names the field and
its range, taking the widths from the layouts themselves (no width is restated here).
`hex_repr` writes the ``repr`` of a dataclass with its register-like fields in hex.
"""

import dataclasses
import enum as py_enum

from amaranth.lib import data, enum


__all__ = ["pack", "check_fields", "check_fits", "field_width", "hex_repr"]


def _name(layout):
    return getattr(layout, "__name__", None) or type(layout).__name__


def field_width(layout, name):
    """The width in bits of field ``name`` of ``layout``."""
    return data.Layout.cast(layout)[name].width


def check_fits(what, value, bits):
    """``value`` must be an integer of ``bits`` bits: else ValueError naming ``what``."""
    if isinstance(value, py_enum.Enum) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must be 0..{(1 << bits) - 1:#x}, not {value!r}"
                         + (f" ({value:#x})" if value >= 0 else ""))
    return value


def _is_struct(shape):
    return isinstance(shape, data.Layout) or isinstance(shape, type) and \
        issubclass(shape, data.Struct)


def _check_enum(what, shape, value):
    if isinstance(value, shape):
        return
    known = {m.value: m for m in shape}
    if isinstance(value, int) and not isinstance(value, py_enum.Enum) and value in known:
        return
    names = ", ".join(f"{m.name} ({m.value})" for m in shape)
    raise ValueError(f"{what} must be one of {names}, not {value!r}")


def check_fields(layout, values, *, what=None, prefix=""):
    """Check that every entry of ``values`` names a field of ``layout`` and fits it (a nested
    layout takes a dict, an enum field a member or its value); returns ``values``."""
    what = what or _name(layout)
    fields = data.Layout.cast(layout)
    for name, value in values.items():
        label = f"{what} field {prefix + name!r}"
        try:
            field = fields[name]
        except KeyError:
            raise ValueError(f"{what} has no field {prefix + name!r} (fields: "
                             f"{', '.join(n for n, _ in fields)})") from None
        shape = field.shape
        if _is_struct(shape):
            if not isinstance(value, dict):
                raise ValueError(f"{label} takes a dict of its fields, not {value!r}")
            check_fields(shape, value, what=what, prefix=f"{prefix}{name}.")
        elif isinstance(shape, enum.EnumMeta):
            _check_enum(label, shape, value)
        else:
            check_fits(label, value, field.width)
    return values


def pack(layout, values, *, what=None):
    """The integer of ``layout`` with the given field ``values`` (others 0), every value
    checked to fit (`check_fields`)."""
    check_fields(layout, values, what=what)
    return data.Layout.cast(layout).const(values).as_bits()


def _shown(value, as_hex):
    if as_hex and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}"
    if isinstance(value, py_enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


def hex_repr(obj, hex_fields, **special):
    """``Name(a=..., b=...)`` of dataclass ``obj``: the fields in ``hex_fields`` in hex, those
    in ``special`` written by the given function, enums as ``Enum.NAME``."""
    parts = []
    for f in dataclasses.fields(obj):
        if not f.repr:
            continue
        value = getattr(obj, f.name)
        text = special[f.name](value) if f.name in special and value is not None else \
            _shown(value, f.name in hex_fields)
        parts.append(f"{f.name}={text}")
    return f"{type(obj).__name__}({', '.join(parts)})"

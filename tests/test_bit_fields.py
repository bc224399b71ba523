"""`sim.bit_fields.Field` reads and places every field of every layout in `hdl.formats` as the
layout's own views do (``Layout.from_bits(v).a.b``, ``Layout.const({...})``), on seeded random
values; a field whose position is off by one is told apart."""

import enum as py_enum
import random

import pytest
from amaranth.lib import data

import hdl.formats
from sim.bit_fields import Field, field_slice

SAMPLES = 200

LAYOUTS = [getattr(hdl.formats, name) for name in hdl.formats.__all__
           if isinstance(getattr(hdl.formats, name), type)
           and issubclass(getattr(hdl.formats, name), data.Struct)]


def _nested(shape):
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def leaf_paths(layout, prefix=()):
    """The path (field names) of every leaf field of ``layout``."""
    for name, f in data.Layout.cast(layout):
        inner = _nested(f.shape)
        if inner is None:
            yield prefix + (name,)
        else:
            yield from leaf_paths(inner, prefix + (name,))


def view_get(view, path):
    """A field's value through a layout's view (an enum member as its value)."""
    v = view
    for name in path:
        v = getattr(v, name)
    return getattr(v, "value", v) if not isinstance(v, int) else v


def view_put(layout, path, value):
    """The layout's constant with only that field set."""
    fields = value
    for name in reversed(path):
        fields = {name: fields}
    return data.Layout.cast(layout).const(fields).as_bits()


def random_leaf(rng, shape, width):
    """A random value of a leaf field: any ``width`` bits, or a member of an enum shape (a
    view cannot show a value no member has)."""
    if isinstance(shape, type) and issubclass(shape, py_enum.Enum):
        return rng.choice(list(shape)).value
    return rng.getrandbits(width)


def random_fields(rng, layout):
    """Random values of every field of ``layout`` (a nested layout's as a dict)."""
    values = {}
    for name, f in data.Layout.cast(layout):
        inner = _nested(f.shape)
        values[name] = random_leaf(rng, f.shape, f.width) if inner is None else \
            random_fields(rng, inner)
    return values


def leaf(layout, path):
    """The `amaranth.lib.data.Field` at ``path``."""
    f = None
    for name in path:
        f = data.Layout.cast(layout if f is None else f.shape)[name]
    return f


def mismatches(layout, fields, rng, limit=None):
    """(what, path, input, Field's answer, the view's) where the `Field` of each path in
    ``fields`` ({path: Field}) and the layout's views disagree on random values (the first
    ``limit`` of them)."""
    shape = data.Layout.cast(layout)
    bad = []
    for _ in range(SAMPLES):
        value = shape.const(random_fields(rng, layout)).as_bits()
        view = shape.from_bits(value)
        for path, field in fields.items():
            want = view_get(view, path)
            if field.get(value) != want:
                bad.append(("get", path, value, field.get(value), want))
            f = leaf(layout, path)
            x = random_leaf(rng, f.shape, f.width)
            if field.put(x) != view_put(layout, path, x):
                bad.append(("put", path, x, field.put(x), view_put(layout, path, x)))
        if limit is not None and len(bad) >= limit:
            break
    return bad


def fields_of(layout):
    return {path: Field(layout, *path) for path in leaf_paths(layout)}


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.__name__ for layout in LAYOUTS])
def test_fields_read_and_place_as_the_layout_views(layout):
    fields = fields_of(layout)
    assert len(fields) >= 2
    assert mismatches(layout, fields, random.Random(layout.__name__)) == []


@pytest.mark.parametrize("path", list(leaf_paths(hdl.formats.XAPICICR)),
                         ids=".".join)
def test_a_field_off_by_one_is_told_apart(path):
    """The comparison above can fail: one field of a nested layout moved up or down a bit."""
    for shift in (-1, 1):
        field = Field(hdl.formats.XAPICICR, *path)
        if field.offset + shift < 0:
            continue
        field.offset += shift
        assert mismatches(hdl.formats.XAPICICR, {path: field}, random.Random(1), limit=1), \
            (path, shift)


def test_field_slice_of_a_nested_field_and_errors():
    inner, low = field_slice(hdl.formats.XAPICICRHigh, "dest"), field_slice(
        hdl.formats.XAPICICR, "high")
    assert field_slice(hdl.formats.XAPICICR, "high", "dest") == (low[0] + inner[0], inner[1])
    with pytest.raises(KeyError):
        field_slice(hdl.formats.ICRLow, "no_such_field")
    with pytest.raises(ValueError, match="needs the name of a field"):
        field_slice(hdl.formats.ICRLow)

"""The golden model's decoders (`sim.golden_fields`, shifts and masks) give what the layouts'
views of `hdl.formats` give, on seeded random values with the interesting field values made
likely; and each of its fields, moved by one bit, makes the comparison fail."""

import random

import pytest
from amaranth.lib import data

from hdl.formats import (
    DeliveryMode, ExitCause, FIRST_LEGAL_VECTOR, ICR_IPIV_INELIGIBLE_MASK, ICR_RESERVED_MASK,
    ICRLow, NotifyInfo, PIDPointerEntry, SendUIPIData, Shorthand, TriggerMode, X2APICICR,
    XAPIC_BROADCAST_ID, XAPICICR, XAPICNDST, pid_of_entry,
)
from sim import golden_fields
from sim.bit_fields import Field
from sim.golden import Config, GoldenIPIVirtualizer

SAMPLES = 1000


def biased(rng, layout):
    """A random value of ``layout`` whose fields are often 0, 1 or all ones (so self-IPI
    forms, reserved bits clear, ON/SN clear turn up), built through the layout itself."""
    def pick(width):
        return rng.choice([0, 0, 0, 1, (1 << width) - 1, rng.getrandbits(width)])

    def fields(shape):
        out = {}
        for name, f in data.Layout.cast(shape):
            try:
                out[name] = fields(data.Layout.cast(f.shape))
            except TypeError:           # a leaf: bits or an enum
                out[name] = pick(f.width)
        return out
    return data.Layout.cast(layout).const(fields(layout)).as_bits()


# -- the references: the layouts' views, as the golden model used them -------------------------

def view_self_ipi(cfg, icr_lo):
    low = ICRLow.from_bits(icr_lo)
    return bool(cfg.vid and not (icr_lo & ICR_RESERVED_MASK)
                and low.shorthand == Shorthand.SELF and low.trigger == TriggerMode.EDGE
                and low.delivery_mode == DeliveryMode.FIXED
                and low.vector >= FIRST_LEGAL_VECTOR)


def view_precheck(cfg, icr_lo, dest, xapic):
    if not cfg.ipiv:
        return ExitCause.DISABLED
    if icr_lo & ICR_IPIV_INELIGIBLE_MASK:
        return ExitCause.UNSUPPORTED
    if ICRLow.from_bits(icr_lo).vector < FIRST_LEGAL_VECTOR:
        return ExitCause.ILLEGAL_VECTOR
    if xapic and dest == XAPIC_BROADCAST_ID:
        return ExitCause.BROADCAST
    if dest > cfg.last_pid_index:
        return ExitCause.INDEX_RANGE
    return None


def view_senduipi_image(value, xapic):
    upid = SendUIPIData.from_bits(value)
    if xapic:
        return XAPICICR.const({"low": {"vector": upid.nv},
                               "high": {"dest": XAPICNDST.from_bits(upid.ndst).apic_id}}
                              ).as_bits()
    return X2APICICR.const({"low": {"vector": upid.nv}, "dest": upid.ndst}).as_bits()


def view_notify_decision(raw, host_x2apic):
    info = NotifyInfo.from_bits(raw)
    dest = info.ndst if host_x2apic else XAPICNDST.from_bits(info.ndst).apic_id
    return not (info.on or info.sn), (info.nv, dest)


def comparisons(rng):
    """(name, input, fast, view) of one random draw of each decoder."""
    lo = biased(rng, ICRLow)
    xapic_image, x2apic_image = biased(rng, XAPICICR), biased(rng, X2APICICR)
    upid, info, entry = biased(rng, SendUIPIData), biased(rng, NotifyInfo), \
        biased(rng, PIDPointerEntry)
    cfg = Config(ipiv=rng.random() < 0.9, vid=rng.random() < 0.9,
                 last_pid_index=rng.choice([0, 7, 0xFF, 0xFFFF]))
    flag = rng.random() < 0.5
    dest = rng.choice([0, 5, 0xFF, 0x100, rng.getrandbits(32)])
    eligible = lo & ~ICR_IPIV_INELIGIBLE_MASK if flag else lo       # to reach the later causes
    g = GoldenIPIVirtualizer
    return [
        ("icr_vector", lo, golden_fields.icr_vector(lo), ICRLow.from_bits(lo).vector),
        ("icr_vector of an image", xapic_image, golden_fields.icr_vector(xapic_image),
         XAPICICR.from_bits(xapic_image).low.vector),
        ("is_self_ipi", lo, g.is_self_ipi(cfg, lo), view_self_ipi(cfg, lo)),
        ("precheck", (eligible, dest, flag), g.precheck(cfg, eligible, dest, flag),
         view_precheck(cfg, eligible, dest, flag)),
        ("xapic destination", xapic_image, golden_fields.icr_destination(xapic_image, True),
         XAPICICR.from_bits(xapic_image).high.dest),
        ("x2apic destination", x2apic_image, golden_fields.icr_destination(x2apic_image, False),
         X2APICICR.from_bits(x2apic_image).dest),
        ("senduipi_image", (upid, flag), golden_fields.senduipi_image(upid, flag),
         view_senduipi_image(upid, flag)),
        ("notify_decision", (info, flag), golden_fields.notify_decision(info, flag),
         view_notify_decision(info, flag)),
        ("pid_address", entry, golden_fields.pid_address(entry), pid_of_entry(entry)),
    ]


def mismatches(seed, samples=SAMPLES, limit=None):
    """The comparisons that disagree (the first ``limit``), and the values seen per decoder."""
    rng, bad, seen = random.Random(seed), [], {}
    for _ in range(samples):
        for name, given, fast, view in comparisons(rng):
            seen.setdefault(name, set()).add(view)
            if fast != view:
                bad.append((name, given, fast, view))
        if limit is not None and len(bad) >= limit:
            break
    return bad, seen


def test_fast_decoders_give_what_the_layout_views_give():
    bad, seen = mismatches(seed=21)
    assert bad == []
    # the draws reach both answers of each decision, and every exit cause of the precheck
    assert seen["is_self_ipi"] == {True, False}
    assert {decision for decision, _ in seen["notify_decision"]} == {True, False}
    assert seen["precheck"] == {None, *ExitCause} - {ExitCause.ENTRY_INVALID,
                                                     ExitCause.BUS_ERROR}


FIELDS = {name: value for name, value in vars(golden_fields).items()
          if isinstance(value, Field)}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_decoder_field_off_by_one_is_caught(name, monkeypatch):
    """Every field the golden model decodes is covered: moved by one bit, some comparison
    fails."""
    field = FIELDS[name]
    shift = 1 if field.offset == 0 else -1
    monkeypatch.setattr(field, "offset", field.offset + shift)
    bad, _ = mismatches(seed=21, limit=1)
    assert bad, f"{name} moved by {shift} went unnoticed"

"""The golden model against hand-worked examples of docs/architecture.md §4.

Numbers here are written out by hand from the spec, not computed with the layouts the model
uses, so a wrong constant in ``hdl.formats`` shows up here.
"""

from dataclasses import replace

import pytest

from hdl.formats import ExitCause, ICRWriteKind as K
from sim.golden import Config, GoldenIPIVirtualizer, Outcome
from sim.memory import Access, Memory

VAPIC, TABLE, PID = 0x4000, 0x8000, 0x9040
CFG = Config(ipiv=True, vid=True, x2apic=True, host_x2apic=True, last_pid_index=7,
             pid_table=TABLE, vapic_page=VAPIC)


def vm(notify_info=0x0000_0300_00F2_0000, entry=PID | 1):
    """Target T=2 has a PID at 0x9040 (NV=F2, NDST=0x300); the others have no entry."""
    m = Memory()
    m.write(TABLE + 16, entry)
    m.write(PID + 32, notify_info)
    return m


def run(cfg, kind, value, memory=None, maxphyaddr=52):
    memory = vm() if memory is None else memory
    return GoldenIPIVirtualizer(maxphyaddr).execute(cfg, memory, kind, value), memory


def test_x2apic_unicast_posts_and_notifies():
    result, m = run(CFG, K.X2APIC_ICR, 0x2_0000_0071)
    assert result.outcome is Outcome.POSTED and result.notify == (0xF2, 0x300)
    assert m.log == [
        Access(True, 0x4300 >> 3, 0xFF, 0x2_0000_0071, False),      # vICR store
        Access(False, 0x8010 >> 3, 0xFF, PID | 1, False),           # entry of T = 2
        Access(False, 0x9048 >> 3, 0xFF, 0, True),                  # PIR bits 127:64
        Access(True, 0x9048 >> 3, 0xFF, 1 << (0x71 - 64), True),
        Access(False, 0x9060 >> 3, 0xFF, 0x0000_0300_00F2_0000, True),   # NotifyInfo
        Access(True, 0x9060 >> 3, 0xFF, 0x0000_0300_00F2_0001, True),    # ON set
    ]


def test_xapic_host_decodes_ndst_bits_15_8():
    result, _ = run(replace(CFG, host_x2apic=False), K.X2APIC_ICR, 0x2_0000_0071)
    assert result.notify == (0xF2, 0x03)


@pytest.mark.parametrize("info", [0x0000_0300_00F2_0001, 0x0000_0300_00F2_0002])
def test_on_or_sn_set_suppresses_and_writes_nothing_to_notify_info(info):
    result, m = run(CFG, K.X2APIC_ICR, 0x2_0000_0071, vm(notify_info=info))
    assert result.outcome is Outcome.POSTED and result.notify is None and result.suppressed
    assert m.read(PID + 32) == info and m.read(PID + 8) == 1 << 49 and len(m.log) == 5


@pytest.mark.parametrize("bit", [13, 16, 17, 20, 25, 31])
def test_x2apic_reserved_bits_raise_gp_without_a_store(bit):
    result, m = run(CFG, K.X2APIC_ICR, 0x2_0000_0071 | 1 << bit)
    assert result.outcome is Outcome.GP and result.icr == 0x2_0000_0071 | 1 << bit
    assert m.log == []


@pytest.mark.parametrize("low", [
    0x0000_1071,    # bit 12
    0x0000_0871,    # logical
    0x0000_8071,    # level-triggered
    0x0004_0071,    # shorthand self (x2APIC: never a self-IPI here)
    0x000C_0071,    # all excluding self
    0x0000_0171, 0x0000_0271, 0x0000_0471, 0x0000_0571, 0x0000_0671, 0x0000_0771,
])
def test_x2apic_ineligible_fields_exit_unsupported(low):
    result, m = run(CFG, K.X2APIC_ICR, 0x2_0000_0000 | low)
    assert (result.outcome, result.cause) == (Outcome.EXIT, ExitCause.UNSUPPORTED)
    assert len(m.log) == 1 and result.icr == 0x2_0000_0000 | low


def test_level_bit_14_is_ignored():
    result, _ = run(CFG, K.X2APIC_ICR, 0x2_0000_4071)
    assert result.outcome is Outcome.POSTED


@pytest.mark.parametrize("vector,outcome", [(15, Outcome.EXIT), (0, Outcome.EXIT),
                                            (16, Outcome.POSTED), (255, Outcome.POSTED)])
def test_vector_below_16_exits(vector, outcome):
    result, _ = run(CFG, K.X2APIC_ICR, 0x2_0000_0000 | vector)
    assert result.outcome is outcome
    if outcome is Outcome.EXIT:
        assert result.cause is ExitCause.ILLEGAL_VECTOR


def test_destination_above_last_index_exits_without_reading_the_table():
    result, m = run(CFG, K.X2APIC_ICR, 0x8_0000_0071)
    assert result.cause is ExitCause.INDEX_RANGE and len(m.log) == 1
    result, m = run(replace(CFG, last_pid_index=0xFFFF), K.X2APIC_ICR, 0x1_0000_0000_0071)
    assert result.cause is ExitCause.INDEX_RANGE and len(m.log) == 1


@pytest.mark.parametrize("entry", [PID, PID | 1 | 2, PID | 1 | 0x20, PID | 1 | 1 << 52,
                                   PID | 1 | 1 << 63, 0])
def test_invalid_entries_exit(entry):
    result, m = run(CFG, K.X2APIC_ICR, 0x2_0000_0071, vm(entry=entry))
    assert result.cause is ExitCause.ENTRY_INVALID and len(m.log) == 2
    assert m.read(PID) == 0


def test_entry_bits_above_a_smaller_maxphyaddr():
    entry = PID | 1 | 1 << 40
    result, _ = run(CFG, K.X2APIC_ICR, 0x2_0000_0071, vm(entry=entry), maxphyaddr=40)
    assert result.cause is ExitCause.ENTRY_INVALID
    result, _ = run(CFG, K.X2APIC_ICR, 0x2_0000_0071, vm(entry=entry), maxphyaddr=41)
    assert result.outcome is Outcome.POSTED


def test_exit_priority():
    g = lambda cfg, value: run(cfg, K.X2APIC_ICR, value)[0].cause
    assert g(replace(CFG, ipiv=False), 0x9_0000_0805) is ExitCause.DISABLED
    assert g(CFG, 0x9_0000_0805) is ExitCause.UNSUPPORTED
    assert g(CFG, 0x9_0000_0005) is ExitCause.ILLEGAL_VECTOR
    xa = replace(CFG, x2apic=False, last_pid_index=0xFFFF)
    m = vm()
    m.write(VAPIC + 0x310, 0xFF00_0000, size=4)
    result, _ = run(xa, K.XAPIC_ICR_LO, 0x71, m)
    assert result.cause is ExitCause.BROADCAST


def test_x2apic_destination_ff_is_not_broadcast():
    m = vm()
    m.write(TABLE + 8 * 0xFF, PID | 1)
    result, _ = run(replace(CFG, last_pid_index=0x100), K.X2APIC_ICR, 0xFF_0000_0071, m)
    assert result.outcome is Outcome.POSTED


def test_xapic_icr_hi_stores_the_destination_byte_only():
    m = vm()
    m.write(VAPIC + 0x314, 0xCAFE_F00D, size=4)
    result, _ = run(replace(CFG, x2apic=False), K.XAPIC_ICR_HI, 0xFFFF_FFFF_1234_5678, m)
    assert result.outcome is Outcome.STORED
    assert m.read(VAPIC + 0x310, 4) == 0x1200_0000 and m.read(VAPIC + 0x314, 4) == 0xCAFE_F00D
    assert len(m.log) == 1


def test_xapic_icr_lo_takes_the_destination_from_vicr_hi():
    m = vm()
    m.write(VAPIC + 0x304, 0x5555_5555, size=4)
    m.write(VAPIC + 0x310, 0x0200_0000, size=4)
    result, _ = run(replace(CFG, x2apic=False), K.XAPIC_ICR_LO, 0x7777_0000_0000_4071, m)
    assert result.outcome is Outcome.POSTED and result.dest == 2
    assert result.icr == 0x0200_0000_0000_4071
    assert m.read(VAPIC + 0x300, 4) == 0x4071 and m.read(VAPIC + 0x304, 4) == 0x5555_5555
    assert m.log[1] == Access(False, 0x4310 >> 3, 0x0F, 0x0200_0000, False)


def test_xapic_reserved_bits_exit_unsupported():
    m = vm()
    m.write(VAPIC + 0x310, 0x0200_0000, size=4)
    result, _ = run(replace(CFG, x2apic=False), K.XAPIC_ICR_LO, 0x0010_0071, m)
    assert result.cause is ExitCause.UNSUPPORTED


def test_self_ipi_sets_the_virtual_irr():
    m = vm()
    m.write(VAPIC + 0x220, 0x1, size=4)
    m.write(VAPIC + 0x224, 0xABCD, size=4)
    cfg = replace(CFG, x2apic=False, ipiv=False)        # self-IPIs need VID, not IPIv
    result, _ = run(cfg, K.XAPIC_ICR_LO, 0x0004_1845, m)   # self, bit 12, logical: ignored
    assert (result.outcome, result.vector) == (Outcome.SELF_IPI, 0x45)
    assert m.read(VAPIC + 0x220, 4) == 0x21 and m.read(VAPIC + 0x224, 4) == 0xABCD
    assert [a.lock for a in m.log[-2:]] == [True, True] and m.log[-1].sel == 0x0F


@pytest.mark.parametrize("cfg_change,low,cause", [
    ({"vid": False}, 0x0004_0045, ExitCause.UNSUPPORTED),
    ({}, 0x0004_0005, ExitCause.UNSUPPORTED),       # V < 16: not a self-IPI
    ({}, 0x0004_8045, ExitCause.UNSUPPORTED),       # level
    ({}, 0x0004_2045, ExitCause.UNSUPPORTED),       # reserved bit 13
    ({"ipiv": False}, 0x0004_0445, ExitCause.DISABLED),  # NMI
])
def test_non_qualifying_self_ipis_exit(cfg_change, low, cause):
    result, _ = run(replace(CFG, x2apic=False, **cfg_change), K.XAPIC_ICR_LO, low)
    assert (result.outcome, result.cause) == (Outcome.EXIT, cause)


def test_senduipi_x2apic():
    result, m = run(CFG, K.SENDUIPI, 0x2_00AB_CD55)   # bits 31:8 are not part of it
    assert result.outcome is Outcome.POSTED and result.icr == 0x2_0000_0055
    assert m.read(VAPIC + 0x300) == 0x2_0000_0055 and m.read(PID + 8) == 1 << (0x55 - 64)


def test_senduipi_xapic():
    result, m = run(replace(CFG, x2apic=False), K.SENDUIPI, 0x4321_0200_00AB_CD55)
    assert result.outcome is Outcome.POSTED and result.dest == 2
    assert m.read(VAPIC + 0x310, 4) == 0x0200_0000 and m.read(VAPIC + 0x300, 4) == 0x55
    assert result.icr == 0x0200_0000_0000_0055
    assert [a.adr << 3 for a in m.log[:2]] == [VAPIC + 0x310, VAPIC + 0x300]


def test_ipiv_disabled_xapic_exits_after_storing():
    """docs/architecture.md §4.7: with IPIv = 0 an xAPIC ICR write is stored, then exits (56)."""
    result, m = run(replace(CFG, ipiv=False, x2apic=False), K.XAPIC_ICR_LO, 0x71)
    assert (result.outcome, result.cause) == (Outcome.EXIT, ExitCause.DISABLED)
    assert (result.reason, result.qualification) == (56, 0x300)
    assert m.read(VAPIC + 0x300, 4) == 0x71


@pytest.mark.parametrize("value", [0x2_0000_0071, 0x2_0000_2071, 0xFFFF_FFFF_FFFF_FFFF])
def test_ipiv_disabled_x2apic_write_is_intercepted(value):
    """docs/interface.md, the x2APIC intercept: with IPIv = 0, WRMSR 0x830 is a WRMSR exit
    (reason 32, qualification 0, cause DISABLED, icr = the value): no transfer at all, not even
    the #GP check of reserved bits (bit 13 here, or every bit)."""
    result, m = run(replace(CFG, ipiv=False), K.X2APIC_ICR, value)
    assert (result.outcome, result.cause) == (Outcome.EXIT, ExitCause.DISABLED)
    assert (result.reason, result.qualification, result.icr) == (32, 0, value)
    assert m.log == [] and m.read(VAPIC + 0x300) == 0


@pytest.mark.parametrize("step", range(6))
def test_bus_error_at_each_step_ends_the_request(step):
    m = vm()
    m.error_at = {step}
    result, _ = run(CFG, K.X2APIC_ICR, 0x2_0000_0071, m)
    assert (result.outcome, result.cause) == (Outcome.EXIT, ExitCause.BUS_ERROR)
    assert result.icr == 0x2_0000_0071 and len(m.log) == step + 1
    assert m.read(PID + 32) == 0x0000_0300_00F2_0000


def test_bus_error_reading_vicr_hi_reports_what_is_known():
    m = vm()
    m.write(VAPIC + 0x310, 0x0200_0000, size=4)
    m.error_at = {1}
    result, _ = run(replace(CFG, x2apic=False), K.XAPIC_ICR_LO, 0x71, m)
    assert result.cause is ExitCause.BUS_ERROR and result.icr == 0x71


def test_addresses_wrap_at_maxphyaddr():
    g = GoldenIPIVirtualizer(36)
    assert g.word((1 << 36) + 0x40) == 8


@pytest.mark.parametrize("bad", [35, 53, "52", 52.0, True, None])
def test_maxphyaddr_validation(bad):
    with pytest.raises(ValueError, match="maxphyaddr must be an integer from 36 to 52"):
        GoldenIPIVirtualizer(bad)


def test_config_round_trips_through_the_layout():
    assert Config.from_bits(CFG.as_bits()) == CFG

"""Capability MSR decoding: allowed-0/allowed-1, tertiary detection, files, presets."""

import pytest

from hdl.vmx import PinBased, Primary, Secondary, Tertiary, VMXMSR
from sim.vmx_caps import PRESETS, MSRFileError, MSRs, VMXCapabilities, preset

BASIC = 0x00DA_0400_0000_0004


def ctl(must, may):
    return (must | may) << 32 | must


def cpu(primary_may, *, ctls3=None, secondary_may=0x0000_0300, pin_may=0xFF, extra=()):
    values = {VMXMSR.BASIC: BASIC, VMXMSR.PINBASED_CTLS: ctl(0x16, pin_may),
              VMXMSR.PROCBASED_CTLS: ctl(0x0401_E172, primary_may),
              VMXMSR.PROCBASED_CTLS2: ctl(0, secondary_may),
              VMXMSR.EXIT_CTLS: ctl(0x36DFF, 0xFFFFFF), VMXMSR.ENTRY_CTLS: ctl(0x11FF, 0x3FFFF)}
    if ctls3 is not None:
        values[VMXMSR.PROCBASED_CTLS3] = ctls3
    values.update(extra)
    return MSRs(values)


ALL = 0xFFF9_FFFE


def test_no_tertiary_controls_never_reads_0x492():
    # Even if an MSR file carries a value for 0x492, a CPU that cannot set primary bit 17
    # has no tertiary controls and the MSR is not read.
    msrs = cpu(ALL, ctls3=0x10)
    caps = VMXCapabilities(msrs)
    assert not caps.tertiary_controls and caps.procbased_ctls3 is None
    assert not caps.ipi_virtualization and VMXMSR.PROCBASED_CTLS3 not in msrs.reads


def test_tertiary_read_when_bit_17_allowed():
    msrs = cpu(ALL | Primary.ACTIVATE_TERTIARY_CONTROLS, ctls3=0x11)
    caps = VMXCapabilities(msrs)
    assert caps.tertiary_controls and caps.procbased_ctls3 == 0x11 and caps.ipi_virtualization
    assert msrs.reads.count(VMXMSR.PROCBASED_CTLS3) == 1
    # all 64 bits are allowed-1 settings: nothing is forced
    assert caps.tertiary.allowed0 == 0 and caps.tertiary.setting(4) == "yes"
    assert caps.tertiary.setting(5) == "no"


def test_absent_0x492_behaves_like_rdmsr_safe_failing():
    msrs = cpu(ALL | Primary.ACTIVATE_TERTIARY_CONTROLS)
    caps = VMXCapabilities(msrs)
    assert caps.tertiary_controls and caps.procbased_ctls3 is None
    assert not caps.ipi_virtualization and msrs.faults == []


def test_tertiary_without_ipiv():
    caps = VMXCapabilities(cpu(ALL | Primary.ACTIVATE_TERTIARY_CONTROLS, ctls3=0x1))
    assert caps.tertiary_controls and not caps.ipi_virtualization


def test_settings_words():
    msrs = cpu(ALL, extra={VMXMSR.TRUE_PROCBASED_CTLS: ctl(0x0400_6172, ALL)})
    caps = VMXCapabilities(msrs)
    p = caps.primary
    assert p.setting(7) == "yes"          # HLT exiting: may be 0 or 1
    assert p.setting(1) == "forced"       # reserved, must be 1
    assert p.setting(0) == "no"
    assert p.setting(15) == "default"     # CR3-load: 1 by the legacy MSR, 0 allowed by TRUE


def test_secondary_only_if_primary_bit_31():
    msrs = cpu(ALL & ~Primary.ACTIVATE_SECONDARY_CONTROLS)
    caps = VMXCapabilities(msrs)
    assert caps.secondary is None and VMXMSR.PROCBASED_CTLS2 not in msrs.reads


def test_linux_feature_names():
    caps = VMXCapabilities(preset("ipiv"))
    flags = caps.feature_words()
    for name in ("ipi_virt", "posted_intr", "vid", "vapic_reg", "vtpr", "apicv", "flexpriority"):
        assert name in flags
    no_pi = VMXCapabilities(cpu(ALL, pin_may=0x7F, secondary_may=Secondary.APIC_REGISTER_VIRT |
                                Secondary.VIRTUAL_INTR_DELIVERY))
    assert "apicv" not in no_pi.feature_words() and "posted_intr" not in no_pi.feature_words()
    assert "ipi_virt" not in VMXCapabilities(preset("no-tertiary")).feature_words()


def test_presets():
    expect = {"no-tertiary": (False, False), "tertiary-no-ipiv": (True, False),
              "ipiv": (True, True), "ipiv-no-vid": (True, True)}
    for name in PRESETS:
        caps = VMXCapabilities(preset(name))
        assert (caps.tertiary_controls, caps.ipi_virtualization) == expect[name]
    with pytest.raises(ValueError, match="unknown CPU preset 'nope'") as error:
        preset("nope")
    assert all(name in str(error.value) for name in PRESETS)


def test_msr_file_parsing(tmp_path):
    path = tmp_path / "cpu.msr"
    path.write_text("# a CPU\n0x480 0x00da040000000004  # basic\n\n0x482 0xFFF9FFFE0401E172\n")
    msrs = MSRs.from_file(path)
    assert msrs.values == {0x480: BASIC, 0x482: 0xFFF9_FFFE_0401_E172}


@pytest.mark.parametrize("text,line,message", [
    ("0x480\n", 1, "expected '<index> <value>'"),
    ("0x480 0x1\n0x482 0xzz\n", 2, "in hex"),
    ("0x480 0x1\n0x84b 0x5\n", 2, "MSR 0x84b is not a VMX capability MSR"),
    ("0x480 0x1\n1152 0x5\n", 2, "MSR 0x1152 is not a VMX capability MSR"),
    ("\n\n0x480 0x1 0x2\n", 3, "expected"),
    ("0x480 0x10000000000000000\n", 1, "64 bits"),
    ("0x480 0x1\n0x480 0x2\n", 2, "given twice"),
])
def test_msr_file_errors_name_the_line(tmp_path, text, line, message):
    path = tmp_path / "bad.msr"
    path.write_text(text)
    with pytest.raises(MSRFileError, match=f"bad.msr:{line}: .*{message}"):
        MSRs.from_file(path)


def _recipes(values):
    """What the README's two recipes print for ``values``, written from their format strings:
    the shell loop ``printf '0x%x %s\\n' $msr "$(rdmsr -p 0 -c $msr)"`` (msr-tools rdmsr.c:
    ``-c`` is ``0x%*llx``, ``-0 -c`` ``0x%0*llx`` with 16 digits, plain ``%*llx``), and the
    Python loop over /dev/cpu/0/msr printing ``hex(index), hex(value)``. An absent MSR prints
    nothing in either (rdmsr fails, pread raises)."""
    return {
        "rdmsr -c": "".join(f"0x{i:x} 0x{v:x}\n" for i, v in values.items()),
        "rdmsr -0 -c": "".join(f"0x{i:x} 0x{v:016x}\n" for i, v in values.items()),
        "rdmsr": "".join(f"0x{i:x} {v:x}\n" for i, v in values.items()),
        "python": "".join(f"{hex(i)} {hex(v)}\n" for i, v in values.items()),
    }


@pytest.mark.parametrize("recipe", ["rdmsr -c", "rdmsr -0 -c", "rdmsr", "python"])
def test_msr_file_accepts_what_the_readme_recipes_print(recipe):
    values = {int(k): v for k, v in PRESETS["ipiv"][1].items()}
    msrs = MSRs.parse(_recipes(values)[recipe], source="vmx-msrs.txt")
    assert msrs.values == values and VMXCapabilities(msrs).ipi_virtualization


def test_msr_file_empty_or_missing(tmp_path):
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(MSRFileError, match="no MSR values"):
        MSRs.from_file(tmp_path / "empty")
    with pytest.raises(MSRFileError, match="cannot read"):
        MSRs.from_file(tmp_path / "missing")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(MSRFileError, match="not a text file"):
        MSRs.from_file(tmp_path / "bin")


def test_plain_rdmsr_of_absent_msr_reads_zero_and_is_recorded():
    msrs = MSRs({VMXMSR.BASIC: BASIC})
    assert msrs.rdmsr(VMXMSR.PINBASED_CTLS) == 0 and msrs.faults == [VMXMSR.PINBASED_CTLS]
    assert msrs.rdmsr_safe(0x491) is None

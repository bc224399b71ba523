"""KVM's setup_vmcs_config / hardware_setup decisions on constructed CPUs."""

import errno

import pytest

from hdl.vmx import PinBased, Primary, Secondary, Tertiary, VMXMSR
from sim.kvm_setup import (
    ModuleParams, SetupError, adjust_vmx_controls, adjust_vmx_controls64, hardware_setup,
    setup_vmcs_config,
)
from sim.vmx_caps import MSRs

BASIC = 0x00DA_0400_0000_0004
APICV_2ND = (Secondary.APIC_REGISTER_VIRT | Secondary.VIRTUAL_INTR_DELIVERY |
             Secondary.VIRTUALIZE_APIC_ACCESSES | Secondary.VIRTUALIZE_X2APIC_MODE |
             Secondary.ENABLE_EPT | Secondary.ENABLE_VPID)
FULL_PRIMARY = 0xFFF9_FFFE | Primary.ACTIVATE_TERTIARY_CONTROLS


def ctl(must, may):
    return (must | may) << 32 | must


def cpu(*, primary=FULL_PRIMARY, secondary=APICV_2ND, pin=0xFF, ctls3=Tertiary.IPI_VIRT,
        basic=BASIC):
    values = {VMXMSR.BASIC: basic, VMXMSR.PINBASED_CTLS: ctl(0x16, pin),
              VMXMSR.PROCBASED_CTLS: ctl(0x0401_E172, primary),
              VMXMSR.PROCBASED_CTLS2: ctl(0, secondary),
              VMXMSR.EXIT_CTLS: ctl(0x36DFF, 0xFFFFFF), VMXMSR.ENTRY_CTLS: ctl(0x11FF, 0x3FFFF)}
    if ctls3 is not None:
        values[VMXMSR.PROCBASED_CTLS3] = int(ctls3)
    return MSRs(values)


def test_adjust_controls():
    msrs = MSRs({0x481: ctl(0x16, 0xFF)})
    assert adjust_vmx_controls(0x1, 0x80, msrs, 0x481) == 0x97     # forced bits come in
    msrs = MSRs({0x481: ctl(0x16, 0x7F)})
    assert adjust_vmx_controls(0x1, 0x80, msrs, 0x481) == 0x17     # optional dropped
    with pytest.raises(SetupError) as e:
        adjust_vmx_controls(0x100, 0, msrs, 0x481)
    assert e.value.errno == errno.EIO
    assert adjust_vmx_controls64(0x10, MSRs({0x492: 0x11}), 0x492) == 0x10
    assert adjust_vmx_controls64(0x10, MSRs({0x492: 0x01}), 0x492) == 0


def test_ipiv_cpu_enables_everything():
    setup = hardware_setup(cpu())
    assert setup.enable_apicv and setup.enable_ipiv
    assert setup.config.cpu_based_3rd_exec_ctrl == Tertiary.IPI_VIRT
    assert setup.config.cpu_based_exec_ctrl & Primary.ACTIVATE_TERTIARY_CONTROLS
    # With the TPR shadow, CR8 exits go; with EPT, CR3/INVLPG exits go.
    assert not setup.config.cpu_based_exec_ctrl & (Primary.CR8_LOAD_EXITING |
                                                    Primary.CR3_LOAD_EXITING)


def test_no_tertiary_controls():
    msrs = cpu(primary=FULL_PRIMARY & ~Primary.ACTIVATE_TERTIARY_CONTROLS)
    setup = hardware_setup(msrs)
    assert setup.enable_apicv and not setup.enable_ipiv
    assert setup.config.cpu_based_3rd_exec_ctrl == 0
    assert VMXMSR.PROCBASED_CTLS3 not in msrs.reads


def test_tertiary_without_bit_4():
    setup = hardware_setup(cpu(ctls3=Tertiary.LOADIWKEY_EXITING))
    assert setup.enable_apicv and not setup.enable_ipiv
    assert setup.config.cpu_based_3rd_exec_ctrl == 0        # only optional bits are kept


@pytest.mark.parametrize("missing", ["tpr_shadow", "apic_register_virt", "vid", "posted_intr"])
def test_each_apicv_prerequisite(missing):
    kwargs = {"tpr_shadow": {"primary": FULL_PRIMARY & ~Primary.TPR_SHADOW},
              "apic_register_virt": {"secondary": APICV_2ND & ~Secondary.APIC_REGISTER_VIRT},
              "vid": {"secondary": APICV_2ND & ~Secondary.VIRTUAL_INTR_DELIVERY},
              "posted_intr": {"pin": 0x7F}}[missing]
    setup = hardware_setup(cpu(**kwargs))
    assert not setup.enable_apicv and not setup.enable_ipiv
    assert any("IPIv off: needs APICv" in n for n in setup.notes)
    if missing == "vid":        # KVM drops posted interrupts without VID
        assert not setup.config.pin_based_exec_ctrl & PinBased.POSTED_INTR
    if missing == "tpr_shadow":
        assert not setup.config.cpu_based_2nd_exec_ctrl & (Secondary.APIC_REGISTER_VIRT |
                                                            Secondary.VIRTUAL_INTR_DELIVERY)


def test_module_parameters():
    assert not hardware_setup(cpu(), ModuleParams(enable_ipiv=False)).enable_ipiv
    setup = hardware_setup(cpu(), ModuleParams(enable_apicv=False))
    assert not setup.enable_apicv and not setup.enable_ipiv


def test_evmcs_filters_tertiary_controls():
    msrs = cpu()
    setup = hardware_setup(msrs, ModuleParams(evmcs=True))
    c = setup.config
    assert c.cpu_based_3rd_exec_ctrl == 0 and not setup.enable_ipiv
    assert not c.cpu_based_exec_ctrl & Primary.ACTIVATE_TERTIARY_CONTROLS
    assert not c.pin_based_exec_ctrl & PinBased.POSTED_INTR       # eVMCS v1 in Linux 6.0
    assert VMXMSR.PROCBASED_CTLS3 in msrs.reads                  # read, then filtered


@pytest.mark.parametrize("basic,message", [
    (BASIC | 1 << 48, "32-bit"),
    ((BASIC & ~(0xF << 50)) | 0 << 50, "memory type"),
    ((BASIC & ~(0x1FFF << 32)) | 0x1001 << 32, "exceeds a page"),
])
def test_basic_checks(basic, message):
    with pytest.raises(SetupError, match=message):
        setup_vmcs_config(cpu(basic=basic))


def test_required_primary_control_missing_fails():
    with pytest.raises(SetupError, match="required controls"):
        hardware_setup(cpu(primary=FULL_PRIMARY & ~Primary.HLT_EXITING))

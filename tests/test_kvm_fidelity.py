"""The KVM model against the Linux sources it cites (issue 11): each test names the function
and release it was written from; where 6.0 and 6.19 differ, both kernels are checked."""

import errno

import pytest

from hdl.formats import APICRegister as R, DeliveryMode, DestMode, Shorthand, TriggerMode
from hdl.vmx import PinBased, Primary, Secondary, Tertiary, VMEntry, VMExit, VMXMSR, \
    VMCSField as F
from sim.ipi_world import IPIWorld
from sim.kvm import KVM, KVMError, ModuleParams
from sim.kvm_setup import SetupError, hardware_setup, setup_vmcs_config
from sim.scenarios import icr_low
from sim.vmcs import VMCS
from sim.vmx_caps import MSRs, PRESETS, VMXCapabilities, preset
from sim.vmx_flags import vmx_capability_words, vmx_flags
from sim.vmxcap_report import SEPARATOR, report, report_json

KERNELS = ["6.0", "6.19"]
NO_IPIV = ModuleParams(enable_ipiv=False)


def make(ids=(0, 1, 2, 3), x2apic=True, max_ids=None, **kw):
    kvm = KVM(**kw)
    vm = kvm.create_vm()
    if max_ids:
        vm.enable_cap_max_vcpu_id(max_ids)
    vcpus = [vm.create_vcpu(i) for i in ids]
    for v in vcpus:
        v.set_x2apic_mode(x2apic)
    return kvm, vm, vcpus


def run(*vcpus):
    for i, v in enumerate(vcpus):
        v.load(i)
        v.enter_guest()


def x2icr(vector, dest, **fields):
    return dest << 32 | icr_low(vector, **fields)


# -- the kernel switch -------------------------------------------------------------------------

def test_unknown_kernel_is_a_one_line_value_error():
    """Every entry point checks kernel= (sim.kvm_kernel)."""
    for call in (lambda: KVM(kernel="5.15"), lambda: hardware_setup(preset("ipiv"), kernel="x"),
                 lambda: report(preset("ipiv"), kernel="7"),
                 lambda: vmx_flags(preset("ipiv"), kernel="6")):
        with pytest.raises(ValueError) as e:
            call()
        assert "6.0, 6.19" in str(e.value) and "\n" not in str(e.value)


# -- the x2APIC intercept: WRMSR 0x830 ---------------------------------------------------------

@pytest.mark.parametrize("kernel", KERNELS)
def test_icr_msr_intercepted_whenever_ipiv_is_not_active(kernel):
    """vmx.c vmx_update_msr_bitmap_x2apic (6.0, 6.19): 0x830 passes through only with
    enable_ipiv and APICv active (x2APIC+APICv bitmap mode)."""
    _, vm, (a, b) = make(ids=(0, 1), kernel=kernel)
    assert not a.msr_intercepted(0x830, write=True) and not a.msr_intercepted(0x830, write=False)
    a.set_apicv_inhibit("TEST")
    assert a.msr_intercepted(0x830, write=True) and b.msr_intercepted(0x830, write=True)
    assert not a.msr_intercepted(0x808, write=True)          # TPR still passes
    a.set_apicv_inhibit("TEST", False)
    assert not a.msr_intercepted(0x830, write=True)
    _, _, (c,) = make(ids=(0,), kernel=kernel, params=NO_IPIV)
    assert c.msr_intercepted(0x830, write=True) and not c.msr_intercepted(0x80B, write=True)


def test_x2apic_read_pass_through_differs():
    """6.0 vmx_reset_x2apic_msrs passes every read of 0x800-0x8FF but TMCCT with APICv;
    6.19 passes only kvm_lapic_readable_reg_mask registers (no 0x831, nothing >= 0x840)."""
    for kernel, passes in (("6.0", True), ("6.19", False)):
        _, _, (a,) = make(ids=(0,), kernel=kernel)
        assert a.msr_intercepted(0x839, write=False)                    # TMCCT
        assert not a.msr_intercepted(0x802, write=False)                # ID
        assert a.msr_intercepted(0x840, write=False) is not passes
        assert a.msr_intercepted(0x831, write=False) is not passes      # ICR2: not in x2APIC
        assert a.msr_intercepted(0x809, write=False) is not passes      # ARBPRI


@pytest.mark.parametrize("kernel", KERNELS)
def test_wrmsr_exit_is_emulated_by_kvm(kernel):
    """x86.c handle_fastpath_set_x2apic_icr_irqoff (6.0) / __handle_fastpath_wrmsr (6.19) and
    lapic.c kvm_x2apic_icr_write: a fixed physical IPI takes the fastpath; KVM stores the
    value (busy cleared) at 300H; the exit is reason 32, qualification 0."""
    _, vm, (a, b, c, d) = make(kernel=kernel, params=NO_IPIV)
    run(a, b, c, d)
    assert not a.unit_config().ipiv
    before = a.apic.read64(R.ICR)
    assert before == 0
    value = x2icr(0x51, 2) | 1 << 12
    out = a.handle_wrmsr(0x830, value)
    assert out.path == "fastpath" and not out.gp and out.targets == [c]
    assert a.apic.read64(R.ICR) == value & ~(1 << 12)
    assert vm.exits[(32, 0)] == 1 and a.in_guest and c.take_interrupt() == 0x51
    out = a.handle_wrmsr(0x830, x2icr(0x52, 0, shorthand=Shorthand.ALL_EXCLUDING_SELF))
    assert out.path == "full" and out.targets == [b, c, d]
    with pytest.raises(ValueError):
        a.handle_wrmsr(0x83F, 0x40)


def test_wrmsr_reserved_bits():
    """6.0 kvm_x2apic_icr_write has no reserved-bit check (the IPI is sent); 6.19
    __kvm_x2apic_icr_write refuses bits 31:20, 17:16, 13 and KVM injects #GP."""
    for kernel in KERNELS:
        _, vm, (a, b) = make(ids=(0, 1), kernel=kernel, params=NO_IPIV)
        run(a, b)
        out = a.handle_wrmsr(0x830, x2icr(0x61, 1) | 1 << 13)
        if kernel == "6.0":
            assert out.targets == [b] and not out.gp and a.gp_injected == 0
        else:
            assert out.targets == [] and out.gp and a.gp_injected == 1
            assert a.apic.read64(R.ICR) == 0 and b.apic.vectors(R.IRR) == []


def test_wrmsr_in_xapic_mode_is_a_gp():
    """lapic.c kvm_x2apic_msr_write (6.0, 6.19): not in x2APIC mode -> 1 -> #GP."""
    for kernel in KERNELS:
        _, _, (a, b) = make(ids=(0, 1), x2apic=False, kernel=kernel)
        assert a.handle_wrmsr(0x830, x2icr(0x40, 1)).gp


def test_fastpath_only_when_the_fast_map_delivers():
    """6.19 kvm_x2apic_icr_write_fast: an IPI the optimized map cannot deliver (here: two
    xAPIC vCPUs share an APIC ID, so there is no map) falls back to the full path. 6.0's
    fastpath decides from the ICR alone."""
    paths = {}
    for kernel in KERNELS:
        _, vm, (a, b, c, d) = make(kernel=kernel, params=NO_IPIV)
        c.set_x2apic_mode(False)
        d.set_x2apic_mode(False)
        d.guest_write_xapic_id(2)                 # d now claims c's xAPIC ID
        run(a, b, c, d)
        out = a.handle_wrmsr(0x830, x2icr(0x71, 1))
        assert out.targets == [b]
        paths[kernel] = out.path
        assert (vm.apic_map is None) is (kernel == "6.19")
    assert paths == {"6.0": "fastpath", "6.19": "full"}


# -- the APIC-write exit in x2APIC mode (300H) --------------------------------------------------

def test_apic_write_x2apic_6_0_vs_6_19():
    """lapic.c kvm_apic_write_nodecode: 6.0 sends the 64-bit vICR as is, writes nothing back;
    6.19 calls kvm_x2apic_icr_write (busy cleared, value stored back)."""
    for kernel in KERNELS:
        _, _, (a, b, c, d) = make(kernel=kernel)
        run(a, b, c, d)
        stored = x2icr(0x45, 1 << 16 | 1, dest_mode=DestMode.LOGICAL) | 1 << 12
        a.apic.write64(R.ICR, stored)
        a.vmcs.write64(F.TERTIARY_VM_EXEC_CONTROL, Tertiary.IPI_VIRT)
        targets = a.handle_apic_write(0x300)
        assert targets == []                       # cluster 1: no vCPU 16
        assert a.apic.read64(R.ICR) == (stored if kernel == "6.0" else stored & ~(1 << 12))


# -- posted interrupts around scheduling --------------------------------------------------------

@pytest.mark.parametrize("kernel", KERNELS)
def test_pi_load_with_apicv_on_but_ipiv_off(kernel):
    """posted_intr.c vmx_vcpu_pi_load (6.0, 6.19): runs with enable_apicv and an in-kernel
    LAPIC, IPIv or not: NDST and SN are maintained. vmx_vcpu_pi_put returns early without
    IPIv (vmx_needs_pi_wakeup), so preemption leaves SN clear."""
    kvm, vm, (a, b) = make(ids=(0, 1), kernel=kernel, params=NO_IPIV, host_x2apic=False)
    assert (b.pi_sn, b.pi_nv) == (True, 0xF2)
    b.load(3)
    assert (b.pi_sn, b.pi_ndst) == (False, 0x300)
    b.preempt()
    assert not b.pi_sn
    b.load(2)
    assert b.pi_ndst == 0x200
    _, _, (c,) = make(ids=(0,), kernel=kernel, params=ModuleParams(enable_apicv=False))
    c.load(1)
    assert c.pi_sn and c.pi_ndst == 0                # no APICv: untouched


def test_pi_put_sn_rules():
    """vmx_vcpu_pi_put: 6.0 sets SN only when preempted; 6.19 on every put that does not
    arm the wakeup handler (and a preempted blocking vCPU gets SN, not the wakeup vector)."""
    for kernel in KERNELS:
        kvm, vm, (a, b) = make(ids=(0, 1), kernel=kernel)
        b.load(1)
        b.put()                                   # neither preempted nor blocking
        assert b.pi_sn is (kernel == "6.19")
        b.load(1)
        b.blocking = True
        b.preempt()                               # preempted while about to block
        on_list = b in kvm.host.pcpus[1].wakeup_list
        assert b.pi_sn and on_list is (kernel == "6.0")
        assert (b.pi_nv == 0xF1) is (kernel == "6.0")


@pytest.mark.parametrize("kernel", KERNELS)
def test_halt_with_interrupts_disabled_arms_no_wakeup(kernel):
    """vmx_vcpu_pi_put: the wakeup handler only if !vmx_interrupt_blocked."""
    kvm, vm, (a, b) = make(ids=(0, 1), kernel=kernel)
    run(a, b)
    assert b.halt(interrupts_enabled=False)
    assert b not in kvm.host.pcpus[1].wakeup_list and b.pi_nv == 0xF2
    assert b.pi_sn is (kernel == "6.19")


def test_init_vmcs_writes_pi_fields_even_when_inhibited():
    """vmx.c init_vmcs (6.0): EOI bitmaps, PI vector and descriptor are written when
    enable_apicv and the LAPIC is in the kernel, not only while APICv is active."""
    kvm, vm, (a,) = make(ids=(0,))
    vm.set_apicv_inhibit("TEST")
    b = vm.create_vcpu(1)
    assert b.vmcs.read64(F.POSTED_INTR_DESC_ADDR) == b.pi_desc
    assert not b.vmcs.read32(F.PIN_BASED_VM_EXEC_CONTROL) & PinBased.POSTED_INTR
    assert not b.unit_config().ipiv


# -- software IPI emulation (lapic.c) -----------------------------------------------------------

def emulate(sender, low, dest):
    return sender.send_ipi(low, dest if sender.apic.x2apic else dest << 24)


@pytest.mark.parametrize("kernel", KERNELS)
def test_vectors_below_16_are_delivered(kernel):
    """lapic.c kvm_apic_send_ipi / __apic_accept_irq: no illegal-vector emulation."""
    _, _, (a, b) = make(ids=(0, 1), x2apic=False, kernel=kernel)
    run(a, b)
    assert emulate(a, icr_low(3), 1) == [b] and b.apic.test(R.IRR, 3)
    assert a.apic.read32(R.ESR) == 0 and b.apic.read32(R.ESR) == 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_lowest_priority_to_xapic_broadcast_becomes_fixed(kernel):
    """irq_comm.c (6.0) / lapic.c (6.19) kvm_irq_delivery_to_apic: physical lowest priority
    to 0xFF is turned into fixed delivery to everyone."""
    _, _, vcpus = make(x2apic=False, kernel=kernel)
    run(*vcpus)
    assert emulate(vcpus[0], icr_low(0x66, mode=DeliveryMode.LOWEST_PRIORITY), 0xFF) == vcpus


@pytest.mark.parametrize("kernel", KERNELS)
def test_lowest_priority_picks_from_the_destination_bitmap(kernel):
    """kvm_apic_map_get_dest_lapic with vector hashing: the (vector % n)-th set bit of the
    logical mask, n = bits in the mask; an empty slot drops the interrupt."""
    _, _, vcpus = make(x2apic=False, kernel=kernel)
    run(*vcpus)
    for i, v in enumerate(vcpus):
        v.guest_write_ldr((1 << i) << 24)
    lp = dict(mode=DeliveryMode.LOWEST_PRIORITY, dest_mode=DestMode.LOGICAL)
    assert emulate(vcpus[0], icr_low(0x40, **lp), 0b0110) == [vcpus[1]]    # 64 % 2 = 0
    assert emulate(vcpus[0], icr_low(0x41, **lp), 0b0110) == [vcpus[2]]    # 65 % 2 = 1
    # bits 1 and 5: the 2nd set bit is slot 5, which no APIC occupies -> dropped
    assert emulate(vcpus[0], icr_low(0x41, **lp), 0b100010) == []


def test_lowest_priority_without_vector_hashing_uses_arbitration():
    """kvm_apic_map_get_dest_lapic (vector_hashing=0): the lowest apic_arb_prio wins; each
    accepted lowest-priority IRQ raises the winner's count (__apic_accept_irq)."""
    _, _, vcpus = make(x2apic=False, vector_hashing=False)
    run(*vcpus)
    for i, v in enumerate(vcpus):
        v.guest_write_ldr((1 << i) << 24)
    lp = dict(mode=DeliveryMode.LOWEST_PRIORITY, dest_mode=DestMode.LOGICAL)
    got = [emulate(vcpus[0], icr_low(0x40 + k, **lp), 0b1110)[0] for k in range(3)]
    assert got == vcpus[1:]


def test_slow_path_lowest_priority_uses_creation_order():
    """kvm_irq_delivery_to_apic slow path (mixed xAPIC flat/cluster: no logical map): the
    (vector % n)-th matching vCPU by vcpu_idx, i.e. creation order, not vCPU id."""
    _, vm, vcpus = make(ids=(3, 1, 2), x2apic=False)
    run(*vcpus)
    v3, v1, v2 = vcpus
    v3.guest_write_ldr(0x01 << 24)
    v1.guest_write_ldr(0x01 << 24)
    v2.guest_write_dfr(0x0FFF_FFFF)               # cluster model on one APIC
    v2.guest_write_ldr(0x01 << 24)
    lp = dict(mode=DeliveryMode.LOWEST_PRIORITY, dest_mode=DestMode.LOGICAL)
    # candidates in creation order [v3, v1, v2] (by id it would be [v1, v2, v3])
    assert emulate(v3, icr_low(0x40, **lp), 0x01) == [v1]     # 64 % 3 = 1
    assert emulate(v3, icr_low(0x42, **lp), 0x01) == [v3]     # 66 % 3 = 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_remote_read_and_tmr_on_edge(kernel):
    """__apic_accept_irq: remote read sets pv_unhalted (no IRR); an edge IPI clears TMR."""
    _, _, (a, b) = make(ids=(0, 1), x2apic=False, kernel=kernel)
    run(a, b)
    assert emulate(a, icr_low(0x30, mode=DeliveryMode.RESERVED_3), 1) == [b]
    assert b.pv_unhalted and b.apic.vectors(R.IRR) == []
    emulate(a, icr_low(0x48, trigger=TriggerMode.LEVEL), 1)
    assert b.apic.test(R.TMR, 0x48)
    emulate(a, icr_low(0x48), 1)
    assert not b.apic.test(R.TMR, 0x48)


@pytest.mark.parametrize("kernel", KERNELS)
def test_software_disabled_apic_drops_fixed(kernel):
    """__apic_accept_irq: fixed delivery needs apic_enabled (SPIV bit 8)."""
    _, _, (a, b) = make(ids=(0, 1), x2apic=False, kernel=kernel)
    run(a, b)
    b.guest_write_spiv(0xFF)
    assert emulate(a, icr_low(0x50), 1) == [] and b.apic.vectors(R.IRR) == []


def test_x2apic_hotplug_hack():
    """6.0 kvm_recalculate_apic_map: a vCPU whose x2APIC ID is above 0xFF is mapped at it even
    in xAPIC mode, so an x2APIC sender reaches it. 6.19 kvm_recalculate_phys_map does so only
    with 32-bit x2APIC IDs (x2apic_format); otherwise the fast path finds no APIC there."""
    for kernel, fmt, reached in (("6.0", False, True), ("6.19", False, False),
                                 ("6.19", True, True)):
        kvm, vm, (a,) = make(ids=(0,), kernel=kernel)
        vm.x2apic_format = fmt
        far = vm.create_vcpu(300)                  # hot-plugged, still in xAPIC mode
        run(a, far)
        assert (emulate(a, icr_low(0x57), 300) == [far]) is reached


def test_apic_id_modified_inhibit():
    """6.0 kvm_lapic_xapic_id_updated: APIC_ID_MODIFIED (VM-wide) when the xAPIC ID differs
    from the full vCPU id, never cleared. 6.19 kvm_recalculate_apic_map: compares with the id
    truncated to 8 bits and clears the inhibit when no vCPU differs any more."""
    for kernel in KERNELS:
        _, vm, (a, far) = make(ids=(1, 256), x2apic=False, kernel=kernel)
        far.guest_write_xapic_id(0)                # its own (truncated) reset value
        assert bool(vm.apicv_inhibits) is (kernel == "6.0")
        a.guest_write_xapic_id(5)
        assert "APIC_ID_MODIFIED" in vm.apicv_inhibits
        assert not far.unit_config().ipiv and not far.unit_config().vid
        a.guest_write_xapic_id(1)
        assert ("APIC_ID_MODIFIED" in vm.apicv_inhibits) is (kernel == "6.0")


def test_physical_id_aliasing_inhibit_6_19():
    """6.19 kvm_recalculate_phys_map: two xAPIC vCPUs on one APIC ID -> no map and
    PHYSICAL_ID_ALIASED; 6.0 has no such inhibit (and no APIC_ID_MODIFIED for vCPU 256
    reset to its truncated ID)."""
    for kernel in KERNELS:
        _, vm, (a, b) = make(ids=(0, 256), x2apic=False, kernel=kernel)
        assert ("PHYSICAL_ID_ALIASED" in vm.apicv_inhibits) is (kernel == "6.19")
        b.set_x2apic_mode(True)
        assert "PHYSICAL_ID_ALIASED" not in vm.apicv_inhibits


# -- KVM_CREATE_VCPU / KVM_CAP_MAX_VCPU_ID ------------------------------------------------------

@pytest.mark.parametrize("kernel", KERNELS)
def test_create_vcpu_order_of_checks(kernel):
    """kvm_main.c kvm_vm_ioctl_create_vcpu: KVM_MAX_VCPU_IDS, then the VM's vCPU count
    (max_vcpus), then kvm_arch_vcpu_precreate's max vCPU ID; EEXIST only after the vCPU was
    built (its PID-pointer entry already rewritten)."""
    kvm = KVM(kernel=kernel)
    vm = kvm.create_vm()
    vm.enable_cap_max_vcpu_id(4)
    with pytest.raises(KVMError, match="KVM_MAX_VCPU_IDS"):
        vm.create_vcpu(4096)
    a = vm.create_vcpu(0)
    entry = vm.pid_table_entry(0)
    with pytest.raises(KVMError) as e:
        vm.create_vcpu(0)
    assert e.value.errno == errno.EEXIST and vm.created_vcpus == 1
    assert vm.pid_table_entry(0) != entry and vm.pid_table_entry(0) & ~0x3F != a.pi_desc
    vm.max_vcpus = 1
    with pytest.raises(KVMError, match="already has 1 vCPUs"):
        vm.create_vcpu(9)                        # the count is checked before the max ID
    vm.max_vcpus = 2
    with pytest.raises(KVMError, match=">= max vCPU IDs 4"):
        vm.create_vcpu(9)


def test_max_vcpu_id_and_boot_cpu_id():
    """x86.c KVM_CAP_MAX_VCPU_ID / KVM_SET_BOOT_CPU_ID: 6.19 refuses a max below the boot
    CPU id and a boot CPU id above the max; both refuse KVM_SET_BOOT_CPU_ID after a vCPU."""
    for kernel in KERNELS:
        vm = KVM(kernel=kernel).create_vm()
        vm.set_boot_cpu_id(10)
        if kernel == "6.19":
            with pytest.raises(KVMError) as e:
                vm.enable_cap_max_vcpu_id(8)
            assert e.value.errno == errno.EINVAL
        else:
            vm.enable_cap_max_vcpu_id(8)
        vm = KVM(kernel=kernel).create_vm()
        vm.enable_cap_max_vcpu_id(8)
        if kernel == "6.19":
            with pytest.raises(KVMError):
                vm.set_boot_cpu_id(9)
        vm.set_boot_cpu_id(8)                    # "> max" is refused, "== max" is not
        vm.create_vcpu(0)
        with pytest.raises(KVMError) as e:
            vm.set_boot_cpu_id(0)
        assert e.value.errno == errno.EBUSY


# -- setup_vmcs_config / hardware_setup ---------------------------------------------------------

def values(**changes):
    v = dict(PRESETS["ipiv"][1])
    v.update(changes)
    return v


def test_optional_controls_and_cr_exits():
    """vmx.c setup_vmcs_config: 6.0 asks for VM_ENTRY_PT_CONCEAL_PIP and clears CR8/CR3/
    INVLPG exiting in the config; 6.19 keeps those exits in the config and asks for more."""
    c60 = setup_vmcs_config(MSRs(values()), kernel="6.0")
    c619 = setup_vmcs_config(MSRs(values()), kernel="6.19")
    assert c60.vmentry_ctrl & VMEntry.PT_CONCEAL_PIP
    assert not c60.cpu_based_exec_ctrl & (Primary.CR8_LOAD_EXITING | Primary.CR3_LOAD_EXITING)
    assert c619.cpu_based_exec_ctrl & Primary.CR8_LOAD_EXITING & Primary.CR8_LOAD_EXITING
    assert c619.cpu_based_exec_ctrl & Primary.USE_IO_BITMAPS
    assert not c60.cpu_based_exec_ctrl & Primary.USE_IO_BITMAPS
    assert c619.vmentry_ctrl & VMEntry.IA32E_MODE


def test_6_19_requires_interrupt_window_exiting():
    """6.19 KVM_REQUIRED_VMX_CPU_BASED_VM_EXEC_CONTROL includes INTR_WINDOW_EXITING."""
    primary = (0xFFF9_FFFE | Primary.ACTIVATE_TERTIARY_CONTROLS) & ~Primary.INTR_WINDOW_EXITING
    msrs = dict(PRESETS["ipiv"][1])
    msrs[VMXMSR.PROCBASED_CTLS] = (primary | 0x0401_E172) << 32 | 0x0401_E172
    assert setup_vmcs_config(MSRs(msrs), kernel="6.0").cpu_based_exec_ctrl
    with pytest.raises(SetupError):
        setup_vmcs_config(MSRs(msrs), kernel="6.19")


@pytest.mark.parametrize("kernel", KERNELS)
def test_inconsistent_capability_msrs_are_eio(kernel):
    """setup_vmcs_config: EPT capabilities without the EPT control, or a VM-entry/VM-exit
    pair with one half, is -EIO unless error_on_inconsistent_vmcs_config=0."""
    v = dict(PRESETS["ipiv"][1])
    v[VMXMSR.PROCBASED_CTLS2] = (0x0057_7FFF & ~Secondary.ENABLE_EPT) << 32
    with pytest.raises(SetupError, match="EPT") as e:
        setup_vmcs_config(MSRs(v), kernel=kernel)
    assert e.value.errno == errno.EIO
    cfg = setup_vmcs_config(MSRs(v), kernel=kernel, error_on_inconsistent_vmcs_config=False)
    assert cfg.ept_cap == 0
    v = dict(PRESETS["ipiv"][1])
    v[VMXMSR.EXIT_CTLS] = (0x03FF_FFFF & ~VMExit.LOAD_IA32_PAT) << 32 | 0x0003_6DFF
    with pytest.raises(SetupError, match="VM-entry control"):
        setup_vmcs_config(MSRs(v), kernel=kernel)
    cfg = setup_vmcs_config(MSRs(v), kernel=kernel, error_on_inconsistent_vmcs_config=False)
    assert not cfg.vmentry_ctrl & VMEntry.LOAD_IA32_PAT


def test_evmcs_deny_list_vs_allow_list():
    """6.0 evmcs_sanitize_exec_ctrls drops EVMCS1_UNSUPPORTED_* (incl. exit
    LOAD_PERF_GLOBAL_CTRL); 6.19 keeps EVMCS1_SUPPORTED_* (which has it). Neither has IPIv."""
    for kernel, perf in (("6.0", False), ("6.19", True)):
        setup = hardware_setup(preset("ipiv"), ModuleParams(evmcs=True), kernel=kernel)
        assert bool(setup.config.vmexit_ctrl & VMExit.LOAD_IA32_PERF_GLOBAL_CTRL) is perf
        assert not setup.enable_ipiv and not setup.enable_apicv
        assert setup.config.cpu_based_3rd_exec_ctrl == 0


# -- vmx flags (feat_ctl.c, vmxfeatures.h) ------------------------------------------------------

def test_vmx_flags_order_names_and_kernel():
    """feat_ctl.c init_vmx_capabilities: word 0 (pin + synthetic) first; vmxfeatures.h names:
    ept_violation_ve and ept_5level exist only in 6.19."""
    v = dict(PRESETS["ipiv"][1])
    v[VMXMSR.PROCBASED_CTLS2] = (0x0057_7FFF | Secondary.EPT_VIOLATION_VE) << 32
    v[VMXMSR.EPT_VPID_CAP] |= 1 << 7
    f60, f619 = vmx_flags(MSRs(v), kernel="6.0"), vmx_flags(MSRs(v), kernel="6.19")
    assert f60.index("apicv") < f60.index("tsc_offset") < f60.index("vapic") < \
        f60.index("ipi_virt")
    assert "ept_violation_ve" in f619 and "ept_violation_ve" not in f60
    assert "ept_5level" in f619 and "ept_5level" not in f60


@pytest.mark.parametrize("kernel", KERNELS)
def test_vmx_flags_vm_functions_come_from_the_high_half_of_0x491(kernel):
    """arch/x86/kernel/cpu/feat_ctl.c init_vmx_capabilities, 6.0 line 53 and 6.19 line 54:
    ``rdmsr_safe(MSR_IA32_VMX_VMFUNC, &ign, &funcs)`` keeps EDX (bits 63:32) as ``funcs``
    and word 0 takes ``(funcs & 0xf) << 28``. So a CPU with only EPTP switching (MSR 0x491
    bit 0, as Sapphire/Granite Rapids report it) shows no eptp_switching; bit 32 would."""
    v = dict(PRESETS["ipiv"][1])
    for value, shown in ((1, False), (1 << 32, True), (0xF, False), (1 << 32 | 1, True)):
        v[VMXMSR.VMFUNC] = value
        flags = vmx_flags(MSRs(v), kernel=kernel)
        assert ("eptp_switching" in flags) is shown, (hex(value), flags)
        assert vmx_capability_words(MSRs(v))[0] >> 28 == value >> 32 & 0xF


def test_vmx_flags_tertiary_word_is_not_gated():
    """feat_ctl.c reads MSR 0x492 with rdmsr_safe whatever primary bit 17 allows."""
    v = dict(PRESETS["no-tertiary"][1])
    v[VMXMSR.PROCBASED_CTLS3] = Tertiary.IPI_VIRT
    msrs = MSRs(v)
    assert not VMXCapabilities(msrs).ipi_virtualization
    assert "ipi_virt" in vmx_flags(msrs)
    assert "ipi_virt" not in vmx_flags(preset("no-tertiary"))


# -- dump_vmcs ----------------------------------------------------------------------------------

def test_dump_vmcs_lines_as_6_0_prints_them():
    """vmx.c dump_vmcs (6.0): SVI|RVI and TPR threshold share a line, APIC-access and
    virt-APIC addresses share a line, TSC multiplier and PLE lines when enabled."""
    vmcs = VMCS()
    vmcs.write32(F.CPU_BASED_VM_EXEC_CONTROL, Primary.TPR_SHADOW |
                 Primary.ACTIVATE_SECONDARY_CONTROLS)
    vmcs.write32(F.SECONDARY_VM_EXEC_CONTROL, Secondary.VIRTUAL_INTR_DELIVERY |
                 Secondary.VIRTUALIZE_APIC_ACCESSES | Secondary.TSC_SCALING |
                 Secondary.PAUSE_LOOP_EXITING)
    vmcs.write16(F.GUEST_INTR_STATUS, 0x3141)
    vmcs.write32(F.TPR_THRESHOLD, 2)
    vmcs.write64(F.APIC_ACCESS_ADDR, 0xFEE00000)
    vmcs.write64(F.VIRTUAL_APIC_PAGE_ADDR, 0x5000)
    vmcs.write32(F.PLE_GAP, 128)
    vmcs.write32(F.PLE_WINDOW, 4096)
    lines = vmcs.dump().splitlines()
    assert "SVI|RVI = 31|41 TPR Threshold = 0x02" in lines
    assert "APIC-access addr = 0x00000000fee00000 virt-APIC addr = 0x0000000000005000" in lines
    assert "TSC Multiplier = 0x0000000000000000" in lines
    assert "PLE Gap=00000080 Window=00001000" in lines
    # no secondary controls on this CPU: printed as 0 whatever the field holds
    assert "SecondaryExec=0x00000000" in vmcs.dump(has_secondary=False)


def test_vcpu_dump_follows_the_cpu_not_the_vmcs():
    """dump_vmcs reads TertiaryExec only if cpu_has_tertiary_exec_ctrls (vmcs_config)."""
    _, _, (v,) = make(ids=(0,), msrs=preset("no-tertiary"))
    v.vmcs.write64(F.TERTIARY_VM_EXEC_CONTROL, 0x10)
    assert "TertiaryExec=0x0000000000000000" in v.dump_vmcs()


# -- vmxcap ---------------------------------------------------------------------------------------

def test_vmxcap_rows_as_qemu_prints_them():
    """QEMU scripts/kvm/vmxcap: unreadable MSRs read 0 (rows "no", Hex 0x0), no gating, the
    tertiary row is "Enable IPI virtualization"; the model's extras follow a separator."""
    out = report(preset("no-tertiary")).splitlines()
    qemu, extra = out[:out.index(SEPARATOR)], out[out.index(SEPARATOR):]
    row = qemu.index("tertiary processor-based controls")
    assert qemu[row + 1].split() == ["Enable", "IPI", "virtualization", "no"]
    vm_functions = qemu.index("VM Functions")
    assert qemu[vm_functions + 1] == "  Hex: 0x1"
    assert "  Skip checks on event error code          no" in qemu
    assert not any("ipi_virt" in line for line in qemu)
    assert any("not available" in line for line in extra)
    # an MSR file without 0x48B: every secondary row reads "no"
    v = dict(PRESETS["ipiv"][1])
    del v[VMXMSR.PROCBASED_CTLS2]
    qemu = report(MSRs(v)).splitlines()
    start = qemu.index("secondary processor-based controls")
    rows = qemu[start + 1:qemu.index("tertiary processor-based controls")]
    assert len(rows) == 27 and all(r.split()[-1] == "no" for r in rows)


def test_vmxcap_default_and_question_mark():
    """QEMU vmxcap Control.show: "default" needs the TRUE MSR to allow 0 and 1; a bit that
    must be 1 but may not be 1 is "?"."""
    v = dict(PRESETS["ipiv"][1])
    v[VMXMSR.PINBASED_CTLS] = 0xFF << 32 | 0x16 | 1 << 8
    v[VMXMSR.TRUE_PINBASED_CTLS] = 0x7F << 32 | 0x10
    lines = report(MSRs(v)).splitlines()
    assert "  NMI exiting                              forced" not in lines
    assert "  Process posted interrupts                yes" in lines
    v[VMXMSR.PINBASED_CTLS] = 0x7F << 32 | 0x16 | 1 << 7
    lines = report(MSRs(v)).splitlines()
    assert "  Process posted interrupts                ?" in lines


def test_vmxcap_json_keeps_keys_and_adds_kernel():
    """report_json: the old keys and meanings, plus kernel."""
    for kernel in KERNELS:
        data = report_json(preset("ipiv"), kernel=kernel)
        assert data["kernel"] == kernel and data["kvm"]["enable_ipiv"] is True
        assert data["kvm"]["cpu_based_3rd_exec_ctrl"] == 0x10
        assert data["tertiary_controls"] and data["procbased_ctls3"] == 0x11
        assert ("ept_violation_ve" in data["vmx_flags"]) is (kernel == "6.19")
        assert "0x492" in data["msrs_read"]


# -- the world with the x2APIC intercept ----------------------------------------------------------

@pytest.mark.parametrize("kernel", KERNELS)
def test_ipi_world_without_ipiv_uses_wrmsr_exits(kernel):
    """The IPI world with IPIv off: every x2APIC ICR write is a WRMSR exit KVM emulates
    (fastpath or full path); no interrupt is lost."""
    kvm = KVM(params=NO_IPIV, n_pcpus=3, kernel=kernel)
    world = IPIWorld(kvm=kvm, seed=5, x2apic=True)
    world.run(800).drain()
    s = world.stats
    assert s["wrmsr:fastpath"] > 20 and s["wrmsr:full"] > 0 and s["taken"] > 50
    assert sum(v.exits[(32, 0)] for v in world.vcpus) == s["wrmsr:fastpath"] + s["wrmsr:full"]
    assert all(v.exits[(56, 0x300)] == 0 for v in world.vcpus)


@pytest.mark.parametrize("seed", range(3))
def test_ipi_world_6_19(seed):
    """docs/architecture.md §6 invariants hold with the 6.19 KVM model too."""
    world = IPIWorld(seed=seed, kernel="6.19", x2apic=[None, True, False][seed])
    world.run(1500).drain()
    assert world.stats["taken"] > 100

"""The KVM model: KVM_CAP_MAX_VCPU_ID, the PID-pointer table, VMCS fields, APICv inhibits,
MSR interception, the APIC-write exit handler (both modes, and the pre-patch bug), software
emulation of every IPI IPIv leaves alone, and posted-interrupt handling around scheduling."""

import errno

import pytest

from hdl.formats import (
    APICRegister as R, DeliveryMode, DestMode, ICRWriteKind as K, Shorthand, TriggerMode,
    X2APICICR,
)
from hdl.vmx import Secondary, Tertiary, VMCSField as F
from sim.golden import GoldenIPIVirtualizer, Outcome
from sim.kvm import KVM, KVMError, ModuleParams
from sim.lapic import DFR_CLUSTER
from sim.scenarios import icr_low
from sim.vmx_caps import preset


def make_vm(max_ids=None, ids=(0, 1, 2, 3), x2apic=True, **kvm_args):
    kvm = KVM(**kvm_args)
    vm = kvm.create_vm()
    if max_ids is not None:
        vm.enable_cap_max_vcpu_id(max_ids)
    vcpus = [vm.create_vcpu(i) for i in ids]
    for v in vcpus:
        v.set_x2apic_mode(x2apic)
    return kvm, vm, vcpus


# -- KVM_CAP_MAX_VCPU_ID and vCPU creation ----------------------------------------------------

def test_max_vcpu_id_set_once_before_vcpus():
    vm = KVM().create_vm()
    vm.enable_cap_max_vcpu_id(64)
    vm.enable_cap_max_vcpu_id(64)              # the same value again is fine
    with pytest.raises(KVMError) as e:
        vm.enable_cap_max_vcpu_id(128)
    assert e.value.errno == errno.EINVAL
    vm.create_vcpu(63)
    with pytest.raises(KVMError, match=">= max vCPU IDs 64"):
        vm.create_vcpu(64)


def test_first_vcpu_fixes_the_default():
    vm = KVM().create_vm()
    vm.create_vcpu(0)
    assert vm.max_vcpu_ids == 4096
    with pytest.raises(KVMError):
        vm.enable_cap_max_vcpu_id(16)


@pytest.mark.parametrize("bad", [4097, -1, 1.5, "8", True])
def test_max_vcpu_id_bounds(bad):
    with pytest.raises(KVMError) as e:
        KVM().create_vm().enable_cap_max_vcpu_id(bad)
    assert e.value.errno == errno.EINVAL


def test_bad_vcpu_ids():
    vm = KVM().create_vm()
    vm.create_vcpu(3)
    with pytest.raises(KVMError) as e:
        vm.create_vcpu(3)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(KVMError):
        vm.create_vcpu(-1)


# -- the PID-pointer table and the VMCS -------------------------------------------------------

def test_table_is_lazy_zeroed_and_sized_by_max_ids():
    kvm = KVM()
    for addr in range(0x1000_0000, 0x1000_0000 + 0x10000, 8):
        kvm.memory.write(addr, 0xDEAD_BEEF_DEAD_BEEF)        # stale memory
    vm = kvm.create_vm()
    assert vm.pid_table is None
    vcpus = {i: vm.create_vcpu(i) for i in (0, 5, 4095)}
    assert vm.pid_table_bytes == 32 * 1024
    for i in range(4096):
        entry = vm.pid_table_entry(i)
        assert entry == (vcpus[i].pi_desc | 1 if i in vcpus else 0), i
    assert all(v.pi_desc % 64 == 0 for v in vcpus.values())


@pytest.mark.parametrize("max_ids,size", [(1, 4096), (512, 4096), (513, 8192), (1000, 8192),
                                          (2048, 16384), (4096, 32768)])
def test_table_size(max_ids, size):
    _, vm, _ = make_vm(max_ids, ids=(0,))
    assert vm.pid_table_bytes == size


def test_no_table_without_ipiv_or_in_kernel_irqchip():
    vm = KVM(params=ModuleParams(enable_ipiv=False)).create_vm()
    vm.create_vcpu(0)
    assert vm.pid_table is None
    vm = KVM().create_vm(irqchip_in_kernel=False)
    vm.create_vcpu(0)
    assert vm.pid_table is None


def test_vmcs_fields_of_sparse_vcpus():
    kvm, vm, vcpus = make_vm(64, ids=(2, 17, 63))
    for v in vcpus:
        assert v.vmcs.read64(F.PID_POINTER_TABLE) == vm.pid_table
        assert v.vmcs.read16(F.LAST_PID_POINTER_INDEX) == 63
        assert v.vmcs.read64(F.POSTED_INTR_DESC_ADDR) == v.pi_desc
        assert v.vmcs.read16(F.POSTED_INTR_NV) == 0xF2
        assert v.vmcs.read64(F.VIRTUAL_APIC_PAGE_ADDR) == v.vapic_page
        assert v.vmcs.read64(F.TERTIARY_VM_EXEC_CONTROL) & Tertiary.IPI_VIRT
        assert (v.pi_nv, v.pi_sn, v.pi_on) == (0xF2, True, False)       # after reset
        cfg = v.unit_config()
        assert (cfg.ipiv, cfg.vid, cfg.last_pid_index, cfg.pid_table, cfg.vapic_page) == \
            (True, True, 63, vm.pid_table, v.vapic_page)
    assert "TertiaryExec=0x0000000000000010" in vcpus[0].dump_vmcs()


def test_no_tertiary_cpu():
    _, vm, (v,) = make_vm(ids=(0,), msrs=preset("no-tertiary"))
    assert "TertiaryExec=0x0000000000000000" in v.dump_vmcs()
    assert vm.pid_table is None and not v.unit_config().ipiv


def test_apicv_inhibit_clears_ipiv_per_vcpu():
    _, vm, (a, b) = make_vm(ids=(0, 1), x2apic=False)
    a.guest_write_xapic_id(9)                           # KVM inhibits APICv VM-wide
    for v in (a, b):
        assert not v.vmcs.read64(F.TERTIARY_VM_EXEC_CONTROL) & Tertiary.IPI_VIRT
        assert not v.vmcs.read32(F.SECONDARY_VM_EXEC_CONTROL) & Secondary.VIRTUAL_INTR_DELIVERY
        assert not v.unit_config().ipiv
    for v in (a, b):
        v.set_apicv_inhibit("APIC_ID_MODIFIED", False)
    assert a.unit_config().ipiv and b.unit_config().ipiv


def test_x2apic_icr_msr_interception():
    _, _, (v,) = make_vm(ids=(0,))
    assert not v.msr_intercepted(0x830, write=True)      # IPIv: ICR writes don't exit
    assert not v.msr_intercepted(0x80B, write=True)      # EOI
    assert v.msr_intercepted(0x839, write=False)         # TMCCT
    _, _, (w,) = make_vm(ids=(0,), params=ModuleParams(enable_ipiv=False))
    assert w.msr_intercepted(0x830, write=True)
    v.set_x2apic_mode(False)
    assert v.msr_intercepted(0x830, write=True)          # xAPIC: x2APIC MSRs all exit
    with pytest.raises(ValueError):
        v.msr_intercepted(0x10, write=True)


# -- the APIC-write exit ----------------------------------------------------------------------

def run_guest(*vcpus):
    for i, v in enumerate(vcpus):
        v.load(i)
        v.enter_guest()


@pytest.mark.parametrize("kernel", ["6.0", "6.19"])
def test_x2apic_apic_write_exit_uses_the_64_bit_vicr(kernel):
    """lapic.c kvm_apic_write_nodecode: 6.0 sends the 64-bit vICR as it is (busy bit left,
    nothing written back); 6.19 goes through kvm_x2apic_icr_write (busy cleared, written back).
    (The old expectation, busy cleared in 6.0, was the later kernels' behaviour.)"""
    _, vm, (a, b, c, d) = make_vm(kernel=kernel)
    run_guest(a, b, c, d)
    stored = X2APICICR.const({"dest": d.apic.ldr}).as_bits() | \
        icr_low(0x55, dest_mode=DestMode.LOGICAL) | 1 << 12
    a.apic.write64(R.ICR, stored)
    targets = a.handle_apic_write(0x300)
    assert targets == [d] and d.take_interrupt() == 0x55
    if kernel == "6.0":
        assert a.apic.read64(R.ICR) == stored
    else:
        assert a.apic.read64(R.ICR) == stored & ~(1 << 12)
    assert vm.exits[(56, 0x300)] == 1 and a.in_guest


def test_pre_patch_x2apic_path_loses_the_destination():
    _, vm, (a, b, c, d) = make_vm()
    run_guest(a, b, c, d)
    for legacy, expect in ((False, [d]), (True, [a])):
        a.legacy_x2apic_icr_path = legacy
        a.apic.write64(R.ICR, 3 << 32 | icr_low(0x66))      # what the CPU stored at 300H
        targets = a.handle_apic_write(0x300)
        # Before the fix, ICR2 (310H, never written in x2APIC mode) gave the destination.
        assert targets == expect


def test_xapic_apic_write_exit_uses_icr2():
    _, vm, (a, b, c, d) = make_vm(x2apic=False)
    run_guest(a, b, c, d)
    a.apic.write32(R.ICR2, 2 << 24)
    a.apic.write32(R.ICR, icr_low(0x44, shorthand=Shorthand.NONE, mode=DeliveryMode.NMI))
    assert a.handle_apic_write(0x300) == [c] and c.nmi_pending == 1
    with pytest.raises(ValueError):
        a.handle_apic_write(0x310)


def emulate(sender, low, dest):
    return sender.send_ipi(low, dest if sender.apic.x2apic else dest << 24)


def test_emulated_ipis():
    _, vm, (a, b, c, d) = make_vm(x2apic=False)
    run_guest(a, b, c, d)
    for i, v in enumerate((a, b, c, d)):
        v.apic.write32(R.LDR, (1 << i) << 24)
    assert emulate(a, icr_low(0x40, dest_mode=DestMode.LOGICAL), 0b1100) == [c, d]
    assert emulate(a, icr_low(0x41, shorthand=Shorthand.SELF), 0) == [a]
    assert emulate(a, icr_low(0x42, shorthand=Shorthand.ALL_INCLUDING_SELF), 0) == [a, b, c, d]
    assert emulate(a, icr_low(0x43, shorthand=Shorthand.ALL_EXCLUDING_SELF), 0) == [b, c, d]
    assert emulate(a, icr_low(0x44), 0xFF) == [a, b, c, d]              # physical broadcast
    lowest = emulate(a, icr_low(0x47, mode=DeliveryMode.LOWEST_PRIORITY,
                                dest_mode=DestMode.LOGICAL), 0b1110)
    # kvm_apic_map_get_dest_lapic: the (0x47 % 3) = 2nd set bit of the mask 0b1110 -> bit 3
    assert lowest == [d]
    assert emulate(a, icr_low(0, mode=DeliveryMode.INIT), 1) == [b] and b.init_pending
    c.init_pending = False
    emulate(a, icr_low(0, mode=DeliveryMode.INIT, trigger=TriggerMode.LEVEL, level=0), 2)
    assert not c.init_pending                                           # de-assert: nothing
    emulate(a, icr_low(0x9A, mode=DeliveryMode.STARTUP), 3)
    assert d.sipi_vector == 0x9A
    emulate(a, icr_low(0, mode=DeliveryMode.SMI), 3)
    assert d.smi_pending
    emulate(a, icr_low(0x48, trigger=TriggerMode.LEVEL), 1)
    assert b.apic.test(R.TMR, 0x48)
    # lapic.c kvm_apic_send_ipi/__apic_accept_irq (6.0): no illegal-vector check; vector 14
    # is delivered and nothing is written to the sender's ESR (old expectation was wrong).
    assert emulate(a, icr_low(0x0E), 1) == [b]
    assert a.apic.read32(R.ESR) == 0 and b.apic.test(R.IRR, 0x0E)
    taken = {v.vcpu_id: [] for v in (a, b, c, d)}
    for v in (a, b, c, d):
        while (vector := v.take_interrupt()) is not None:
            taken[v.vcpu_id].append(vector)
            v.eoi()
    assert 0x40 in taken[2] and 0x40 in taken[3] and 0x41 in taken[0] and 0x48 in taken[1]
    assert all(0x42 in t and 0x44 in t for t in taken.values())


def test_x2apic_cluster_logical():
    _, vm, vcpus = make_vm(ids=range(20))
    run_guest(*vcpus[:4])
    assert emulate(vcpus[0], icr_low(0x40, dest_mode=DestMode.LOGICAL),
                   1 << 16 | 0b101) == [vcpus[16], vcpus[18]]


# -- posted interrupts and scheduling ---------------------------------------------------------

@pytest.mark.parametrize("host_x2apic", [True, False])
def test_load_routes_the_pid(host_x2apic):
    kvm, vm, (a, b) = make_vm(ids=(0, 1), host_x2apic=host_x2apic)
    b.load(2)
    assert (b.pi_nv, b.pi_sn) == (0xF2, False)
    assert b.pi_ndst == (2 if host_x2apic else 0x200)
    b.migrate(3)
    assert b.pi_ndst == (3 if host_x2apic else 0x300)


def post(sender, target, vector):
    cfg = sender.unit_config()
    value = X2APICICR.const({"dest": target.vcpu_id}).as_bits() | icr_low(vector)
    return GoldenIPIVirtualizer().execute(cfg, sender.memory, K.X2APIC_ICR, value)


def test_hardware_post_to_a_running_vcpu():
    kvm, vm, (a, b) = make_vm(ids=(0, 1))
    run_guest(a, b)
    result = post(a, b, 0x61)
    assert result.outcome is Outcome.POSTED and result.notify == (0xF2, 1)
    kvm.host.send_ipi(result.notify[1], result.notify[0])
    assert not b.pi_on and b.pir() == 0 and b.apic.rvi == 0x61       # PI processing
    assert b.take_interrupt() == 0x61


def test_preempted_vcpu_gets_no_notification_and_sees_pir_at_load():
    kvm, vm, (a, b) = make_vm(ids=(0, 1))
    run_guest(a, b)
    b.preempt()
    assert b.pi_sn
    result = post(a, b, 0x62)
    assert result.suppressed and not b.pi_on and b.pir() == 1 << 0x62
    b.load(2)                          # SN cleared; PIR not empty, so ON is set
    assert b.pi_on and not b.pi_sn
    b.enter_guest()
    assert b.take_interrupt() == 0x62


def test_blocked_vcpu_is_woken_by_the_wakeup_vector():
    kvm, vm, (a, b) = make_vm(ids=(0, 1))
    run_guest(a, b)
    assert b.halt() and b.asleep and b.pi_nv == 0xF1
    assert b in kvm.host.pcpus[1].wakeup_list
    result = post(a, b, 0x63)
    assert result.notify == (0xF1, 1)
    kvm.host.send_ipi(1, 0xF1)
    assert not b.blocking
    b.load(3)                          # wakes up elsewhere: off the old list, NV back
    assert b not in kvm.host.pcpus[1].wakeup_list and b.pi_nv == 0xF2
    b.enter_guest()
    assert b.take_interrupt() == 0x63


def test_blocking_with_on_already_set_self_ipis():
    kvm, vm, (a, b) = make_vm(ids=(0, 1))
    run_guest(a, b)
    b.exit_guest()
    b.deliver_posted_interrupt(0x64)   # ON set while b is outside the guest...
    b.blocking = True                  # ...and b schedules out to block anyway
    b.put()
    assert not b.blocking and kvm.host.pcpus[1].interrupts[0xF1] == 1


def test_halt_with_pending_interrupt_does_not_block():
    kvm, vm, (a, b) = make_vm(ids=(0, 1))
    run_guest(a, b)
    b.exit_guest()
    b.deliver_posted_interrupt(0x65)
    b.enter_guest()
    assert not b.halt() and b.in_guest


def test_software_posting_coalesces():
    kvm, vm, (a, b) = make_vm(ids=(0, 1))
    b.load(1)
    assert b.deliver_posted_interrupt(0x70) and not b.deliver_posted_interrupt(0x70)
    assert not b.deliver_posted_interrupt(0x71)     # ON already set: no second notification
    b.enter_guest()
    assert b.take_interrupt() == 0x71


# -- errors of the scripted API (issue 23 item 8) -----------------------------------------------

def test_unknown_preset_is_a_value_error_listing_the_presets():
    from sim.vmx_caps import PRESETS
    with pytest.raises(ValueError, match="unknown CPU preset 'ipv'") as e:
        preset("ipv")
    assert all(name in str(e.value) for name in PRESETS)


@pytest.mark.parametrize("pcpu", [9, 4, -1, "1", True])
def test_loading_on_a_pcpu_the_host_lacks_names_the_range(pcpu):
    kvm, _, (v,) = make_vm(ids=(0,), n_pcpus=4)
    with pytest.raises(ValueError, match=r"the host has pCPUs 0\.\.3"):
        v.load(pcpu)
    assert not v.loaded and all(p.loaded is None for p in kvm.host.pcpus)
    v.load(1)
    with pytest.raises(ValueError, match=r"pCPUs 0\.\.3"):
        v.migrate(7)
    assert v.loaded and v.cpu == 1           # nothing moved


def test_halting_twice_says_already_blocked():
    _, _, (a, b) = make_vm(ids=(0, 1))
    b.load(1)
    b.enter_guest()
    assert b.halt()
    with pytest.raises(RuntimeError, match="vCPU 1 is already blocked"):
        b.halt()
    assert b.asleep and b.pi_nv == 0xF1      # still blocked, still on the wakeup vector


def test_a_halted_vcpu_cannot_send():
    """A blocked vCPU runs no guest code: asking for the unit's config to send an IPI from
    it is an error that says so (it used to return a config without a word)."""
    _, _, (a, b) = make_vm(ids=(0, 1))
    a.load(0)
    a.enter_guest()
    assert a.unit_config().ipiv
    assert a.halt()
    with pytest.raises(RuntimeError, match="vCPU 0 is blocked .*halted"):
        a.unit_config()
    a.deliver_posted_interrupt(0x30)         # an interrupt wakes it...
    a.load(0)
    a.enter_guest()
    assert a.unit_config().ipiv              # ...and once it runs it can send again


@pytest.mark.parametrize("call,message", [
    (lambda v: v.enter_guest(), "is not loaded: load it on a pCPU before it can enter"),
    (lambda v: v.preempt(), "before it can be preempted"),
    (lambda v: v.halt(), "before it can execute HLT"),
    (lambda v: v.deliver_posted_interrupt(256), r"vector must be 0\.\.0xff, not 256"),
    (lambda v: v.deliver_posted_interrupt(-1), r"vector must be 0\.\.0xff"),
])
def test_state_and_range_errors_say_what_is_wrong(call, message):
    _, _, (v,) = make_vm(ids=(0,))
    with pytest.raises((RuntimeError, ValueError), match=message):
        call(v)
    assert not v.blocking and not v.preempted and v.pir() == 0     # nothing half done


def test_reprs_show_icr_values_in_hex():
    _, _, (a, c) = make_vm(ids=(0, 5))
    for v, pcpu in ((a, 0), (c, 2)):
        v.load(pcpu)
        v.enter_guest()
    value = X2APICICR.const({"dest": 5}).as_bits() | icr_low(0x61)
    result = GoldenIPIVirtualizer().execute(a.unit_config(), a.memory, K.X2APIC_ICR, value)
    text = repr(result)
    assert f"icr={value:#x}" in text and "vector=0x61" in text and "notify=(0xf2, 2)" in text
    assert "outcome=Outcome.POSTED" in text and str(value) not in text
    assert f"pid_table={a.vm.pid_table:#x}" in repr(a.unit_config())
    assert repr(c) == "VCPU(5, in guest mode on pCPU 2)"
    from sim.scenarios import Request
    assert f"value={value:#x}" in repr(Request(a.unit_config(), K.X2APIC_ICR, value))

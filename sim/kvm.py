"""KVM's side of IPI virtualization, executable: kvm_intel loaded on a host (`KVM`), its VMs
and vCPUs, the PID-pointer table, posted interrupts across load/put/block/preempt/migrate,
the APIC-write and WRMSR exit handlers and the software emulation of every IPI the processor
does not virtualize, function by function as Linux 6.0 does it (``vmx/vmx.c``,
``vmx/posted_intr.c``, ``lapic.c``, ``x86.c``, ``virt/kvm/kvm_main.c``), or as 6.19 does
with ``KVM(..., kernel="6.19")`` (`sim.kvm_kernel`). The differences, with the function and
release they come from, are in the docstrings and in ``docs/kvm-model.md``.

Everything lives in one `Memory` (``sim.memory``) that the gateware can share: PID-pointer
tables, PIDs and virtual-APIC pages are allocated in it, so `VCPU.unit_config` can program the
RTL and a hardware posting is seen by the model (and the other way round).

This module is the entry point (``from sim.kvm import KVM, VM, VCPU, ...``); the model is
split by job:

- `sim.kvm_host`: the physical machine (pCPUs, notification IPIs, host memory);
- `sim.kvm_vm`: a VM (its ioctls, PID-pointer table, APICv inhibits, IPI delivery);
- `sim.kvm_vcpu`: a vCPU, assembled from `sim.kvm_vcpu_controls` (its VMCS controls),
  `sim.kvm_vcpu_sched` (scheduling), `sim.kvm_posted_intr` (posted interrupts) and
  `sim.kvm_exits` (exit handlers, IPI emulation);
- `sim.kvm_setup`, `sim.kvm_apic_map`, `sim.lapic`, `sim.vmcs`: kvm_intel's setup, the APIC
  map, the virtual APIC, the VMCS.

Errors of the public API: an ioctl KVM refuses is a `KVMError` (an `OSError` with KVM's
errno); a value out of its range (a pCPU, a vector) is a `ValueError` naming the range; an
operation the vCPU's state does not allow (halting twice, sending from a blocked vCPU) is a
`RuntimeError` that says the state.
"""

from .kvm_exits import MSRWrite
from .kvm_host import Allocator, Host, PCPU
from .kvm_kernel import DEFAULT_KERNEL, check_kernel
from .kvm_setup import ModuleParams, hardware_setup
from .kvm_vcpu import APICV_INHIBIT_APIC_ID_MODIFIED, VCPU
from .kvm_vm import KVMError, KVM_MAX_VCPU_IDS, KVM_MAX_VCPUS, VM
from .memory import Memory
from .vmx_caps import VMXCapabilities, preset


__all__ = ["KVMError", "KVM", "VM", "VCPU", "Host", "PCPU", "KVM_MAX_VCPU_IDS",
           "KVM_MAX_VCPUS", "APICV_INHIBIT_APIC_ID_MODIFIED", "MSRWrite",
           "ModuleParams"]


class KVM:
    """kvm_intel loaded on a host: capabilities, module parameters and their decisions.

    Parameters
    ----------
    msrs : sim.vmx_caps.MSRs, optional
        The CPU (default: the ``ipiv`` preset).
    params : ModuleParams
    n_pcpus : int
    host_x2apic : bool
    memory : Memory, optional
        Physical memory to allocate VM structures in (shared with the gateware).
    kernel : str
        ``"6.0"`` (default) or ``"6.19"`` (`sim.kvm_kernel`); anything else is a ValueError.
    vector_hashing : bool
        The ``kvm.vector_hashing`` module parameter (default on): how lowest-priority IPIs
        pick their target.
    """

    def __init__(self, msrs=None, params=ModuleParams(), *, n_pcpus=4, host_x2apic=True,
                 memory=None, base=0x1000_0000, kernel=DEFAULT_KERNEL, vector_hashing=True):
        self.kernel = check_kernel(kernel)
        self.msrs = preset("ipiv") if msrs is None else msrs
        self.caps = VMXCapabilities(self.msrs)
        self.setup = hardware_setup(self.msrs, params, kernel=kernel)
        self.vector_hashing = vector_hashing
        self.host = Host(n_pcpus, x2apic=host_x2apic)
        self.memory = Memory() if memory is None else memory
        self.allocator = Allocator(self.memory, base)
        self.vms = []
        self._next_vpid = 1            # vmx_vpid_bitmap: 0 is the host's

    @property
    def enable_apicv(self):
        return self.setup.enable_apicv

    @property
    def enable_ipiv(self):
        return self.setup.enable_ipiv

    def allocate_vpid(self):
        """allocate_vpid: 0 (none) unless VPID is enabled."""
        if not self.setup.enable_vpid:
            return 0
        vpid, self._next_vpid = self._next_vpid, self._next_vpid + 1
        return vpid

    def create_vm(self, *, irqchip_in_kernel=True):
        vm = VM(self, irqchip_in_kernel=irqchip_in_kernel)
        self.vms.append(vm)
        return vm

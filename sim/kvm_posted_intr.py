"""Posted-interrupt delivery of the KVM model's vCPU (``vmx/posted_intr.c``, ``vmx/vmx.c``;
6.0 and 6.19 where they differ): the vCPU's posted-interrupt descriptor (PID) in shared
memory, its routing across load and put (``vmx_vcpu_pi_load``/``vmx_vcpu_pi_put``, the wakeup
list of a blocked vCPU), KVM's software posting (``vmx_deliver_posted_interrupt``) and what
the CPU does when the notification arrives in guest mode.

`PostedInterrupts` is a mixin of `sim.kvm_vcpu.VCPU`: it uses the vCPU's ``memory``,
``pi_desc``, ``host``, ``cpu``, ``apic``, ``vmcs`` and scheduling state.
"""

from hdl.formats import (
    BUS_BYTES, ICRLow, NotifyInfo, PID_NOTIFY_INFO_OFFSET, PIR_WORDS, POSTED_INTR_VECTOR,
    POSTED_INTR_WAKEUP_VECTOR,
)
from hdl.vmx import VMCSField as F
from .arch_values import check_fits, field_width


__all__ = ["PostedInterrupts"]


class PostedInterrupts:
    """The PID of a vCPU and everything that reads or writes it."""

    # -- the PID ----------------------------------------------------------------------------
    @property
    def notify_info(self):
        return self.memory.read(self.pi_desc + PID_NOTIFY_INFO_OFFSET)

    def _set_notify_info(self, value):
        self.memory.write(self.pi_desc + PID_NOTIFY_INFO_OFFSET, value)

    @property
    def pi_on(self):
        return bool(NotifyInfo.from_bits(self.notify_info).on)

    @property
    def pi_sn(self):
        return bool(NotifyInfo.from_bits(self.notify_info).sn)

    @property
    def pi_nv(self):
        return NotifyInfo.from_bits(self.notify_info).nv

    @property
    def pi_ndst(self):
        return NotifyInfo.from_bits(self.notify_info).ndst

    def pir(self):
        return sum(self.memory.read(self.pi_desc + BUS_BYTES * k) << (64 * k)
                   for k in range(PIR_WORDS))

    def _pir_take(self):
        """Read-and-clear the PIR (xchg of each word)."""
        pir = self.pir()
        for k in range(PIR_WORDS):
            self.memory.write(self.pi_desc + BUS_BYTES * k, 0)
        return pir

    def _update_notify_info(self, **fields):
        """A compare-and-swap update of NotifyInfo (the model is single-threaded, so the
        first try succeeds); other fields, ON included, keep their value."""
        info = NotifyInfo.from_bits(self.notify_info)
        values = {name: getattr(info, name) for name in ("on", "sn", "nv", "ndst")}
        values.update(fields)
        self._set_notify_info(NotifyInfo.const(values).as_bits())

    # -- routing across load and put (vmx_vcpu_pi_load / put) ------------------------------
    def _pi_load(self, pcpu):
        """posted_intr.c vmx_vcpu_pi_load (6.0 = 6.19): runs whenever APICv is enabled and
        the LAPIC is in the kernel, IPIv or not and inhibited or not, so NDST and SN stay
        up to date."""
        if not (self.kvm.enable_apicv and self.lapic_in_kernel):
            return
        if self.pi_nv != POSTED_INTR_WAKEUP_VECTOR and self.cpu == pcpu:
            # Neither vector nor destination changes: just clear SN if preemption set it.
            if self.pi_sn:
                self._update_notify_info(sn=0)
                self._pi_after_clear_sn()
            return
        if self.pi_nv == POSTED_INTR_WAKEUP_VECTOR and self.cpu is not None:
            self.host.pcpus[self.cpu].wakeup_list.remove(self)
        self._update_notify_info(ndst=self.host.ndst(pcpu), sn=0, nv=POSTED_INTR_VECTOR)
        self._pi_after_clear_sn()

    def _pi_after_clear_sn(self):
        # Postings made while SN was set left PIR bits without ON: make them visible.
        if self.pir():
            self._update_notify_info(on=1)

    def _pi_put(self):
        """posted_intr.c vmx_vcpu_pi_put, only when a blocked vCPU can be the target of
        posted interrupts (vmx_needs_pi_wakeup: IPIv usable; no VT-d PI in the model).

        6.0: a vCPU blocking with interrupts enabled gets the wakeup handler; a preempted one
        gets SN (both, if preempted while blocking). 6.19: the wakeup handler only when
        blocking with interrupts enabled and not preempted; every other put sets SN."""
        if not self.can_use_pi_wakeup:
            return
        wakeup = self.blocking and not self.interrupts_blocked
        if self.kernel == "6.0":
            if wakeup:
                self._pi_enable_wakeup_handler()
            if self.preempted:
                self._update_notify_info(sn=1)
        elif wakeup and not self.preempted:
            self._pi_enable_wakeup_handler()
        else:
            self._update_notify_info(sn=1)

    def _pi_enable_wakeup_handler(self):
        """pi_enable_wakeup_handler: on this pCPU's wakeup list, NV = wakeup vector, and a
        self-IPI with it if ON was already set."""
        self.host.pcpus[self.cpu].wakeup_list.append(self)
        self._update_notify_info(nv=POSTED_INTR_WAKEUP_VECTOR)
        if self.pi_on:      # a posting raced with blocking: wake ourselves
            self.host.send_ipi(self.cpu, POSTED_INTR_WAKEUP_VECTOR)

    # -- posting and notification processing ------------------------------------------------
    def deliver_posted_interrupt(self, vector):
        """Software posting (vmx_deliver_posted_interrupt); returns True if a notification or
        wakeup was needed."""
        check_fits("vector", vector, field_width(ICRLow, "vector"))
        if not self.apicv_active:
            self.apic.accept_fixed(vector)
            self.kick()
            return True
        offset, bit = self.pi_desc + 8 * (vector // 64), 1 << (vector % 64)
        word = self.memory.read(offset)
        if word & bit:
            return False                       # already pending: coalesced
        self.memory.write(offset, word | bit)
        if self.pi_on:
            return False                       # a notification is already on its way
        self._update_notify_info(on=1)
        if self.in_guest:
            self.host.send_ipi(self.cpu, POSTED_INTR_VECTOR)
        else:
            self.wake_up()
        return True

    def posted_interrupt_processing(self):
        """What the CPU does when the notification vector arrives in guest mode."""
        self._update_notify_info(on=0)
        self._pir_to_irr(self._pir_take())
        self._sync_guest_intr_status()

    def _pir_to_irr(self, pir):
        for vector in range(256):
            if pir >> vector & 1:
                self.apic.accept_fixed(vector)

    def _sync_guest_intr_status(self):
        self.apic.deliverable()     # refreshes RVI from the IRR
        if self.apicv_active:
            self.vmcs.write16(F.GUEST_INTR_STATUS, self.apic.svi << 8 | self.apic.rvi)

    def kick(self):
        if self.blocking:
            self.wake_up()

"""Scheduling of the KVM model's vCPU: load and put on a pCPU, VM entry and exit, preemption,
HLT and wakeup, migration (``virt/kvm/kvm_main.c``, ``x86.c``; the posted-interrupt side of
load and put is `sim.kvm_posted_intr`).

`Scheduling` is a mixin of `sim.kvm_vcpu.VCPU`. The states a vCPU goes through: created (not
loaded), loaded on a pCPU, in guest mode, preempted (put by the host scheduler), blocked
(halted, put, waiting for an interrupt: ``asleep``).
"""


__all__ = ["Scheduling"]


class Scheduling:
    """vcpu_load / vcpu_put and the guest-mode transitions of a vCPU."""

    @property
    def state(self):
        """Where the vCPU is, in words: "in guest mode on pCPU 2", "blocked (halted)", ..."""
        if self.in_guest:
            return f"in guest mode on pCPU {self.cpu}"
        if self.loaded:
            return f"loaded on pCPU {self.cpu}, outside guest mode"
        if self.blocking:
            return "blocked (halted, waiting for an interrupt)"
        if self.preempted:
            return "preempted"
        return "not loaded"

    def _require_loaded(self, action):
        if not self.loaded:
            raise RuntimeError(f"vCPU {self.vcpu_id} is {self.state}: load it on a pCPU "
                               f"before it can {action}")

    def load(self, pcpu):
        """vcpu_load on pCPU ``pcpu`` (ValueError if the host has no such pCPU)."""
        target = self.host.pcpu(pcpu)
        if self.loaded:
            raise RuntimeError(f"vCPU {self.vcpu_id} is already loaded on pCPU {self.cpu}")
        if target.loaded is not None:
            raise RuntimeError(f"pCPU {pcpu} already runs vCPU {target.loaded.vcpu_id}")
        self._pi_load(pcpu)
        self.cpu, self.loaded, self.preempted = pcpu, True, False
        target.loaded = self

    def put(self):
        """vcpu_put (the vCPU leaves its pCPU, preempted or blocking or neither)."""
        self._require_loaded("leave it")
        if self.in_guest:
            self.exit_guest()
        pcpu = self.host.pcpus[self.cpu]
        pcpu.loaded = None
        self.loaded = False
        self._pi_put()

    def enter_guest(self):
        """VM entry: pick up postings made while outside the guest."""
        self._require_loaded("enter guest mode")
        if self.kvm.enable_apicv and self.pi_on:      # vmx_sync_pir_to_irr
            self._update_notify_info(on=0)
            self._pir_to_irr(self._pir_take())
        self.in_guest = True
        self._sync_guest_intr_status()

    def exit_guest(self, reason=None, qualification=0):
        self.in_guest = False
        if reason is not None:
            self.exits[(reason, qualification)] += 1
            self.vm.exits[(reason, qualification)] += 1

    def preempt(self):
        """The host scheduler takes the pCPU away."""
        self._require_loaded("be preempted")
        self.preempted = True
        self.put()

    def halt(self, *, interrupts_enabled=True):
        """Guest HLT: block unless something is pending. ``interrupts_enabled`` False is a
        HLT with RFLAGS.IF = 0 (vmx_interrupt_blocked): no wakeup handler at put. Returns
        True if the vCPU blocked, False if an interrupt was pending (it stays in the guest)."""
        if self.blocking:
            raise RuntimeError(f"vCPU {self.vcpu_id} is already blocked (it halted and no "
                               f"interrupt has woken it)")
        self._require_loaded("execute HLT")
        if self.in_guest:
            self.exit_guest()
        if self.has_pending_interrupt():
            self.enter_guest()          # kvm_vcpu_check_block: runnable, back to the guest
            return False
        self.blocking = True
        self.interrupts_blocked = not interrupts_enabled
        self.put()
        return True

    def has_pending_interrupt(self):
        return self.apic.deliverable() is not None or self.pi_on or \
            (self.pi_sn and self.pir() != 0)

    def wake_up(self):
        """kvm_vcpu_wake_up: a blocked vCPU becomes runnable (it is loaded later)."""
        self.blocking = False

    @property
    def asleep(self):
        return self.blocking and not self.loaded

    def migrate(self, pcpu):
        """Put the vCPU (if loaded) and load it on pCPU ``pcpu``."""
        self.host.pcpu(pcpu)                 # a bad pCPU is refused before anything moves
        if self.loaded:
            self.put()
        self.load(pcpu)

"""The exit handlers and IPI emulation of the KVM model's vCPU (``lapic.c``, ``x86.c``; 6.0
and 6.19 where they differ): the APIC-write VM exit at 300H the processor leaves for what it
does not virtualize, the WRMSR exit of an x2APIC ICR write while IPIv is not active (with
its fastpath), KVM's decoding and delivery of the IPI, and what an accepted IPI does to the
target vCPU (``__apic_accept_irq``).

`ExitHandlers` is a mixin of `sim.kvm_vcpu.VCPU`; `MSRWrite` is what `handle_wrmsr` returns.
"""

from hdl.formats import (
    APICRegister as R, APIC_WRITE_QUALIFICATION_ICR, DeliveryMode, DestMode,
    EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ICR_RESERVED_MASK, MSR_X2APIC_ICR, Shorthand,
    TriggerMode, WRMSR_QUALIFICATION, X2APIC_BROADCAST_ID,
)
from .lapic import APIC_ICR_BUSY, IPI


__all__ = ["ExitHandlers", "MSRWrite"]


class ExitHandlers:
    """What KVM does after an APIC-write or WRMSR exit, and on an IPI it delivers."""

    def handle_apic_write(self, qualification):
        """The APIC-write VM exit (reason 56, trap-like: the write is done), handled by
        lapic.c kvm_apic_write_nodecode. Returns the vCPUs that accepted the IPI.

        xAPIC (6.0 = 6.19): kvm_lapic_reg_write(ICR): busy cleared, the IPI sent with ICR2
        as destination, the 32-bit ICR written back.
        x2APIC, 6.0: the 64-bit vICR is sent as it is (low half, high half as destination);
        nothing is written back and the busy bit stays (kvm_apic_send_ipi ignores it).
        x2APIC, 6.19: kvm_x2apic_icr_write: busy cleared, sent, the 64-bit value written
        back (a value with reserved bits set is refused: nothing sent, KVM only warns).
        ``legacy_x2apic_icr_path``: the generic 32-bit path before the seed series' patch 4,
        which in x2APIC mode takes the destination from the never-written ICR2."""
        self.exit_guest(EXIT_REASON_APIC_WRITE, qualification)
        if qualification != APIC_WRITE_QUALIFICATION_ICR:
            raise ValueError(f"APIC-write exit for offset {qualification:#x} is not modelled")
        if self.apic.x2apic and not self.legacy_x2apic_icr_path:
            value = self.apic.read64(R.ICR)
            if self.kernel == "6.0":
                targets = self.send_ipi(value & 0xFFFF_FFFF, value >> 32)
            else:
                targets, _ = self.x2apic_icr_write(value)
        else:
            low = self.apic.read32(R.ICR) & ~APIC_ICR_BUSY
            targets = self.send_ipi(low, self.apic.read32(R.ICR2))
            self.apic.write32(R.ICR, low)
        if self.loaded:
            self.enter_guest()
        return targets

    def x2apic_icr_write(self, value, *, fast=False):
        """lapic.c kvm_x2apic_icr_write (6.19: __kvm_x2apic_icr_write): returns (accepting
        vCPUs, status) with status "ok", "gp" (6.19: a reserved bit set, the caller injects
        #GP) or "fallback" (6.19 fast mode: the fast APIC map cannot deliver it)."""
        if self.kernel == "6.19" and value & ICR_RESERVED_MASK:
            return [], "gp"
        value &= ~APIC_ICR_BUSY
        low, high = value & 0xFFFF_FFFF, value >> 32
        if fast:
            targets = self.vm.deliver_ipi(self, IPI.from_icr(low, high, x2apic=True),
                                          fast_only=True)
            if targets is None:
                return [], "fallback"
        else:
            targets = self.send_ipi(low, high)
        self.apic.write64(R.ICR, value)
        return targets, "ok"

    def handle_wrmsr(self, msr, value):
        """A WRMSR VM exit (basic reason 32, qualification 0) for x2APIC MSR ``msr``: what
        KVM does when the MSR bitmap intercepts WRMSR 0x830 (IPIv not active for the vCPU).
        Nothing was stored by the processor; KVM emulates the whole write. Returns an
        `MSRWrite`.

        6.0 (x86.c handle_fastpath_set_x2apic_icr_irqoff, then handle_wrmsr ->
        kvm_x2apic_msr_write): in x2APIC mode a fixed, physical, no-shorthand IPI to a
        destination other than 0xFFFFFFFF takes the fastpath right after the exit; anything
        else the full WRMSR path; both call kvm_x2apic_icr_write (busy cleared, IPI sent,
        64-bit value stored at 300H). No reserved-bit check: nothing raises #GP. A WRMSR to
        0x830 while the vCPU is not in x2APIC mode (or without an in-kernel LAPIC) is a #GP.
        6.19 (__handle_fastpath_wrmsr, kvm_x2apic_icr_write_fast): every ICR write tries the
        fastpath, which delivers only through the fast APIC map; reserved bits 31:20, 17:16
        and 13 make both paths fail with #GP; otherwise the full path as in 6.0."""
        if msr != MSR_X2APIC_ICR:
            raise ValueError(f"WRMSR exit for MSR {msr:#x} is not modelled")
        self.exit_guest(EXIT_REASON_WRMSR, WRMSR_QUALIFICATION)
        value &= (1 << 64) - 1
        result = self._emulate_wrmsr_icr(value)
        if result.gp:
            self.gp_injected += 1
        self.ipi_paths[result.path] += 1
        if self.loaded:
            self.enter_guest()
        return result

    def _emulate_wrmsr_icr(self, value):
        if not (self.lapic_in_kernel and self.apic.x2apic):
            return MSRWrite("full", True, [])
        low = value & 0xFFFF_FFFF
        if self.kernel == "6.0":
            f = IPI.from_icr(low, value >> 32, x2apic=True)
            fast = (f.shorthand is Shorthand.NONE and f.dest_mode is DestMode.PHYSICAL and
                    f.delivery_mode is DeliveryMode.FIXED and f.dest != X2APIC_BROADCAST_ID)
            targets, _ = self.x2apic_icr_write(value)
            return MSRWrite("fastpath" if fast else "full", False, targets)
        targets, status = self.x2apic_icr_write(value, fast=True)
        if status == "ok":
            return MSRWrite("fastpath", False, targets)
        targets, status = self.x2apic_icr_write(value)
        return MSRWrite("full", status == "gp", targets)

    def send_ipi(self, low, high):
        """lapic.c kvm_apic_send_ipi: decode (the busy bit is ignored) and deliver through
        kvm_irq_delivery_to_apic; returns the vCPUs that accepted the IPI."""
        return self.vm.deliver_ipi(self, IPI.from_icr(low, high, x2apic=self.apic.x2apic))

    def accept_irq(self, ipi):
        """lapic.c __apic_accept_irq (6.0 = 6.19): True if the interrupt was accepted.

        Lowest priority counts an arbitration point, then is fixed delivery: a level
        de-assert or a software-disabled APIC drops it; TMR follows the trigger (set for
        level, cleared for edge); any vector, also below 16, is delivered. Remote read sets
        KVM's PV "unhalted" flag and kicks; SMI, NMI, INIT (not a level de-assert) and SIPI
        become pending events; ExtINT and the reserved mode are not delivered."""
        mode = ipi.delivery_mode
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
            if mode is DeliveryMode.LOWEST_PRIORITY:
                self.apic_arb_prio += 1
            if ipi.trigger is TriggerMode.LEVEL and not ipi.level:
                return False
            if not self.apic.sw_enabled:
                return False
            level = ipi.trigger is TriggerMode.LEVEL
            if self.apic.test(R.TMR, ipi.vector) != level:
                (self.apic.set if level else self.apic.clear)(R.TMR, ipi.vector)
            self.deliver_posted_interrupt(ipi.vector)
            return True
        if mode is DeliveryMode.RESERVED_3:          # APIC_DM_REMRD
            self.pv_unhalted = True
            self.kick()
            return True
        if mode is DeliveryMode.NMI:
            self.nmi_pending += 1
            self.kick()
            return True
        if mode is DeliveryMode.SMI:
            self.smi_pending = True
            self.kick()
            return True
        if mode is DeliveryMode.INIT:
            if ipi.trigger is TriggerMode.EDGE or ipi.level:
                self.init_pending = True
                self.kick()
                return True
            return False
        if mode is DeliveryMode.STARTUP:
            self.sipi_vector = ipi.vector
            self.kick()
            return True
        return False                                 # ExtINT


class MSRWrite:
    """What KVM did with an intercepted WRMSR 0x830: ``path`` "fastpath" or "full", ``gp``
    (a #GP was injected instead), ``targets`` (the vCPUs that accepted the IPI)."""
    __slots__ = ("path", "gp", "targets")

    def __init__(self, path, gp, targets):
        self.path, self.gp, self.targets = path, gp, targets

    def __repr__(self):
        return f"MSRWrite(path={self.path!r}, gp={self.gp}, targets={self.targets!r})"

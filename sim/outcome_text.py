"""What happened to an IPI, in words a KVM developer reads: the target vCPU's state and what
the processor did (posted with a notification or a wakeup, posted silently, a self-IPI, a VM
exit and why, a #GP), from the golden model's `Result` and the vCPU states of the VM
(`sim.vm_layout.TARGET_STATES`; docs/architecture.md §4, §6).
"""

from hdl.formats import (
    EXIT_REASON_WRMSR, ExitCause, ICRWriteKind, POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR,
)
from .golden import Outcome


__all__ = ["STATE_WORDS", "CAUSE_WORDS", "describe_states", "describe_outcome"]

#: A target vCPU's state as the PID routes postings to it (`sim.vm_layout.TARGET_STATES`).
STATE_WORDS = {
    "running": f"running: notification {POSTED_INTR_VECTOR:#x}",
    "preempted": "preempted: SN set, no notification",
    "blocked": f"blocked in HLT: wakeup vector {POSTED_INTR_WAKEUP_VECTOR:#x}",
}

#: Why the processor left an ICR write to KVM (`hdl.formats.ExitCause`).
CAUSE_WORDS = {
    ExitCause.DISABLED: "IPIv is off",
    ExitCause.UNSUPPORTED: "not a fixed, physical, no-shorthand, edge IPI",
    ExitCause.ILLEGAL_VECTOR: "vector below 16",
    ExitCause.BROADCAST: "xAPIC broadcast destination 0xFF",
    ExitCause.INDEX_RANGE: "destination beyond the last PID-pointer index",
    ExitCause.ENTRY_INVALID: "the destination's PID-pointer entry is not valid (no vCPU)",
    ExitCause.BUS_ERROR: "a bus error",
}


def describe_states(states, *, sender=0):
    """``vCPU 0 sends to vCPU 1 (running: ...), 2 (preempted: ...)`` for a VM's ``states``
    (vCPU id -> "running" / "preempted" / "blocked")."""
    others = [f"{vcpu} ({STATE_WORDS[state]})" for vcpu, state in states.items()
              if vcpu != sender]
    return f"vCPU {sender} sends to vCPU " + ", ".join(others)


def _posted(result, states):
    target = result.dest
    state = states.get(target, "running")
    head = f"posted to {state} vCPU {target}: PIR bit set"
    if result.notify is not None:
        vector, pcpu = result.notify
        what = "wakeup vector" if vector == POSTED_INTR_WAKEUP_VECTOR else "notification"
        return f"{head}, ON set, {what} {vector:#x} sent to pCPU {pcpu}"
    if state == "preempted":
        return f"{head}, SN set: no notification (the vCPU sees it at its next VM entry)"
    return f"{head}, ON already set: no second notification (one is pending)"


def describe_outcome(kind, result, states):
    """One sentence for the ICR write of ``kind`` (`ICRWriteKind`) that ended in ``result``
    (`sim.golden.Result`), in a VM whose vCPUs are in ``states``; None for an xAPIC ICR2
    write, which only stores the destination for the ICR write that follows."""
    o = result.outcome
    prefix = "SENDUIPI, " if ICRWriteKind(kind) is ICRWriteKind.SENDUIPI else ""
    if o is Outcome.STORED:
        return None
    if o is Outcome.POSTED:
        text = _posted(result, states)
    elif o is Outcome.SELF_IPI:
        text = "self-IPI: virtual IRR bit set, no VM exit"
    elif o is Outcome.GP:
        text = "#GP: reserved bits set in the x2APIC ICR, nothing stored"
    elif result.reason == EXIT_REASON_WRMSR:
        text = "WRMSR exit (IPIv off, KVM intercepts the x2APIC ICR): KVM emulates it"
    else:
        text = f"APIC-write exit, {CAUSE_WORDS[result.cause]}: KVM emulates it"
    return prefix + text

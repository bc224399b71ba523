"""Replay on trace excerpts that kernel developers posted publicly, in the forms they posted
them (short excerpts, kept as the facts they are; the source of each is given). For each: the
records recognized, the IPIs, how many IPIv would virtualize, the PV send-IPI hypercalls and
the lines that are no record."""

import pytest

from sim.replay import classify, parse_lines
from sim.trace_parse import iter_lines


# Manali Shukla, "Re: [PATCH v3 0/5] Add support for the Idle HLT intercept feature",
# kvm@vger.kernel.org, 2024-06-04, <009cbe00-dfc3-4a94-b6ab-9d6ec9605473@amd.com>.
# Task column cut off (TIMESTAMP: EVENT: BODY), an AMD host (SVM exit names "vintr", "msr"),
# an x2APIC self-IPI: kvm_apic_ipi, kvm_apic APIC_ICR (64 bits) and kvm_msr 830 for one write.
IDLE_HLT = """\
With idle halt enabled
 220.696238: kvm_apic_ipi: dst b0 vec 176 (Fixed|physical|assert|edge|self)
 220.696238: kvm_apic_accept_irq: apicid 0 vec 176 (Fixed|edge)
 220.696238: kvm_apic: apic_write APIC_ICR = 0xb0000440b0
 220.696238: kvm_msr: msr_write 830 = 0xb0000440b0
 220.696238: kvm_entry: vcpu 0, rip 0x406a89
 220.696239: kvm_exit: vcpu 0 reason vintr rip 0x4004ae info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 220.696239: kvm_inj_virq: IRQ 0xb0
 220.696240: kvm_entry: vcpu 0, rip 0x4004ae
 220.696240: kvm_exit: vcpu 0 reason msr rip 0x406a74 info1 0x0000000000000001 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 220.696240: kvm_apic: apic_write APIC_EOI = 0x0
 220.696240: kvm_eoi: apicid 0 vector 176


Without idle halt enabled
 6204.951631: kvm_apic_ipi: dst b0 vec 176 (Fixed|physical|assert|edge|self)
 6204.951631: kvm_apic_accept_irq: apicid 0 vec 176 (Fixed|edge)
 6204.951631: kvm_apic: apic_write APIC_ICR = 0xb0000440b0
 6204.951631: kvm_msr: msr_write 830 = 0xb0000440b0
 6204.951631: kvm_entry: vcpu 0, rip 0x406a89
 6204.951632: kvm_exit: vcpu 0 reason hlt rip 0x4004ad info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 6204.951632: kvm_entry: vcpu 0, rip 0x4004ae
 6204.951632: kvm_exit: vcpu 0 reason vintr rip 0x4004ae info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 6204.951632: kvm_inj_virq: IRQ 0xb0
 6204.951632: kvm_entry: vcpu 0, rip 0x4004ae
 6204.951633: kvm_exit: vcpu 0 reason msr rip 0x406a74 info1 0x0000000000000001 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 6204.951633: kvm_apic: apic_write APIC_EOI = 0x0
 6204.951633: kvm_eoi: apicid 0 vector 176

From the traces, it is seen that hlt exit is avoided while the idle halt intercept feature is enabled.
"""

# Andrei Vagin, "[PATCH] selftests/kvm/x86_64: set rax before vmcall", kvm@vger.kernel.org,
# 2022-06-28, <20220628193011.55403-1-avagin@gmail.com>. COMM-PID: EVENT: BODY; one
# KVM_HC_SEND_IPI (nr 0xa) among other hypercalls.
PV_TEST = """\
Trace events show that kvm_pv_test doesn't work properly:
     kvm_pv_test-53132: kvm_hypercall: nr 0x0 a0 0x0 a1 0x0 a2 0x0 a3 0x0
     kvm_pv_test-53132: kvm_hypercall: nr 0x0 a0 0x0 a1 0x0 a2 0x0 a3 0x0
     kvm_pv_test-53132: kvm_hypercall: nr 0x0 a0 0x0 a1 0x0 a2 0x0 a3 0x0

With this change, it starts working as expected:
     kvm_pv_test-54285: kvm_hypercall: nr 0x5 a0 0x0 a1 0x0 a2 0x0 a3 0x0
     kvm_pv_test-54285: kvm_hypercall: nr 0xa a0 0x0 a1 0x0 a2 0x0 a3 0x0
     kvm_pv_test-54285: kvm_hypercall: nr 0xb a0 0x0 a1 0x0 a2 0x0 a3 0x0
"""

# Mathias Krause, "Re: [PATCH v4 6/6] KVM: VMX: Make CR0.WP a guest owned bit",
# linux-kernel@vger.kernel.org, 2023-03-30, <ea3a8fbc-2bf8-7442-e498-3e5818384c83@grsecurity.net>.
# Raw ftrace (/sys/kernel/debug/tracing/trace), 5-column flags, prose between records;
# external interrupts and MSR writes, no IPI.
CR0_WP = """\
 qemu-system-x86-8397    [002] d....  1404.389366: kvm_exit: vcpu 1 reason CR_ACCESS rip 0xffffffff8100007a info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 qemu-system-x86-8397    [002] .....  1404.389373: kvm_cr: cr_write 0 = 0x80050033

That's the initialization of L2's CR0 in secondary_startup_64() and
also the last CR0 write we'll see.

 qemu-system-x86-8396    [001] d....  1404.389421: kvm_exit: vcpu 0 reason EXTERNAL_INTERRUPT rip 0xffffffff8108aca7 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x800000fb error_code 0x00000000
 qemu-system-x86-8396    [001] d....  1404.389435: kvm_entry: vcpu 0, rip 0xffffffff8108aca7
 qemu-system-x86-8397    [002] d....  1404.389509: kvm_exit: vcpu 1 reason MSR_READ rip 0xffffffff81000130 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 qemu-system-x86-8397    [002] .....  1404.389509: kvm_msr: msr_read c0000080 = 0xd01
 qemu-system-x86-8397    [002] d....  1404.389510: kvm_entry: vcpu 1, rip 0xffffffff81000132
 qemu-system-x86-8397    [002] d....  1404.389517: kvm_exit: vcpu 1 reason MSR_WRITE rip 0xffffffff81000149 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 qemu-system-x86-8397    [002] .....  1404.389519: kvm_msr: msr_write c0000080 = 0xd01

That was the EFER setup...

 qemu-system-x86-8397    [002] .....  1404.389656: kvm_mmu_pagetable_walk: addr ffffffff810551b8 pferr 10 F
 qemu-system-x86-8397    [002] .....  1404.389664: kvm_emulate_insn: 0:ffffffff810551b8:0f 00 d8 (prot64)
"""

# A blog post on MSR virtualization (a public GitHub notes repository, in Chinese), perf
# script of kvm:kvm_msr: comm with a space, event with its system. One x2APIC ICR write
# (vector 0xfd to APIC ID 2) among TSC-deadline writes.
PERF_MSR = """\
       CPU 0/KVM 1821753 [015] 4831258.258053: kvm:kvm_msr: msr_write 6e0 = 0x10e8aebe830c9e
       CPU 0/KVM 1821753 [015] 4831258.258056: kvm:kvm_msr: msr_write 6e0 = 0x10e8aebd0b2770
       CPU 0/KVM 1821753 [015] 4831258.258093: kvm:kvm_msr: msr_write 830 = 0x2000000fd
       CPU 2/KVM 1821755 [032] 4831258.258124: kvm:kvm_msr: msr_write 6e0 = 0x10e8aebd0b2832
       CPU 0/KVM 1821753 [015] 4831258.258140: kvm:kvm_msr: msr_write 6e0 = 0x10e8aebcf03f42
       CPU 0/KVM 1821753 [015] 4831258.258148: kvm:kvm_msr: msr_read 3b = 0x0
       CPU 2/KVM 1821755 [032] 4831258.258152: kvm:kvm_msr: msr_write 6e0 = 0x10e8aed7f0858e
       CPU 0/KVM 1821753 [015] 4831258.258218: kvm:kvm_msr: msr_write 6e0 = 0x10e8aebe82e1c8
"""

# The same blog, perf script of the interrupt-injection events: right-aligned event names,
# a kworker comm with a slash and a dash, IOAPIC / PIC / LAPIC accept events (no IPI).
PERF_IRQ = """\
[root@shyi-centos8-1 rustvmm]# perf script
 dbs_load_kernel 426566 [004] 108229.766087: kvm:kvm_apic_accept_irq: apicid 0 vec 236 (Fixed|edge)
 dbs_load_kernel 426566 [003] 108229.798142: kvm:kvm_apic_accept_irq: apicid 0 vec 236 (Fixed|edge)
 kworker/5:2-eve 429543 [005] 108229.924107:         kvm:kvm_set_irq: gsi 4 level 1 source 0
 kworker/5:2-eve 429543 [005] 108229.924116:  kvm:kvm_ioapic_set_irq: pin 4 dst 0 vec 0 (Fixed|physical|edge|masked)
 kworker/5:2-eve 429543 [005] 108229.924118:     kvm:kvm_pic_set_irq: chip 0 pin 4 (edge)
"""

# Sean Christopherson, "VMX Preemption Timer appears to be buggy on SKX, CLX, and ICX",
# kvm@vger.kernel.org, 2024-06-28, <Zn9X0yFxZi_Mrlnt@google.com>. Raw ftrace with a truncated
# comm ending in '_', trailing spaces, a kvm_hypercall whose nr is no hypercall number (a
# piggybacked debug tracepoint), and a printk line "kvm_intel: ..." that is no record.
PREEMPTION_TIMER = """\
 apic_bus_clock_-11419   [056] d..2.   146.771179: kvm_hypercall: nr 0x2c8a9e9cc6703c a0 0x2c8b0e9ce46c37 a1 0xe0003bf7 a2 0xe0003bf7 a3 0x7  
 apic_bus_clock_-11419   [056] d..2.   146.771242: kvm_exit: vcpu 0 reason PREEMPTION_TIMER rip 0x402065 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000
 VMX timer exit, VMCS = e0003bf7, delta = e0003690

and the post-exit print with the attached patch:

  kvm_intel: VMX timer exit, EXIT_REASON = 34, VMCS = 0, delta = e00037e9
"""

# Bill Sherwood, "Windows guests become unresponsive and display black screen in VNC",
# kvm@vger.kernel.org, 2021-09-15, <CA+Pe=gchWL+f1xuVCDgJADoTn6gtG58UUKyyRrjc+JrpgjovgQ@mail.gmail.com>.
# trace_pipe with 4-column flags and <...> for the comm, records wrapped by the mail client
# (the event, or the end of the body, on the next line).
TRACE_PIPE_WRAPPED = """\
 cat /sys/kernel/debug/tracing/trace_pipe | grep -i <pid>

.....

 <...>-3441924 [004] .... 1907374.582975: kvm_set_irq: gsi 0 level 1 source 0
           <...>-3441924 [004] .... 1907374.582977: kvm_pic_set_irq:
chip 0 pin 0 (edge|masked)
           <...>-3441924 [004] .... 1907374.582979:
kvm_apic_accept_irq: apicid 0 vec 209 (Fixed|edge)
           <...>-3441924 [004] .... 1907374.582981:
kvm_ioapic_set_irq: pin 2 dst 1 vec 209 (Fixed|logical|edge)
           <...>-3441924 [004] .... 1907374.582983: kvm_set_irq: gsi 0
level 0 source 0
"""

# Vitaly Kuznetsov, "[PATCH 2/3] KVM: selftests: Fix wrmsr_safe()", kvm@vger.kernel.org,
# 2022-07-13, <20220713150532.1012466-3-vkuznets@redhat.com>. EVENT: BODY alone, padded as
# trace-cmd pads event names; the older kvm_exit format (no vCPU, "info A B"); a WRMSR that
# faulted.
WRMSR_SAFE = """\
While writing a new test, I've noticed that wrmsr_safe() tries putting
garbage to the upper bits of the MSR, e.g.:

  kvm_exit:             reason MSR_WRITE rip 0x402919 info 0 0
  kvm_msr:              msr_write 40000118 = 0x60000000001 (#GP)
...
"""

EXCERPTS = {
    # name: (text, records, IPIs, virtualizable, PV send-IPI, unknown lines)
    "idle-hlt (timestamp form, x2APIC self-IPI)": (IDLE_HLT, 24, 2, 0, 0, 3),
    "pv-test (COMM-PID form, hypercalls)": (PV_TEST, 6, 0, 0, 1, 2),
    "cr0-wp (raw ftrace, prose)": (CR0_WP, 11, 0, 0, 0, 3),
    "perf-msr (perf script, one ICR write)": (PERF_MSR, 8, 1, 1, 0, 0),
    "perf-irq (perf script, right-aligned events)": (PERF_IRQ, 5, 0, 0, 0, 1),
    "preemption-timer (raw ftrace, printk)": (PREEMPTION_TIMER, 2, 0, 0, 0, 3),
    "trace-pipe (wrapped by mail)": (TRACE_PIPE_WRAPPED, 5, 0, 0, 0, 3),
    "wrmsr-safe (EVENT: BODY, old kvm_exit)": (WRMSR_SAFE, 2, 0, 0, 0, 3),
}


@pytest.mark.parametrize("name", sorted(EXCERPTS))
def test_real_excerpt(name):
    text, records, ipis, virtualizable, pv, unknown = EXCERPTS[name]
    parsed = parse_lines(text.splitlines())
    assert not parsed.errors
    assert (parsed.records, len(parsed.ipis), parsed.pv_send_ipi, parsed.unknown_lines) == \
        (records, ipis, pv, unknown)
    classified, _ = classify(parsed)
    assert sum(c.virtualized for c in classified) == virtualizable


def test_idle_hlt_is_two_self_ipis_each_described_three_times():
    parsed = parse_lines(IDLE_HLT.splitlines())
    for ipi in parsed.ipis:
        assert ipi.sources == ("kvm_apic_ipi", "kvm_apic", "kvm_msr")
        assert (ipi.mode, ipi.dest, ipi.icr_low, ipi.sender) == ("x2APIC", 0xB0, 0x440B0, 0)
        assert ipi.sender_known                      # from the kvm_entry that follows
    classified, vcpus = classify(parsed)
    assert [c.label for c in classified] == ["exit (UNSUPPORTED)"] * 2
    assert vcpus == 1          # a self-IPI names no other vCPU; dst b0 is not a destination


def test_perf_msr_ipi_goes_to_vcpu_2_of_a_3_vcpu_vm():
    parsed = parse_lines(PERF_MSR.splitlines())
    (ipi,) = parsed.ipis
    assert (ipi.sender, ipi.dest, ipi.icr_low, ipi.mode) == (0, 2, 0xFD, "x2APIC")
    classified, vcpus = classify(parsed)
    assert vcpus == 3 and classified[0].label == "posted"
    assert parsed.other_events["kvm_msr (not an ICR write)"] == 7


def test_wrapped_records_are_joined():
    lines = list(iter_lines(TRACE_PIPE_WRAPPED.splitlines()))
    joined = [(l.number, l.record.event) for l in lines if l.lines == 2]
    assert joined == [(6, "kvm_pic_set_irq"), (8, "kvm_apic_accept_irq"),
                      (10, "kvm_ioapic_set_irq")]
    # A body cut in the middle cannot be told from a whole one: its rest is an unknown line.
    assert [l.number for l in lines if l.kind == "unknown"] == [1, 3, 13]
    assert sum(l.lines for l in lines) == len(TRACE_PIPE_WRAPPED.splitlines())


def test_mail_archive_spaces_and_quoting():
    """The same excerpt as a mail archive shows it: no-break spaces, a quoted reply."""
    mangled = ["> " + line.replace(" ", "\u00a0") for line in IDLE_HLT.splitlines()]
    parsed = parse_lines(mangled)
    reference = parse_lines(IDLE_HLT.splitlines())
    assert (parsed.records, len(parsed.ipis), parsed.unknown_lines) == \
        (reference.records, len(reference.ipis), reference.unknown_lines)
    assert [i.icr_low for i in parsed.ipis] == [i.icr_low for i in reference.ipis]

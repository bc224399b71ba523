"""A VM whose vCPUs run, halt, get preempted and migrate while they send each other IPIs.

The processor side of every ICR write is a *poster* (default: the golden model; the
verification issue plugs the gateware in), the rest is the KVM model: notifications reach the
host, APIC-write exits go to the exit handler, which emulates the IPI. After every step the
invariants of ``docs/architecture.md`` §6 are checked, and `IPIWorld.drain` lets every vCPU run until all
it was sent has been taken, so "no interrupt lost" is checked at the end.
"""

import inspect
import random
from collections import Counter
from dataclasses import dataclass

from hdl.formats import (
    APIC_WRITE_QUALIFICATION_ICR, APICRegister as R, DeliveryMode, DestMode,
    EXIT_REASON_APIC_WRITE, EXIT_REASON_WRMSR, ExitCause, ICRWriteKind, MSR_X2APIC_ICR,
    POSTED_INTR_WAKEUP_VECTOR, Shorthand, X2APICICR, XAPICICRHigh,
)
from .golden import GoldenIPIVirtualizer, Outcome
from .kvm import KVM
from .scenarios import icr_low


__all__ = ["InvariantError", "IPIWorld", "PostRequest", "golden_poster"]


class InvariantError(AssertionError):
    """One of docs/architecture.md §6's invariants does not hold."""


#: Steps within which a posting that set ON must have been delivered: 0, i.e. by the end of
#: the step that made it. The model handles a notification when it arrives (posted-interrupt
#: processing on the target's pCPU, or the wakeup handler), and the processor side hands the
#: world every notification before the step ends, so an ON transition for a vCPU in guest mode
#: has moved its vector out of the PIR, and a blocked target is awake, when the step ends; a
#: lost notification leaves the vector in the PIR until the target's next VM entry (a hang for
#: a busy-idle guest). The gateware's own side is bounded in cycles (`tb.checker`).
DELIVERY_BOUND_STEPS = 0


@dataclass(frozen=True)
class PostRequest:
    """One guest ICR write for the processor side: ``sender`` (a VCPU; its pCPU is
    ``sender.cpu``) with VMCS state ``cfg`` writes ``value`` (an `ICRWriteKind` ``kind``)."""
    sender: object
    cfg: object
    kind: ICRWriteKind
    value: int


def golden_poster(maxphyaddr=52):
    golden = GoldenIPIVirtualizer(maxphyaddr)
    return lambda cfg, memory, kind, value: golden.execute(cfg, memory, kind, value)


class IPIWorld:
    """Randomized scheduling and IPI traffic on one VM.

    Parameters
    ----------
    n_vcpus, n_pcpus : int
    seed : int
    x2apic : bool or None
        The guest APIC mode of every vCPU (None: each vCPU picks at random).
    poster : callable
        ``poster(cfg, memory, kind, value) -> sim.golden.Result``, applied to the shared memory.
    kernel : str
        The KVM model's release (``"6.0"`` or ``"6.19"``), when ``kvm`` is not given.

    Exits: an x2APIC ICR write while IPIv is not active is a WRMSR exit that KVM emulates
    (`sim.kvm.VCPU.handle_wrmsr`; counted as ``wrmsr:fastpath`` / ``wrmsr:full``); every other
    exit is an APIC-write exit (`sim.kvm.VCPU.handle_apic_write`).
    """

    OPS = {"ipi": 30, "special_ipi": 6, "device": 6, "schedule": 14, "take": 18, "halt": 6,
           "halt_race": 3, "preempt": 6, "exit_entry": 5, "inhibit": 1}

    def __init__(self, *, n_vcpus=4, n_pcpus=3, seed=0, x2apic=None, poster=None,
                 host_x2apic=True, kvm=None, kernel="6.0"):
        self.rng = random.Random(seed)
        self.kvm = kvm or KVM(n_pcpus=n_pcpus, host_x2apic=host_x2apic, kernel=kernel)
        self.vm = self.kvm.create_vm()
        self.vm.enable_cap_max_vcpu_id(max(8, n_vcpus))
        self.vcpus = []
        for i in range(n_vcpus):
            vcpu = self.vm.create_vcpu(i)
            mode = self.rng.random() < 0.5 if x2apic is None else x2apic
            vcpu.set_x2apic_mode(mode)
            if not mode:
                vcpu.guest_write_ldr((1 << i) << 24 if i < 8 else 0)
            self.vcpus.append(vcpu)
        self.poster = poster or golden_poster()
        self.outstanding = {v.vcpu_id: Counter() for v in self.vcpus}
        self.stats = Counter()
        self.steps = 0
        self.deliveries = []        # [vcpu, vector, step, state at posting] of ON transitions
        self.delivery_steps = []    # steps from each such posting to its delivery

    # -- helpers -------------------------------------------------------------------------
    @property
    def memory(self):
        return self.kvm.memory

    def running(self):
        return [v for v in self.vcpus if v.in_guest]

    def free_pcpus(self):
        return [p.index for p in self.kvm.host.pcpus if p.loaded is None]

    def _expect(self, vcpu, vector):
        self.outstanding[vcpu.vcpu_id][vector] += 1

    def _icr_writes(self, sender, low, dest):
        if sender.apic.x2apic:
            return [(ICRWriteKind.X2APIC_ICR, X2APICICR.const({"dest": dest}).as_bits() | low)]
        return [(ICRWriteKind.XAPIC_ICR_HI, XAPICICRHigh.const({"dest": dest & 0xFF}).as_bits()),
                (ICRWriteKind.XAPIC_ICR_LO, low)]

    def guest_icr_write(self, sender, low, dest):
        """The sender's ICR write(s), virtualized by the poster or ending in an exit.

        A generator: it yields `PostRequest`s and is sent back their `Result`s, so the same
        operation runs with a plain poster (`step`) or an asynchronous one (`astep`, e.g. the
        gateware in a cocotb simulation).
        """
        target = next((v for v in self.vcpus if v.vcpu_id == dest), None)
        for kind, value in self._icr_writes(sender, low, dest):
            on_before = target is not None and target.pi_on
            result = yield PostRequest(sender, sender.unit_config(), kind, value)
            if target is not None and not on_before and result.outcome is Outcome.POSTED \
                    and target.pi_on and (target.in_guest or target.asleep):
                # this posting set ON (seen in memory, whatever the result says): it must be
                # delivered within DELIVERY_BOUND_STEPS
                self.deliveries.append([target, result.vector, self.steps,
                                        "guest" if target.in_guest else "blocked"])
            if kind is not ICRWriteKind.XAPIC_ICR_HI:
                self.stats[f"outcome:{result.outcome.value}"] += 1
            if result.outcome is Outcome.POSTED:
                if result.notify:
                    self.stats["notifications"] += 1
                    self.kvm.host.send_ipi(*self._pcpu_of(result.notify))
                else:
                    self.stats["suppressed"] += 1
            elif result.outcome is Outcome.EXIT:
                self.stats[f"exit:{result.cause.name}"] += 1
                if self.exit_reason(kind, result) == EXIT_REASON_WRMSR:
                    # The x2APIC intercept: KVM emulates the whole WRMSR (fastpath or full).
                    handled = sender.handle_wrmsr(MSR_X2APIC_ICR, value)
                    self.stats[f"wrmsr:{handled.path}"] += 1
                    if handled.gp:
                        raise InvariantError(f"KVM injected #GP for ICR {value:#x}")
                else:
                    sender.handle_apic_write(APIC_WRITE_QUALIFICATION_ICR)
            elif result.outcome is Outcome.GP:
                raise InvariantError(f"unexpected #GP for ICR {value:#x}")
        return result

    @staticmethod
    def exit_reason(kind, result):
        """The basic exit reason of an exit `Result`, by the rule of ``docs/interface.md``: an
        x2APIC ICR write with IPIv off (cause DISABLED) is a WRMSR exit (32); otherwise the
        ``reason`` the processor side reports, if any, else an APIC-write exit (56)."""
        if kind is ICRWriteKind.X2APIC_ICR and result.cause is ExitCause.DISABLED:
            return EXIT_REASON_WRMSR
        reason = getattr(result, "reason", None)
        return EXIT_REASON_APIC_WRITE if reason is None else int(reason)

    def _pcpu_of(self, notify):
        vector, dest = notify
        return dest, vector

    # -- operations ----------------------------------------------------------------------
    def op_ipi(self):
        senders = self.running()
        if not senders:
            return
        sender, target = self.rng.choice(senders), self.rng.choice(self.vcpus)
        vector = self.rng.randrange(0x20, 0xF0)
        self._expect(target, vector)
        yield from self.guest_icr_write(sender, icr_low(vector), target.vcpu_id)

    def op_special_ipi(self):
        """IPIs IPIv leaves to KVM: logical, shorthands, NMI, INIT."""
        senders = self.running()
        if not senders:
            return
        sender = self.rng.choice(senders)
        kind = self.rng.choice(["logical", "all-but-self", "all", "nmi", "init"])
        vector = self.rng.randrange(0x20, 0xF0)
        if kind == "logical":
            target = self.rng.choice(self.vcpus)
            if target.apic.x2apic != sender.apic.x2apic or target.vcpu_id >= 8:
                return
            dest = target.apic.ldr if sender.apic.x2apic else target.apic.ldr >> 24
            self._expect(target, vector)
            yield from self.guest_icr_write(sender, icr_low(vector, dest_mode=DestMode.LOGICAL), dest)
        elif kind in ("all-but-self", "all"):
            shorthand = Shorthand.ALL_EXCLUDING_SELF if kind == "all-but-self" \
                else Shorthand.ALL_INCLUDING_SELF
            for v in self.vcpus:
                if v is not sender or kind == "all":
                    self._expect(v, vector)
            yield from self.guest_icr_write(sender, icr_low(vector, shorthand=shorthand), 0)
        else:
            mode = DeliveryMode.NMI if kind == "nmi" else DeliveryMode.INIT
            target = self.rng.choice(self.vcpus)
            before = (target.nmi_pending, target.init_pending)
            yield from self.guest_icr_write(sender, icr_low(0 if kind == "init" else 2, mode=mode),
                                 target.vcpu_id)
            after = (target.nmi_pending, target.init_pending)
            if after == before and not (kind == "init" and before[1]):
                raise InvariantError(f"{kind} to vCPU {target.vcpu_id} was not delivered")
            target.nmi_pending, target.init_pending = 0, False    # the guest handles it
            self.stats[kind] += 1

    def op_device(self):
        """A device interrupt posted by KVM (software posting)."""
        target = self.rng.choice(self.vcpus)
        vector = self.rng.randrange(0x20, 0xF0)
        self._expect(target, vector)
        target.deliver_posted_interrupt(vector)
        self.stats["device"] += 1

    def op_schedule(self):
        free = self.free_pcpus()
        ready = [v for v in self.vcpus if not v.loaded and not v.blocking]
        if free and ready:
            vcpu, pcpu = self.rng.choice(ready), self.rng.choice(free)
            self.stats["migrations"] += vcpu.cpu is not None and vcpu.cpu != pcpu
            vcpu.load(pcpu)
            vcpu.enter_guest()

    def op_take(self):
        for vcpu in self.running():
            vector = vcpu.take_interrupt()
            if vector is not None:
                if not self.outstanding[vcpu.vcpu_id][vector]:
                    raise InvariantError(f"vCPU {vcpu.vcpu_id} took vector {vector:#x} "
                                         f"nobody sent")
                # Several sends of a pending vector coalesce into one interrupt.
                self.stats["coalesced"] += self.outstanding[vcpu.vcpu_id][vector] - 1
                del self.outstanding[vcpu.vcpu_id][vector]
                vcpu.eoi()
                self.stats["taken"] += 1

    def op_halt(self):
        running = self.running()
        if running:
            self.stats["halts"] += self.rng.choice(running).halt()

    def op_halt_race(self):
        """A vCPU decides to block (nothing pending), and before it has scheduled out another
        vCPU's virtualized IPI posts to it: the notification finds it outside the guest, so
        only the self-IPI at put time can wake it."""
        running = self.running()
        if len(running) < 2:
            return
        blocker, sender = self.rng.sample(running, 2)
        blocker.exit_guest()
        if blocker.has_pending_interrupt():
            blocker.enter_guest()
            return
        blocker.blocking = True
        vector = self.rng.randrange(0x20, 0xF0)
        self._expect(blocker, vector)
        yield from self.guest_icr_write(sender, icr_low(vector), blocker.vcpu_id)
        blocker.put()
        self.stats["halt_races"] += 1

    def op_preempt(self):
        running = self.running()
        if running:
            self.rng.choice(running).preempt()
            self.stats["preemptions"] += 1

    def op_exit_entry(self):
        running = self.running()
        if running:
            vcpu = self.rng.choice(running)
            vcpu.exit_guest()
            vcpu.enter_guest()

    def op_inhibit(self):
        """Inhibit APICv on one vCPU, or lift the inhibit (IPIv goes off with APICv)."""
        inhibited = [v for v in self.vcpus if v.apicv_inhibits]
        if inhibited:
            inhibited[0].set_apicv_inhibit("MODEL_TOGGLE", False)
        else:
            self.rng.choice(self.vcpus).set_apicv_inhibit("MODEL_TOGGLE")
            self.stats["apicv_inhibits"] += 1

    # -- running --------------------------------------------------------------------------
    def _choose(self):
        names, weights = zip(*self.OPS.items())
        return getattr(self, f"op_{self.rng.choices(names, weights)[0]}")()

    def step(self):
        """One random operation, ICR writes virtualized by ``poster``."""
        ops = self._choose()
        if inspect.isgenerator(ops):
            try:
                request = next(ops)
                while True:
                    request = ops.send(self.poster(request.cfg, self.memory, request.kind,
                                                   request.value))
            except StopIteration:
                pass
        self.check()
        self.end_step()

    async def astep(self, aposter):
        """`step` with an asynchronous poster: ``await aposter(request) -> Result``."""
        ops = self._choose()
        if inspect.isgenerator(ops):
            try:
                request = next(ops)
                while True:
                    request = ops.send(await aposter(request))
            except StopIteration:
                pass
        self.check()
        self.end_step()

    def end_step(self):
        """Timely delivery: every ON transition for a vCPU in guest mode has its vector out
        of the PIR, and every blocked target is awake, within `DELIVERY_BOUND_STEPS`."""
        waiting = []
        for entry in self.deliveries:
            vcpu, vector, step, state = entry
            if state == "guest":
                done = not vcpu.pir() >> vector & 1
            else:
                done = not vcpu.asleep
            if done:
                self.delivery_steps.append(self.steps - step)
                self.stats[f"delivered:{state}"] += 1
            elif self.steps - step >= DELIVERY_BOUND_STEPS:
                what = "the vector is still in its PIR while it runs in guest mode" \
                    if state == "guest" else "the vCPU is still asleep"
                raise InvariantError(
                    f"a posting at step {step} set ON for vCPU {vcpu.vcpu_id} (vector "
                    f"{vector:#x}), and at the end of step {self.steps} {what}: "
                    f"not delivered within {DELIVERY_BOUND_STEPS} steps (a lost "
                    f"notification)")
            else:
                waiting.append(entry)
        self.deliveries = waiting
        self.steps += 1

    def run(self, steps):
        for _ in range(steps):
            self.step()
        return self

    def check(self):
        for v in self.vcpus:
            if v.in_guest and v.pi_sn:
                raise InvariantError(f"vCPU {v.vcpu_id} runs with SN set")
            if v.asleep and v.pi_on:
                raise InvariantError(f"vCPU {v.vcpu_id} sleeps with ON set")
            if v.asleep and v.can_use_pi_wakeup and (
                    v.pi_nv != POSTED_INTR_WAKEUP_VECTOR or
                    v not in self.kvm.host.pcpus[v.cpu].wakeup_list):
                raise InvariantError(f"vCPU {v.vcpu_id} sleeps without the wakeup vector")
            pir, irr = v.pir(), v.apic.vectors(R.IRR)
            for vector, count in self.outstanding[v.vcpu_id].items():
                if count and not (pir >> vector & 1 or vector in irr):
                    raise InvariantError(f"vector {vector:#x} for vCPU {v.vcpu_id} is lost: "
                                         f"neither in its PIR nor in its IRR")

    def drain(self, max_rounds=1000):
        """Let every vCPU run until it has taken everything sent to it."""
        for _ in range(max_rounds):
            if not any(self.outstanding[v.vcpu_id] for v in self.vcpus):
                return self
            for v in self.vcpus:
                if v.in_guest and not self.outstanding[v.vcpu_id]:
                    v.preempt()             # make room for the others
            for v in self.vcpus:
                if v.asleep and self.outstanding[v.vcpu_id]:
                    if not v.pi_on and not v.apic.deliverable():
                        raise InvariantError(f"vCPU {v.vcpu_id} sleeps with pending "
                                             f"interrupts and no way to be woken")
                    v.wake_up()
            self.op_schedule()
            self.op_take()
            self.check()
        left = {v.vcpu_id: dict(self.outstanding[v.vcpu_id]) for v in self.vcpus
                if self.outstanding[v.vcpu_id]}
        raise InvariantError(f"interrupts never taken: {left}")

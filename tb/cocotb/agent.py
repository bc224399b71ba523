"""A software agent sharing the PIDs with the gateware, and the bookkeeping that proves no PIR
bit is lost (contention test; plain Python, scheduled by `tb.testbench`).

The agent plays the CPUs and KVM around the unit: posted-interrupt processing on the target
side (clear ON, then read-and-clear each PIR word), software posting (set a PIR bit, then
test-and-set ON) and SN changes (preemption and load; after clearing SN, ON is set if the PIR
holds something). Each of its read-modify-writes is one locked operation: it owns the memory
for a few cycles, and the memory model lets it start only outside the gateware's locked
sequences.

Model of the PIDs: for every PIR and NotifyInfo word, the value it must hold, updated by the
agent's operations and by what each gateware write *meant* to change (its written data minus
what that core read before). Every access, the gateware's or the agent's, checks the word
against the model, so a read-modify-write that was split (no ``lock``) shows up as lost or
resurrected bits at once. At the end, every vector posted (by the gateware, per the golden
model's results, or by the agent) must have been taken, and each PID must have had exactly as
many notifications from the gateware as the gateware made ON transitions.
"""

from collections import Counter, deque

from hdl.formats import NotifyInfo, PID_NOTIFY_INFO_OFFSET
from tb.timing import coin_run


__all__ = ["AgentError", "SoftwareAgent"]

_ON = NotifyInfo.const({"on": 1}).as_bits()
_SN = NotifyInfo.const({"sn": 1}).as_bits()
PIR_WORDS = 4
MAX_WAIT = 2 ** 16 - 1      # cycles between operations, at most (`tb.testbench_top`)


class AgentError(AssertionError):
    """A PID word differs from what its writers meant: a lost or resurrected bit."""


class SoftwareAgent:
    """The other master on the PIDs.

    Parameters
    ----------
    memory : sim.memory.Memory
    pids : list of int
        PID addresses (64-byte aligned) shared with the gateware.
    rng : random.Random
    rate : float
        Probability per cycle of starting an operation when the memory may be taken (drawn
        per operation, `next_wait`).
    hold : (int, int)
        Range of cycles one operation owns the memory.
    notify_map : dict
        (NV, physical APIC ID) of a gateware notification -> index in ``pids``.
    """

    def __init__(self, memory, pids, rng, *, rate=0.05, hold=(1, 3), notify_map=None):
        self.memory = memory
        self.pids = list(pids)
        self.rng = rng
        self.rate = rate
        self.hold = hold
        self.notify_map = notify_map or {}
        self.pir_words = {(pid + 8 * k) >> 3: i for i, pid in enumerate(self.pids)
                          for k in range(PIR_WORDS)}
        self.ni_words = {(pid + PID_NOTIFY_INFO_OFFSET) >> 3: i for i, pid in enumerate(self.pids)}
        self.model = {w: memory.read_word(w) for w in (*self.pir_words, *self.ni_words)}
        self.core_reads = {}                # (core, word) -> value the core last read
        self.posted = [set() for _ in self.pids]      # vectors posted to each PID
        self.taken = [set() for _ in self.pids]       # vectors taken from each PID
        self.gateware_on = Counter()        # PID index -> ON transitions made by the gateware
        self.gateware_notifications = Counter()
        self.stats = Counter()
        self.queue = deque()                # follow-up operations, in order
        self.enabled = True

    # -- the memory model's hooks ------------------------------------------------------------
    def next_wait(self):
        """Cycles in which the agent could start and does not before its next operation: none
        while operations are queued, else the coin flips (probability ``rate`` a cycle) that
        fail, drawn at once."""
        if self.queue:
            return 0
        return coin_run(self.rng, 1.0 - self.rate, MAX_WAIT)

    def start(self):
        """The agent takes the memory now: one operation; returns the cycles it owns it."""
        if not self.queue:
            self._choose()
        op = self.queue.popleft()
        op()
        self.stats["operations"] += 1
        return self.rng.randint(*self.hold)

    def observe(self, core, access):
        """A gateware transfer has completed (the memory already holds its effect)."""
        w = access.adr
        if access.error or (w not in self.pir_words and w not in self.ni_words):
            return
        if not access.write:
            self._check(w, access.data, f"core {core} read")
            self.core_reads[(core, w)] = access.data
            return
        read = self.core_reads.pop((core, w), 0)
        meant = access.data & ~read                 # the bits this write set
        if access.data & read != read:
            raise AgentError(f"core {core} cleared bits {read & ~access.data:#x} of word "
                             f"{w << 3:#x} it had read")
        self.model[w] |= meant
        if w in self.ni_words and meant & _ON:
            pid = self.ni_words[w]
            if read & _SN:
                raise AgentError(f"core {core} set ON in PID {pid} while SN = 1")
            self.gateware_on[pid] += 1
        self._check(w, self.memory.read_word(w), f"after core {core}'s write")

    def notified(self, core, payload):
        """The gateware's notification (NV, APIC ID) was taken."""
        pid = self.notify_map.get(tuple(payload))
        if pid is None:
            raise AgentError(f"core {core} notified {payload}, which no shared PID names")
        self.gateware_notifications[pid] += 1

    def gateware_posted(self, pid, vector):
        """The golden model says a gateware request posted ``vector`` into PID ``pid``."""
        self.posted[pid].add(vector)

    # -- operations (each is one locked read-modify-write) -----------------------------------
    def _choose(self):
        pid = self.rng.randrange(len(self.pids))
        r = self.rng.random()
        if r < 0.45:
            self.queue.append(lambda: self._clear_on(pid))
            self.queue.extend(lambda k=k: self._take(pid, k) for k in range(PIR_WORDS))
        elif r < 0.8:
            vector = self.rng.randrange(0x20, 0x100)
            self.queue.append(lambda: self._post(pid, vector))
            self.queue.append(lambda: self._test_and_set_on(pid))
        else:
            self.queue.append(lambda: self._toggle_sn(pid))

    def _rmw(self, w, update, what):
        old = self.memory.read_word(w)
        self._check(w, old, what)
        new = update(old)
        self.memory.write_word(w, new)
        self.model[w] = new
        return old

    def _pir(self, pid, k):
        return (self.pids[pid] + 8 * k) >> 3

    def _ni(self, pid):
        return (self.pids[pid] + PID_NOTIFY_INFO_OFFSET) >> 3

    def _clear_on(self, pid):
        self._rmw(self._ni(pid), lambda v: v & ~_ON, f"agent clearing ON of PID {pid}")

    def _take(self, pid, k):
        old = self._rmw(self._pir(pid, k), lambda v: 0, f"agent taking PIR word {k} of "
                                                        f"PID {pid}")
        self.taken[pid] |= {64 * k + b for b in range(64) if old >> b & 1}
        self.stats["vectors_taken"] += bin(old).count("1")

    def _post(self, pid, vector):
        k, bit = divmod(vector, 64)
        self._rmw(self._pir(pid, k), lambda v: v | 1 << bit, f"agent posting to PID {pid}")
        self.posted[pid].add(vector)
        self.stats["software_posts"] += 1

    def _test_and_set_on(self, pid):
        def update(v):
            return v if v & (_ON | _SN) else v | _ON
        old = self._rmw(self._ni(pid), update, f"agent setting ON of PID {pid}")
        self.stats["software_on"] += not old & (_ON | _SN)

    def _toggle_sn(self, pid):
        old = self._rmw(self._ni(pid), lambda v: v ^ _SN, f"agent toggling SN of PID {pid}")
        self.stats["sn_changes"] += 1
        if old & _SN:       # SN cleared (load): make postings made meanwhile visible
            self.queue.append(lambda: self._on_if_pir(pid))

    def _on_if_pir(self, pid):
        pending = any(self.memory.read_word(self._pir(pid, k)) for k in range(PIR_WORDS))
        self._rmw(self._ni(pid), lambda v: v | _ON if pending else v,
                  f"agent setting ON after SN of PID {pid}")

    # -- checks ------------------------------------------------------------------------------
    def _check(self, w, actual, what):
        want = self.model[w]
        if actual != want:
            kind = "PIR" if w in self.pir_words else "NotifyInfo"
            raise AgentError(f"{what}: {kind} word {w << 3:#x} holds {actual:#018x}, its "
                             f"writers meant {want:#018x} (lost bits {want & ~actual:#x}, "
                             f"resurrected or stray bits {actual & ~want:#x})")

    def finish(self):
        """After the run: drain every PID and check that nothing was lost. Returns figures."""
        self.enabled = False
        while self.queue:
            self.queue.popleft()()
        for pid in range(len(self.pids)):
            self._clear_on(pid)
            for k in range(PIR_WORDS):
                self._take(pid, k)
        lost = {pid: sorted(self.posted[pid] - self.taken[pid]) for pid in range(len(self.pids))
                if self.posted[pid] - self.taken[pid]}
        if lost:
            raise AgentError(f"PIR bits lost (posted, never taken): {lost}")
        stray = {pid: sorted(self.taken[pid] - self.posted[pid]) for pid in range(len(self.pids))
                 if self.taken[pid] - self.posted[pid]}
        if stray:
            raise AgentError(f"vectors taken that nobody posted: {stray}")
        if self.gateware_notifications != self.gateware_on:
            raise AgentError(f"gateware notifications per PID {dict(self.gateware_notifications)}"
                             f" differ from its ON transitions {dict(self.gateware_on)}")
        return {"gateware_on_transitions": sum(self.gateware_on.values()),
                "gateware_notifications": sum(self.gateware_notifications.values()),
                "vectors_posted": sum(len(p) for p in self.posted),
                "lost": 0, **self.stats}

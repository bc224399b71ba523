"""cocotb tests of `IPIVSystem(n)` (started by `tb.cocotb.runner`, parameters from pytest).

``contention``: n cores post into the same few PIDs while a software agent (`agent`) does
locked read-modify-writes on them (posted-interrupt processing, software posting, SN changes);
every transfer is checked by `tb.checker`, and at the end no PIR bit is lost and every
notification matches an ON transition. ``cosim``: the KVM model's `IPIWorld` runs on the
gateware (`cosim`).
"""

import random

import cocotb

from hdl.formats import (
    ICRWriteKind as K, NotifyInfo, PID_NOTIFY_INFO_OFFSET, POSTED_INTR_VECTOR, SendUIPIData,
    XAPICNDST, X2APICICR, XAPICICRHigh,
)
from sim.golden import Config, Outcome
from sim.memory import Memory
from sim.scenarios import Request, icr_low
from tb.checker import allowed_words
from .agent import SoftwareAgent
from .common import Report, params, timing as timing_of
from .cosim import run_cosim
from .env import TB

TABLE, PID_BASE, VAPIC_BASE = 0x10_0000, 0x20_0000, 0x30_0000
FIRST_NDST = 0x40


def contention_setup(rng, *, n_cores, n_pids, count, host_x2apic, vectors=(0x20, 0x100),
                     odd=0.08):
    """Memory, per-core requests, PIDs, notify map and allowed words for the contention test.

    Target T = i is PID i; each PID notifies a distinct physical APIC ID, so a notification
    names its PID. ``odd``: share of requests that are not virtualizable or out of range."""
    memory = Memory()
    pids = [PID_BASE + 64 * i for i in range(n_pids)]
    notify_map = {}
    for i, pid in enumerate(pids):
        apic_id = FIRST_NDST + i
        ndst = apic_id if host_x2apic else XAPICNDST.const({"apic_id": apic_id}).as_bits()
        memory.write(TABLE + 8 * i, pid | 1)
        memory.write(pid + PID_NOTIFY_INFO_OFFSET, NotifyInfo.const(
            {"nv": POSTED_INTR_VECTOR, "ndst": ndst, "sn": int(rng.random() < 0.3)}).as_bits())
        notify_map[(POSTED_INTR_VECTOR, apic_id)] = i
    vapics = [VAPIC_BASE + 0x1000 * core for core in range(n_cores)]
    allowed = allowed_words(vapics, pids)
    requests = []
    for core, vapic in enumerate(vapics):
        x2apic = rng.random() < 0.5
        for _ in range(count):
            if rng.random() < 0.05:
                x2apic = not x2apic         # the guest changes APIC mode (core idle first)
            cfg = Config(ipiv=True, vid=True, x2apic=x2apic, host_x2apic=host_x2apic,
                         last_pid_index=n_pids - 1, pid_table=TABLE, vapic_page=vapic)
            dest, vector = rng.randrange(n_pids), rng.randrange(*vectors)
            low = icr_low(vector)
            r = rng.random()
            if r < odd / 2:
                dest = n_pids + rng.randrange(4)             # beyond the last index: exit
            elif r < odd:
                low = icr_low(vector, shorthand=rng.choice([1, 2, 3]))
            if rng.random() < 0.1:
                ndst = dest if x2apic else XAPICNDST.const({"apic_id": dest}).as_bits()
                requests.append(Request(cfg, K.SENDUIPI, SendUIPIData.const(
                    {"nv": vector, "ndst": ndst}).as_bits(), port=core))
            elif x2apic:
                requests.append(Request(cfg, K.X2APIC_ICR, X2APICICR.const(
                    {"dest": dest}).as_bits() | low, port=core))
            else:
                requests.append(Request(cfg, K.XAPIC_ICR_HI, XAPICICRHigh.const(
                    {"dest": dest}).as_bits(), port=core))
                requests.append(Request(cfg, K.XAPIC_ICR_LO, low, port=core))
    return memory, requests, pids, notify_map, allowed


@cocotb.test()
async def contention(dut):
    p = params()
    seed, n = p["seed"], p["n_cores"]
    report = Report(f"contention seed {seed}")
    timing = timing_of(p, seed)
    latency = timing["latency"]
    rng = random.Random(seed)

    async def body():
        memory, requests, pids, notify_map, allowed = contention_setup(
            rng, n_cores=n, n_pids=p.get("n_pids", 3), count=p["count"],
            host_x2apic=rng.random() < 0.5, vectors=tuple(p.get("vectors", (0x20, 0x100))))
        agent = SoftwareAgent(memory, pids, random.Random(rng.getrandbits(32)),
                              rate=p.get("agent_rate", 0.06), notify_map=notify_map)
        sample = report.sampler(timing)

        def resolved(r):
            sample(r)
            if r.result.outcome is Outcome.POSTED:
                agent.gateware_posted(r.result.dest, r.result.vector)
        tb = TB(dut, n_cores=n, memory=memory, seed=rng.getrandbits(32), agent=agent,
                allowed_words=allowed, on_resolved=resolved, gap=0.1,
                compare_lock=p.get("compare_lock", True), fsm_coverage=report.fsm_sampler(),
                **timing)
        tb.listeners.append(lambda core, stream, payload:
                            agent.notified(core, payload) if stream == "notify" else None)
        stats = await tb.run(requests, 2000 + len(requests) * 60 * (latency + 2) *
                             (3 if timing["bursts"] else 1))
        assert stats["checked"] == len(requests), stats
        figures = agent.finish()
        assert figures["lost"] == 0 and figures["operations"] > 0, figures
        assert figures["gateware_notifications"] == figures["gateware_on_transitions"], figures
        report.add_tb(stats)
        report.data.update(seed=seed, n_cores=n, agent=figures,
                           longest_cyc_run=stats["longest_cyc_run"],
                           handovers_in_cyc=stats["handovers_in_cyc"],
                           locked_handovers=stats["locked_handovers"], **timing)
    await report.run(body)


@cocotb.test()
async def cosim(dut):
    p = params()
    report = Report(f"cosim seed {p['seed']}")

    async def body():
        await run_cosim(dut, p, report)
    await report.run(body)

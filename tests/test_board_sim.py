"""The FPGA board experiment on Amaranth's simulator: each block, then the whole board top
driven through its UART protocol by the host code, against the golden model's prediction."""

import io
import json
import os
import random
import subprocess
import sys

import pytest
from amaranth import Module
from amaranth.lib import data
from amaranth.sim import Simulator

from hdl.board.counters import EventCounters
from hdl.board.formats import (
    Category, Command, Counter, EngineParams, MIX_SLOTS, Reply, StartCommand, VM_VCPUS,
)
from hdl.board.memory import VMMemory
from hdl.board.stimulus import StimulusEngine
from hdl.board.top import BOARDS
from hdl.board.uart import FRAME_BITS, UARTReceiver, UARTTransmitter, frame_levels
from hdl.board.vm import Window
from sim.board.vm import board_vm
from hdl.formats import APIC_OFFSET_ICR_HI, APIC_OFFSET_ICR_LO, APIC_OFFSET_IRR
from sim.board.experiment import (
    DEFAULT_WEIGHTS, RunParams, mix_from_weights, operations, parse_mix, predict,
)
from sim.board.protocol import BoardClient, ProtocolError, pack
from sim.board.transport import SerialTransport, TransportError
from tb.board_sim import SimulatedBoard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every category, so every path of the engine and of the unit is taken.
ALL_MIX = mix_from_weights({c: 6 if c is Category.UNICAST else 1 for c in Category})


# -- the VM and its window ------------------------------------------------------------------

@pytest.mark.parametrize("n_cores", [1, 2, 3, 4])
def test_window_holds_every_word_the_unit_may_touch(n_cores):
    window = Window(board_vm(), n_cores)
    vm = window.vm
    words = {vm.pid_table // 8 + t for t in range(8)}
    words |= {(pid >> 3) + k for pid in vm.pids.values() for k in range(5)}
    for core in range(n_cores):
        page = vm.vapic_pages[core]
        words |= {(page + APIC_OFFSET_IRR + 0x10 * k) >> 3 for k in range(8)}
        words |= {(page + off) >> 3 for off in (APIC_OFFSET_ICR_LO, APIC_OFFSET_ICR_HI)}
    indices = [window.index(w) for w in words]
    assert None not in indices and len(set(indices)) == len(words)
    assert max(indices) < window.depth == 32 + 8 + 20 * n_cores
    # Other senders' pages and neighbouring words are outside.
    assert window.index((vm.vapic_pages[n_cores - 1] + 0x400) >> 3) is None
    assert window.index((vm.pid_table >> 3) + 8) is None
    if n_cores < 4:
        assert window.index((vm.vapic_pages[n_cores] + APIC_OFFSET_ICR_LO) >> 3) is None
    image = window.image()
    for w in words:
        assert image[window.index(w)] == vm.memory.read_word(w)
    window.check_covers(vm.memory)
    assert window.pid_index(2, 4) == window.by_name["pids"].offset + 2 * 8 + 4


@pytest.mark.parametrize("bad", [0, 5, True, "2", None])
def test_window_core_count_validation(bad):
    with pytest.raises(ValueError, match="n_cores must be an integer from 1 to 4, not"):
        Window(board_vm(), bad)


# -- the mix and the run parameters ---------------------------------------------------------

def test_mix_from_weights():
    assert mix_from_weights(DEFAULT_WEIGHTS).count(Category.UNICAST) == 6
    mix = mix_from_weights({Category.UNICAST: 1000, Category.GARBAGE: 1})
    assert len(mix) == MIX_SLOTS and mix.count(Category.GARBAGE) == 1
    assert set(ALL_MIX) == set(Category) and len(ALL_MIX) == MIX_SLOTS
    assert mix_from_weights({Category.SELF_IPI: 3}) == (Category.SELF_IPI,) * MIX_SLOTS
    half = mix_from_weights({Category.UNICAST: 1, Category.BROADCAST: 1})
    assert half.count(Category.UNICAST) == half.count(Category.BROADCAST) == 8
    assert parse_mix("unicast=3, self-ipi=1") == \
        mix_from_weights({Category.UNICAST: 3, Category.SELF_IPI: 1})


@pytest.mark.parametrize("text,message", [
    ("frob=1", "unknown category 'frob'"),
    ("unicast=x", "not an integer"),
    ("unicast=-1", "must not be negative"),
    ("unicast=0", "at least one category"),
    ("", "at least one category"),
])
def test_mix_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mix(text)


@pytest.mark.parametrize("kwargs,message", [
    ({"seed": -1}, "seed must be an integer from 0 to 4294967295"),
    ({"count": 1 << 32}, "count must be"),
    ({"epoch": 1 << 16}, "epoch must be"),
    ({"x2apic": False, "xapic": False}, "at least one APIC mode"),
    ({"mix": (Category.UNICAST,) * 3}, "the mix has 16 slots"),
])
def test_run_params_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunParams(**kwargs)


def test_start_payload_layout():
    params = RunParams(seed=0x12345678, count=0x9ABC, epoch=0x0102, x2apic=True, xapic=False,
                       mix=ALL_MIX)
    raw = pack(StartCommand, params.as_bits())
    assert len(raw) == data.Layout.cast(StartCommand).size // 8 == 19
    assert raw[:4] == bytes([0x78, 0x56, 0x34, 0x12]) and raw[4:8] == bytes([0xBC, 0x9A, 0, 0])
    assert raw[8:10] == bytes([0x02, 0x01]) and raw[10] == 0b01
    assert raw[11] == ALL_MIX[0].value | ALL_MIX[1].value << 4


# -- the stimulus engine against its model ---------------------------------------------------

def run_engine(params, core, *, seed=0):
    """Issue ``params.count`` operations from a `StimulusEngine` with a random ``ready`` and
    ``busy``, releasing each barrier at once; returns the writes with the VMCS bits they met,
    and the operation counts at which the barriers came."""
    dut = StimulusEngine(core)
    rng = random.Random(seed)
    writes, barriers = [], []

    async def bench(ctx):
        start = pack(StartCommand, params.as_bits())
        engine_bytes = data.Layout.cast(EngineParams).size // 8
        ctx.set(dut.params.as_value(), int.from_bytes(start[:engine_bytes], "little"))
        # The mix goes into the engine's RAM byte by byte, as the board's START does.
        ctx.set(dut.mix_we, 1)
        for i, byte in enumerate(start[engine_bytes:]):
            ctx.set(dut.mix_addr, i)
            ctx.set(dut.mix_data, byte)
            await ctx.tick()
        ctx.set(dut.mix_we, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(40 * params.count + 50):
            ready = rng.random() < 0.7
            ctx.set(dut.icr.ready, ready)
            ctx.set(dut.busy, rng.random() < 0.5)
            if ctx.get(dut.at_barrier):
                barriers.append(ctx.get(dut.issued))
                ctx.set(dut.release, 1)
            else:
                ctx.set(dut.release, 0)
            if ctx.get(dut.icr.valid) and ready:
                p = ctx.get(dut.icr.payload)
                writes.append((p.kind, p.data, ctx.get(dut.x2apic), ctx.get(dut.ipiv)))
            if ctx.get(dut.done):
                break
            await ctx.tick()
        assert ctx.get(dut.done) and ctx.get(dut.issued) == params.count

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return writes, barriers


@pytest.mark.parametrize("seed,core,modes,epoch", [
    (1, 0, (True, True), 0), (0xDEADBEEF, 1, (True, False), 5), (0, 2, (False, True), 3),
    (0x9E3779B9, 0, (True, True), 7),       # seed ^ salt == 0: the salt itself
])
def test_engine_matches_its_model(seed, core, modes, epoch):
    params = RunParams(seed=seed, count=60, epoch=epoch, x2apic=modes[0], xapic=modes[1],
                       mix=ALL_MIX)
    writes, barriers = run_engine(params, core, seed=seed)
    expected = []
    for op in operations(params, core):
        expected += [(kind, value, int(op.x2apic), int(op.ipiv)) for kind, value in op.writes]
    assert writes == expected
    assert barriers == (list(range(epoch, params.count, epoch)) if epoch else [])
    ops = list(operations(params, core))
    assert {op.category for op in ops} == set(Category)
    assert {op.x2apic for op in ops} == {m for m, on in zip((True, False), modes) if on}


def test_engines_of_different_cores_differ():
    params = RunParams(seed=5, count=8)
    assert list(operations(params, 0)) != list(operations(params, 1))


# -- the blocks around the units -------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_loopback(divisor):
    tx, rx = UARTTransmitter(divisor), UARTReceiver(divisor)
    sent = [random.Random(divisor).randrange(256) for _ in range(12)] + [0x00, 0xFF]
    got = []
    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx.eq(tx.tx)

    async def bench(ctx):
        ctx.set(rx.data.ready, 1)
        for byte in sent:
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)
        for _ in range(12 * divisor + 4):
            await ctx.tick()

    async def sink(ctx):
        while True:
            await ctx.tick()
            if ctx.get(rx.data.valid):
                got.append(ctx.get(rx.data.payload))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(sink, background=True)
    sim.run()
    assert got == sent


async def _read_counters(ctx, dut):
    """Every counter of ``dut`` through its read port, once it has settled."""
    while not ctx.get(dut.settled):
        await ctx.tick()
    values = []
    for i in range(dut.n):
        ctx.set(dut.read_en, 1)
        ctx.set(dut.read_addr, i)
        await ctx.tick()
        ctx.set(dut.read_en, 0)
        values.append(ctx.get(dut.read_data))
    return values


def test_counters_sum_every_cycle_at_full_rate_and_clear():
    # The largest increment every cycle for longer than the counters' RAM takes to go round
    # (each pending sum at its bound), a wrap of the narrow counter, reads between folds; the
    # last counter's increments are as wide as it is: it is kept in flip-flops.
    dut = EventCounters(4, width=16, inc_widths=[8, 2, 1, 16])
    assert dut.pending_widths == [10, 4, 3, 16] and dut.in_flops == [3]
    cycles = 700
    steps = (255, 3, 1, 0xFEDC)

    async def bench(ctx):
        for i, step in enumerate(steps):
            ctx.set(dut.inc[i], step)
        for _ in range(cycles):
            await ctx.tick()
        for i in range(4):
            ctx.set(dut.inc[i], 0)
        await ctx.tick()
        assert not ctx.get(dut.settled)
        expect = [step * cycles % 65536 for step in steps]
        assert await _read_counters(ctx, dut) == expect
        assert await _read_counters(ctx, dut) == expect     # reading changes nothing
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert await _read_counters(ctx, dut) == [0, 0, 0, 0]
        ctx.set(dut.inc[1], 2)
        ctx.set(dut.inc[3], 5)
        await ctx.tick()
        ctx.set(dut.inc[1], 0)
        ctx.set(dut.inc[3], 0)
        assert await _read_counters(ctx, dut) == [0, 2, 0, 5]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _window_memory(pipeline, bus="classic", register_answer=False):
    """The board memory over a two-core VM's window, and the word addresses of the first PID
    table entry and of the second vCPU's vICR."""
    window = Window(board_vm(), 2)
    dut = VMMemory(window, addr_width=33, pipeline=pipeline, register_answer=register_answer,
                   bus=bus)
    vm = window.vm
    return window, dut, vm.pid_table >> 3, (vm.vapic_pages[1] + APIC_OFFSET_ICR_LO) >> 3


def test_counters_reject_bad_widths():
    with pytest.raises(ValueError, match="inc_widths"):
        EventCounters(3, width=16, inc_widths=[8, 2])
    with pytest.raises(ValueError, match="n must be"):
        EventCounters(1, width=16, inc_widths=8)


@pytest.mark.parametrize("register_answer", [False, True])
@pytest.mark.parametrize("pipeline", [False, True])
def test_memory_window_answers_inside_and_errs_outside(pipeline, register_answer):
    window, dut, entry, icr = _window_memory(pipeline, register_answer=register_answer)
    vm = window.vm

    async def transfer(ctx, adr, *, we=0, sel=0xFF, dat_w=0):
        ctx.set(dut.bus.adr, adr)
        ctx.set(dut.bus.we, we)
        ctx.set(dut.bus.sel, sel)
        ctx.set(dut.bus.dat_w, dat_w)
        ctx.set(dut.bus.cyc, 1)
        ctx.set(dut.bus.stb, 1)
        cycles, faults = 0, 0
        while not (ctx.get(dut.bus.ack) or ctx.get(dut.bus.err)):
            await ctx.tick()
            cycles += 1
            faults += ctx.get(dut.fault)
        result = (ctx.get(dut.bus.ack), ctx.get(dut.bus.dat_r), cycles, faults)
        await ctx.tick()
        ctx.set(dut.bus.stb, 0)
        ctx.set(dut.bus.cyc, 0)
        return result

    async def bench(ctx):
        ack, value, cycles, _ = await transfer(ctx, entry)
        assert ack and value == vm.memory.read_word(entry) == vm.pids[0] | 1
        assert cycles == 1 + pipeline + register_answer
        await transfer(ctx, icr, we=1, sel=0x0F, dat_w=0x1111_2222_3333_4444)
        await transfer(ctx, icr, we=1, sel=0xF0, dat_w=0x5555_6666_7777_8888)
        ack, value, _, _ = await transfer(ctx, icr)
        assert ack and value == 0x5555_6666_3333_4444
        ack, _, _, faults = await transfer(ctx, icr + 4)         # ICR region is 4 words
        assert not ack and faults == 1
        # The controller's port sees what the bus wrote.
        ctx.set(dut.ctl_en, 1)
        ctx.set(dut.ctl_addr, window.index(icr))
        await ctx.tick()
        assert ctx.get(dut.ctl_rdata) == 0x5555_6666_3333_4444

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("register_answer", [False, True])
@pytest.mark.parametrize("pipeline", [False, True])
def test_pipelined_memory_takes_a_request_every_cycle_and_answers_in_order(pipeline,
                                                                           register_answer):
    """The slave of a B4 pipelined port: ``stall`` low, a request taken in every cycle with
    ``cyc & stb``, performed when taken (a read in the next cycle sees the write), answered
    R - 1 cycles later in order (R = 2, one more with the request registered and one more
    with the answer registered), outside the window with ``err`` and a ``fault``."""
    window, dut, entry, icr = _window_memory(pipeline, bus="pipelined",
                                             register_answer=register_answer)
    vm = window.vm
    requests = [(icr, 1, 0x0F, 0x1111_2222_3333_4444), (icr, 1, 0xF0, 0x5555_6666_7777_8888),
                (icr, 0, 0xFF, 0), (entry, 0, 0xFF, 0), (icr + 4, 0, 0xFF, 0)]
    want = [(1, None), (1, None), (1, 0x5555_6666_3333_4444),
            (1, vm.memory.read_word(entry)), (0, None)]
    latency = 1 + pipeline + register_answer

    async def bench(ctx):
        answers, faults = [], 0
        ctx.set(dut.bus.cyc, 1)
        for cycle in range(len(requests) + latency + 2):
            if cycle < len(requests):
                adr, we, sel, dat_w = requests[cycle]
                ctx.set(dut.bus.stb, 1)
                for name, value in (("adr", adr), ("we", we), ("sel", sel), ("dat_w", dat_w)):
                    ctx.set(getattr(dut.bus, name), value)
            else:
                ctx.set(dut.bus.stb, 0)
            assert not ctx.get(dut.bus.stall)
            if ctx.get(dut.bus.ack) or ctx.get(dut.bus.err):
                answers.append((cycle, ctx.get(dut.bus.ack), ctx.get(dut.bus.dat_r)))
            faults += ctx.get(dut.fault)
            await ctx.tick()
        assert [c for c, _, _ in answers] == [k + latency for k in range(len(requests))]
        assert [(ack, None if w is None else data) for (_, ack, data), (_, w) in
                zip(answers, want)] == want
        assert faults == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# -- the board top, end to end through the UART ----------------------------------------------

# The two builds' parameters: ULX3S (digest, memory unregistered: ack+1), iCEBreaker (digest,
# MAXPHYADDR 36, registered memory requests).
BUILDS = {
    "ulx3s-85f": {"n_cores": 2, "maxphyaddr": 52, "digest": True, "pipeline": False},
    "icebreaker": {"n_cores": 2, "maxphyaddr": 36, "digest": True, "pipeline": True},
}


def test_builds_here_are_the_boards():
    assert BUILDS == {name: spec.core for name, spec in BOARDS.items()}


def check_run(client, info, params, *, memory=True):
    counters, status = client.run(params, poll=0)
    assert not status.running and status.done and not status.fault
    assert status.progress == params.count
    gold = predict(params, n_cores=info.n_cores, maxphyaddr=info.maxphyaddr,
                   digest=info.digest, bus=info.bus)
    for c in Counter:
        if c is not Counter.CYCLES:
            assert counters[c] == gold.counters[c], c.name
    assert counters[Counter.CYCLES] > 2 * counters[Counter.ICR_WRITES] // info.n_cores
    if memory:      # the whole RAM: vICRs, IRRs, PIRs, ON bits (slow at 4 cycles a bit)
        assert client.memory(info.depth) == gold.ram()
    return counters, gold


@pytest.mark.parametrize("bus", ["classic", "pipelined"])
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_board_agrees_with_the_golden_model(build, bus):
    board = SimulatedBoard(**BUILDS[build], bus=bus)
    client = BoardClient(board)
    info = client.ident()
    assert (info.n_cores, info.maxphyaddr, info.digest, info.depth, info.bus) == \
        (2, BUILDS[build]["maxphyaddr"], BUILDS[build]["digest"], 80, bus)
    params = RunParams(seed=0xC0FFEE, count=48, epoch=6, mix=ALL_MIX)
    counters, gold = check_run(client, info, params)
    # The run exercises every outcome the counters know (but bus errors and faults).
    for c in Counter:
        if c not in (Counter.EXIT_BUS_ERROR, Counter.WINDOW_FAULTS) and \
                (c is not Counter.DIGEST or info.digest):
            assert counters[c] > 0, c.name
    for vcpu in (1, VM_VCPUS - 1):
        assert client.pid(vcpu) == gold.pid(vcpu)
    # Reading the counters again gives the same values (a read changes no counter).
    assert client.counters() == counters
    # The same seed again: the VM and the units are reset, so everything repeats, cycles
    # included.
    again, _ = check_run(client, info, params, memory=False)
    assert again == counters
    check_run(client, info, RunParams(seed=3, count=20, epoch=0, x2apic=False,
                                      mix=parse_mix("unicast=2,self-ipi=1,senduipi=1")),
              memory=False)


def test_four_cores_share_the_memory_port():
    board = SimulatedBoard(n_cores=4, maxphyaddr=40, digest=True)
    client = BoardClient(board)
    info = client.ident()
    assert (info.n_cores, info.depth) == (4, 32 + 8 + 4 * 20)
    counters, _ = check_run(client, info, RunParams(seed=11, count=8, epoch=4, mix=ALL_MIX))
    assert counters[Counter.POSTED] > 0


def test_uart_peer_seen_every_cycle_is_an_8n1_peer():
    """The simulated board's UART peer sleeps from one level change or bit sample to the
    next; seen after every clock edge it is still the peer the host expects: a frame starts
    on the first bit boundary (every ``divisor`` cycles from the start) after the host wrote
    it, queued frames follow back to back, each bit lasts ``divisor`` cycles; a byte from the
    board is sampled ``divisor // 2`` cycles into each bit after ``tx`` falls, and arrives at
    the edge its stop bit is sampled."""
    board = SimulatedBoard(**BUILDS["ulx3s-85f"], pause_cycles=150)
    div = board.divisor
    rx_seen, tx_seen, arrived = [None], [1], [0]       # index: rising edges so far

    async def monitor(ctx):
        while True:
            await ctx.tick()
            rx_seen.append(ctx.get(board.core.rx))
            tx_seen.append(ctx.get(board.core.tx))
            arrived.append(len(board._from_board))

    board._sim.add_testbench(monitor, background=True)
    writes = []
    # At the start, off a bit boundary (450), two frames at once, on a boundary (1200).
    for data in (bytes([Command.IDENT]), bytes([Command.STATUS, Command.IDENT]),
                 bytes([Command.IDENT])):
        writes.append((board.cycles, data))
        board.write(data)
        for _ in range(3 + 2 * (len(data) - 1)):
            board.pause(0)
    assert [m for m, _ in writes] == [0, 450, 1200]
    cycles = board.cycles
    assert len(rx_seen) == cycles + 1

    # rx, per cycle: the host's bytes framed on the bit boundaries.
    rx_want, free = [1] * (cycles + 1), 0
    for written, data in writes:
        first = 0 if written == 0 else (written // div + 1) * div
        for byte in data:
            start = max(free, first)
            for i, bit in enumerate(frame_levels(byte)):
                rx_want[start + i * div:start + (i + 1) * div] = [bit] * div
            free = start + FRAME_BITS * div
    assert rx_seen[1:] == rx_want[1:]

    # tx, per cycle: the frames the board sent, and when each byte should have arrived.
    frames, edge = [], 1
    while edge + div // 2 + 9 * div <= cycles:
        if not (tx_seen[edge - 1] and not tx_seen[edge]):
            edge += 1
            continue
        start = edge + div // 2
        if tx_seen[start]:
            edge = start + 1
            continue
        byte = sum(tx_seen[start + (k + 1) * div] << k for k in range(8))
        stop = start + 9 * div
        if tx_seen[stop]:
            frames.append((stop, byte))
        edge = stop + 1
    received = bytes(board._from_board)
    assert received == bytes(byte for _, byte in frames)
    assert arrived == [sum(stop <= edge for stop, _ in frames) for edge in range(cycles + 1)]
    ident = received[:8]
    assert ident[:4] == b"IPIV" and len(received) == 8 + 5 + 8 + 8
    assert received[13:21] == received[21:] == ident


def test_protocol_edge_cases():
    board = SimulatedBoard(**BUILDS["ulx3s-85f"])
    client = BoardClient(board)
    board.write(b"Z")
    assert board.read(1, 1) == bytes([Reply.UNKNOWN])
    # Half a START, then silence: the board drops it and takes the next command.
    board.write(bytes([Command.START, 1, 2, 3]))
    for _ in range(4):
        board.pause(0)
    assert client.ident().n_cores == 2
    # START during a run is refused and does not disturb it.
    params = RunParams(seed=9, count=40, epoch=4)
    assert client.start(params)
    assert client.status().running
    assert not client.start(RunParams(seed=10, count=1))
    counters = client.counters()                  # waits for the end of the run
    gold = predict(params, n_cores=2, maxphyaddr=52)
    assert counters[Counter.POSTED] == gold.counters[Counter.POSTED]
    assert counters[Counter.DIGEST] == gold.counters[Counter.DIGEST]
    # A board that never answers: a one-line error, not a hang (the same board, not a second
    # one elaborated).
    board.read_cycles = 64
    board.write = lambda data: None         # the request never reaches the board
    with pytest.raises(ProtocolError, match="no reply to PID from the board"):
        client.pid(1)


# -- the transports and the command line -----------------------------------------------------

def test_serial_port_missing_is_one_line():
    with pytest.raises(TransportError, match="cannot open serial port /dev/nonexistent"):
        SerialTransport("/dev/nonexistent")


def test_pyserial_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "serial", None)
    with pytest.raises(TransportError, match="pyserial is not installed"):
        SerialTransport("/dev/ttyUSB0")


def board_cli(*args):
    return subprocess.run([sys.executable, "-m", "tb", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


@pytest.mark.parametrize("args,message", [
    (["board", "run"], "give --port DEVICE"),
    (["board", "run", "--port", "/dev/nonexistent"], "cannot open serial port"),
    (["board", "run", "--sim", "--mix", "frob=1"], "unknown category 'frob'"),
    (["board", "run", "--sim", "--seed", "-1"], "must be from 0 to"),
    (["board", "run", "--sim", "--modes", "x3apic"], "modes are x2apic and/or xapic"),
    (["board", "pid", "--sim", "7"], "must be from 0 to 3"),
    (["board", "info", "--sim", "--timeout", "0"], "must be positive"),
    (["board"], "required"),
    (["build"], "give either --board NAME or --synth-only"),
    (["build", "--board", "nosuch"], "invalid choice"),
    (["build", "--synth-only", "--program"], "--program, --cores and --digest need --board"),
    (["build", "--board", "icebreaker", "--cores", "5"], "must be from 1 to 4"),
    (["build", "--board", "icebreaker", "--place"], "--place needs --synth-only"),
    (["build", "--board", "icebreaker", "--bus", "both"], "--bus both needs --synth-only"),
    (["board", "info", "--port", "/dev/nonexistent", "--bus", "pipelined"],
     "--bus is for --sim"),
    (["board", "run", "--sim", "--bus", "both"], "invalid choice"),
])
def test_bad_arguments_give_one_line(args, message):
    result = board_cli(*args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_board_pid_and_info_cli_on_the_simulated_board():
    result = board_cli("board", "pid", "--sim", "2")
    assert result.returncode == 0, result.stderr
    # vCPU 2 is preempted: SN set, NV 0xF2, on pCPU 3; nothing posted yet.
    assert "ON 0, SN 1, NV 0xf2, NDST 0x3" in result.stdout
    assert "PIR vectors: none" in result.stdout
    result = board_cli("board", "info", "--sim", "--board", "ulx3s-85f")
    assert result.returncode == 0, result.stderr
    assert "IPIVSystem(2), MAXPHYADDR 52, RAM 80 words, digest on" in result.stdout


def test_board_run_cli_on_the_simulated_board():
    result = board_cli("board", "run", "--sim", "--board", "icebreaker", "-n", "12",
                       "--seed", "4", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["agree"] and report["memory_equal"] is None
    assert report["board"] == {"n_cores": 2, "maxphyaddr": 36, "digest": True,
                               "bus": "classic", "fault": False}
    assert report["counters"]["icr_writes"]["board"] == \
        report["counters"]["icr_writes"]["golden"] > 24


def test_board_cli_simulates_the_pipelined_port():
    """``--bus pipelined`` with ``--sim``: the board says which port it has (IDENT), and the
    run agrees with the golden model of that port; the same seed runs in fewer cycles than
    on the classic port (the postings' round trips overlap)."""
    result = board_cli("board", "info", "--sim", "--bus", "pipelined")
    assert result.returncode == 0, result.stderr
    assert "digest on, pipelined memory port" in result.stdout
    cycles = {}
    for bus in ("classic", "pipelined"):
        result = board_cli("board", "run", "--sim", "--board", "ulx3s-85f", "--bus", bus,
                           "-n", "12", "--seed", "4", "--mix", "unicast=1", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["agree"] and report["board"]["bus"] == bus
        cycles[bus] = report["counters"]["cycles"]["board"]
    assert cycles["pipelined"] < cycles["classic"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_board_progress_is_a_tqdm_bar_on_a_terminal_and_stage_lines_in_a_log(monkeypatch):
    """README: progress bars are tqdm, on stderr, on a terminal; a build logs its stages
    one line each when stderr is not a terminal (board_build appends the seconds)."""
    import tqdm
    from tb.commands.build import Progress as _Progress
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run = _Progress("running, operations per core")
    assert isinstance(run.bar, tqdm.tqdm) and not run.bar.disable
    run.count(5, 12)
    run.count(9, 12)
    assert run.bar.n == 9 and run.bar.total == 12
    assert str(run.bar).startswith("running, operations per core:  75%") and "9/12" in \
        str(run.bar)
    run.end()
    assert terminal.getvalue().startswith("\rrunning")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    build = _Progress("building")
    for text in ("synthesizing (yosys)", "synthesizing (yosys) (3 s)", "placing (nextpnr)"):
        build.stage(text)
    build.end()
    assert log.getvalue() == "  synthesizing (yosys)\n  placing (nextpnr)\n"

"""`BoardCore`: the board-independent IPI experiment (``IPIVSystem`` plus everything around it).

::

    UART rx -> command interface -> run control -> StimulusEngine x n -> IPIVSystem(n)
                    ^                   |  (init, barrier sweeps)            | bus
    UART tx <-------+---- counters <----+---------- outputs        VMMemory (the VM)

A run (command START): the controller reloads the VM image into the RAM and clears the
counters, then every core's engine issues ``count`` operations. Every ``epoch`` operations
all engines wait until every unit is idle; the controller then does what
the models' ``deliver_pending`` does (each PID with ON set gets ON and its PIR cleared, as if
its vCPU had taken the notification) and lets them go on. Within an epoch no PID loses ON,
so which core posts first to a shared PID changes no count: the counters are totals over the
cores and equal the golden model's whatever the interleaving. One output is taken per cycle
(core 0's first, in `OUTPUT_STREAMS` order; another one offered in that cycle waits in its
unit), so the output counters and the digest add one term per cycle. The event counters live
in a block RAM (`EventCounters`). Each START also resets the units, so a seed repeats its run
to the cycle.
"""

from contextlib import contextmanager

from amaranth import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect

from .. import IPIVSystem
from ..formats import (
    BUS_BYTES, ExitCause, NOTIFY_INFO_ON, NotifyInfo, OUTPUT_STREAMS, PID_BYTES,
    PID_NOTIFY_INFO_OFFSET, PIR_WORDS,
)
from ..params import bus_addr_width, check_bus, check_maxphyaddr
from .counters import EventCounters
from .digest import term
from .formats import (
    COUNTER_BYTES, COUNTER_WIDTH, Command, Counter, EngineParams, IDENT_MAGIC, Ident,
    PID_DUMP_WORDS, PROTOCOL_VERSION, Reply, StartCommand, Status, VCPU_BITS, VM_VCPUS,
)
from .memory import VMMemory
from .stimulus import MIX_BYTES, StimulusEngine
from .uart import UARTReceiver, UARTTransmitter, check_divisor
from .vm import Window


__all__ = ["BoardCore"]

_PID_WORDS = PID_BYTES // BUS_BYTES
_NOTIFY_INFO_WORD = PID_NOTIFY_INFO_OFFSET // BUS_BYTES
_START_BYTES = data.Layout.cast(StartCommand).size // 8


class BoardCore(wiring.Component):
    """The IPI experiment, without pins: ``n_cores`` units, the VM in RAM, the stimulus
    engines, the counters and the UART command interface (``sim.board.protocol``).

    Parameters
    ----------
    vm : VM layout
        The board's VM with its memory image (``sim.board.vm.board_vm()``); the RAM is
        initialised from it (see `hdl.board.vm.Window`).
    n_cores : int
        1..4 (core ``i`` runs vCPU ``i`` of the board's VM).
    maxphyaddr : int
        The units' MAXPHYADDR, 36..52.
    divisor : int
        Clock cycles per UART bit (at least 4): ``round(clk_hz / baud)``.
    rx_timeout : int
        Cycles without a byte after which a half-received command is dropped.
    led_stretch : int
        Cycles the activity LED stays lit after activity.
    digest : bool
        Keep the DIGEST counter (a sum over every output payload). Without it the units'
        exit images, #GP values and notification payloads go unused and synthesis drops
        them (about 1200 logic cells on an iCE40UP5K with two cores), and the digest's fold
        (about 330 LUTs) with them.
    pipeline : bool
        Register each memory request (`VMMemory`): one more cycle per bus transfer, a
        shorter path from the units' arbiters into the RAM.
    register_answer : bool
        Register each memory answer (`VMMemory`): one more cycle per bus transfer, no path
        from the RAM's output into the units.
    bus : str
        The units' memory port, ``"classic"`` (default) or ``"pipelined"``: the kind of
        `IPIVSystem` and of the RAM's port (`VMMemory`), reported by IDENT.

    Members
    -------
    rx : In(1)
        UART from the host (asynchronous).
    tx : Out(1)
        UART to the host.
    led_activity : Out(1)
        A run or UART traffic (stretched).
    led_fault : Out(1)
        A memory access outside the VM window since the last START.
    led_done : Out(1)
        A run has finished since the last START.
    """

    def __init__(self, vm, *, n_cores=2, maxphyaddr=52, divisor=104, rx_timeout=1 << 16,
                 led_stretch=1 << 20, digest=True, pipeline=False, register_answer=False,
                 bus="classic"):
        self.window = Window(vm, n_cores)
        self.n_cores = n_cores
        self.maxphyaddr = check_maxphyaddr(maxphyaddr)
        self.divisor = check_divisor(divisor)
        for name, value in (("rx_timeout", rx_timeout), ("led_stretch", led_stretch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.rx_timeout = rx_timeout
        self.led_stretch = led_stretch
        self.digest = bool(digest)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "led_activity": Out(1),
            "led_fault": Out(1),
            "led_done": Out(1),
        })
        self.bus_kind = check_bus(bus)
        # The RAM answers a cycle after a request at the earliest (`VMMemory`).
        self.system = IPIVSystem(n_cores, maxphyaddr=maxphyaddr, bus=bus, answers_later=True)
        self.memory = VMMemory(self.window, addr_width=bus_addr_width(maxphyaddr),
                               pipeline=pipeline, register_answer=register_answer,
                               bus=bus)
        self.engines = [StimulusEngine(core) for core in range(n_cores)]
        # Events of a kind: at most one per core and cycle, one output per cycle; a digest
        # term is 32 bits.
        self.counters = EventCounters(len(Counter), width=COUNTER_WIDTH, inc_widths=[
            COUNTER_WIDTH if c == Counter.DIGEST else
            1 if c in _ONE_AT_A_TIME or c in (Counter.CYCLES, Counter.WINDOW_FAULTS) else
            n_cores.bit_length() for c in Counter])
        self.receiver = UARTReceiver(divisor)
        self.transmitter = UARTTransmitter(divisor)

    def vmcs(self, core, *, x2apic, ipiv):
        """Core ``core``'s VMCS configuration (from the VM layout's ``config``)."""
        return self.window.vm.config(core, x2apic=bool(x2apic), ipiv=bool(ipiv))

    def elaborate(self, platform):
        m = Module()
        ctl = _Control()
        self._add_submodules(m, ctl)
        self._connect_cores(m, ctl)
        self._count_events(m, ctl)
        self._run_control(m, ctl)
        self._command_interface(m, ctl)
        self._leds(m, ctl)
        return m

    def _add_submodules(self, m, ctl):
        """The units (reset at every START, so a run's cycle count repeats with its seed; the
        arbiter owners too), the RAM on their bus, the counters, the UART, the engines."""
        m.submodules.system = ResetInserter({"sync": ctl.reset_units})(self.system)
        m.submodules.memory = self.memory
        m.submodules.counters = self.counters
        m.submodules.receiver = self.receiver
        m.submodules.transmitter = self.transmitter
        for core, engine in enumerate(self.engines):
            m.submodules[f"engine{core}"] = engine
        connect(m, self.system.bus, self.memory.bus)
        m.d.comb += [self.receiver.rx.eq(self.rx), self.tx.eq(self.transmitter.tx)]

    def _connect_cores(self, m, ctl):
        """Each engine drives its unit's ICR writes and VMCS mode bits (the other VMCS fields
        are constants from the VM); one output is taken per cycle (`_outputs` order), any
        other waits (the units hold it: timing only, every count is the same)."""
        for core, engine in enumerate(self.engines):
            port = self.system.cores[core]
            base = self.vmcs(core, x2apic=0, ipiv=0).as_bits()
            m.d.comb += [
                port.cfg.as_value().eq(base), port.cfg.x2apic.eq(engine.x2apic),
                port.cfg.ipiv.eq(engine.ipiv),
                engine.params.eq(ctl.params), engine.start.eq(ctl.start),
                engine.mix_we.eq(ctl.mix_we), engine.mix_addr.eq(ctl.mix_addr),
                engine.mix_data.eq(ctl.mix_data),
                engine.busy.eq(port.busy),
            ]
            connect(m, engine.icr, port.icr)
        offered = []
        for _, stream in self._outputs():
            m.d.comb += stream.ready.eq(~Cat(*offered).any() if offered else 1)
            offered.append(stream.valid)

    def _outputs(self):
        """(stream name, stream) of every core's outputs, core 0's first."""
        return [(name, getattr(port, name)) for port in self.system.cores
                for name in OUTPUT_STREAMS]

    def _count_events(self, m, ctl):
        """Each counter's increment: its events of a cycle summed over the cores (an output
        counter's: the output taken, at most one), a cycle later. With the digest kept, the
        DIGEST term is the output taken's (no adder: one output per cycle)."""
        inc = {c: [] for c in Counter}
        for port, unit in zip(self.system.cores, self.system.units):
            posted, suppressed = _postings(unit)
            inc[Counter.ICR_WRITES].append(port.icr.valid & port.icr.ready)
            inc[Counter.POSTED].append(posted)
            inc[Counter.SUPPRESSED].append(suppressed)
            inc[Counter.NOTIFICATIONS].append(_taken(port.notify))
            inc[Counter.SELF_IPIS].append(_taken(port.self_ipi))
            inc[Counter.GP].append(_taken(port.gp))
            for cause in ExitCause:
                inc[Counter.exit(cause)].append(_taken(port.exit) & (port.exit.p.cause == cause))
        if self.digest:
            inc[Counter.DIGEST].append(_or([Mux(_taken(stream), term(name, stream.p), 0)
                                            for name, stream in self._outputs()]))
        else:
            inc[Counter.DIGEST].append(0)
        inc[Counter.CYCLES].append(ctl.counting)
        inc[Counter.WINDOW_FAULTS].append(self.memory.fault)
        for c in Counter:
            combine = _or if c in _ONE_AT_A_TIME else _sum
            # Every increment goes through a register (the same counts, one cycle later): the
            # events a unit decides from a bus answer (its ``icr.ready`` waits on the other
            # unit's bus grant), the outputs' priority and the digest's fold of every payload
            # stay out of the counters' adders and their ``settled``.
            m.d.sync += self.counters.inc[c].eq(combine(inc[c]))

    def _image_rom(self, m, ctl_addr):
        """Word ``ctl_addr`` of the VM image (a ROM of its nonzero words)."""
        image_word = Signal(8 * BUS_BYTES)
        with m.Switch(ctl_addr):
            for i, word in enumerate(self.window.image()):
                if word:
                    with m.Case(i):
                        m.d.comb += image_word.eq(word)
        return image_word

    def _run_control(self, m, ctl):
        """START: reload the RAM from the image, clear the counters, reset the units; then run
        the engines, and at each barrier sweep the PIDs as ``deliver_pending`` does."""
        mem = self.memory
        depth = self.window.depth
        ctl_addr = Signal(range(depth))
        image_word = self._image_rom(m, ctl_addr)
        all_at_barrier = Cat(e.at_barrier for e in self.engines).all()
        all_done = Cat(e.done for e in self.engines).all()
        any_busy = Cat(port.busy for port in self.system.cores).any()
        vcpu = Signal(range(VM_VCPUS))
        word = Signal(range(PIR_WORDS))
        pid_base = self.window.by_name["pids"].offset + vcpu * _PID_WORDS

        with m.If(mem.fault):
            m.d.sync += ctl.fault.eq(1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(ctl.start_request):
                    m.d.sync += [ctl_addr.eq(0), ctl.running.eq(1), ctl.done.eq(0),
                                 ctl.fault.eq(0)]
                    m.d.comb += [self.counters.clear.eq(1), ctl.reset_units.eq(1)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [mem.ctl_en.eq(1), mem.ctl_addr.eq(ctl_addr), mem.ctl_we.eq(1),
                             mem.ctl_wdata.eq(image_word)]
                m.d.sync += ctl_addr.eq(ctl_addr + 1)
                with m.If(ctl_addr == depth - 1):
                    m.d.comb += ctl.start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += ctl.counting.eq(1)
                with m.If(~any_busy & all_done):
                    m.d.sync += [ctl.running.eq(0), ctl.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(~any_busy & all_at_barrier):
                    m.d.sync += vcpu.eq(0)
                    m.next = "SWEEP_READ"
            self._sweep_states(m, ctl, vcpu, word, pid_base)

    def _sweep_states(self, m, ctl, vcpu, word, pid_base):
        """The barrier sweep (states of the run control's FSM): for each vCPU, read NotifyInfo;
        with ON set, clear ON and the PIR; after the last, release the engines."""
        mem = self.memory
        with m.State("SWEEP_READ"):
            m.d.comb += [ctl.counting.eq(1), mem.ctl_en.eq(1),
                         mem.ctl_addr.eq(pid_base + _NOTIFY_INFO_WORD)]
            m.next = "SWEEP_CHECK"
        with m.State("SWEEP_CHECK"):
            # deliver_pending: a PID with ON set has ON and its PIR cleared.
            m.d.comb += [ctl.counting.eq(1), mem.ctl_en.eq(1),
                         mem.ctl_addr.eq(pid_base + _NOTIFY_INFO_WORD),
                         mem.ctl_wdata.eq(mem.ctl_rdata & ~NOTIFY_INFO_ON)]
            m.d.sync += word.eq(0)
            with m.If(NotifyInfo(mem.ctl_rdata).on):
                m.d.comb += mem.ctl_we.eq(1)
                m.next = "SWEEP_CLEAR"
            with m.Else():
                m.next = "SWEEP_NEXT"
        with m.State("SWEEP_CLEAR"):
            m.d.comb += [ctl.counting.eq(1), mem.ctl_en.eq(1), mem.ctl_addr.eq(pid_base + word),
                         mem.ctl_we.eq(1), mem.ctl_wdata.eq(0)]
            m.d.sync += word.eq(word + 1)
            with m.If(word == PIR_WORDS - 1):
                m.next = "SWEEP_NEXT"
        with m.State("SWEEP_NEXT"):
            m.d.comb += ctl.counting.eq(1)
            m.d.sync += vcpu.eq(vcpu + 1)
            with m.If(vcpu == VM_VCPUS - 1):
                for engine in self.engines:
                    m.d.comb += engine.release.eq(1)
                m.next = "RUN"
            with m.Else():
                m.next = "SWEEP_READ"

    def _command_interface(self, m, ctl):
        """The UART commands (``sim.board.protocol``): a command byte, its payload, the reply
        sent from the low end of a shift register."""
        cmd = _CommandRegisters(self.window.depth, self.rx_timeout)
        status = Signal(Status)
        m.d.comb += [status.running.eq(ctl.running), status.done.eq(ctl.done),
                     status.fault.eq(ctl.fault), status.progress.eq(self.engines[0].issued)]
        rx, tx, mem = self.receiver.data, self.transmitter.data, self.memory
        counters = self.counters
        with m.FSM():
            with m.State("COMMAND"):
                self._dispatch(m, ctl, cmd, status)
            with m.State("START_PAYLOAD"):
                with _payload_byte(m, rx, cmd.timer):
                    m.d.sync += [cmd.timer.eq(self.rx_timeout),
                                 cmd.payload_left.eq(cmd.payload_left - 1)]
                    # The engines' parameters shift in; the mix's bytes (the last ones) go
                    # to the engines' mix RAMs.
                    with m.If(cmd.start_ok & (cmd.payload_left > MIX_BYTES)):
                        m.d.sync += ctl.params.eq(Cat(ctl.params.as_value()[8:], rx.payload))
                    m.d.comb += [ctl.mix_we.eq(cmd.start_ok & (cmd.payload_left <= MIX_BYTES)),
                                 ctl.mix_addr.eq(MIX_BYTES - cmd.payload_left),
                                 ctl.mix_data.eq(rx.payload)]
                    with m.If(cmd.payload_left == 1):
                        m.next = "START_GO"
            with m.State("START_GO"):
                with m.If(cmd.start_ok):
                    m.d.comb += ctl.start_request.eq(1)
                    cmd.send(m, Reply.ACK, 1)
                with m.Else():
                    cmd.send(m, Reply.BUSY, 1)
            with m.State("COUNTERS_WAIT"):
                # After the run, once every event is in the counters' RAM.
                with m.If(~ctl.running & counters.settled):
                    m.d.sync += cmd.counter.eq(0)
                    m.next = "COUNTERS_READ"
            _word_by_word(m, tx, cmd, "COUNTERS",
                          read=[counters.read_en.eq(1), counters.read_addr.eq(cmd.counter)],
                          word=counters.read_data, n_bytes=COUNTER_BYTES,
                          advance=[cmd.counter.eq(cmd.counter + 1)],
                          last=cmd.counter == len(Counter))
            with m.State("PID_PAYLOAD"):
                with _payload_byte(m, rx, cmd.timer):
                    pids = self.window.by_name["pids"].offset
                    m.d.sync += [cmd.dump_addr.eq(pids + rx.payload[:VCPU_BITS] * _PID_WORDS),
                                 cmd.dump_left.eq(PID_DUMP_WORDS)]
                    m.next = "DUMP_WAIT"
            with m.State("DUMP_WAIT"):
                # The RAM is the controller's whenever no run is going on.
                with m.If(~ctl.running):
                    m.next = "DUMP_READ"
            _word_by_word(m, tx, cmd, "DUMP",
                          read=[mem.ctl_en.eq(1), mem.ctl_addr.eq(cmd.dump_addr)],
                          word=mem.ctl_rdata, n_bytes=BUS_BYTES,
                          advance=[cmd.dump_addr.eq(cmd.dump_addr + 1),
                                   cmd.dump_left.eq(cmd.dump_left - 1)],
                          last=cmd.dump_left == 0)
            with m.State("SEND"):
                with _reply_byte(m, tx, cmd):
                    m.next = "COMMAND"

    def _dispatch(self, m, ctl, cmd, status):
        """The COMMAND state: take a command byte and start on it (unknown: a one-byte
        reply)."""
        rx = self.receiver.data
        ident = Ident.const({"magic": IDENT_MAGIC, "version": PROTOCOL_VERSION,
                             "n_cores": self.n_cores, "digest": self.digest,
                             "pipelined": self.bus_kind == "pipelined",
                             "maxphyaddr": self.maxphyaddr, "depth": self.window.depth}).as_bits()
        m.d.comb += rx.ready.eq(1)
        with m.If(rx.valid):
            m.d.sync += cmd.timer.eq(self.rx_timeout)
            with m.Switch(rx.payload):
                with m.Case(Command.IDENT):
                    cmd.send(m, ident, data.Layout.cast(Ident).size // 8)
                with m.Case(Command.START):
                    m.d.sync += [cmd.payload_left.eq(_START_BYTES), cmd.start_ok.eq(~ctl.running)]
                    m.next = "START_PAYLOAD"
                with m.Case(Command.STATUS):
                    cmd.send(m, status.as_value(), data.Layout.cast(Status).size // 8)
                with m.Case(Command.COUNTERS):
                    m.next = "COUNTERS_WAIT"
                with m.Case(Command.PID):
                    m.next = "PID_PAYLOAD"
                with m.Case(Command.MEMORY):
                    m.d.sync += [cmd.dump_addr.eq(0), cmd.dump_left.eq(self.window.depth)]
                    m.next = "DUMP_WAIT"
                with m.Default():
                    cmd.send(m, Reply.UNKNOWN, 1)

    def _leds(self, m, ctl):
        """Activity (a run or UART traffic, stretched), fault and done."""
        stretch = Signal(range(self.led_stretch + 1))
        with m.If(ctl.running | self.receiver.data.valid | self.transmitter.data.valid):
            m.d.sync += stretch.eq(self.led_stretch)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += [self.led_activity.eq(stretch != 0), self.led_fault.eq(ctl.fault),
                     self.led_done.eq(ctl.done)]


def _taken(stream):
    return stream.valid & stream.ready


def _or(values):
    out = values[0]
    for value in values[1:]:
        out = out | value
    return out


def _sum(values):
    return sum(values[1:], values[0])


#: The counters of outputs: one output is taken per cycle, so their events never coincide.
_ONE_AT_A_TIME = frozenset(c for c in Counter
                           if c in (Counter.NOTIFICATIONS, Counter.SELF_IPIS, Counter.GP)
                           or Counter.EXIT_DISABLED <= c <= Counter.EXIT_BUS_ERROR)


def _postings(unit):
    """(posted, suppressed): pulses of a posting completed, and of one that sent no
    notification. The classic unit's PID update has them; the pipelined unit's sequencer
    completes a posting when its ``WRITES`` round trip ends without ``err``, and sends no
    notification when it found ON or SN set (``notifying`` low)."""
    if unit.bus_kind == "classic":
        return unit.pid_update.posted, unit.pid_update.suppressed
    seq, trip = unit.sequencer, unit.issuer.trip
    posted = (seq.state == seq.State.WRITES) & trip.done & ~trip.error
    return posted, posted & ~seq.notifying


class _Control:
    """The run's state, shared by the run control, the command interface and the LEDs."""

    def __init__(self):
        self.reset_units = Signal()
        self.params = Signal(EngineParams)
        self.mix_we = Signal()          # a byte of the mix for the engines
        self.mix_addr = Signal(range(MIX_BYTES))
        self.mix_data = Signal(8)
        self.running = Signal()         # from START to the end of the run
        self.counting = Signal()        # the engines run (cycles are counted)
        self.done = Signal()
        self.fault = Signal()
        self.start = Signal()           # pulse: the engines begin
        self.start_request = Signal()   # from the command interface (only while not running)


class _CommandRegisters:
    """The command interface's registers."""

    def __init__(self, depth, rx_timeout):
        self.shreg = Signal(64)         # reply bytes, sent from the low end
        self.left = Signal(range(8 + 1))    # bytes of the shift register left to send
        self.counter = Signal(range(len(Counter) + 1))  # the next counter to send
        self.payload_left = Signal(range(_START_BYTES + 1))
        self.start_ok = Signal()        # START came while no run was going on
        self.timer = Signal(range(rx_timeout + 1))
        self.dump_addr = Signal(range(depth))
        self.dump_left = Signal(range(depth + 1))

    def send(self, m, value, n):
        """Reply with the ``n`` low bytes of ``value`` (state SEND)."""
        m.d.sync += [self.shreg.eq(value), self.left.eq(n)]
        m.next = "SEND"


@contextmanager
def _payload_byte(m, rx, timer):
    """Wait for a payload byte; the body runs when one comes. Without one before ``timer``
    runs out, the half-received command is dropped."""
    m.d.comb += rx.ready.eq(1)
    with m.If(rx.valid):
        yield
    with m.Elif(timer == 0):
        m.next = "COMMAND"
    with m.Else():
        m.d.sync += timer.eq(timer - 1)


def _word_by_word(m, tx, cmd, prefix, *, read, word, n_bytes, advance, last):
    """States ``{prefix}_READ``, ``_LOAD``, ``_SEND`` of the command FSM: ``read`` a word
    (statements, one cycle ahead of its data), load ``word``'s ``n_bytes`` into the shift
    register with the ``advance`` statements, send them, and go on with the next word until
    ``last`` holds."""
    with m.State(f"{prefix}_READ"):
        m.d.comb += read
        m.next = f"{prefix}_LOAD"
    with m.State(f"{prefix}_LOAD"):
        m.d.sync += [cmd.shreg.eq(word), cmd.left.eq(n_bytes), *advance]
        m.next = f"{prefix}_SEND"
    with m.State(f"{prefix}_SEND"):
        with _reply_byte(m, tx, cmd):
            with m.If(last):
                m.next = "COMMAND"
            with m.Else():
                m.next = f"{prefix}_READ"


@contextmanager
def _reply_byte(m, tx, cmd):
    """Send the shift register's low byte; the body runs when it was the last one."""
    m.d.comb += [tx.valid.eq(1), tx.payload.eq(cmd.shreg[:8])]
    with m.If(tx.ready):
        m.d.sync += [cmd.shreg.eq(cmd.shreg >> 8), cmd.left.eq(cmd.left - 1)]
        with m.If(cmd.left == 1):
            yield

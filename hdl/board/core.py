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
cores and equal the golden model's whatever the interleaving. The outputs are always taken.
Each START also resets the units, so a seed repeats its run to the cycle.
"""

from amaranth import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out, connect

from .. import IPIVSystem
from ..formats import (
    BUS_BYTES, ExitCause, NotifyInfo, PID_BYTES, PID_NOTIFY_INFO_OFFSET,
    PostedInterruptDescriptor,
)
from ..params import bus_addr_width, check_maxphyaddr
from .counters import EventCounters
from .digest import term
from .formats import (
    COUNTER_BYTES, COUNTER_WIDTH, Command, Counter, IDENT_MAGIC, Ident,
    PID_DUMP_WORDS, PROTOCOL_VERSION, Reply, StartCommand, Status, VCPU_BITS, VM_VCPUS,
)
from .memory import VMMemory
from .stimulus import StimulusEngine
from .uart import UARTReceiver, UARTTransmitter, check_divisor
from .vm import Window


__all__ = ["BoardCore"]

_PIR_WORDS = data.Layout.cast(PostedInterruptDescriptor)["pir"].width // (8 * BUS_BYTES)
_PID_WORDS = PID_BYTES // BUS_BYTES
_NOTIFY_INFO_WORD = PID_NOTIFY_INFO_OFFSET // BUS_BYTES
_ON = NotifyInfo.const({"on": 1}).as_bits()


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
        them: about 1900 fewer logic cells on an iCE40UP5K.
    pipeline : bool
        Register each memory request (`VMMemory`): one more cycle per bus transfer, a
        shorter path from the units' arbiters into the RAM.

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
                 led_stretch=1 << 20, digest=True, pipeline=False):
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
        self.system = IPIVSystem(n_cores, maxphyaddr=maxphyaddr)
        self.memory = VMMemory(self.window, addr_width=bus_addr_width(maxphyaddr),
                               pipeline=pipeline)
        self.engines = [StimulusEngine(core) for core in range(n_cores)]
        self.counters = EventCounters(len(Counter), width=COUNTER_WIDTH,
                                      inc_width=COUNTER_WIDTH)
        self.receiver = UARTReceiver(divisor)
        self.transmitter = UARTTransmitter(divisor)

    def vmcs(self, core, *, x2apic, ipiv):
        """Core ``core``'s VMCS configuration (from the VM layout's ``config``)."""
        return self.window.vm.config(core, x2apic=bool(x2apic), ipiv=bool(ipiv))

    def elaborate(self, platform):
        m = Module()
        system = self.system
        # Every run starts from the same unit state (arbiter owners included), so a run's
        # cycle count repeats with its seed.
        reset_units = Signal()
        m.submodules.system = ResetInserter({"sync": reset_units})(system)
        m.submodules.memory = mem = self.memory
        m.submodules.counters = counters = self.counters
        m.submodules.receiver = receiver = self.receiver
        m.submodules.transmitter = transmitter = self.transmitter
        for core, engine in enumerate(self.engines):
            m.submodules[f"engine{core}"] = engine
        connect(m, system.bus, mem.bus)
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]

        params = Signal(StartCommand)
        running = Signal()          # from START to the end of the run
        counting = Signal()         # the engines run (cycles are counted)
        done = Signal()
        fault = Signal()
        start = Signal()        # pulse: the engines begin

        # -- units, engines, counters -------------------------------------------------------
        inc = {c: [] for c in Counter}
        digest = []
        for core, engine in enumerate(self.engines):
            port = system.cores[core]
            unit = system.units[core]
            # Constant VMCS fields from the VM; the engine drives x2apic and ipiv.
            base = self.vmcs(core, x2apic=0, ipiv=0).as_bits()
            m.d.comb += [
                port.cfg.as_value().eq(base), port.cfg.x2apic.eq(engine.x2apic),
                port.cfg.ipiv.eq(engine.ipiv),
                engine.params.eq(params), engine.start.eq(start), engine.busy.eq(port.busy),
            ]
            connect(m, engine.icr, port.icr)
            for name in ("exit", "notify", "self_ipi", "gp"):
                m.d.comb += getattr(port, name).ready.eq(1)
            inc[Counter.ICR_WRITES].append(port.icr.valid & port.icr.ready)
            inc[Counter.POSTED].append(unit.pid_update.posted)
            inc[Counter.SUPPRESSED].append(unit.pid_update.suppressed)
            inc[Counter.NOTIFICATIONS].append(port.notify.valid)
            inc[Counter.SELF_IPIS].append(port.self_ipi.valid)
            inc[Counter.GP].append(port.gp.valid)
            for cause in ExitCause:
                inc[Counter.exit(cause)].append(port.exit.valid & (port.exit.p.cause == cause))
            for name in ("exit", "notify", "self_ipi", "gp"):
                stream = getattr(port, name)
                if self.digest:
                    digest.append(Mux(stream.valid, term(name, stream.p), 0))
        inc[Counter.CYCLES].append(counting)
        inc[Counter.WINDOW_FAULTS].append(mem.fault)

        for c in Counter:
            if c == Counter.DIGEST:
                total = sum(digest[1:], digest[0]) if digest else 0
            else:
                total = sum(inc[c][1:], inc[c][0])
            m.d.comb += counters.inc[c].eq(total)

        # -- run control: RAM image, engines, barrier sweeps --------------------------------
        depth = self.window.depth
        image = self.window.image()
        ctl_addr = Signal(range(depth))
        image_word = Signal(8 * BUS_BYTES)
        with m.Switch(ctl_addr):
            for i, word in enumerate(image):
                if word:
                    with m.Case(i):
                        m.d.comb += image_word.eq(word)

        start_request = Signal()    # from the command interface (only while not running)
        all_at_barrier = Cat(e.at_barrier for e in self.engines).all()
        all_done = Cat(e.done for e in self.engines).all()
        any_busy = Cat(system.cores[c].busy for c in range(self.n_cores)).any()
        vcpu = Signal(range(VM_VCPUS))
        word = Signal(range(_PIR_WORDS))
        pids = self.window.by_name["pids"].offset
        pid_base = pids + vcpu * _PID_WORDS

        with m.If(mem.fault):
            m.d.sync += fault.eq(1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(start_request):
                    m.d.sync += [ctl_addr.eq(0), running.eq(1), done.eq(0), fault.eq(0)]
                    m.d.comb += [counters.clear.eq(1), reset_units.eq(1)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [mem.ctl_en.eq(1), mem.ctl_addr.eq(ctl_addr), mem.ctl_we.eq(1),
                             mem.ctl_wdata.eq(image_word)]
                m.d.sync += ctl_addr.eq(ctl_addr + 1)
                with m.If(ctl_addr == depth - 1):
                    m.d.comb += start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += counting.eq(1)
                with m.If(~any_busy & all_done):
                    m.d.sync += [running.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(~any_busy & all_at_barrier):
                    m.d.sync += vcpu.eq(0)
                    m.next = "SWEEP_READ"
            with m.State("SWEEP_READ"):
                m.d.comb += [counting.eq(1), mem.ctl_en.eq(1),
                             mem.ctl_addr.eq(pid_base + _NOTIFY_INFO_WORD)]
                m.next = "SWEEP_CHECK"
            with m.State("SWEEP_CHECK"):
                # deliver_pending: a PID with ON set has ON and its PIR cleared.
                m.d.comb += [counting.eq(1), mem.ctl_en.eq(1),
                             mem.ctl_addr.eq(pid_base + _NOTIFY_INFO_WORD),
                             mem.ctl_wdata.eq(mem.ctl_rdata & ~_ON)]
                m.d.sync += word.eq(0)
                with m.If(NotifyInfo(mem.ctl_rdata).on):
                    m.d.comb += mem.ctl_we.eq(1)
                    m.next = "SWEEP_CLEAR"
                with m.Else():
                    m.next = "SWEEP_NEXT"
            with m.State("SWEEP_CLEAR"):
                m.d.comb += [counting.eq(1), mem.ctl_en.eq(1), mem.ctl_addr.eq(pid_base + word),
                             mem.ctl_we.eq(1), mem.ctl_wdata.eq(0)]
                m.d.sync += word.eq(word + 1)
                with m.If(word == _PIR_WORDS - 1):
                    m.next = "SWEEP_NEXT"
            with m.State("SWEEP_NEXT"):
                m.d.comb += counting.eq(1)
                m.d.sync += vcpu.eq(vcpu + 1)
                with m.If(vcpu == VM_VCPUS - 1):
                    for engine in self.engines:
                        m.d.comb += engine.release.eq(1)
                    m.next = "RUN"
                with m.Else():
                    m.next = "SWEEP_READ"

        # -- the command interface ----------------------------------------------------------
        rx, tx = receiver.data, transmitter.data
        shreg = Signal(64)          # reply bytes, sent from the low end
        left = Signal(range(len(Counter) * COUNTER_BYTES + 1))
        start_bytes = data.Layout.cast(StartCommand).size // 8
        payload_left = Signal(range(start_bytes + 1))
        start_ok = Signal()         # START came while no run was going on
        timer = Signal(range(self.rx_timeout + 1))
        dump_addr = Signal(range(depth))
        dump_left = Signal(range(depth + 1))

        ident = Ident.const({"magic": IDENT_MAGIC, "version": PROTOCOL_VERSION,
                             "n_cores": self.n_cores, "digest": self.digest,
                             "maxphyaddr": self.maxphyaddr, "depth": depth}).as_bits()
        status = Signal(Status)
        m.d.comb += [status.running.eq(running), status.done.eq(done), status.fault.eq(fault),
                     status.progress.eq(self.engines[0].issued)]

        def send(value, n):
            m.d.sync += [shreg.eq(value), left.eq(n)]
            m.next = "SEND"

        with m.FSM():
            with m.State("COMMAND"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += timer.eq(self.rx_timeout)
                    with m.Switch(rx.payload):
                        with m.Case(Command.IDENT):
                            send(ident, data.Layout.cast(Ident).size // 8)
                        with m.Case(Command.START):
                            m.d.sync += [payload_left.eq(start_bytes), start_ok.eq(~running)]
                            m.next = "START_PAYLOAD"
                        with m.Case(Command.STATUS):
                            send(status.as_value(), data.Layout.cast(Status).size // 8)
                        with m.Case(Command.COUNTERS):
                            m.next = "COUNTERS_WAIT"
                        with m.Case(Command.PID):
                            m.next = "PID_PAYLOAD"
                        with m.Case(Command.MEMORY):
                            m.d.sync += [dump_addr.eq(0), dump_left.eq(depth)]
                            m.next = "DUMP_WAIT"
                        with m.Default():
                            send(Reply.UNKNOWN, 1)
            with m.State("START_PAYLOAD"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += [timer.eq(self.rx_timeout), payload_left.eq(payload_left - 1)]
                    with m.If(start_ok):
                        m.d.sync += params.eq(Cat(params.as_value()[8:], rx.payload))
                    with m.If(payload_left == 1):
                        m.next = "START_GO"
                with m.Elif(timer == 0):
                    m.next = "COMMAND"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("START_GO"):
                with m.If(start_ok):
                    m.d.comb += start_request.eq(1)
                    send(Reply.ACK, 1)
                with m.Else():
                    send(Reply.BUSY, 1)
            with m.State("COUNTERS_WAIT"):
                with m.If(~running):
                    m.d.sync += left.eq(len(Counter) * COUNTER_BYTES)
                    m.next = "COUNTERS_SEND"
            with m.State("COUNTERS_SEND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(counters.byte)]
                with m.If(tx.ready):
                    m.d.comb += counters.shift.eq(1)
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "COMMAND"
            with m.State("PID_PAYLOAD"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += [dump_addr.eq(pids + rx.payload[:VCPU_BITS] * _PID_WORDS),
                                 dump_left.eq(PID_DUMP_WORDS)]
                    m.next = "DUMP_WAIT"
                with m.Elif(timer == 0):
                    m.next = "COMMAND"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DUMP_WAIT"):
                # The RAM is the controller's whenever no run is going on.
                with m.If(~running):
                    m.next = "DUMP_READ"
            with m.State("DUMP_READ"):
                m.d.comb += [mem.ctl_en.eq(1), mem.ctl_addr.eq(dump_addr)]
                m.next = "DUMP_LOAD"
            with m.State("DUMP_LOAD"):
                m.d.sync += [shreg.eq(mem.ctl_rdata), left.eq(BUS_BYTES),
                             dump_addr.eq(dump_addr + 1), dump_left.eq(dump_left - 1)]
                m.next = "DUMP_SEND"
            with m.State("DUMP_SEND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(shreg[:8])]
                with m.If(tx.ready):
                    m.d.sync += [shreg.eq(shreg >> 8), left.eq(left - 1)]
                    with m.If(left == 1):
                        with m.If(dump_left == 0):
                            m.next = "COMMAND"
                        with m.Else():
                            m.next = "DUMP_READ"
            with m.State("SEND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(shreg[:8])]
                with m.If(tx.ready):
                    m.d.sync += [shreg.eq(shreg >> 8), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "COMMAND"

        # -- LEDs ---------------------------------------------------------------------------
        stretch = Signal(range(self.led_stretch + 1))
        with m.If(running | rx.valid | tx.valid):
            m.d.sync += stretch.eq(self.led_stretch)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += [self.led_activity.eq(stretch != 0), self.led_fault.eq(fault),
                     self.led_done.eq(done)]
        return m

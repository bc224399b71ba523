"""On-chip memory holding the board's VM behind the unit's Wishbone port.

A block RAM of 64-bit words with byte enables (``Window.depth`` words), preloaded with the
VM's image. The bus side maps each physical word address through the `Window`; a transfer
outside the window ends with ``err`` (and a ``fault`` pulse): the unit should never make one.

On a classic port (``bus="classic"``) every transfer takes two cycles (``ack`` or ``err`` one
cycle after ``stb``), the ``ack+1`` memory of the project's benchmarks. On a pipelined port
(``bus="pipelined"``, Wishbone B4 pipelined) ``stall`` stays low: a request is taken in every
cycle with ``cyc & stb``, performed then (a write lands at the edge that ends that cycle) and
answered in the next cycle, in order (R = 2). With ``pipeline`` the request is registered
first, on either port: one more cycle per transfer (``ack+2``, R = 3), which cuts the path
from the units' arbiters into the RAM. With ``register_answer`` the answer (``ack``, ``err``,
``dat_r``) leaves from flip-flops one cycle later: one more cycle per transfer again, and the
units see no block RAM output (slow on ECP5: about 5.8 ns from clock to data).

A second, direct port (RAM indices, one-cycle read latency) serves the board's controller
while the units are idle; it wins when ``ctl_en``.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import wishbone
from ..formats import BUS_BYTES
from ..params import check_bus


__all__ = ["VMMemory"]


class VMMemory(wiring.Component):
    """The VM's RAM with its address window.

    Parameters
    ----------
    window : hdl.board.vm.Window
    addr_width : int
        Width of the bus word address (``maxphyaddr - 3``).
    pipeline : bool
        Register each request before decoding it (one more cycle per transfer).
    register_answer : bool
        Register each answer after the RAM (one more cycle per transfer).
    bus : str
        The units' memory port: ``"classic"`` or ``"pipelined"`` (`hdl.formats.BUS_KINDS`).

    Members
    -------
    bus : In(wishbone.Signature)
        The units' memory port (this is its slave); pipelined: with ``stall``, always low.
    fault : Out(1)
        Pulse: a transfer outside the window was answered with ``err``.
    ctl_en : In(1)
        The controller owns the RAM this cycle (the bus must be idle).
    ctl_addr : In(range(depth))
    ctl_we : In(1)
        Write all 8 bytes of ``ctl_wdata`` at ``ctl_addr``.
    ctl_wdata : In(64)
    ctl_rdata : Out(64)
        The word at the ``ctl_addr`` of the previous cycle.
    """

    def __init__(self, window, *, addr_width, pipeline=False, register_answer=False,
                 bus="classic"):
        self.window = window
        self._addr_width = addr_width
        self.pipeline = bool(pipeline)
        self.register_answer = bool(register_answer)
        self.bus_kind = check_bus(bus)
        super().__init__({
            "bus": In(wishbone.Signature(addr_width=addr_width,
                                         pipelined=bus == "pipelined")),
            "fault": Out(1),
            "ctl_en": In(1),
            "ctl_addr": In(range(window.depth)),
            "ctl_we": In(1),
            "ctl_wdata": In(8 * BUS_BYTES),
            "ctl_rdata": Out(8 * BUS_BYTES),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        depth = self.window.depth
        # An asynchronous read port followed by a register, with ``no_rw_check``: Yosys
        # merges the register into a block RAM port without emulating read-during-write
        # (which a synchronous Amaranth port asks for, at about 150 FFs and a long path on
        # iCE40). Reads and writes of one transfer never need each other's data.
        m.submodules.ram = ram = memory.Memory(shape=8 * BUS_BYTES, depth=depth,
                                               init=self.window.image(),
                                               attrs={"no_rw_check": 1})
        rd = ram.read_port(domain="comb")
        wr = ram.write_port(granularity=8)
        rdata = Signal(8 * BUS_BYTES)
        m.d.sync += rdata.eq(rd.data)

        valid, adr, we, sel, dat_w = self._request(m)
        hit, index = self._decode(m, adr)
        # The answer as the RAM gives it, one cycle after the request; ``register_answer``
        # delays it by one more.
        ack, err, answering = Signal(), Signal(), Signal()
        if self.bus_kind == "pipelined":
            # Every request reaching the RAM is answered, in order; writes land now.
            m.d.sync += [ack.eq(valid & hit), err.eq(valid & ~hit)]
            m.d.comb += bus.stall.eq(0)
            write = valid & we & hit
        else:
            # One request at a time: none taken again while its answer is on its way.
            request = valid & ~answering & ~bus.ack & ~bus.err
            m.d.sync += [ack.eq(request & hit), err.eq(request & ~hit)]
            # A write lands at the edge that ends its transfer (``ack`` high).
            write = valid & we & bus.ack
        if self.register_answer:
            dat_r = Signal.like(rdata)
            m.d.sync += [bus.ack.eq(ack), bus.err.eq(err), dat_r.eq(rdata)]
            m.d.comb += answering.eq(ack | err)
        else:
            dat_r = rdata
            m.d.comb += [bus.ack.eq(ack), bus.err.eq(err)]
        m.d.comb += [
            self.fault.eq(bus.err),
            bus.dat_r.eq(dat_r),
            self.ctl_rdata.eq(rdata),
        ]
        with m.If(self.ctl_en):
            m.d.comb += [rd.addr.eq(self.ctl_addr), wr.addr.eq(self.ctl_addr),
                         wr.data.eq(self.ctl_wdata), wr.en.eq(Cat([self.ctl_we] * BUS_BYTES))]
        with m.Else():
            m.d.comb += [rd.addr.eq(index), wr.addr.eq(index), wr.data.eq(dat_w)]
            with m.If(write):
                m.d.comb += wr.en.eq(sel)
        return m

    def _request(self, m):
        """(valid, adr, we, sel, dat_w) of the request as the RAM sees it: the bus itself, or
        (``pipeline``) a registered copy: on a classic port taken when it appears (``dat_w`` a
        cycle later) and dropped when answered (the master holds it until then); on a
        pipelined port, every cycle's."""
        bus = self.bus
        if not self.pipeline:
            return bus.cyc & bus.stb, bus.adr, bus.we, bus.sel, bus.dat_w
        valid = Signal()
        adr = Signal.like(bus.adr)
        we = Signal()
        sel = Signal.like(bus.sel)
        dat_w = Signal.like(bus.dat_w)
        copy = [adr.eq(bus.adr), we.eq(bus.we), sel.eq(bus.sel)]
        if self.bus_kind == "pipelined":
            m.d.sync += [valid.eq(bus.cyc & bus.stb), *copy, dat_w.eq(bus.dat_w)]
        else:
            with m.If(~valid & bus.cyc & bus.stb):
                m.d.sync += [valid.eq(1), *copy]
            # The write data is taken in the request's second cycle (the master holds it
            # until the answer, a cycle later at least): it lands with ``ack``, and an
            # arbiter may pass it on by its registered owner (``answers_later``).
            with m.If(valid):
                m.d.sync += dat_w.eq(bus.dat_w)
            with m.If(bus.ack | bus.err):
                m.d.sync += valid.eq(0)
        return valid, adr, we, sel, dat_w

    def _decode(self, m, adr):
        """Window decode: one comparison of the upper address bits per region; (hit, RAM
        index)."""
        hit = Signal()
        index = Signal(range(self.window.depth))
        for region in self.window.regions:
            with m.If(adr[region.bits:] == region.base >> region.bits):
                m.d.comb += [hit.eq(1), index.eq(region.offset + adr[:region.bits])]
        return hit, index

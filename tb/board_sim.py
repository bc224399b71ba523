"""The board top in Amaranth's simulator, behind the host's `Transport` interface.

`SimulatedBoard` runs `hdl.board.BoardCore` and a UART peer (8N1 on the core's ``rx`` and
``tx`` pins) in the simulator, so ``sim.board.protocol.BoardClient`` talks to it exactly as
it talks to a serial port. The simulation advances only while the host reads or pauses;
the peer wakes Python per bit, not per cycle (the board's own logic is most of the time).
"""

from collections import deque
from itertools import groupby

from amaranth.sim import Simulator

from hdl.board import BoardCore
from hdl.board.uart import frame_levels
from sim.board.transport import Transport
from sim.board.vm import board_vm


__all__ = ["SimulatedBoard"]

PERIOD = 1e-6       # notional; the host's timeouts are counted in cycles here


async def _until_edge(ctx, edge, target):
    """Wait from just after rising clock edge ``edge`` (0: the start) until just after edge
    ``target``, in one wake: a delay that ends on an edge wakes a testbench once that edge
    has taken effect, as `ctx.tick` does. Returns ``target``."""
    # The clock rises half a period after the start, then every period.
    await ctx.delay((target - edge - (0.5 if edge == 0 else 0)) * PERIOD)
    return target


class SimulatedBoard(Transport):
    """A `Transport` to a simulated board.

    Parameters
    ----------
    n_cores, maxphyaddr, digest, pipeline, register_answer, bus :
        `BoardCore` parameters.
    divisor : int
        Cycles per UART bit (small, to keep the simulation short).
    read_cycles : int
        Cycles a `read` may simulate before it gives up (the serial port's timeout).
    pause_cycles : int
        Cycles a `pause` simulates.
    """

    def __init__(self, *, n_cores=2, maxphyaddr=52, digest=True, pipeline=False,
                 register_answer=False, bus="classic", divisor=4, read_cycles=200_000,
                 pause_cycles=300):
        self.core = BoardCore(board_vm(), n_cores=n_cores, maxphyaddr=maxphyaddr,
                              digest=digest, pipeline=pipeline,
                              register_answer=register_answer, bus=bus, divisor=divisor,
                              rx_timeout=40 * divisor, led_stretch=8)
        self.divisor = divisor
        self.read_cycles = read_cycles
        self.pause_cycles = pause_cycles
        self.cycles = 0
        self._to_board = deque()
        self._from_board = deque()
        self._sim = Simulator(self.core)
        self._sim.add_clock(PERIOD)
        self._sim.add_testbench(self._drive_rx, background=True)
        self._sim.add_testbench(self._sample_tx, background=True)

    async def _drive_rx(self, ctx):
        # Python wakes where the level changes, not every cycle. A frame starts on a bit
        # boundary (every `divisor` cycles from the start); the host writes only between
        # `_advance` calls, so an idle line needs a look only at the first boundary after the
        # current call ends: the waveform is that of a peer looking at every boundary.
        rx, div = self.core.rx, self.divisor
        ctx.set(rx, 1)
        edge = 0                        # rising clock edges so far
        while True:
            if not self._to_board:
                edge = await _until_edge(ctx, edge, (self.cycles // div + 1) * div)
                continue
            byte = self._to_board.popleft()
            for level, bits in groupby(frame_levels(byte)):
                ctx.set(rx, level)
                edge = await _until_edge(ctx, edge, edge + len(list(bits)) * div)

    async def _sample_tx(self, ctx):
        # ``tx`` is registered: it falls on a clock edge, so whole periods from there end on
        # the edges after which each bit is sampled (one wake per bit).
        tx, div = self.core.tx, self.divisor
        while True:
            await ctx.negedge(tx)
            await ctx.delay(div // 2 * PERIOD)
            if ctx.get(tx):
                continue                    # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await ctx.delay(div * PERIOD)
                byte |= ctx.get(tx) << i
            await ctx.delay(div * PERIOD)
            if ctx.get(tx):                 # a good stop bit
                self._from_board.append(byte)

    def _advance(self, cycles):
        self.cycles += cycles
        self._sim.run_until(self.cycles * PERIOD)

    def write(self, data):
        self._to_board.extend(bytes(data))

    def read(self, n, timeout):
        budget = self.read_cycles
        step = 16 * self.divisor
        while len(self._from_board) < n and budget > 0:
            self._advance(step)
            budget -= step
        return bytes(self._from_board.popleft() for _ in range(min(n, len(self._from_board))))

    def pause(self, seconds):
        self._advance(self.pause_cycles)

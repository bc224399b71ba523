"""The board top in Amaranth's simulator, behind the host's `Transport` interface.

`SimulatedBoard` runs `hdl.board.BoardCore` and a UART peer (8N1 on the core's ``rx`` and
``tx`` pins) in the simulator, so ``sim.board.protocol.BoardClient`` talks to it exactly as
it talks to a serial port. The simulation advances only while the host reads or pauses.
"""

from collections import deque

from amaranth.sim import Simulator

from hdl.board import BoardCore
from sim.board.transport import Transport
from sim.board.vm import board_vm


__all__ = ["SimulatedBoard"]

PERIOD = 1e-6       # notional; the host's timeouts are counted in cycles here


async def _ticks(ctx, n):
    # One-shot waits: `TickTrigger.repeat` holds an async generator, which Python complains
    # about when the never-ending background testbench is collected.
    for _ in range(n):
        await ctx.tick()


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
        rx, div = self.core.rx, self.divisor
        ctx.set(rx, 1)
        while True:
            if not self._to_board:
                await _ticks(ctx, div)
                continue
            byte = self._to_board.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                ctx.set(rx, bit)
                await _ticks(ctx, div)

    async def _sample_tx(self, ctx):
        tx, div = self.core.tx, self.divisor
        while True:
            await ctx.negedge(tx)
            await _ticks(ctx, div // 2)
            if ctx.get(tx):
                continue                    # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await _ticks(ctx, div)
                byte |= ctx.get(tx) << i
            await _ticks(ctx, div)
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

"""Thin per-board wrappers of `BoardCore` through amaranth-boards.

Each board gets the core at its default clock, the UART at 115200 baud on the board's
USB-UART, and LEDs for activity, a fault and a finished run. `BOARDS` names the boards the
build command knows.
"""

from dataclasses import dataclass, field

from amaranth import Elaboratable, Module
from amaranth.lib import io

from .core import BoardCore


__all__ = ["BAUD", "BoardSpec", "BOARDS", "BoardTop"]

BAUD = 115_200


@dataclass(frozen=True)
class BoardSpec:
    """How the experiment is built for one board.

    Attributes
    ----------
    name : str
    platform, module : str
        The amaranth-boards platform class and the module that holds it.
    family : str
        ``"ice40"`` or ``"ecp5"``.
    leds : tuple
        The platform's LED resources ``(name, number)`` for activity, fault and done (None:
        not shown).
    core : dict
        `BoardCore` arguments besides the UART timing (see the measurements at `BOARDS`).
    programmer : str
        ``VARIABLE=default``: the environment variable amaranth-boards reads for the
        programming tool, and the tool it runs otherwise.
    """
    name: str
    platform: str
    module: str
    family: str
    leds: tuple
    core: dict = field(default_factory=dict)
    programmer: str = ""

    def make_platform(self):
        import importlib
        return getattr(importlib.import_module(f"amaranth_boards.{self.module}"), self.platform)()


BOARDS = {
    "icebreaker": BoardSpec(
        "icebreaker", "ICEBreakerPlatform", "icebreaker", "ice40",
        leds=(("led_g", 0), ("led_r", 0), None),
        # Measured (docs/decisions.md "board-area-timing"): with the digest (the units'
        # output payloads kept) two cores take 5067 of the UP5K's 5280 logic cells, 27.8 MHz
        # (median of 5 seeds) at 9.22 cycles per ICR write with the request register
        # (pipeline); without it 22.1 MHz at 6.67 (seed 1, measured earlier): fewer ns per
        # write, but under issue #20's 24 MHz.
        core={"n_cores": 2, "maxphyaddr": 36, "digest": True, "pipeline": True},
        programmer="ICEPROG=iceprog"),
    "ulx3s-85f": BoardSpec(
        "ulx3s-85f", "ULX3S_85F_Platform", "ulx3s", "ecp5",
        leds=(("led", 0), ("led", 1), ("led", 2)),
        # Measured with the registered unit: no memory register 75.6 MHz (median of 5 seeds)
        # at 6.67 cycles per ICR write (88 ns); earlier, one seed each: the answer registered
        # 75.5 MHz at 9.22 (122 ns), both 87.7 MHz at 11.89 (136 ns). Each register costs more
        # time per write than its Fmax gains (and the board runs at 25 MHz), so neither is on
        # by default.
        core={"n_cores": 2, "maxphyaddr": 52, "digest": True, "pipeline": False},
        programmer="OPENFPGALOADER=openFPGALoader"),
}


class BoardTop(Elaboratable):
    """`BoardCore` on a board: clock and reset from the platform, UART, LEDs.

    Parameters
    ----------
    spec : BoardSpec
    vm : VM layout
        The board's VM with its memory image (``sim.board.vm.board_vm()``).
    **overrides
        `BoardCore` arguments replacing ``spec.core``'s (``bus="pipelined"``: the units'
        memory port, classic by default).
    """

    def __init__(self, spec, vm, **overrides):
        self.spec = spec
        self.vm = vm
        self.overrides = overrides
        self.core = None
        self.core_args = None       # the `BoardCore` arguments, once elaborated

    def elaborate(self, platform):
        m = Module()
        clk_hz = platform.default_clk_frequency
        kwargs = {**self.spec.core, **self.overrides}
        kwargs.setdefault("divisor", round(clk_hz / BAUD))
        kwargs.setdefault("rx_timeout", int(clk_hz // 100))     # 10 ms
        kwargs.setdefault("led_stretch", int(clk_hz // 8))      # 125 ms
        self.core_args = kwargs
        m.submodules.core = self.core = core = BoardCore(self.vm, **kwargs)

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        names = ("led_activity", "led_fault", "led_done")
        for name, resource in zip(names, self.spec.leds):
            if resource is not None:
                m.submodules[name] = led = io.Buffer("o", platform.request(*resource, dir="-"))
                m.d.comb += led.o.eq(getattr(core, name))
        return m

"""A minimal 8N1 UART: a receiver and a transmitter with byte streams."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["FRAME_BITS", "frame_levels", "check_divisor", "UARTReceiver", "UARTTransmitter"]

FRAME_BITS = 10        # an 8N1 frame: a start bit, 8 data bits, a stop bit


def frame_levels(byte):
    """The line levels of ``byte``'s 8N1 frame, in the order they are sent: the start bit
    (0), the data bits least significant first, the stop bit (1)."""
    return [0, *((byte >> i) & 1 for i in range(8)), 1]


def check_divisor(divisor):
    """Return ``divisor`` (clock cycles per bit) if it is an int >= 4, else `ValueError`."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")
    return divisor


class UARTReceiver(wiring.Component):
    """Receives 8N1 frames on ``rx`` (asynchronous; synchronized here).

    A byte with a bad stop bit is dropped. A byte not taken before the next one arrives is
    overwritten (the command interface always takes bytes in time).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : In(1)
    data : Out(stream.Signature(8))
    """

    def __init__(self, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        bits = Signal(range(9))
        shreg = Signal(8)

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                # Look again in the middle of the start bit: a glitch is not a frame.
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), shreg.eq((rx << 7) | (shreg >> 1)),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shreg)]
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Sends each byte taken from ``data`` as an 8N1 frame on ``tx``; ``divisor`` as for
    `UARTReceiver`.

    Members
    -------
    data : In(stream.Signature(8))
    tx : Out(1)
    """

    def __init__(self, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(FRAME_BITS))
        frame = Signal(FRAME_BITS, init=0x3FF)     # stop, data, start: sent LSB first

        with m.If(bits == 0):
            m.d.comb += self.data.ready.eq(1)
            with m.If(self.data.valid):
                m.d.sync += [frame.eq((1 << (FRAME_BITS - 1)) | (self.data.payload << 1)),
                             bits.eq(FRAME_BITS), timer.eq(self.divisor - 1), self.tx.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(self.divisor - 1), bits.eq(bits - 1),
                         frame.eq((1 << 9) | (frame >> 1)), self.tx.eq(frame[1])]
            with m.If(bits == 1):
                m.d.sync += self.tx.eq(1)
        return m

"""Byte transports between the host and the board: a serial port, or anything else that
moves bytes (``tb.board_sim.SimulatedBoard`` runs the board top in Amaranth's simulator).
"""

import time


__all__ = ["TransportError", "Transport", "SerialTransport"]


class TransportError(Exception):
    """The transport cannot be used (its message is one line, for the user)."""


class Transport:
    """What `sim.board.protocol.BoardClient` needs from a link to the board."""

    def write(self, data):
        """Send ``data`` (bytes)."""
        raise NotImplementedError

    def read(self, n, timeout):
        """Receive up to ``n`` bytes, waiting at most ``timeout`` seconds for them; fewer
        bytes mean the time ran out."""
        raise NotImplementedError

    def pause(self, seconds):
        """Let the board work for a while (between status polls)."""
        time.sleep(seconds)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A serial port through pyserial (imported here, so the rest works without it).

    Parameters
    ----------
    port : str
        Device name (``/dev/ttyUSB1``, ``COM3``).
    baud : int
    """

    def __init__(self, port, baud=115_200):
        try:
            import serial
        except ImportError:
            raise TransportError("pyserial is not installed (pip install pyserial, or the "
                                 "project's 'fpga' extra)") from None
        try:
            self._port = serial.Serial(port, baud, timeout=0)
        except (serial.SerialException, OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise TransportError(f"cannot open serial port {port}: {reason}") from None
        self._port.reset_input_buffer()

    def write(self, data):
        self._port.write(bytes(data))
        self._port.flush()

    def read(self, n, timeout):
        deadline = time.monotonic() + timeout
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._port.timeout = left
            out += self._port.read(n - len(out))
        return bytes(out)

    def close(self):
        self._port.close()

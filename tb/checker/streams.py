"""The output streams' monitors: the valid/ready rules of each stream, its offers and its
handshakes, from the signals a backend samples each cycle."""

from hdl.formats import OUTPUT_STREAMS
from .errors import ProtocolError
from .events import Event, decode_event


__all__ = ["StreamMonitor", "OutputMonitors"]


class StreamMonitor:
    """The valid/ready rules of one output stream (``valid`` stays high and the payload
    stable until taken), its offers and its handshakes.

    Parameters
    ----------
    port : int
        The core.
    stream : str
        One of `hdl.formats.OUTPUT_STREAMS`.
    """

    def __init__(self, port, stream):
        self.port = port
        self.stream = stream
        self.offered = None         # (first cycle valid, payload) while offered
        self.stalls = 0             # cycles offered and not taken

    def sample(self, cycle, valid, bits, ready):
        """One cycle: ``valid``, the raw payload ``bits`` (only looked at while valid) and
        ``ready`` as they are at the clock edge. Returns (the payload whose ``valid`` rose in
        this cycle or None, the `Event` taken at this edge or None)."""
        if not valid:
            if self.offered is not None:
                raise ProtocolError(f"core {self.port}: {self.stream}.valid dropped at cycle "
                                    f"{cycle} before the payload {self.offered[1]} was taken")
            return None, None
        payload = decode_event(self.stream, bits)
        rising = None
        if self.offered is None:
            self.offered = (cycle, payload)
            rising = payload
        elif self.offered[1] != payload:
            raise ProtocolError(f"core {self.port}: {self.stream} payload changed at cycle "
                                f"{cycle} while valid: {self.offered[1]} -> {payload}")
        if ready:
            event = Event(self.port, self.stream, payload, self.offered[0], cycle)
            self.offered = None
            return rising, event
        self.stalls += 1
        return rising, None


class OutputMonitors:
    """The `StreamMonitor` of each output stream of one core."""

    def __init__(self, port):
        self.monitors = [StreamMonitor(port, name) for name in OUTPUT_STREAMS]

    @property
    def offered(self):
        """Some output is offered and not taken yet."""
        return any(m.offered is not None for m in self.monitors)

    @property
    def stalls(self):
        return sum(m.stalls for m in self.monitors)

    def sample(self, cycle, observed):
        """One cycle: ``observed`` holds (valid, raw payload, ready) of each stream, in the
        order of `hdl.formats.OUTPUT_STREAMS`. Returns ([(stream, payload)] whose ``valid``
        rose in this cycle, [`Event`] taken at this edge)."""
        rising, events = [], []
        for monitor, (valid, bits, ready) in zip(self.monitors, observed):
            offer, event = monitor.sample(cycle, valid, bits, ready)
            if offer is not None:
                rising.append((monitor.stream, offer))
            if event is not None:
                events.append(event)
        return rising, events

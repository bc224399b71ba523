"""The host end of the board's UART protocol (the formats are `hdl.board.formats`).

Every exchange is one command byte, a fixed payload, and a fixed reply; multi-byte fields
are little-endian, laid out by the same `amaranth.lib.data` layouts the gateware uses.
"""

import time
from dataclasses import dataclass

from amaranth.lib import data

from hdl.board.formats import (
    COUNTER_BYTES, Command, Counter, IDENT_MAGIC, Ident, PID_DUMP_WORDS, PROTOCOL_VERSION,
    Reply, StartCommand, Status, VM_VCPUS,
)
from hdl.formats import BUS_BYTES


__all__ = ["ProtocolError", "BoardInfo", "BoardStatus", "RunTimeout", "BoardClient",
           "pack", "unpack"]


class ProtocolError(Exception):
    """The board answered something unexpected, or not at all (one-line message)."""


class RunTimeout(ProtocolError):
    """A run did not finish in time."""


def pack(layout, bits):
    """The bytes of ``bits`` (an integer laid out by ``layout``)."""
    return bits.to_bytes(data.Layout.cast(layout).size // 8, "little")


def unpack(layout, raw):
    """A `data.Const` view of ``raw`` (bytes) under ``layout``."""
    return data.Layout.cast(layout).from_bits(int.from_bytes(raw, "little"))


def _size(layout):
    return data.Layout.cast(layout).size // 8


@dataclass(frozen=True)
class BoardInfo:
    """The IDENT reply: what the board was built with.

    Attributes
    ----------
    version : int
        Protocol version.
    n_cores, maxphyaddr : int
        The `BoardCore` parameters (the prediction needs them).
    digest : bool
        Whether the DIGEST counter is kept.
    depth : int
        RAM words (the MEMORY reply's length).
    bus : str
        The units' memory port, ``"classic"`` or ``"pipelined"`` (a board built before the
        pipelined port says classic: the bit was reserved, 0).
    """
    version: int
    n_cores: int
    digest: bool
    maxphyaddr: int
    depth: int
    bus: str = "classic"


@dataclass(frozen=True)
class BoardStatus:
    """The STATUS reply.

    Attributes
    ----------
    running, done, fault : bool
        A run is going on; one has finished since START; a memory access outside the VM
        window happened since START.
    progress : int
        Operations core 0 has started in this run.
    """
    running: bool
    done: bool
    fault: bool
    progress: int


class BoardClient:
    """Commands to the board over a `sim.board.transport.Transport`.

    Parameters
    ----------
    transport : Transport
    timeout : float
        Seconds to wait for each reply.
    """

    def __init__(self, transport, *, timeout=2.0):
        self.transport = transport
        self.timeout = timeout

    def _exchange(self, command, payload=b"", reply=0, *, what):
        self.transport.write(bytes([command]) + payload)
        raw = self.transport.read(reply, self.timeout)
        if len(raw) != reply:
            raise ProtocolError(f"no reply to {what} from the board ({len(raw)} of {reply} "
                                f"bytes): is it programmed and is this its UART?")
        return raw

    def ident(self):
        view = unpack(Ident, self._exchange(Command.IDENT, reply=_size(Ident), what="IDENT"))
        if view.magic != IDENT_MAGIC:
            raise ProtocolError("the device does not answer like the IPIv board "
                                f"(IDENT magic {view.magic:#010x})")
        if view.version != PROTOCOL_VERSION:
            raise ProtocolError(f"board protocol version {view.version}, this host speaks "
                                f"{PROTOCOL_VERSION}: rebuild the bitstream")
        return BoardInfo(view.version, view.n_cores, bool(view.digest), view.maxphyaddr,
                         view.depth, "pipelined" if view.pipelined else "classic")

    def start(self, params):
        """Start a run of ``params`` (`sim.board.experiment.RunParams`); False if busy."""
        raw = self._exchange(Command.START, pack(StartCommand, params.as_bits()), 1,
                             what="START")
        if raw[0] not in (Reply.ACK, Reply.BUSY):
            raise ProtocolError(f"unexpected reply {raw[0]:#04x} to START")
        return raw[0] == Reply.ACK

    def status(self):
        view = unpack(Status, self._exchange(Command.STATUS, reply=_size(Status),
                                             what="STATUS"))
        return BoardStatus(bool(view.running), bool(view.done), bool(view.fault),
                           view.progress)

    def counters(self):
        """Every `Counter` (waits for the run to end), as {Counter: int}."""
        raw = self._exchange(Command.COUNTERS, reply=len(Counter) * COUNTER_BYTES,
                             what="COUNTERS")
        return {c: int.from_bytes(raw[COUNTER_BYTES * c:COUNTER_BYTES * (c + 1)], "little")
                for c in Counter}

    def pid(self, vcpu):
        """vCPU ``vcpu``'s PID as 8 words (waits for the run to end)."""
        if not 0 <= vcpu < VM_VCPUS:
            raise ValueError(f"vCPU must be 0..{VM_VCPUS - 1}, not {vcpu}")
        raw = self._exchange(Command.PID, bytes([vcpu]), PID_DUMP_WORDS * BUS_BYTES,
                             what="PID")
        return _words(raw)

    def memory(self, depth):
        """The whole RAM, ``depth`` words (from `ident`)."""
        raw = self._exchange(Command.MEMORY, reply=depth * BUS_BYTES, what="MEMORY")
        return _words(raw)

    def run(self, params, *, timeout=60.0, poll=0.05, progress=None):
        """Start ``params`` and wait for the end; returns the counters.

        ``progress(done, total)`` is called with core 0's operations after each poll.
        Raises `RunTimeout` after ``timeout`` seconds (of the transport's clock).
        """
        if not self.start(params):
            raise ProtocolError("the board is busy with a run")
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if progress:
                progress(status.progress, params.count)
            if not status.running:
                break
            if time.monotonic() > deadline:
                raise RunTimeout(f"the run did not finish within {timeout:g} s "
                                 f"({status.progress}/{params.count} operations)")
            self.transport.pause(poll)
        return self.counters(), status


def _words(raw):
    return [int.from_bytes(raw[k:k + BUS_BYTES], "little") for k in range(0, len(raw), BUS_BYTES)]

"""The ports of one unit facing its logical processor (docs/interface.md), shared by both
bus variants and by `IPIVSystem`'s cores."""

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .formats import APICWriteExit, ICRWrite, Notification, OUTPUT_STREAMS, VMCSConfig


__all__ = ["CoreSignature"]


class CoreSignature(wiring.Signature):
    """The ports of one unit facing its logical processor: every member of `IPIVirtualizer`
    but the memory port (``cfg``, ``icr``, the output streams `OUTPUT_STREAMS`, ``busy``)."""

    def __init__(self):
        super().__init__({
            "cfg": In(VMCSConfig),
            "icr": In(stream.Signature(ICRWrite)),
            "exit": Out(stream.Signature(APICWriteExit)),
            "notify": Out(stream.Signature(Notification)),
            "self_ipi": Out(stream.Signature(8)),
            "gp": Out(stream.Signature(64)),
            "busy": Out(1),
        })
        assert all(name in self.members for name in OUTPUT_STREAMS)

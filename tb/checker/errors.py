"""The checker's two failures: the gateware did what the golden model or the contract forbids."""

__all__ = ["MismatchError", "ProtocolError"]


class MismatchError(AssertionError):
    """The gateware did something the golden model (or the contract) does not allow."""


class ProtocolError(MismatchError):
    """A port broke its protocol (Wishbone, stream valid/ready, the contract's ``busy``)."""

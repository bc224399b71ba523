"""Validation of the gateware's construction parameters."""

from .formats import BUS_KINDS, MAXPHYADDR_MAX, MAXPHYADDR_MIN


def check_maxphyaddr(maxphyaddr):
    """Return ``maxphyaddr`` if it is an int from 36 to 52, else raise `ValueError`."""
    if isinstance(maxphyaddr, bool) or not isinstance(maxphyaddr, int) or \
            not MAXPHYADDR_MIN <= maxphyaddr <= MAXPHYADDR_MAX:
        raise ValueError(f"maxphyaddr must be an integer from {MAXPHYADDR_MIN} to "
                         f"{MAXPHYADDR_MAX}, not {maxphyaddr!r}")
    return maxphyaddr


def bus_addr_width(maxphyaddr):
    """Width of the Wishbone word address for a MAXPHYADDR."""
    return check_maxphyaddr(maxphyaddr) - 3


def check_bus(bus):
    """Return ``bus`` if it is one of `hdl.formats.BUS_KINDS`, else raise `ValueError`."""
    if not isinstance(bus, str) or bus not in BUS_KINDS:
        raise ValueError(f"bus must be one of {', '.join(map(repr, BUS_KINDS))}, not {bus!r}")
    return bus

"""Formats of the board experiment, in one place: the stimulus engine's draw and mix, the
UART commands and replies, and the event counters.

The gateware uses these layouts as signal shapes; the host side (``sim.board``) packs and
unpacks the same layouts into bytes (little-endian, bit 0 of a layout is bit 0 of byte 0).
Architectural formats (ICR, PID, ...) stay in `hdl.formats`.
"""

import enum as py_enum

from amaranth.lib import data, enum

from ..formats import DeliveryMode, DestMode, ExitCause, Shorthand, TriggerMode


__all__ = [
    "Category", "UNSUPPORTED_FORMS", "RESERVED_FORMS", "MIX_SLOTS", "Mix", "Modes", "Draw",
    "Command", "Reply", "EngineParams", "StartCommand", "Status", "Ident", "IDENT_MAGIC", "PROTOCOL_VERSION",
    "Counter", "COUNTER_WIDTH", "COUNTER_BYTES", "PID_DUMP_WORDS", "seed_salt", "VM_IDS",
    "VM_VCPUS", "VCPU_BITS", "VM_STATES", "MAX_CORES",
]


# --- The VM the board holds (its layout comes from `sim.scenarios.build_vm`) ---------------

VM_IDS = 8                  # PID-pointer table entries (last PID-pointer index 7)
VM_VCPUS = 4                # vCPUs 0..3 exist; IDs 4..7 have no vCPU (entry 0, invalid)
VCPU_BITS = (VM_VCPUS - 1).bit_length()
VM_STATES = ("running", "running", "preempted", "blocked")   # vCPU i runs on pCPU i + 1
MAX_CORES = VM_VCPUS        # core i is the logical processor running vCPU i (the sender)


# --- The stimulus engine -------------------------------------------------------------------

class Category(enum.Enum, shape=4):
    """What kind of guest IPI one stimulus operation sends (the mix picks one per operation).

    Values 11..15 are not categories; the engine treats them as ``UNICAST``.
    """
    UNICAST = 0         # fixed, physical, edge to vCPU 0..3: virtualized
    NO_VCPU = 1         # to IDs 4..7 (entry invalid)
    OUT_OF_RANGE = 2    # to 8..135 (beyond the last index)
    ILLEGAL_VECTOR = 3  # vector 0..15
    UNSUPPORTED = 4     # logical, lowest priority, SMI, level, NMI, INIT, SIPI, all-but-self
    SELF_IPI = 5        # shorthand self (xAPIC: virtualized self-IPI; x2APIC: exit)
    SENDUIPI = 6        # SENDUIPI with a raw NV and NDST 0..7
    BROADCAST = 7       # destination 0xFF / 0xFFFFFFFF
    RESERVED = 8        # a reserved ICR bit set (x2APIC: #GP)
    DISABLED = 9        # a unicast with the IPIv control off for this write
    GARBAGE = 10        # a raw 32-bit ICR value


MIX_SLOTS = 16


class Mix(data.Struct):
    """The programmable mix: each operation picks ``slots[draw.slot]`` (16 equal slots)."""
    slots: data.ArrayLayout(Category, MIX_SLOTS)


# `ICRLow` fields of the UNSUPPORTED forms, in `Draw.variant` order.
UNSUPPORTED_FORMS = (
    {"dest_mode": DestMode.LOGICAL},
    {"delivery_mode": DeliveryMode.LOWEST_PRIORITY},
    {"delivery_mode": DeliveryMode.SMI},
    {"trigger": TriggerMode.LEVEL},
    {"delivery_mode": DeliveryMode.NMI},
    {"delivery_mode": DeliveryMode.INIT},
    {"delivery_mode": DeliveryMode.STARTUP},
    {"shorthand": Shorthand.ALL_EXCLUDING_SELF},
)
# `ICRLow` fields of the RESERVED forms, in ``Draw.variant % 4`` order.
RESERVED_FORMS = (
    {"reserved_13": 1},
    {"reserved_17_16": 0b01},
    {"reserved_17_16": 0b10},
    {"reserved_31_20": 0x800},
)


class Modes(data.Struct):
    """The guest APIC modes to use; with both, the draw's ``x2apic`` bit picks one."""
    x2apic: 1
    xapic: 1


class Draw(data.Struct):
    """How an operation uses its 32-bit random word (one xorshift32 step per operation)."""
    slot: 4         # index into the mix
    x2apic: 1       # guest mode, when both modes are allowed
    vector: 8       # raw vector (where a legal one is wanted, 0..15 become 16..31)
    target: 3       # destination ID (vCPU or free ID), or SENDUIPI NDST
    variant: 3      # which unsupported / reserved form
    level: 1        # ICR bit 14 (ignored by IPIv)
    far: 7          # out-of-range destination = 8 + far
    noise: 5        # ICR2 bits 4:0 and UPID bits 12:8, which the unit must ignore


# --- The UART protocol ---------------------------------------------------------------------

class Command(py_enum.IntEnum):
    """First byte of a host frame; the payload (if any) follows, the reply comes back."""
    IDENT = ord("I")        # reply: `Ident`
    START = ord("S")        # payload: `StartCommand`; reply: `Reply.ACK` or `Reply.BUSY`
    STATUS = ord("Q")       # reply: `Status`
    COUNTERS = ord("C")     # reply: every `Counter`, COUNTER_BYTES each (after the run ends)
    PID = ord("P")          # payload: one byte, the vCPU; reply: its PID, 8 words (after
                            # the run ends)
    MEMORY = ord("M")       # reply: every RAM word, `Ident.depth` words (after the run ends)


class Reply(py_enum.IntEnum):
    ACK = ord("K")
    BUSY = ord("B")         # START while a run is going on: ignored
    UNKNOWN = ord("?")      # an unknown command byte


class EngineParams(data.Struct):
    """What every stimulus engine holds for a run: each core issues ``count`` operations;
    every ``epoch`` operations (0: never) all cores meet and the host side handles pending
    notifications."""
    seed: 32
    count: 32
    epoch: 16
    modes: Modes
    reserved: 6


class StartCommand(data.Struct):
    """Payload of START: the engines' parameters, then the mix (which each engine keeps in a
    block RAM, written as the bytes arrive: two slots a byte)."""
    engine: EngineParams
    mix: Mix


class Status(data.Struct):
    running: 1
    done: 1         # a run has finished since the last START
    fault: 1        # a memory access outside the VM window since the last START
    reserved: 5
    progress: 32    # operations core 0 has started in this run


IDENT_MAGIC = int.from_bytes(b"IPIV", "little")
PROTOCOL_VERSION = 1


class Ident(data.Struct):
    """What the board was built with (the host predicts with the same parameters)."""
    magic: 32
    version: 8
    n_cores: 4
    digest: 1       # the DIGEST counter is kept (else it stays 0)
    pipelined: 1    # the units' memory port is Wishbone B4 pipelined (else classic)
    reserved: 2
    maxphyaddr: 8
    depth: 8        # RAM words (see `hdl.board.vm.Window`)


class Counter(py_enum.IntEnum):
    """The event counters, in the order COUNTERS sends them (totals over all cores)."""
    CYCLES = 0          # clock cycles from the start of the run to its end
    ICR_WRITES = 1      # ICR writes accepted by the units
    POSTED = 2          # virtualized IPIs (PIR set)
    NOTIFICATIONS = 3
    SUPPRESSED = 4      # postings without a notification (ON or SN set)
    SELF_IPIS = 5
    GP = 6
    EXIT_DISABLED = 7   # then one per `ExitCause`, in its order
    EXIT_UNSUPPORTED = 8
    EXIT_ILLEGAL_VECTOR = 9
    EXIT_BROADCAST = 10
    EXIT_INDEX_RANGE = 11
    EXIT_ENTRY_INVALID = 12
    EXIT_BUS_ERROR = 13
    DIGEST = 14         # sum of a 32-bit fold of every output payload (see `hdl.board.digest`)
    WINDOW_FAULTS = 15  # bus transfers outside the VM window (answered with err)

    @classmethod
    def exit(cls, cause):
        """The counter of exits with `ExitCause` ``cause``."""
        return cls(cls.EXIT_DISABLED + ExitCause(cause).value)


def seed_salt(core):
    """What core ``core``'s generator state starts from: ``seed ^ salt`` (``salt`` if that is
    0, the one state xorshift32 cannot leave)."""
    return (0x9E37_79B9 * (core + 1)) & 0xFFFF_FFFF


COUNTER_WIDTH = 32
COUNTER_BYTES = COUNTER_WIDTH // 8
PID_DUMP_WORDS = 8          # a PID is 64 bytes: 8 words of 64 bits

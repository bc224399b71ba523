"""The board experiment in Python: the stimulus engine's model and the golden prediction.

`operations` reproduces, bit for bit, what `hdl.board.stimulus.StimulusEngine` issues for a
seed and a mix; `predict` runs those writes through `sim.golden.GoldenIPIVirtualizer` on the
board's VM (the same `build_vm` layout the gateware preloads), epoch by epoch with
`deliver_pending` between epochs, and returns the counters the board must report and the
memory it must end with. Plain Python: no simulator.
"""

from collections import Counter as Tally
from dataclasses import dataclass, field

from amaranth.lib import data

from hdl.board.digest import exit_bits, notify_bits, term_of
from hdl.board.formats import (
    Category, Counter, Draw, MIX_SLOTS, PID_DUMP_WORDS, RESERVED_FORMS, StartCommand,
    UNSUPPORTED_FORMS, VM_IDS, VM_VCPUS, seed_salt,
)
from hdl.board.vm import Window
from .vm import board_vm
from hdl.formats import (
    BUS_BYTES, FIRST_LEGAL_VECTOR, ICRLow, ICRWriteKind, SendUIPIData, Shorthand,
    X2APIC_BROADCAST_ID, X2APICICR, XAPIC_BROADCAST_ID, XAPICICRHigh, XAPICNDST,
)
from ..golden import GoldenIPIVirtualizer, Outcome
from ..scenarios import deliver_pending


__all__ = [
    "CATEGORY_NAMES", "DEFAULT_WEIGHTS", "RunParams", "mix_from_weights", "parse_mix",
    "xorshift32", "Operation", "decode", "operations", "Prediction", "predict",
]

_U32 = 0xFFFF_FFFF

# Command-line names of the categories.
CATEGORY_NAMES = {c: c.name.lower().replace("_", "-") for c in Category}
DEFAULT_WEIGHTS = {
    Category.UNICAST: 6, Category.NO_VCPU: 1, Category.OUT_OF_RANGE: 1,
    Category.ILLEGAL_VECTOR: 1, Category.UNSUPPORTED: 1, Category.SELF_IPI: 2,
    Category.SENDUIPI: 1, Category.BROADCAST: 1, Category.RESERVED: 1, Category.DISABLED: 1,
}


def mix_from_weights(weights):
    """The 16 mix slots for ``{Category: weight}`` (largest remainders; every category with a
    weight gets at least one slot). Raises `ValueError` if that is impossible."""
    weights = {Category(c): w for c, w in weights.items() if w}
    if any(not isinstance(w, int) or w < 0 for w in weights.values()):
        raise ValueError("mix weights must be non-negative integers")
    if not weights:
        raise ValueError("the mix needs at least one category with a weight")
    if len(weights) > MIX_SLOTS:
        raise ValueError(f"at most {MIX_SLOTS} categories fit the mix")
    total = sum(weights.values())
    exact = {c: w * MIX_SLOTS / total for c, w in weights.items()}
    slots = {c: max(1, int(x)) for c, x in exact.items()}
    while sum(slots.values()) > MIX_SLOTS:          # the minimum of one took too many
        c = max(slots, key=lambda c: (slots[c] - exact[c], slots[c]))
        slots[c] -= 1
    while sum(slots.values()) < MIX_SLOTS:
        c = max(slots, key=lambda c: (exact[c] - slots[c], -c.value))
        slots[c] += 1
    return tuple(c for c in sorted(slots, key=lambda c: c.value) for _ in range(slots[c]))


def parse_mix(text):
    """``"unicast=6,self-ipi=2"`` -> 16 slots. Raises `ValueError` with a one-line reason."""
    by_name = {name: c for c, name in CATEGORY_NAMES.items()}
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if name.strip() not in by_name:
            raise ValueError(f"unknown category {name.strip()!r} (known: "
                             f"{', '.join(by_name)})")
        try:
            weight = int(value) if sep else 1
        except ValueError:
            raise ValueError(f"weight of {name.strip()!r} is not an integer: {value!r}") \
                from None
        if weight < 0:
            raise ValueError(f"weight of {name.strip()!r} must not be negative")
        weights[by_name[name.strip()]] = weight
    return mix_from_weights(weights)


@dataclass(frozen=True)
class RunParams:
    """One run of the board experiment (the START command).

    Attributes
    ----------
    seed : int
        32 bits; core ``i``'s generator starts from ``seed ^ seed_salt(i)``.
    count : int
        Operations each core issues (32 bits).
    epoch : int
        Every ``epoch`` operations (16 bits, 0: never) all cores meet and pending
        notifications are delivered (`sim.scenarios.deliver_pending`).
    x2apic, xapic : bool
        Guest APIC modes to use (at least one).
    mix : tuple of Category
        The 16 mix slots (`mix_from_weights`, `parse_mix`).
    """
    seed: int = 1
    count: int = 64
    epoch: int = 8
    x2apic: bool = True
    xapic: bool = True
    mix: tuple = mix_from_weights(DEFAULT_WEIGHTS)

    def __post_init__(self):
        for name, bits in (("seed", 32), ("count", 32), ("epoch", 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value < 1 << bits:
                raise ValueError(f"{name} must be an integer from 0 to {(1 << bits) - 1}, "
                                 f"not {value!r}")
        if not (self.x2apic or self.xapic):
            raise ValueError("at least one APIC mode (x2APIC or xAPIC) is needed")
        if len(self.mix) != MIX_SLOTS:
            raise ValueError(f"the mix has {MIX_SLOTS} slots, not {len(self.mix)}")

    def as_bits(self):
        """The START payload (`StartCommand`) as an integer."""
        return data.Layout.cast(StartCommand).const({
            "engine": {"seed": self.seed, "count": self.count, "epoch": self.epoch,
                       "modes": {"x2apic": int(self.x2apic), "xapic": int(self.xapic)}},
            "mix": {"slots": [Category(c) for c in self.mix]},
        }).as_bits()

    def mix_text(self):
        counts = Tally(Category(c) for c in self.mix)
        return ",".join(f"{CATEGORY_NAMES[c]}={n}" for c, n in sorted(
            counts.items(), key=lambda item: item[0].value))


def xorshift32(x):
    """One xorshift32 step (shifts 13, 17, 5)."""
    x ^= (x << 13) & _U32
    x ^= x >> 17
    return x ^ ((x << 5) & _U32)


@dataclass(frozen=True)
class Operation:
    """One stimulus operation.

    Attributes
    ----------
    category : Category
    x2apic, ipiv : bool
        The VMCS bits it runs with.
    writes : tuple
        ``((ICRWriteKind, value), ...)``: one write, or ICR2 then ICR for an xAPIC IPI.
    """
    category: Category
    x2apic: bool
    ipiv: bool
    writes: tuple       # ((ICRWriteKind, value), ...)


def decode(params, draw):
    """The `Operation` the engine makes of the 32-bit ``draw`` (mirrors the gateware)."""
    d = Draw.from_bits(draw)
    slot = params.mix[d.slot]
    slot = slot.value if isinstance(slot, Category) else int(slot)
    # Values that name no category act as UNICAST (the gateware's default case).
    category = Category(slot) if slot in {c.value for c in Category} else Category.UNICAST
    x2 = bool(d.x2apic) if params.x2apic and params.xapic else bool(params.x2apic)
    low = {"vector": d.vector | FIRST_LEGAL_VECTOR if d.vector < FIRST_LEGAL_VECTOR else
           d.vector, "level": d.level}
    dest = d.target % VM_VCPUS
    if category is Category.NO_VCPU:
        dest = VM_VCPUS + d.target % VM_VCPUS
    elif category is Category.OUT_OF_RANGE:
        dest = VM_IDS + d.far
    elif category is Category.ILLEGAL_VECTOR:
        low["vector"] = d.vector % FIRST_LEGAL_VECTOR
    elif category is Category.UNSUPPORTED:
        low.update(UNSUPPORTED_FORMS[d.variant])
    elif category is Category.SELF_IPI:
        low.update(shorthand=Shorthand.SELF, dest_mode=d.variant & 1)
    elif category is Category.BROADCAST:
        dest = X2APIC_BROADCAST_ID if x2 else XAPIC_BROADCAST_ID
    elif category is Category.RESERVED:
        low.update(RESERVED_FORMS[d.variant & 3])
    icr_lo = draw if category is Category.GARBAGE else ICRLow.const(low).as_bits()

    if category is Category.SENDUIPI:
        ndst = d.target if x2 else XAPICNDST.const({"apic_id": d.target}).as_bits()
        writes = ((ICRWriteKind.SENDUIPI, SendUIPIData.const(
            {"nv": d.vector, "reserved_31_8": d.noise, "ndst": ndst}).as_bits()),)
    elif x2:
        writes = ((ICRWriteKind.X2APIC_ICR, X2APICICR.const({"dest": dest}).as_bits() |
                   icr_lo),)
    else:
        writes = ((ICRWriteKind.XAPIC_ICR_HI, XAPICICRHigh.const(
                      {"reserved_23_0": d.noise, "dest": dest & 0xFF}).as_bits()),
                  (ICRWriteKind.XAPIC_ICR_LO, icr_lo))
    return Operation(category, x2, category is not Category.DISABLED, writes)


def operations(params, core):
    """Core ``core``'s operations for ``params``, in order (a generator)."""
    salt = seed_salt(core)
    state = (params.seed ^ salt) or salt
    for _ in range(params.count):
        state = xorshift32(state)
        yield decode(params, state)


@dataclass
class Prediction:
    """What the board must report after a run, by the golden model.

    Attributes
    ----------
    counters : dict
        {Counter: int}; CYCLES is None (timing is not the golden model's business).
    memory : sim.memory.Memory
        The VM's memory after the run.
    window : hdl.board.vm.Window
    categories : collections.Counter
        Operations per `Category`, over all cores.
    """
    counters: dict
    memory: object
    window: Window
    categories: Tally = field(default_factory=Tally)

    def ram(self):
        """The RAM image the board must end with."""
        return self.window.image(self.memory)

    def pid(self, vcpu):
        pid = self.window.vm.pids[vcpu]
        return [self.memory.read(pid + BUS_BYTES * k) for k in range(PID_DUMP_WORDS)]


def predict(params, *, n_cores, maxphyaddr, digest=True, bus="classic"):
    """Run the experiment on the golden model of the units with memory port ``bus`` (see the
    module docstring). Both ports make the same transfers, in another order, so they predict
    the same counters and memory unless a transfer errs, which no write of the board's VM
    makes happen."""
    window = Window(board_vm(), n_cores)
    vm = window.vm
    memory = vm.memory.copy()
    golden = GoldenIPIVirtualizer(maxphyaddr=maxphyaddr, bus=bus)
    counts = {c: 0 for c in Counter}
    counts[Counter.CYCLES] = None
    categories = Tally()
    digest_sum = 0
    streams = [operations(params, core) for core in range(n_cores)]
    epoch = params.epoch or params.count or 1
    done = 0
    while done < params.count:
        n = min(epoch, params.count - done)
        for core, ops in enumerate(streams):
            for _ in range(n):
                op = next(ops)
                categories[op.category] += 1
                cfg = vm.config(core, x2apic=op.x2apic, ipiv=op.ipiv)
                for kind, value in op.writes:
                    result = golden.execute(cfg, memory, kind, value)
                    counts[Counter.ICR_WRITES] += 1
                    digest_sum += _tally(counts, result)
        done += n
        if done < params.count:
            deliver_pending(vm, memory)
    counts[Counter.DIGEST] = digest_sum & _U32 if digest else 0
    return Prediction(counts, memory, window, categories)


def _tally(counts, result):
    """Count one golden `Result`; return its digest terms."""
    if result.outcome is Outcome.POSTED:
        counts[Counter.POSTED] += 1
        if result.notify is None:
            counts[Counter.SUPPRESSED] += 1
            return 0
        counts[Counter.NOTIFICATIONS] += 1
        return term_of("notify", notify_bits(*result.notify))
    if result.outcome is Outcome.SELF_IPI:
        counts[Counter.SELF_IPIS] += 1
        return term_of("self_ipi", result.vector)
    if result.outcome is Outcome.GP:
        counts[Counter.GP] += 1
        return term_of("gp", result.icr)
    if result.outcome is Outcome.EXIT:
        counts[Counter.exit(result.cause)] += 1
        return term_of("exit", exit_bits(result.cause, result.icr, result.reason,
                                         result.qualification))
    return 0

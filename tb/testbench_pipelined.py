"""The memory helper of the testbench top (`tb.testbench_top`) for a unit or system with the
pipelined memory port: a Wishbone B4 pipelined slave (docs/interface.md, "Memory port,
pipelined") that plays what Python (`tb.pipelined_memory.PipelinedMemory`) drew, so Python is
woken once per request, in the cycle it is taken.

- **stall**: high while the software agent owns the memory, and for the stall cycles Python
  loaded for the next request (counted over the cycles a request is presented; the first
  request's come from the input ``first_stall``, written at reset). A request is taken in a
  cycle with ``cyc & stb & ~stall``.
- **take** (``need``): Python performs the request then and loads, in the same cycle, its
  answer (``ack`` with the data, or ``err``) with the cycle it is due (modulo 2**16: the
  helper compares it with the cycle count, nothing is added each cycle), and the stall of the
  next request. The helper keeps up to `ANSWER_SLOTS` answers and gives each in its cycle, in
  the order taken (Python never plans one in the cycle its request is taken, nor two in one
  cycle); ``dat_r`` carries garbage outside an answer.
- **checks**, every cycle: no ``stb``/``lock`` without ``cyc``; a stalled request stays on the
  bus unchanged until taken (only an ``err`` answer withdraws it); ``cyc`` high while answers
  are outstanding; ``lock`` high while a locked request's answer is outstanding (the lock
  window ends with the answer of the last locked request) and rising only in a cycle a
  request is taken (it starts with the first locked request taken); no more outstanding
  answers than the memory holds; and, as on the classic port, no arbiter switching masters
  while the owner's ``cyc`` is high.
"""

from amaranth import Array, Cat, Mux, Signal

from .testbench_hdl import Armed, STALL_BITS, WAIT_BITS, fields, flag, request_changed, sub


__all__ = ["ANSWER_SLOTS", "MEM_FIELDS", "PIPELINED_BUS_ERRORS", "PipelinedMemoryHelper"]

#: Answers the memory holds at once: a master with more requests outstanding is an error (the
#: unit has at most three, one round trip's; a round trip starts after the last answer of the
#: one before).
ANSWER_SLOTS = 4
DUE_BITS = 16               # an answer's cycle, modulo 2**16 (it is due within 2**WAIT_BITS)
assert 2 ** WAIT_BITS + 2 * ANSWER_SLOTS < 2 ** DUE_BITS

#: Python's answer to a request taken, with the stall of the next request.
MEM_FIELDS = [("toggle", 1), ("stall", STALL_BITS), ("due", DUE_BITS), ("err", 1),
              ("data", 64)]

#: The bus protocol errors of the pipelined port, one ``errors`` bit each (in this order).
PIPELINED_BUS_ERRORS = (
    "stb or lock high without cyc",
    "the master withdrew a stalled request without an err answer",
    "the master changed a stalled request",
    "cyc fell with answers outstanding",
    "lock fell with a locked request's answer outstanding",
    "lock rose without a request taken",
    f"more than {ANSWER_SLOTS} answers outstanding",
    "an arbiter switched masters while the owner's cyc was high")


class PipelinedMemoryHelper:
    """Builds the helper into ``m`` for ``top`` (a `tb.testbench_top.TestbenchTop`): fills
    ``status`` (``need``, ``acked``, ``cyc``) and ``errors["bus"]`` (all but the arbiter's),
    sets the top's ``_held`` (the agent owns the memory), ``_take`` and ``_may_start``;
    ``wake`` says Python has a request to answer. Each part is a submodule of its own
    (Amaranth's simulator re-runs a module's logic on any change of its inputs)."""

    def __init__(self, top, m, status, errors):
        bus = self.bus = top.dut.bus
        self.top, self.m = top, m
        answer = self.answer = fields("mem_answer", top.mem_answer, top.layouts.mem_fields)
        self.arm = Armed(m, answer["toggle"], "mem")
        held = top._held = Signal(name="held")
        req = bus.cyc & bus.stb
        self.take = top._take = flag(m, "take", req & ~bus.stall)
        self._stall(held, req)
        answering, err_now, locked_out, outstanding = self._answers()
        grant, grant_q, locked = top._locked_cycles(sub(m, "locked_cycles"))
        # the agent may start outside the DUT's lock window (it rises with the first locked
        # request taken, which Python performed then)
        top._may_start = flag(m, "may_start", ~locked)
        top._bus_statistics(sub(m, "statistics"), grant, grant_q, held, req)
        errors["bus"] = self._checks(req, err_now, locked_out, outstanding, locked)
        acked = Signal(name="acked")
        m.d.sync += acked.eq(answering)
        self.wake = flag(m, "need", self.take & ~self.arm.armed)
        status.update(need=self.wake, acked=acked, cyc=bus.cyc)

    def _stall(self, held, req):
        m, bus, answer = sub(self.m, "stall"), self.bus, self.answer
        left = Signal(STALL_BITS, name="stall_left")       # of the request now presented
        started = Signal(name="stall_started")             # ``left`` is loaded
        budget = Mux(started, left, self.top.first_stall)
        m.d.comb += bus.stall.eq(held | (budget != 0))
        with m.If(self.arm.armed):
            m.d.sync += [left.eq(answer["stall"]), started.eq(1)]
        with m.Elif(req & ~held & (budget != 0)):
            m.d.sync += [left.eq(budget - 1), started.eq(1)]

    def _answers(self):
        """The answers planned and not given yet, oldest first; returns (an answer in this
        cycle, an ``err`` answer in this cycle, a locked request's answer outstanding, any
        answer outstanding)."""
        m, bus, answer, top = sub(self.m, "answers"), self.bus, self.answer, self.top
        due = Array(Signal(DUE_BITS, name=f"due_{k}") for k in range(ANSWER_SLOTS))
        err = Array(Signal(name=f"err_{k}") for k in range(ANSWER_SLOTS))
        data = Array(Signal(64, name=f"data_{k}") for k in range(ANSWER_SLOTS))
        lock = [Signal(name=f"lock_{k}") for k in range(ANSWER_SLOTS)]
        valid = Signal(ANSWER_SLOTS, name="slot_valid")
        head = Signal(range(ANSWER_SLOTS), name="head")
        tail = Signal(range(ANSWER_SLOTS), name="tail")
        answering = flag(m, "answering", valid.bit_select(head, 1) &
                         (top.cycle[:DUE_BITS] == due[head]))
        err_now = flag(m, "err_now", answering & err[head])
        # garbage outside an answer: a master that samples dat_r late reads nonsense
        lfsr = Signal(64, init=0x9E37_79B9_7F4A_7C15)
        with m.If(answering):
            m.d.sync += [lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[1] ^ lfsr[3] ^ lfsr[4])),
                         head.eq(head + 1)]
        m.d.comb += [bus.ack.eq(answering & ~err[head]), bus.err.eq(err_now),
                     bus.dat_r.eq(Mux(answering, data[head], lfsr))]
        push = self.arm.armed
        with m.If(push):
            m.d.sync += [due[tail].eq(answer["due"]), err[tail].eq(answer["err"]),
                         data[tail].eq(answer["data"]), tail.eq(tail + 1)]
            for k in range(ANSWER_SLOTS):
                with m.If(tail == k):
                    m.d.sync += lock[k].eq(bus.cyc & bus.lock)
        for k in range(ANSWER_SLOTS):
            with m.If(push & (tail == k)):
                m.d.sync += valid[k].eq(1)
            with m.Elif(answering & (head == k)):
                m.d.sync += valid[k].eq(0)
        self.overflow = push & valid.bit_select(tail, 1) & ~(answering & (head == tail))
        locked_out = Cat(valid[k] & lock[k] for k in range(ANSWER_SLOTS)).any()
        return answering, err_now, locked_out, valid.any()

    def _checks(self, req, err_now, locked_out, outstanding, locked):
        m, bus = sub(self.m, "checks"), self.bus
        # the request as the rules compare it: lock rises with the take, so it is not part
        changed = request_changed(m, req, [bus.adr, bus.we, bus.sel, Mux(bus.we, bus.dat_w, 0)])
        stalled_q, locked_q = Signal(name="stalled_q"), Signal(name="locked_q")
        m.d.sync += [stalled_q.eq(req & bus.stall), locked_q.eq(locked)]
        return [flag(m, "stb_without_cyc", ~bus.cyc & (bus.stb | bus.lock)),
                flag(m, "withdrawn", stalled_q & ~req & ~err_now),
                flag(m, "changed", stalled_q & req & changed & ~err_now),
                flag(m, "cyc_dropped", outstanding & ~bus.cyc),
                flag(m, "lock_dropped", locked_out & ~locked),
                flag(m, "lock_rose", locked & ~locked_q & ~self.take),
                flag(m, "overflow", self.overflow)]

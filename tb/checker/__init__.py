"""The checker: every output and every bus transfer of the gateware, predicted by the golden
model. One scoreboard for both simulator backends (plain Python: it imports `hdl.formats`,
`sim.golden` and `sim.memory`, never a simulator).

A backend (`tb.amaranth_harness` on Amaranth's simulator, `tb.cocotb.env` on cocotb) only turns
signals into records and hands them over, per core and with the cycle:

- ``accepted(core, request, cycle)``: an ICR write (`sim.scenarios.Request`) was taken;
- ``transfer(core, access, lock_cycle)``: a bus transfer (`sim.memory.Access`) completed, with
  the id of the locked bus cycle it belongs to (`LockTracker`) or None;
- ``offered(core, [(stream, payload)], cycle)`` / ``taken(core, stream)``: outputs whose
  ``valid`` rose, and handshakes (both found by a `StreamMonitor` per output stream);
- ``idle(core, cycle)``: ``busy`` fell; ``finish(cycle, memory)`` at the end.

What is checked:

- **Every bus transfer.** The transfers of a core (attributed to it by the arbiter's grant on
  `IPIVSystem`) are collected, and each accepted ICR write is *replayed* through the golden
  model with a `ReplayMemory`: every transfer the model asks for must be the next one the
  gateware made (direction, word address, byte enables, ``lock``, written data), and the model
  is given the data the gateware read. So the check holds with several cores and another master
  on the same memory, where no copy of the memory could predict read data. A single core
  without other masters is also checked against a shadow copy of the memory (``shadow``): each
  transfer of the replay is made on it too and must give what the gateware got (read data,
  ``err``), and at the end the memories must be equal (one run of the golden model per
  request checks both).
- **Every output**, in order: the golden `Result` fixes the events a request must produce
  (`expected_events`); they must appear (``valid`` rise) in the order of the requests, in any
  order within one cycle; a core that goes idle owes nothing.
- **Ordering** (docs/interface.md): after an exit or #GP the next write is not accepted before it
  was taken; a request is resolved (all its transfers made) when the core offers an output,
  accepts the next write, or goes idle.
- **Locked read-modify-writes**: after the request's vICR store(s), every write (PIR,
  NotifyInfo, VIRR) is the second half of a locked read-modify-write: it follows a locked read
  of the same word in the same locked bus cycle (``cyc`` and ``lock`` held, no other master).
  This rule does not use the golden model.
- **Allowed write targets**: a write outside ``allowed_words`` (see `allowed_words`) fails.
- **Conservation and timely delivery of notifications** (`DeliveryMonitor`, from the bus and
  the ``notify`` port alone, not the golden model): every ON transition the unit makes (its
  locked NotifyInfo read saw ON = 0, its write sets ON) is followed, in order, by exactly one
  notification handshake carrying the NV and NDST of the word written, within
  `DELIVERY_BOUND` cycles; no notification without an ON transition. Fed when the backend
  gives transfers a ``cycle``.

The modules, one job each:

=================  ========================================================================
`errors`           the two failures, `MismatchError` and `ProtocolError`
`events`           output events: raw bits to payloads, a golden `Result` to its events
`streams`          the valid/ready monitor of each output stream (`StreamMonitor`)
`locks`            numbering of the locked bus cycles (`LockTracker`)
`delivery`         conservation and timely delivery of notifications (`DeliveryMonitor`)
`replay`           the golden model replayed on the gateware's transfers and the shadow
                   memory (`ReplayMemory`)
`core_checker`     the checks of one core (`CoreChecker`) and what a request did (`Resolved`)
`scoreboard`       all cores of a run and its tallies (`Checker`)
`stats`            `percentiles` of a run's latencies
=================  ========================================================================
"""

from hdl.formats import OUTPUT_STREAMS
from sim.vm_layout import allowed_words
from .core_checker import CoreChecker, Resolved, outcome_class
from .delivery import DELIVERY_BOUND, DeliveryMonitor
from .errors import MismatchError, ProtocolError
from .events import Event, decode_event, expected_events, result_from_events
from .locks import LockTracker
from .replay import ReplayMemory
from .scoreboard import Checker
from .stats import percentiles
from .streams import OutputMonitors, StreamMonitor


__all__ = ["OUTPUT_STREAMS", "MismatchError", "ProtocolError", "Event", "decode_event",
           "expected_events", "result_from_events", "allowed_words", "StreamMonitor",
           "OutputMonitors", "LockTracker", "ReplayMemory", "outcome_class", "Resolved",
           "CoreChecker", "Checker", "DeliveryMonitor", "DELIVERY_BOUND", "percentiles"]

"""`WakeCallback`: run a function on every change of a signal straight from the simulator's
value-change callback, without a cocotb task.

Awaiting a trigger costs a trip through cocotb's scheduler per change (the trigger's reaction,
the event loop, the task's resume, a new trigger primed); the testbench's wake-up loop
(`tb.cocotb.env.TB`) runs once per transaction, so that trip was about a third of its cost.
Here the simulator calls ``on_change`` directly. What cocotb still needs from us (pinned
cocotb 2.1, private names, checked by tests/test_cocotb_unit.py):

- writes made in ``on_change`` are queued for the read-write phase as in any trigger's
  reaction (unless cocotb hands them to the simulator at once, as `tb.cocotb.runner` has it do),
  so cocotb must believe a value-change trigger is the one firing;
- tasks woken by ``on_change`` (an `Event` set) run when it returns, as after a trigger.
"""

import cocotb
from cocotb import _event_loop, _gpi_triggers, simulator
from cocotb.triggers import ValueChange


__all__ = ["WakeCallback"]


class WakeCallback:
    """Call ``on_change()`` at each change of ``signal`` (a cocotb handle) until `cancel`."""

    def __init__(self, signal, on_change):
        self._sim_handle = signal._handle
        self._on_change = on_change
        self._as_trigger = ValueChange(signal)      # what cocotb sees as firing
        self._cbhdl = None
        self.active = False

    def start(self):
        self.active = True
        self._prime()

    def _prime(self):
        self._cbhdl = simulator.register_value_change_callback(
            self._sim_handle, self._fire, simulator.VALUE_CHANGE)
        if self._cbhdl is None:
            raise RuntimeError("cannot register a value-change callback")

    def _fire(self):
        self._cbhdl = None          # a simulator callback fires once
        if not self.active:
            return
        _gpi_triggers._current_gpi_trigger = self._as_trigger
        self._prime()
        self._on_change()
        _event_loop._inst.run()     # the tasks ``on_change`` woke

    def cancel(self):
        self.active = False
        if self._cbhdl is not None:
            self._cbhdl.deregister()
            self._cbhdl = None


assert cocotb.__version__.startswith("2.1"), "WakeCallback relies on cocotb 2.1 internals"

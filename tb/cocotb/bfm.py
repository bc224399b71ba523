"""Access to the testbench top's signals from cocotb (run inside the simulator).

The bus-functional models themselves are the HDL helpers of `tb.testbench_top` and the shared
Python testbench `tb.testbench`; this module hands `tb.testbench.Testbench` its ``read`` and
``write``: each handle is fetched once, a read converts the simulator's bit string straight
to an integer (no `cocotb.types.LogicArray` in between), and a write hands cocotb the
simulator's setter and the value already converted, the way ``handle.value = v`` writes
(cocotb 2.1's ``_schedule_write``: queued for the read-write phase, or, as `tb.cocotb.runner`
sets ``COCOTB_TRUST_INERTIAL_WRITES``, handed to the simulator at once; the generic
``value`` setter re-checks the type and width of every write, a third of a wake's writing
cost).
"""

from cocotb import handle as _cocotb_handle
from cocotb.handle import LogicArrayObject, _GPISetAction, _schedule_write

from tb.checker import ProtocolError


__all__ = ["TopAccess"]


class TopAccess:
    """``read(name)`` / ``write(name)`` of the top ``dut``'s signals (see
    `tb.testbench.Testbench`)."""

    def __init__(self, dut):
        self.dut = dut

    def _handle(self, name):
        try:
            return getattr(self.dut, name)
        except AttributeError:
            raise ProtocolError(f"the top has no signal {name!r}") from None

    def read(self, name):
        handle = self._handle(name)
        sim_handle = getattr(handle, "_handle", None)     # cocotb 2.1's simulator object
        if sim_handle is None:
            return lambda: int(handle.value)
        raw = sim_handle.get_signal_val_binstr       # the simulator's value, as text

        def get():
            text = raw()
            try:
                return int(text, 2)
            except ValueError:          # X or Z: say which signal
                raise ProtocolError(f"{name} is {text} (X or Z) in the simulator") from None
        return get

    def write(self, name):
        handle = self._handle(name)
        sim_handle = getattr(handle, "_handle", None)
        if sim_handle is None:
            def put_generic(value):
                handle.value = int(value)
            return put_generic
        bits = len(handle)
        as_int = isinstance(handle, LogicArrayObject) and bits <= 32     # cocotb's own rule
        setter = sim_handle.set_signal_val_int if as_int else sim_handle.set_signal_val_binstr
        text = f"0{bits}b"
        deposit = _GPISetAction.DEPOSIT
        trusted = _cocotb_handle._trust_inertial   # then `_schedule_write` calls the setter
        action = deposit.value

        def put(value):         # value: an int or a bool (the testbench's own)
            if value < 0 or value >> bits:
                raise ValueError(f"{value:#x} does not fit the {bits}-bit input {name}")
            if not as_int:
                value = format(value, text)
            if trusted:
                setter(action, value)
            else:
                _schedule_write(handle, setter, deposit, value)
        return put

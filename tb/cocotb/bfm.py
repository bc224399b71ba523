"""Access to the testbench top's signals from cocotb (run inside the simulator).

The bus-functional models themselves are the HDL helpers of `tb.testbench_top` and the shared
Python testbench `tb.testbench`; this module hands `tb.testbench.Testbench` its ``read`` and
``write``: each handle is fetched once, and a read converts the simulator's bit string
straight to an integer (no `cocotb.types.LogicArray` in between).
"""

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

        def put(value):
            handle.value = int(value)
        return put

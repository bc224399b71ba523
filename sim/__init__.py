"""The software side of the IPI-virtualization model: plain Python, no HDL simulator.

It may import the shared layouts and constants (``hdl.formats``); it never imports
``amaranth.sim`` or cocotb (the CLI imports the simulation harness lazily, only when asked to
simulate).
"""

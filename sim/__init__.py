"""The software side of the IPI-virtualization model: plain Python, no HDL simulator.

The golden model of the unit, guest memory, the KVM model (Linux 6.0 or 6.19), workloads, the
round-trip model, experiments and trace replay. It imports only the architectural formats of
``hdl`` (``hdl.formats``, ``hdl.vmx``, ...), never a gateware unit, ``amaranth.sim``, cocotb
or ``tb`` (``tests/test_layers.py`` checks this).
"""

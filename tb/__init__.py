"""Testbench code: the Amaranth-simulator harness (used by pytest and ``ipiv sim``/``bench``)
and, later, the cocotb testbenches."""

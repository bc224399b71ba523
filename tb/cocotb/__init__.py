"""cocotb testbenches of the generated Verilog (``tb/verilog.py``: the design inside the
testbench top of ``tb/testbench_top.py``) against the golden model.

The checking is the simulator-free `tb.checker` and the testbench is `tb.testbench`, both shared
with the Amaranth-simulator backend; the directed cases are `tb.directed`. Plain Python here:
`agent` (the software master of the contention test), `config` (suite sizes), `runner` (build
once, run from pytest), `bench` (simulator speed). Inside the simulator: `bfm` (access to the
top's signals), `env` (the `TB` class: clock, reset and the wake-up loop), `fcoverage`
(cocotb-coverage), `cosim`, `common`, and the cocotb test modules `unit_tests` and
`system_tests`.
"""

"""cocotb testbenches of the generated Verilog (``tb/verilog.py``) against the golden model.

The checking is the simulator-free `tb.checker`, shared with the Amaranth-simulator backend,
and the directed cases are `tb.directed`. Plain Python here: `agent` (the software master of
the contention test), `config` (suite sizes), `runner` (build once, run from pytest), `bench`.
Inside the simulator: `bfm`, `env` (the `TB` class, signals to checker records), `fcoverage`
(cocotb-coverage), `cosim`, `common`, and the cocotb test modules `unit_tests` and
`system_tests`.
"""

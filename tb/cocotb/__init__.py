"""cocotb testbenches of the generated Verilog (``tb/verilog.py``) against the golden model.

Plain Python (no simulator import): `codec` (port packing from ``hdl.formats``), `scoreboard`,
`agent` (the software master of the contention test), `directed` (one case per rule of
``ipiv.md`` §4), `config` (suite sizes), `runner` (build once, run from pytest), `bench`.
Inside the simulator: `bfm`, `env` (the `TB` class), `fcoverage` (cocotb-coverage), `cosim`,
`common`, and the cocotb test modules `unit_tests` and `system_tests`.
"""

"""Everything that runs gateware: the simulator-free checker shared by both backends, the
Amaranth-simulator harness (``ipiv sim``/``bench``, pytest), the cocotb testbenches on
Icarus/Verilator (``tb.cocotb``, ``ipiv regress``), the formal proofs (``tb.formal``,
``ipiv prove``), the simulated board and the FPGA builds, and the ``ipiv`` command line
(`tb.cli`) on top."""

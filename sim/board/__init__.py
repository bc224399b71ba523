"""Host side of the FPGA board experiment (plain Python, no simulator).

`experiment` models the board's stimulus engine and predicts its counters with the golden
model; `protocol` speaks the board's UART protocol over a `transport`; `build` runs the
YoWASP FPGA tools and reads their reports; `cli` adds ``ipiv build`` and ``ipiv board``.
"""

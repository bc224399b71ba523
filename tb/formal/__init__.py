"""Formal verification of `IPIVirtualizer` with SymbiYosys (see `harness` and `runner`)."""

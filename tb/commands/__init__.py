"""Subcommands of ``ipiv`` that run gateware (simulators, proofs, builds, the board).

Each module registers its subcommands through the ``ipiv.commands`` entry points in
``pyproject.toml``; the dispatcher is `tb.cli`.
"""

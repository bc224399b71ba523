"""Subcommands of ``ipiv`` that need only the software models (no HDL simulator).

Each module registers its subcommand through the ``ipiv.commands`` entry points in
``pyproject.toml``; the dispatcher is `tb.cli`.
"""

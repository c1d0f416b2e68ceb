"""Subcommands of the ``gridcharge`` CLI beyond solve/verify/solvers, one module each (see ``cli.COMMAND_MODULES``).

Each module defines ``register(subparsers)``: it adds its parser, documents every option with units, and sets
``run=callable(args) -> int`` (an exit code from ``gridcharge.cli``). Errors of the library's own types
(``InstanceError``, ``InfeasibleError``, ``SolverError``) propagate to ``cli.main``, which maps them to exit codes.
"""

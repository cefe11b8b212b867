"""The `hyperstyle` command line (also `python -m hyperstyle_core`).

`main` parses with the torch-free parser (cli/parser.py), so `--help`, `SUB --help` and argument errors answer at
once, and only then imports the command implementations (cli/commands.py, which imports torch).
"""
from __future__ import annotations

import importlib
import sys

from .parser import MODULE_PROG, PROG, build_bench_parser, build_parser, default_recipe, program_name

__all__ = ["main", "PROG", "MODULE_PROG"]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point: parse `argv` (default sys.argv[1:]), then run the command; returns the exit code.

    Args:
        argv: the arguments after the program name.
        prog: program name for help and errors (default `program_name()`: `hyperstyle`, or
            `python -m hyperstyle_core` under -m).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or program_name()
    # The implementation imports torch (seconds): import it only once the arguments are known to be good.
    implementation = f"{__name__}.commands"
    if argv and argv[0] == "bench":     # the benchmark parses its own arguments, here too before importing torch
        build_bench_parser(f"{prog} bench", default_recipe()).parse_args(argv[1:])     # --help, bad arguments end here
        return importlib.import_module(implementation).run_bench(argv[1:], prog)
    args = build_parser(prog).parse_args(argv)
    return importlib.import_module(implementation).run_command(args)

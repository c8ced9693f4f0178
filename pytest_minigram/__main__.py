"""``python -m pytest_minigram load | compare | report``: the engine, the gate and the report
without running pytest."""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """usage: python -m pytest_minigram COMMAND [ARGS...]

commands:
  load      run a journey against a target and print or save the result
  compare   compare two saved runs; exit 1 on a significant regression
  report    write the HTML report from saved runs

Run 'python -m pytest_minigram COMMAND --help' for a command's options."""


def _command(name: str) -> Callable[[list[str]], int] | None:
    if name == "load":
        from pytest_minigram.load.cli import main as load_main

        return load_main
    if name == "compare":
        from pytest_minigram.gate.cli import cli as compare_cli

        return compare_cli
    if name == "report":
        from pytest_minigram.report.cli import main as report_main

        return report_main
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command = _command(args[0])
    if command is None:
        print(f"unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return int(command(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())

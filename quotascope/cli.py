"""The `quotascope` command: a thin shell over the library. Each command lives in `quotascope/commands/`."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from models.errors import QuotascopeError
from quotascope import __version__, settings
from quotascope.output import say

# Each command is a module of `quotascope.commands` with `register(commands, parent)`; this is the order of
# `quotascope --help`. A command whose module is not there yet is simply not offered.
COMMANDS: tuple[str, ...] = (
    "demo",
    "dashboard",
    "ingest",
    "pull",
    "report",
    "plan",
    "catalog",
    "probe",
    "emulate",
    "simulate",
    "budget",
    "export",
    "schedule",
    "otlp",
    "traces",
    "users",
)


def command_modules() -> list[str]:
    names = (f"quotascope.commands.{command}" for command in COMMANDS)
    return [name for name in names if importlib.util.find_spec(name) is not None]


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake in the options is one sentence (and exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"quotascope: {message} (see `{self.prog} --help`)\n")


def common_options() -> argparse.ArgumentParser:
    """Options every command takes (DESIGN.md, "CLI contract")."""
    parent = Parser(add_help=False)
    parent.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"DuckDB file (default {settings.BY_NAME['db'].default}; env QUOTASCOPE_DB)",
    )
    parent.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="where usage rows live: clickhouse://user@host:8123/db, clickhouses://... (TLS) or chdb://PATH "
        "(default: the DuckDB file; env QUOTASCOPE_STORE; password in QUOTASCOPE_CLICKHOUSE_PASSWORD)",
    )
    parent.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parent.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="FILE",
        help="your own catalog TOML on top of the shipped one (repeatable)",
    )
    return parent


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`only`) the parser of one command: importing every command's module costs
    0.8 s (the demo's pulls in the emulator, the probe and the scheduler), which `quotascope ingest` and
    every other command need not pay."""
    parser = Parser(
        prog="quotascope",
        description="How many questions per minute can a provider's quota carry, what are we spending, "
        "and what would happen if we switched?",
    )
    parser.add_argument("--version", action="version", version=f"quotascope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    parent = common_options()
    for name in command_modules():
        if only is None or name == f"quotascope.commands.{only}":
            importlib.import_module(name).register(commands, parent)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named by the arguments (always the first: every option belongs to a command)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


class _SayHandler(logging.Handler):
    """quotascope's own warnings (a wait for a database lock) on stderr, as one sanitised line each."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"quotascope: {record.getMessage()}", file=sys.stderr, flush=True)


def _tell_warnings() -> None:
    logger = logging.getLogger("quotascope")
    if not any(isinstance(h, _SayHandler) for h in logger.handlers):
        logger.addHandler(_SayHandler(logging.WARNING))
        logger.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    _tell_warnings()
    try:
        code: int = args.run(args)
    except QuotascopeError as e:
        say(f"quotascope: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("quotascope: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

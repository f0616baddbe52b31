"""The ``reid`` command: one sub-command per pipeline stage."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from reid.cli.console import setup_console
from reid.cli.errors import UserFacingError
from reid.config import ConfigError
from reid.storage import StorageUnreachableError

__all__ = ["UserFacingError", "build_parser", "console_main", "main"]

# Each module exposes add_parser(subparsers) registering its sub-command with set_defaults(func=run).
COMMANDS = ("synth", "prepare", "inspect", "styles", "describe", "train", "tune", "evaluate", "search", "index",
            "serve", "demo", "ui")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command and the options they share."""
    parser = argparse.ArgumentParser(prog="reid", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"reid.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"reid.cli.{name}":
                continue
            raise
        module.add_parser(subparsers)
    for sub in subparsers.choices.values():
        add_common_options(sub)
        if sub.formatter_class is argparse.HelpFormatter:
            sub.formatter_class = DefaultsOnceFormatter
    return parser


class DefaultsOnceFormatter(argparse.HelpFormatter):
    """``--help`` says each option's default once: appended unless the help text already names it, and not for a
    required option, a positional argument, a switch, or an option whose default is nothing (None, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.required or not action.option_strings:
            return text
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or action.nargs == 0:
            return text
        if isinstance(default, list | tuple) and not default:
            return text
        return f"{text} (default: %(default)s)"


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--config``, repeated ``--set key=value`` and ``--verbose`` on every sub-command."""
    parser.add_argument("--config", default=None, help="YAML config file, or pkg://NAME for a packaged one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value by its dotted key, e.g. --set data.batch.p=16")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="debug logging and Ray's, Ray Data's and the workers' own output on the console "
                             "(otherwise in the log file and Ray's session logs)")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; config and input errors exit 2 with one clear line."""
    args = build_parser().parse_args(argv)
    setup_console(args.command, args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"reid {args.command}: config error: {exc}", file=sys.stderr)
        return 2
    except UserFacingError as exc:
        print(f"reid {args.command}: {exc}", file=sys.stderr)
        return 2
    except StorageUnreachableError as exc:
        print(f"reid {args.command}: {exc}", file=sys.stderr)
        return 2


def console_main(argv: list[str] | None = None) -> None:
    """The ``reid`` executable: :func:`main`, then leave the process without interpreter finalisation.

    Finalisation cancels threads still inside C++ code (pyarrow's, torch's), and about one ``reid describe``
    run in six aborted there ("terminate called without an active exception", exit -6) after it had finished
    and printed its summary. So once the command returns, this stops a Ray it started, flushes the logs and
    the standard streams, and exits with ``os._exit``.
    """
    code = main(argv)
    try:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


if __name__ == "__main__":
    console_main()

"""The command line: ``sqlmigrate COMMAND`` / ``python -m sqlmigrate COMMAND``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import config
from .connection import describe, mask
from .errors import ConfigurationError, SqlMigrateError

EXIT_CODES = """\
exit codes:
  0  success, or nothing to do
  1  a migration failed
  2  usage, configuration or migration-file error
  3  check: the database is not current
  4  a rollback was refused because it would destroy data
  5  could not connect, or could not get the migration lock in time
"""

CONNECTION_HELP = """\
connection: --database URL, else SQLMIGRATE_DATABASE_URL, else DATABASE_URL (libpq URLs, key=value
strings and SQLAlchemy spellings such as postgresql+psycopg2:// work). With none of them set, an
embedded PostgreSQL kept in ./.sqlmigrate/ is used (refused when SQLMIGRATE_ENV or ENVIRONMENT is
production).
"""


class _Printer:
    """All user-facing output of a command; the library itself only logs."""

    def __init__(self, quiet: bool, stream: TextIO = sys.stdout) -> None:
        self.quiet = quiet
        self.stream = stream

    def line(self, text: str = "") -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def always(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class _LogToPrinter(logging.Handler):
    def __init__(self, printer: _Printer, database: str | None) -> None:
        super().__init__(logging.INFO)
        self.printer = printer
        self.database = database

    def emit(self, record: logging.LogRecord) -> None:
        text = mask(record.getMessage(), self.database)
        if record.levelno >= logging.WARNING:
            print(f"warning: {text}", file=sys.stderr, flush=True)
        else:
            self.printer.line(text)


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("options (before or after the command)")
    g.add_argument("--dir", default=default, metavar="DIR",
                   help="migration directory (env SQLMIGRATE_DIR, [tool.sqlmigrate] dir; default sql)")
    g.add_argument("--database", default=default, metavar="URL", help="connection string (see below)")
    g.add_argument("--table", default=default, metavar="NAME",
                   help="history table (default schema_migrations; its log is NAME_log)")
    g.add_argument("--schema", default=default, metavar="NAME",
                   help="schema of the history table (default: first schema in search_path)")
    g.add_argument("--lock-timeout", type=float, default=default, metavar="SECONDS",
                   help=f"how long to wait for another process's migration lock "
                        f"(default {config.DEFAULT_LOCK_TIMEOUT:g})")
    g.add_argument("--statement-timeout", type=float, default=default, metavar="SECONDS",
                   help="cancel any statement running longer than this (default: no limit)")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="print only errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqlmigrate",
        description="Raw-SQL versioned migrations for PostgreSQL.",
        epilog=CONNECTION_HELP + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sqlmigrate {_version()}")
    _common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common_options(p, suppress=True)
        return p

    p = command("up", "apply pending migrations in version order")
    p.add_argument("--to", type=int, metavar="V", help="apply only up to version V")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the SQL; change nothing")
    p.add_argument("--allow-out-of-order", action="store_true",
                   help="also apply pending migrations older than the newest applied one")

    p = command("status", "show every migration: applied, pending, modified, missing, out-of-order, failed")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("check", "exit 0 only if the database matches the files exactly (exit 3 if not)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("new", "create the next-numbered migration and its rollback file")
    p.add_argument("name", help="letters, digits, '_' and '-', e.g. add_users_email")
    return parser


def _version() -> str:
    from . import __version__

    return __version__


# -- commands -------------------------------------------------------------------------------------


def _migrator(settings: config.Settings, database: str) -> Any:
    from .migrator import Migrator

    return Migrator(database, settings.directory, table=settings.table, schema=settings.schema,
                    lock_timeout=settings.lock_timeout, statement_timeout=settings.statement_timeout)


def cmd_up(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from .migrator import format_ms

    database = _database(settings, out)
    result = _migrator(settings, database).up(to=args.to, dry_run=args.dry_run,
                                              allow_out_of_order=args.allow_out_of_order)
    if args.dry_run:
        if not result.applied:
            out.line("dry run: nothing to apply")
        for a in result.applied:
            flags = ", ".join(f for f, on in (("no transaction", a.no_transaction),
                                              ("out of order", a.out_of_order)) if on)
            out.line(f"-- would apply {a.label}{f' ({flags})' if flags else ''}")
            out.line((a.sql or "").rstrip())
            out.line()
        if result.applied:
            out.line(f"dry run: {len(result.applied)} migration(s) would be applied; nothing was changed")
        return 0
    if result.applied:
        total = sum(a.duration_ms for a in result.applied)
        out.line(f"applied {len(result.applied)} migration(s) in {format_ms(total)}")
    return 0


def cmd_status(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    database = _database(settings, out, announce=not args.json)
    status = _migrator(settings, database).status()
    _print_status(status, args.json, out)
    return 0


def cmd_check(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from .migrator import not_current

    database = _database(settings, out, announce=not args.json)
    status = _migrator(settings, database).status()
    if args.json:
        out.always(json.dumps(status.as_dict(), indent=2))
    elif status.current:
        out.line(f"database is current: {status.summary()}")
    if status.current:
        return 0
    if not args.json:
        print(f"error: {not_current(status)}", file=sys.stderr)
    return 3


def _print_status(status: Any, as_json: bool, out: _Printer) -> None:
    from .migrator import format_ms

    if as_json:
        out.always(json.dumps(status.as_dict(), indent=2))
        return
    if not status.entries:
        out.line("no migrations")
        return
    width = max(len(e.label) for e in status.entries)
    for e in status.entries:
        detail = ""
        if e.row is not None:
            detail = f"{e.row.applied_at:%Y-%m-%d %H:%M:%S%z}  {format_ms(e.row.execution_ms)}"
            if e.row.out_of_order:
                detail += "  (applied out of order)"
            if e.row.baseline:
                detail += "  (baseline)"
        out.always(f"{e.state.value:<12} {e.label:<{width}}  {detail}".rstrip())
    out.always(status.summary())


def cmd_new(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from . import files

    up, down = files.create(settings.directory, args.name)
    out.line(f"created {up}")
    out.line(f"created {down}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, config.Settings, _Printer], int]] = {
    "up": cmd_up,
    "status": cmd_status,
    "check": cmd_check,
    "new": cmd_new,
}


def _database(settings: config.Settings, out: _Printer, announce: bool = True) -> str:
    if settings.database:
        return settings.database
    from . import embedded

    embedded.refuse_in_production(os.environ)
    url = embedded.start(Path.cwd())
    if announce:
        out.line(f"no database configured: using the embedded PostgreSQL in ./{embedded.FOLDER}/ "
                 "(set --database or SQLMIGRATE_DATABASE_URL to use another)")
    return url


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = _Printer(args.quiet)
    database: str | None = args.database
    handler = _LogToPrinter(out, database)
    logger = logging.getLogger("sqlmigrate")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        settings = config.resolve(
            directory=args.dir, database=args.database, table=args.table, schema=args.schema,
            lock_timeout=args.lock_timeout, statement_timeout=args.statement_timeout,
        )
        handler.database = database = settings.database
        if settings.database and not getattr(args, "json", False):
            out.line(f"sqlmigrate: {describe(settings.database)}, migrations in {_shown(settings.directory)}")
        return COMMANDS[args.command](args, settings, out)
    except SqlMigrateError as exc:
        print(f"error: {mask(str(exc), database)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())

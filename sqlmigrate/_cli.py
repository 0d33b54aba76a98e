"""The command line: ``sqlmigrate COMMAND`` / ``python -m sqlmigrate COMMAND``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import _config as config
from ._connection import SPELLINGS, describe, mask, normalize
from ._errors import ConfigurationError, MigrationError, SqlMigrateError

EXIT_CODES = """\
exit codes:
  0  success, or nothing to do
  1  a migration failed
  2  usage, configuration or migration-file error
  3  check: the database is not current
  4  a rollback was refused because it would destroy data
  5  could not connect, or could not get the migration lock in time
"""

CONNECTION_HELP = f"""\
connection: --database URL, else the environment variable SQLMIGRATE_DATABASE_URL, else DATABASE_URL.
The first of them that is set is used; one that is set but empty is an error (exit 2), never a
fall-back. With none of them set, an embedded PostgreSQL kept in ./.sqlmigrate/ is used (installed
with the 'embedded' extra; refused when SQLMIGRATE_ENV or ENVIRONMENT is production). A password
never appears in any output.
{SPELLINGS}
"""

NEW_EXIT_CODES = """\
exit codes:
  0  created
  2  usage error, a description with no letters or digits, or a bad migration file in the directory
"""

# Options each command uses; --dir and -q are everyone's. The top level takes them all.
_CONNECTS = frozenset({"--database", "--table", "--schema"})
_LOCKS = frozenset({"--lock-timeout", "--lock-strategy"})
_WAITS = frozenset({"--lock-wait", "--lock-retries"})
_RUNS_SQL = frozenset({"--statement-timeout"})


class _Printer:
    """All user-facing output of a command; the library itself only logs.

    On a terminal, progress shows as a status line on stderr that each new message replaces and any
    other output clears first.
    """

    def __init__(self, quiet: bool, stream: TextIO = sys.stdout) -> None:
        self.quiet = quiet
        self.stream = stream
        self.live = not quiet and sys.stderr.isatty()
        self.showing = False

    def line(self, text: str = "") -> None:
        if not self.quiet:
            self.always(text)

    def always(self, text: str) -> None:
        self.clear()
        _write(self.stream, text + "\n")

    def error(self, text: str) -> None:
        self.clear()
        _write(sys.stderr, text + "\n")

    def status(self, text: str) -> None:
        if self.live:
            _write(sys.stderr, "\r\033[K" + text[: shutil.get_terminal_size().columns - 1])
            self.showing = True

    def clear(self) -> None:
        if self.showing:
            _write(sys.stderr, "\r\033[K")
            self.showing = False


def _write(stream: TextIO, text: str) -> None:
    """Write and flush. When the reader has gone (``sqlmigrate status | head -1``), the rest of the
    output is dropped quietly and the command still finishes its work: an ``up`` piped into ``head``
    must not stop between two migrations. The exit code stays the command's own."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        _discard(stream)


def _discard(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so later writes and the interpreter's final
    flush of what is still buffered succeed instead of printing "Exception ignored ... BrokenPipeError"."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class _LogToPrinter(logging.Handler):
    """Prints the library's INFO and WARNING records, and its progress records as a status line."""

    def __init__(self, printer: _Printer, database: str | None) -> None:
        super().__init__(logging.DEBUG)
        self.printer = printer
        self.database = database

    def emit(self, record: logging.LogRecord) -> None:
        text = mask(record.getMessage(), self.database)
        if getattr(record, "sqlmigrate_progress", False):
            self.printer.status(text)
        elif record.levelno >= logging.WARNING:
            self.printer.error(f"warning: {text}")
        elif record.levelno >= logging.INFO:
            self.printer.line(text)


class _Only:
    """An argument group that takes only the options a command uses, so its --help lists no others."""

    def __init__(self, group: Any, uses: frozenset[str] | None) -> None:
        self.group = group
        self.uses = uses

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        if self.uses is None or not self.uses.isdisjoint(flags) or {"--dir", "--quiet"} & set(flags):
            self.group.add_argument(*flags, **kwargs)


def _common_options(parser: argparse.ArgumentParser, suppress: bool, uses: frozenset[str] | None = None) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    g = _Only(parser.add_argument_group("options (before or after the command)"), uses)
    g.add_argument("--dir", default=default, metavar="DIR",
                   help="migration directory (env SQLMIGRATE_DIR, [tool.sqlmigrate] dir; default sql)")
    g.add_argument("--database", default=default, metavar="URL",
                   help="connection string (see 'connection' below; default: the environment)")
    g.add_argument("--table", default=default, metavar="NAME",
                   help="history table (default schema_migrations; its log is NAME_log)")
    g.add_argument("--schema", default=default, metavar="NAME",
                   help="schema of the history table (default: first schema in search_path)")
    g.add_argument("--lock-timeout", type=float, default=default, metavar="SECONDS",
                   help=f"how long to wait for another process's migration lock "
                        f"(default {config.DEFAULT_LOCK_TIMEOUT:g})")
    g.add_argument("--lock-strategy", default=default, metavar="STRATEGY",
                   help="how concurrent runs are kept apart: auto (default: detects a transaction "
                        "pooler), session (advisory lock for the run: direct or session-pooled URLs), "
                        "transaction (taken in each migration's transaction: transaction poolers), "
                        "table (a row lock: CockroachDB, YugabyteDB)")
    g.add_argument("--lock-wait", type=float, default=default, metavar="SECONDS",
                   help="how long one statement may wait for a table lock before its migration is "
                        f"rolled back and retried (default {config.DEFAULT_LOCK_WAIT:g}; 0 waits forever), "
                        "so a migration queued behind a long transaction never stalls that table's traffic")
    g.add_argument("--lock-retries", type=int, default=default, metavar="N",
                   help="retries of a migration that hit --lock-wait, with growing pauses "
                        f"(default {config.DEFAULT_LOCK_RETRIES})")
    g.add_argument("--statement-timeout", type=float, default=default, metavar="SECONDS",
                   help="cancel any statement running longer than this (default: no limit)")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="print only errors")


class _ArgumentParser(argparse.ArgumentParser):
    """Usage errors quote arguments back (``unrecognized arguments: --databse postgresql://u:pw@...``):
    mask passwords first. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        super().error(mask(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="sqlmigrate",
        description="Raw-SQL versioned migrations for PostgreSQL.",
        epilog=CONNECTION_HELP + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sqlmigrate {_version()}")
    _common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help: str, uses: frozenset[str] = _CONNECTS) -> argparse.ArgumentParser:
        epilog = CONNECTION_HELP + "\n" + EXIT_CODES if "--database" in uses else NEW_EXIT_CODES
        p = sub.add_parser(name, help=help, description=help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common_options(p, suppress=True, uses=uses)
        return p

    p = command("up", "apply pending migrations in version order", _CONNECTS | _LOCKS | _WAITS | _RUNS_SQL)
    p.add_argument("--to", type=int, metavar="V", help="apply only up to version V")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the SQL; change nothing")
    p.add_argument("--allow-out-of-order", action="store_true",
                   help="also apply pending migrations older than the newest applied one")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                   help="refuse (exit 2) when `sqlmigrate lint` finds an error-level lock hazard in a "
                        "pending migration; without it, findings are printed as warnings (default: "
                        "[tool.sqlmigrate] strict, else off)")
    p.add_argument("--write-schema", action="store_true", default=None,
                   help="after applying migrations, rewrite the schema file (see dump) so it shows the "
                        "change beside them (default: [tool.sqlmigrate] write_schema)")

    p = command("status", "show every migration: applied, pending, modified, missing, out-of-order, failed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--log", nargs="?", const=20, type=int, metavar="N",
                   help="also show the newest N entries of the audit log (default 20)")

    p = command("check", "exit 0 only if the database matches the files exactly (exit 3 if not)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--drift", action="store_true",
                   help="also compare the database's schema with the schema file (see dump): every object "
                        "missing, extra or different is drift (exit 3)")
    p.add_argument("--schema-file", metavar="PATH",
                   help="the schema file (default: [tool.sqlmigrate] schema_file, else DIR/schema.sql)")

    p = command("dump", "write the database's schema, read from the catalogs (no pg_dump), to the schema file "
                        "DIR/schema.sql: one block per object, sorted; commit it beside the migrations")
    p.add_argument("--output", "-o", metavar="PATH", help="where to write it (default: [tool.sqlmigrate] "
                   "schema_file, else DIR/schema.sql; - for stdout)")

    p = command("new", "create the next-numbered migration and its rollback file; needs no database",
                frozenset())
    p.add_argument("description", metavar="DESCRIPTION",
                   help="what the migration does, in any language: \"add users email\" makes "
                        "0003_add_users_email.sql (letters and digits are kept, lower-cased; other "
                        "characters become '_')")

    p = command("down", "run the rollback files of the newest applied migrations, newest first "
                        "(default: 1 step)", _CONNECTS | _LOCKS | _WAITS | _RUNS_SQL)
    which = p.add_mutually_exclusive_group()
    # No default: argparse lets a mutually exclusive option through when its value is the default.
    which.add_argument("--steps", type=int, metavar="N", help="roll back the newest N migrations (default 1)")
    which.add_argument("--to", type=int, metavar="V", help="roll back every applied migration above version V")
    p.add_argument("--yes", action="store_true",
                   help="destroy data the rollbacks would drop without asking (required without a terminal)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, the data-loss warning and the SQL; change nothing")

    p = command("baseline", "record versions up to V as applied without running them, for a database "
                            "whose tables were built by other means", _CONNECTS | _LOCKS)
    p.add_argument("version", type=int, metavar="V", help="the newest version the database already contains")
    p.add_argument("--force", action="store_true",
                   help="also on a database that already has history: only add the missing versions up to V")

    p = command("repair", "accept the current checksum of modified migrations, or resolve a no-transaction "
                          "migration that stopped part way; each change is logged", _CONNECTS | _LOCKS)
    p.add_argument("versions", nargs="*", type=int, metavar="V",
                   help="modified migrations whose current checksum to accept (default: all of them)")
    p.add_argument("--applied", action="append", type=int, default=[], metavar="V",
                   help="a failed no-transaction migration you finished by hand: record it as applied")
    p.add_argument("--retry", action="append", type=int, default=[], metavar="V",
                   help="a failed no-transaction migration you undid by hand: clear it so `up` runs it again")
    p.add_argument("--accept-renamed", action="append", type=int, default=[], metavar="V",
                   help="an applied version whose file now has another name and is the migration that ran, "
                        "renamed: record the file's name and checksum")
    p = command("verify", "in a throwaway database it creates and drops on the same server: apply each "
                          "migration, roll it back, check the schema is exactly as before, apply it again; "
                          "exit 1 if any rollback is missing, fails or leaves the schema different",
                _CONNECTS | _RUNS_SQL)
    p.add_argument("--scratch-database", metavar="URL",
                   help="use this existing, empty database (a connection string, see below) instead of "
                        "creating one (it is not dropped)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("lint", "report the table locks each statement of the pending migrations (or FILES) takes "
                        "and their hazards, each with a rule name and a safer recipe; with a database, also "
                        "table sizes, row estimates and blocking sessions. Exit 1 on an error-level finding")
    p.add_argument("files", nargs="*", type=Path, metavar="FILE",
                   help="lint these files, in this order (default: the pending migrations; with no database "
                        "configured, every migration file)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _version() -> str:
    from . import __version__

    return __version__


# -- commands -------------------------------------------------------------------------------------


def _migrator(settings: config.Settings, database: Any) -> Any:
    from ._migrator import Migrator

    return Migrator(database, _directory(settings), table=settings.table, schema=settings.schema,
                    lock_timeout=settings.lock_timeout, statement_timeout=settings.statement_timeout,
                    lock_strategy=settings.lock_strategy, lock_wait=settings.lock_wait,
                    lock_retries=settings.lock_retries, lint_disable=settings.lint_disable)


def cmd_up(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from ._migrator import format_ms

    database = _database(settings, out)
    result = _migrator(settings, database).up(to=args.to, dry_run=args.dry_run,
                                              allow_out_of_order=args.allow_out_of_order, strict=settings.strict)
    if args.dry_run:
        if not result.steps:
            out.line("dry run: nothing to apply")
        for a in result.steps:
            flags = ", ".join(f for f, on in (("no transaction", a.no_transaction),
                                              ("out of order", a.out_of_order)) if on)
            out.line(f"-- would apply {a.label}{f' ({flags})' if flags else ''}")
            out.line((a.sql or "").rstrip())
            out.line()
        if result.steps:
            out.line(f"dry run: {len(result.steps)} migration(s) would be applied; nothing was changed")
        return 0
    if result.steps:
        total = sum(a.duration_ms for a in result.steps)
        out.line(f"applied {len(result.steps)} migration(s) in {format_ms(total)}")
        if args.write_schema or settings.write_schema:
            _write_schema(settings, database, out)
    return 0


def _write_schema(settings: config.Settings, database: str, out: _Printer) -> None:
    from ._schemafile import dump

    result = dump(database, settings.schema_path, table=settings.table, schemas=settings.drift_schemas)
    if result.changed:
        out.line(f"wrote {_shown(settings.schema_path)}: {result.objects} object(s)")


def cmd_status(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    database = _database(settings, out, announce=not args.json)
    migrator = _migrator(settings, database)
    status = migrator.status()
    if args.log is None:
        _print_status(status, args.json, out)
        return 0
    entries = migrator.log(max(args.log, 0))
    if args.json:
        out.always(json.dumps({**status.as_dict(), "log": [_log_entry_dict(e) for e in entries]}, indent=2))
        return 0
    _print_status(status, False, out)
    _print_log(entries, out, status)
    return 0


def _log_entry_dict(e: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(e)
    for key in ("started_at", "finished_at"):
        d[key] = d[key].isoformat() if d[key] else None
    return d


def _print_log(entries: Sequence[Any], out: _Printer, status: Any) -> None:
    from ._migrator import format_ms

    # The version spelled as the files spell it (zero-padded), as `status` prints it.
    digits = {e.version: e.label.split("_", 1)[0] for e in status.entries}
    width = max((len(d) for d in digits.values()), default=0)
    out.always("")
    out.always(f"log (newest {len(entries)}):" if entries else "log: empty")
    for e in entries:
        what = (f"{digits.get(e.version) or str(e.version).zfill(width)}_{e.name}"
                if e.version is not None else "-")
        took = format_ms(e.execution_ms) if e.execution_ms is not None else ""
        who = f"{e.db_user}@{e.client_host or '?'} pid {e.client_pid if e.client_pid is not None else '?'}"
        out.always(f"{e.started_at:%Y-%m-%d %H:%M:%S%z}  {e.direction:<8} {e.outcome:<7} {what}  {took}  {who}")
        for label, text in (("error", e.error), ("detail", e.detail)):
            if text:
                out.always(f"    {label}: " + text.replace("\n", "\n      "))


def cmd_check(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from ._migrator import not_current

    database = _database(settings, out, announce=not args.json)
    if args.drift:
        from ._session import connection

        with connection(database) as conn:  # one connection for both: one connect, not two
            return _check_drift(args, settings, conn, _migrator(settings, conn).status(), out)
    status = _migrator(settings, database).status()
    if args.json:
        out.always(json.dumps(status.as_dict(), indent=2))
    elif status.current:
        out.line(f"database is current: {status.summary()}")
    if status.current:
        return 0
    if not args.json:
        out.error(f"error: {not_current(status)}")
    return 3


def _schema_file(settings: config.Settings, path: str | None) -> Path:
    return Path(path) if path else settings.schema_path


def _check_drift(args: argparse.Namespace, settings: config.Settings, database: Any, status: Any,
                 out: _Printer) -> int:
    from ._migrator import not_current
    from ._schemafile import drift

    schema_file = _schema_file(settings, args.schema_file)
    found = drift(database, schema_file, table=settings.table, schema=settings.schema,
                  schemas=settings.drift_schemas)
    ok = status.current and not found
    if args.json:
        out.always(json.dumps({**status.as_dict(), "schema_file": str(schema_file),
                               "drift": [d.as_dict() for d in found], "ok": ok}, indent=2))
        return 0 if ok else 3
    if not status.current:
        out.error(f"error: {not_current(status)}")
    if found:
        out.error(f"error: the database's schema differs from {_shown(schema_file)} in {len(found)} object(s):\n"
                  + "\n".join("  " + d.describe().replace("\n", "\n    ") for d in found)
                  + "\n(a change made by hand, or a migration recorded but not really applied; if the "
                    "migrations changed, run `sqlmigrate dump` on a database they built)")
    if ok:
        out.line(f"database is current and matches {_shown(schema_file)}: {status.summary()}")
    return 0 if ok else 3


def cmd_dump(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from ._schemafile import dump

    to_stdout = args.output == "-"
    if to_stdout:
        out.quiet = True  # the schema alone on stdout
    database = _database(settings, out, announce=not to_stdout)
    status = _migrator(settings, database).status()
    if not status.current:
        out.error(f"warning: the database is not current ({status.summary()}); the schema file describes "
                  "it as it is, not as the migrations leave it")
    target = None if to_stdout else _schema_file(settings, args.output)
    result = dump(database, target, table=settings.table, schemas=settings.drift_schemas)
    if to_stdout:
        out.always(result.text.rstrip("\n"))
    elif result.changed:
        out.line(f"wrote {_shown(target)}: {result.objects} object(s)")  # type: ignore[arg-type]
    else:
        out.line(f"{_shown(target)} is up to date: {result.objects} object(s)")  # type: ignore[arg-type]
    return 0


def _print_status(status: Any, as_json: bool, out: _Printer) -> None:
    from ._migrator import format_ms

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
        if e.note:  # why it failed, or the name the history recorded
            out.always(f"{'':<12} {e.note}".replace("\n", "\n" + " " * 13))
    out.always(status.summary())


def cmd_down(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from ._errors import DataLossError
    from ._migrator import format_ms

    database = _database(settings, out)
    migrator = _migrator(settings, database)
    steps = 1 if args.steps is None else args.steps
    if args.dry_run:
        result = migrator.down(steps, to=args.to, dry_run=True)
        if not result.steps:
            out.line("dry run: nothing to roll back")
        for a in result.steps:
            out.line(f"-- would roll back {a.label}{' (no transaction)' if a.no_transaction else ''}")
            out.line((a.sql or "").rstrip())
            out.line()
        if result.findings:
            _warn_data_loss(out, result.findings, dry_run=True)
        if result.steps:
            out.line(f"dry run: {len(result.steps)} migration(s) would be rolled back; nothing was changed")
        return 0

    refusal: list[str] = []

    def decide(findings: list[Any]) -> bool:
        _warn_data_loss(out, findings)
        if args.yes:
            out.error("--yes given: going ahead")
            return True
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            refusal.append("refusing to destroy data without confirmation, and there is no terminal to ask "
                           "on; nothing was rolled back. Re-run with --yes to go ahead (see --dry-run for "
                           "the SQL)")
            return False
        try:
            answer = input("Type 'yes' to destroy this data: ")
        except EOFError:
            answer = ""
        if answer.strip() == "yes":
            return True
        refusal.append("not confirmed; nothing was rolled back")
        return False

    try:
        result = migrator.down(steps, to=args.to, on_data_loss=decide)
    except DataLossError as exc:
        out.error(f"error: {refusal[0] if refusal else exc}")
        return exc.exit_code
    if result.steps:
        total = sum(a.duration_ms for a in result.steps)
        out.line(f"rolled back {len(result.steps)} migration(s) in {format_ms(total)}")
    return 0


def _warn_data_loss(out: _Printer, findings: Sequence[Any], dry_run: bool = False) -> None:
    # On stderr and even with -q: this is the one thing a user must see before data goes.
    lines = [f"warning: rolling back {'would destroy' if dry_run else 'destroys'} data in "
             f"{len(findings)} object(s):"]
    lines += [f"  {f.describe()}" for f in findings]
    out.error("\n".join(lines))


def cmd_baseline(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    database = _database(settings, out)
    result = _migrator(settings, database).baseline(args.version, force=args.force)
    out.line(f"baseline at version {result.version}: {len(result.recorded)} migration(s) recorded as applied "
             "without running them; `up` applies the ones above it")
    return 0


def cmd_repair(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    database = _database(settings, out)
    result = _migrator(settings, database).repair(args.versions or None, mark_applied=args.applied,
                                                  retry=args.retry, accept_renamed=args.accept_renamed)
    # Each change (with its old and new checksum) was printed through the log as it was made.
    if not result.repaired and not result.unresolved:
        out.line("nothing to repair: no applied migration was modified or stopped part way")
    for u in result.unresolved:
        out.error(f"error: {u.message}")
    return 2 if result.unresolved else 0


def cmd_new(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from . import _files as files

    up, down = files.create(_directory(settings), args.description)
    out.line(f"created {_shown(up)}")
    out.line(f"created {_shown(down)}")
    return 0


def cmd_verify(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from ._verify import verify

    if args.json:
        out.quiet = True  # progress lines would corrupt the JSON on stdout
    database = settings.database if args.scratch_database else _database(settings, out)
    report = verify(database, _directory(settings), scratch_database=args.scratch_database,
                    table=settings.table, schema=settings.schema,
                    statement_timeout=settings.statement_timeout)
    if args.json:
        out.always(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        out.line(f"verify: {report.summary()}")
    else:
        out.always(report.describe(only_problems=True))
    return 0 if report.ok else 1


def cmd_lint(args: argparse.Namespace, settings: config.Settings, out: _Printer) -> int:
    from . import _files as files
    from ._lint import disabled_rules, lint

    if args.files:
        paths = list(args.files)
    elif settings.database:
        paths = [e.migration.path for e in _migrator(settings, settings.database).status().pending]
    else:
        paths = [m.path for m in files.discover(_directory(settings))]
        out.error(f"note: no database configured: linting all {len(paths)} migration file(s) without "
                  "table sizes; set --database to lint only the pending ones, against that database")
    report = lint(paths, settings.database, disabled=disabled_rules(settings.lint_disable, settings.lock_wait))
    if args.json:
        out.always(json.dumps(report.as_dict(), indent=2))
        return 1 if report.errors else 0
    for finding in report.findings:
        out.always(finding.describe() + "\n")
    if report.blockers:
        out.always("sessions that would block these migrations now:")
        for b in report.blockers:
            out.always(f"  {b.describe()}")
        out.always("")
    out.line(f"lint: {report.summary()}")
    return 1 if report.errors else 0


COMMANDS: dict[str, Callable[[argparse.Namespace, config.Settings, _Printer], int]] = {
    "up": cmd_up,
    "status": cmd_status,
    "check": cmd_check,
    "dump": cmd_dump,
    "new": cmd_new,
    "baseline": cmd_baseline,
    "repair": cmd_repair,
    "down": cmd_down,
    "verify": cmd_verify,
    "lint": cmd_lint,
}


def _database(settings: config.Settings, out: _Printer, announce: bool = True) -> str:
    if settings.database:
        return settings.database
    from . import _embedded as embedded

    embedded.refuse_in_production(os.environ)
    url = embedded.start(Path.cwd())
    if announce:
        out.line(f"no database configured: using the embedded PostgreSQL in ./{embedded.FOLDER}/ "
                 "(set --database or SQLMIGRATE_DATABASE_URL to use another)")
    return url


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        _flush_quietly()


def _flush_quietly() -> None:
    """Flush what is still buffered (``--help`` text, say) while its reader may have gone."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            _discard(stream)
        except (OSError, ValueError):
            pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = _Printer(args.quiet)
    database: str | None = args.database
    handler = _LogToPrinter(out, database)
    logger = logging.getLogger("sqlmigrate")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    settings: config.Settings | None = None
    try:
        settings = config.resolve(
            with_database=args.command != "new",
            directory=args.dir, database=args.database, table=args.table, schema=args.schema,
            lock_timeout=args.lock_timeout, statement_timeout=args.statement_timeout,
            lock_strategy=getattr(args, "lock_strategy", None),
            lock_wait=getattr(args, "lock_wait", None), lock_retries=getattr(args, "lock_retries", None),
            strict=getattr(args, "strict", None),
        )
        handler.database = database = settings.database
        if settings.database:
            _check_connection_string(settings)
        if settings.database and not getattr(args, "json", False) and getattr(args, "output", None) != "-":
            out.line(f"sqlmigrate: {describe(settings.database)}, migrations in {_shown(settings.directory)}")
        return COMMANDS[args.command](args, settings, out)
    except SqlMigrateError as exc:
        out.error(f"error: {mask(_relative(exc), database)}")
        hint = _embedded_hint(exc, settings)
        if hint:
            out.error(hint)
        return exc.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    finally:
        out.clear()
        logger.removeHandler(handler)


def _check_connection_string(settings: config.Settings) -> None:
    """A malformed string is a configuration error named after where it came from, found before the
    header would quote it and before anything tries to connect."""
    assert settings.database is not None
    try:
        normalize(settings.database)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{settings.database_source}: {exc}") from None


def _embedded_hint(exc: SqlMigrateError, settings: config.Settings | None) -> str | None:
    """What to do about a missing extension, when the embedded server (no database configured) ran
    the migration: it ships without pgcrypto and uuid-ossp."""
    if settings is None or settings.database is not None or not isinstance(exc, MigrationError):
        return None
    from . import _embedded as embedded

    return embedded.missing_extension_hint(exc.server_message)


def _directory(settings: config.Settings) -> Path:
    """The migration directory as the library should get it: the library names files by joining
    onto the directory it was given, so a directory relative to the working directory makes every
    message read ``sql/0003_x.sql:4: ...``, as the user would type it."""
    return Path(_shown(settings.directory))


def _relative(exc: SqlMigrateError) -> str:
    """The error's text, its file (``.path``) shown relative to the working directory when under it."""
    text = str(exc)
    path = getattr(exc, "path", None)
    if path is not None and text.startswith(str(path)):
        text = _shown(Path(path)) + text[len(str(path)):]
    return text


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
